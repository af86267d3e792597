#!/usr/bin/env python3
"""Writes the small seed files of tests/fuzz/corpus/{gguf,safetensors,llama2c}:
valid tiny checkpoints of each format (so the fuzzer starts from the paths
that parse) and a few edge cases. Run from anywhere; needs numpy and gguf."""
import json
import struct
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "corpus"


def llama2c(dim=8, hid=16, layers=1, heads=2, kv_heads=1, vocab=4, seq=4, shared=True):
    rng = np.random.default_rng(dim * 31 + layers)
    kv = dim // heads * kv_heads
    n = (vocab * dim + layers * (dim + dim * dim + 2 * kv * dim + dim * dim + dim + 3 * hid * dim) + dim
         + seq * (dim // heads))
    if not shared:
        n += vocab * dim
    header = struct.pack("<7i", dim, hid, layers, heads, kv_heads, vocab if shared else -vocab, seq)
    return header + rng.standard_normal(n).astype("<f4").tobytes()


def safetensors(entries, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dt, shape, raw in entries:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((-len(h) - 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def gguf_files(out):
    import gguf
    from gguf.constants import GGMLQuantizationType as T
    from gguf.quants import quantize
    rng = np.random.default_rng(1)
    w = gguf.GGUFWriter(str(out / "tiny_llama.gguf"), "llama")
    w.add_embedding_length(32)
    w.add_feed_forward_length(32)
    w.add_block_count(1)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_token_list(["<unk>", "<s>", "a"])
    w.add_token_scores([0.0, -1.0, -2.5])
    w.add_bos_token_id(1)
    w.add_tensor("token_embd.weight", rng.standard_normal((3, 32)).astype(np.float32))
    w.add_tensor("blk.0.attn_q.weight", quantize(rng.standard_normal((32, 32)).astype(np.float32), T.Q8_0),
                 raw_dtype=T.Q8_0)
    w.add_tensor("blk.0.ffn_up.weight", quantize(rng.standard_normal((32, 32)).astype(np.float32), T.Q4_1),
                 raw_dtype=T.Q4_1)
    w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    w = gguf.GGUFWriter(str(out / "metadata_only.gguf"), "llama")
    w.add_uint32("general.alignment", 64)
    w.add_array("x.numbers", [1, 2, 3])
    w.add_bool("x.flag", True)
    w.add_float64("x.f64", 0.25)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()


def main():
    for sub in ("gguf", "safetensors", "llama2c"):
        (HERE / sub).mkdir(parents=True, exist_ok=True)
    (HERE / "llama2c" / "tiny_shared.bin").write_bytes(llama2c())
    (HERE / "llama2c" / "tiny_unshared.bin").write_bytes(llama2c(dim=8, layers=2, shared=False))
    f = np.arange(6, dtype="<f4")
    st = HERE / "safetensors"
    (st / "f32_with_metadata.safetensors").write_bytes(
        safetensors([("model.norm.weight", "F32", [6], f.tobytes()), ("b", "BF16", [2, 3], bytes(12))],
                    metadata={"format": "pt"}))
    (st / "empty.safetensors").write_bytes(safetensors([]))
    (st / "mixed.safetensors").write_bytes(
        safetensors([("a", "F16", [3], bytes(6)), ("z", "I64", [0], b""), ("u", "U8", [2, 2], bytes(4))]))
    gguf_files(HERE / "gguf")


if __name__ == "__main__":
    main()
