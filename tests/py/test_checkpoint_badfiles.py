# ctest-labels: py
"""A table of malformed checkpoints: `kickgrid inspect` must exit 1 with one
line on stderr that names the file and says what is wrong (never a crash, a
hang or a success)."""
import json
import shutil
import struct

import numpy as np
import pytest

from checkpoint_ctypes import st_bytes
from kgtest import DATA_DIR, run

DIM, HID, LAYERS, HEADS, VOCAB = 16, 32, 1, 2, 20


def llama_config(**kw):
    c = {"architectures": ["LlamaForCausalLM"], "hidden_size": DIM, "intermediate_size": HID,
         "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": HEADS,
         "vocab_size": VOCAB, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
    c.update(kw)
    return c


def entries(dtype="F32", q_rows=DIM, drop=None):
    shapes = {"model.embed_tokens.weight": (VOCAB, DIM), "model.norm.weight": (DIM,)}
    p = "model.layers.0."
    shapes.update({p + "input_layernorm.weight": (DIM,), p + "self_attn.q_proj.weight": (q_rows, DIM),
                   p + "self_attn.k_proj.weight": (DIM, DIM), p + "self_attn.v_proj.weight": (DIM, DIM),
                   p + "self_attn.o_proj.weight": (DIM, DIM), p + "post_attention_layernorm.weight": (DIM,),
                   p + "mlp.gate_proj.weight": (HID, DIM), p + "mlp.up_proj.weight": (HID, DIM),
                   p + "mlp.down_proj.weight": (DIM, HID)})
    size = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "Q9": 1}[dtype]
    return [(n, dtype, s, bytes(size * int(np.prod(s)))) for n, s in shapes.items() if n != drop]


def hf_dir(root, name, config=None, st=None, raw_config=None):
    d = root / name
    d.mkdir()
    (d / "config.json").write_text(raw_config if raw_config is not None else json.dumps(config or llama_config()))
    if st is not None:
        (d / "model.safetensors").write_bytes(st)
    return d


def good_st():
    return st_bytes(entries())


