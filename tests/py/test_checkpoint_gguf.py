# ctest-labels: py
"""GGUF files written by the gguf package's GGUFWriter (an independent
writer) read through kickgrid: metadata to config, ggml names to canonical
names, reversed shapes, every supported block type's values against
gguf.quants.dequantize, and llama3 rope scaling recovered from a rope_freqs
tensor."""
import math

import numpy as np
import pytest

from checkpoint_ctypes import KG_ROPE_LLAMA3, KG_ROPE_NONE, as_f32, open_error, opened, shape_of, tensors
from kgtest import run
import json

gguf = pytest.importorskip("gguf")
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402

DIM, HID, HEADS, KV, VOCAB, LAYERS = 256, 512, 4, 2, 16, 2
HD = DIM // HEADS
F16_FIELDS = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}

# (gguf name, numpy shape in PyTorch order, ggml type) per layer
LAYER_TYPES = [
    {"attn_q": T.Q4_K, "attn_k": T.Q5_K, "attn_v": T.Q6_K, "attn_output": T.Q3_K, "ffn_gate": T.Q2_K,
     "ffn_up": T.Q5_0, "ffn_down": T.Q4_1},
    {"attn_q": T.F16, "attn_k": T.BF16, "attn_v": T.Q5_1, "attn_output": T.Q4_0, "ffn_gate": T.Q8_0,
     "ffn_up": T.F32, "ffn_down": T.Q8_0},
]
SHAPES = {"attn_q": (HEADS * HD, DIM), "attn_k": (KV * HD, DIM), "attn_v": (KV * HD, DIM),
          "attn_output": (DIM, HEADS * HD), "ffn_gate": (HID, DIM), "ffn_up": (HID, DIM), "ffn_down": (DIM, HID)}
CANON = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def encoded(rng, shape, qtype):
    """(array to hand GGUFWriter, raw_dtype or None, float32 values a reader must see)"""
    x = (0.05 * rng.standard_normal(shape)).astype(np.float32)
    if qtype == T.F32:
        return x, None, x
    if qtype == T.F16:
        return x.astype(np.float16), None, x.astype(np.float16).astype(np.float32)
    if qtype in F16_FIELDS:  # K-quants: random blocks with finite scales (gguf cannot quantize these)
        elems, size = GGML_QUANT_SIZES[qtype]
        nb = x.size // elems
        raw = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
        for off in F16_FIELDS[qtype]:
            raw[:, off:off + 2] = (rng.uniform(-0.01, 0.01, nb).astype(np.float16)).view(np.uint8).reshape(nb, 2)
        raw = raw.reshape(shape[0], -1)
    else:
        raw = quantize(x, qtype)
    return raw, qtype, dequantize(raw, qtype).reshape(shape)


def write_tiny(path, rng, rope_freqs=None, tied=False, arch="llama"):
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(1024)
    w.add_embedding_length(DIM)
    w.add_feed_forward_length(HID)
    w.add_block_count(LAYERS)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(HD)
    w.add_bos_token_id(3)
    w.add_eos_token_id(4)
    expect = {}

    def add(name, canon, shape, qtype):
        arr, raw_dtype, values = encoded(rng, shape, qtype)
        if raw_dtype is None:
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, arr, raw_dtype=raw_dtype)
        expect[canon] = (values, shape)

    add("token_embd.weight", "model.embed_tokens.weight", (VOCAB, DIM), T.Q8_0)
    for i in range(LAYERS):
        add(f"blk.{i}.attn_norm.weight", f"model.layers.{i}.input_layernorm.weight", (DIM,), T.F32)
        add(f"blk.{i}.ffn_norm.weight", f"model.layers.{i}.post_attention_layernorm.weight", (DIM,), T.F32)
        for part, qtype in LAYER_TYPES[i].items():
            add(f"blk.{i}.{part}.weight", f"model.layers.{i}.{CANON[part]}.weight", SHAPES[part], qtype)
    add("output_norm.weight", "model.norm.weight", (DIM,), T.F32)
    if not tied:
        add("output.weight", "lm_head.weight", (VOCAB, DIM), T.BF16)
    if rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", rope_freqs.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expect


def test_gguf_writer_model(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "tiny.gguf"
    expect = write_tiny(path, rng)
    with opened(path) as ck:
        c = ck.config
        assert (c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim) == (DIM, HID, LAYERS, HEADS, KV, HD)
        assert (c.vocab_size, c.max_seq_len, c.bos_id, c.eos_id, c.tied_embeddings) == (VOCAB, 1024, 3, 4, 0)
        assert c.rope_theta == 500000.0 and c.norm_eps == np.float32(1e-5) and c.rope_scaling == KG_ROPE_NONE
        assert ck.rope_interleaved == 1 and ck.gguf
        got = tensors(ck)
        assert set(got) == set(expect)
        for name, (values, shape) in expect.items():
            assert shape_of(got[name]) == shape, name
            np.testing.assert_array_equal(as_f32(got[name]), values, err_msg=name)
    j = json.loads(run("inspect", path, "--json", "--tensors").stdout)
    assert j["format"] == "gguf" and j["rope_interleaved"] is True and j["n_tensors"] == len(expect)
    assert j["dtypes"]["q2_k"] == 1 and j["dtypes"]["bf16"] == 2 and j["dtypes"]["q8_0"] == 3


def llama3_factors(theta, dim, factor, lo=1.0, hi=4.0, orig=8192):
    """The per-frequency divisors llama.cpp's converter stores for rope_type llama3."""
    out = []
    for i in range(0, dim, 2):
        freq = 1.0 / theta ** (i / dim)
        wavelen = 2 * math.pi / freq
        if wavelen < orig / hi:
            out.append(1.0)
        elif wavelen > orig / lo:
            out.append(factor)
        else:
            smooth = (orig / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


@pytest.mark.parametrize("factor", [8.0, 32.0])
def test_rope_freqs_gives_llama3_scaling(tmp_path, factor):
    path = tmp_path / "l31.gguf"
    write_tiny(path, np.random.default_rng(8), rope_freqs=llama3_factors(500000.0, HD, factor), tied=True)
    with opened(path) as ck:
        c = ck.config
        assert c.rope_scaling == KG_ROPE_LLAMA3 and c.rope_factor == factor and c.rope_original_max_pos == 8192
        assert (c.rope_low_freq_factor, c.rope_high_freq_factor) == (1.0, 4.0) and c.tied_embeddings == 1
        assert "rope_freqs.weight" not in tensors(ck)


def test_rope_freqs_unknown_and_other_arch(tmp_path):
    path = tmp_path / "odd.gguf"
    write_tiny(path, np.random.default_rng(9), rope_freqs=np.full(HD // 2, 3.0, dtype=np.float32))
    rc, msg = open_error(path)
    assert rc != 0 and str(path) in msg and "rope_freqs" in msg
    path = tmp_path / "gpt2.gguf"
    write_tiny(path, np.random.default_rng(9), arch="gpt2")
    rc, msg = open_error(path)
    assert rc != 0 and "'gpt2'" in msg and "not supported" in msg