def make_cases(root):
    """(label, path to inspect, path the message must name, expected text)"""
    cases = []
    d = hf_dir(root, "good", st=good_st())
    assert run("inspect", d, check=False).returncode == 0  # the baseline is valid
    st = good_st()
    d = hf_dir(root, "truncated_st", st=st[:-10])
    cases.append(("truncated safetensors", d, d / "model.safetensors", "past the end of the file"))
    bad = bytearray(st)
    bad[:8] = struct.pack("<Q", len(st))
    d = hf_dir(root, "header_beyond", st=bytes(bad))
    cases.append(("header length beyond file", d, d / "model.safetensors", "runs past the end of the file"))
    d = hf_dir(root, "tiny_st", st=b"\x01\x02")
    cases.append(("safetensors under 8 bytes", d, d / "model.safetensors", "truncated safetensors file"))
    d = hf_dir(root, "not_json", st=struct.pack("<Q", 4) + b"{x:1")
    cases.append(("header not JSON", d, d / "model.safetensors", "invalid JSON"))
    d = hf_dir(root, "shape_mismatch", st=st_bytes(entries(q_rows=DIM + 2)))
    cases.append(("shape mismatch", d, d, "self_attn.q_proj.weight has shape [18, 16], expected [16, 16]"))
    d = hf_dir(root, "unknown_dtype", st=st_bytes(entries(dtype="Q9")))
    cases.append(("unknown dtype", d, d / "model.safetensors", "unknown dtype 'Q9'"))
    d = hf_dir(root, "int_weights", st=st_bytes(entries(dtype="I32")))
    cases.append(("integer weights", d, d / "model.safetensors", "weights must be F32, F16 or BF16"))
    d = hf_dir(root, "unknown_arch", config=llama_config(architectures=["MistralForCausalLM"]), st=st)
    cases.append(("unknown architecture", d, d / "config.json", "unsupported architecture 'MistralForCausalLM'"))
    d = hf_dir(root, "bad_config", raw_config="{\"hidden_size\": 16,", st=st)
    cases.append(("config not JSON", d, d / "config.json", "invalid JSON"))
    d = hf_dir(root, "missing_key", config={k: v for k, v in llama_config().items() if k != "vocab_size"}, st=st)
    cases.append(("config key missing", d, d / "config.json", "missing \"vocab_size\""))
    d = hf_dir(root, "missing_tensor", st=st_bytes(entries(drop="model.layers.0.mlp.up_proj.weight")))
    cases.append(("missing tensor", d, d, "missing tensor model.layers.0.mlp.up_proj.weight"))
    d = hf_dir(root, "no_weights")
    cases.append(("no safetensors", d, d, "no model.safetensors or model.safetensors.index.json"))
    d = root / "no_config"
    d.mkdir()
    (d / "model.safetensors").write_bytes(st)
    cases.append(("no config.json", d, d, "no config.json"))
    e = entries()
    overl = st_bytes(e, header_override={n: {"dtype": dt, "shape": list(s), "data_offsets": [0, len(r)]}
                                         for n, dt, s, r in e})
    d = hf_dir(root, "overlap", st=overl)
    cases.append(("overlapping tensors", d, d / "model.safetensors", "overlap"))
    d = hf_dir(root, "bad_rope", config=llama_config(rope_scaling={"rope_type": "yarn", "factor": 4.0}), st=st)
    cases.append(("unsupported rope scaling", d, d / "config.json", "rope scaling type 'yarn' is not supported"))
    # sharded: an index naming a shard that is absent, and one that lies about a tensor's shard
    d = hf_dir(root, "missing_shard")
    (d / "model-00001-of-00002.safetensors").write_bytes(st)
    wm = {n: "model-00001-of-00002.safetensors" for n, *_ in e}
    wm["model.norm.weight"] = "model-00002-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    cases.append(("missing shard", d, d / "model-00002-of-00002.safetensors", "No such file"))
    d = hf_dir(root, "lying_index")
    (d / "model-00001-of-00002.safetensors").write_bytes(st_bytes(e[:5]))
    (d / "model-00002-of-00002.safetensors").write_bytes(st_bytes(e[5:]))
    wm = {n: "model-00001-of-00002.safetensors" for n, *_ in e}
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    cases.append(("index names the wrong shard", d, d, "does not contain it"))
    d = hf_dir(root, "evil_index")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "../../etc/passwd"}}))
    cases.append(("shard path escaping the directory", d, d / "model.safetensors.index.json", "invalid shard"))
    d = hf_dir(root, "twice")
    (d / "model-00001-of-00002.safetensors").write_bytes(st)
    (d / "model-00002-of-00002.safetensors").write_bytes(st_bytes(e[:1]))
    wm = {n: "model-00001-of-00002.safetensors" for n, *_ in e}
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {**wm, "model.embed_tokens.weight": "model-00002-of-00002.safetensors"}}))
    cases.append(("tensor in two shards", d, d, "appears twice"))
    # GGUF and llama2.c
    g = root / "magic.gguf"
    g.write_bytes(b"GGUX" + bytes(60))
    cases.append(("wrong GGUF magic", g, g, "bad magic"))
    g = root / "v9.gguf"
    g.write_bytes(b"GGUF" + struct.pack("<IQQ", 9, 0, 0))
    cases.append(("unsupported GGUF version", g, g, "GGUF version 9 is not supported"))
    g = root / "cut.gguf"
    g.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 20) + b"general.arch")
    cases.append(("truncated GGUF", g, g, "beyond the end of the file"))
    stories = DATA_DIR / "models" / "stories260K" / "stories260K.bin"
    if stories.exists():
        b = root / "cut.bin"
        b.write_bytes(stories.read_bytes()[:-100])
        cases.append(("truncated llama2.c", b, b, "truncated"))
        b = root / "shape.bin"
        raw = bytearray(stories.read_bytes())
        raw[4:8] = struct.pack("<i", 171)  # another hidden size: the sizes no longer add up
        b.write_bytes(bytes(raw))
        cases.append(("llama2.c size mismatch", b, b, "does not match the llama2.c header"))
    b = root / "noise.bin"
    b.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    cases.append(("not a checkpoint", b, b, "unrecognized checkpoint format"))
    cases.append(("absent path", root / "nothing.bin", root / "nothing.bin", "No such file"))
    return cases


def test_bad_files(tmp_path):
    failures = []
    for label, path, named, text in make_cases(tmp_path):
        p = run("inspect", path, check=False, timeout=60)
        lines = p.stderr.strip().splitlines()
        ok = (p.returncode == 1 and len(lines) == 1 and lines[0].startswith("kickgrid inspect: ")
              and str(named) in lines[0] and text in lines[0] and not p.stdout)
        if not ok:
            failures.append(f"{label}: exit {p.returncode}, stderr {p.stderr!r}")
    assert not failures, "\n".join(failures)


def test_usage_errors(tmp_path):
    assert run("inspect", check=False).returncode == 2
    assert run("inspect", "a", "b", check=False).returncode == 2
    assert run("inspect", "a", "--frobnicate", check=False).returncode == 2
    assert "usage: kickgrid inspect" in run("inspect", "--help").stdout
