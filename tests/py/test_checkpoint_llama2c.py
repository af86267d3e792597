# ctest-labels: py
"""The llama2.c reader on stories260K against values read here with Python's
struct module at the offsets of the legacy layout (header, then
token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final)."""
import json
import struct

import numpy as np

from checkpoint_ctypes import as_f32, opened, tensors
from kgtest import data_path, run


def layout(path):
    raw = path.read_bytes()
    dim, hid, L, heads, kv_heads, vocab, seq = struct.unpack("<7i", raw[:28])
    kv = dim // heads * kv_heads
    sizes = [("tok", abs(vocab) * dim), ("rms_att", L * dim), ("wq", L * dim * dim), ("wk", L * kv * dim),
             ("wv", L * kv * dim), ("wo", L * dim * dim), ("rms_ffn", L * dim), ("w1", L * hid * dim),
             ("w2", L * dim * hid), ("w3", L * hid * dim), ("rms_final", dim)]
    offsets, off = {}, 28
    for name, n in sizes:
        offsets[name] = off
        off += 4 * n
    return raw, (dim, hid, L, heads, kv_heads, vocab, seq), offsets


def f32_at(raw, off):
    return struct.unpack("<f", raw[off:off + 4])[0]


def test_stories260k_header_and_values():
    path = data_path("models/stories260K/stories260K.bin")
    raw, (dim, hid, L, heads, kv_heads, vocab, seq), off = layout(path)
    assert (dim, hid, L, heads, kv_heads, vocab, seq) == (64, 172, 5, 8, 4, 512, 512)
    kv = dim // heads * kv_heads
    picks = [  # (canonical tensor, row, col or None, byte offset in the file)
        ("model.embed_tokens.weight", 3, 5, off["tok"] + 4 * (3 * dim + 5)),
        ("model.embed_tokens.weight", 511, 63, off["tok"] + 4 * (511 * dim + 63)),
        ("model.layers.2.input_layernorm.weight", 10, None, off["rms_att"] + 4 * (2 * dim + 10)),
        ("model.layers.1.self_attn.q_proj.weight", 7, 9, off["wq"] + 4 * (1 * dim * dim + 7 * dim + 9)),
        ("model.layers.4.self_attn.k_proj.weight", 31, 63, off["wk"] + 4 * (4 * kv * dim + 31 * dim + 63)),
        ("model.layers.3.self_attn.v_proj.weight", 0, 1, off["wv"] + 4 * (3 * kv * dim + 1)),
        ("model.layers.0.self_attn.o_proj.weight", 63, 0, off["wo"] + 4 * (63 * dim)),
        ("model.layers.4.post_attention_layernorm.weight", 63, None, off["rms_ffn"] + 4 * (4 * dim + 63)),
        ("model.layers.0.mlp.gate_proj.weight", 171, 0, off["w1"] + 4 * (171 * dim)),
        ("model.layers.3.mlp.down_proj.weight", 63, 171, off["w2"] + 4 * (3 * dim * hid + 63 * hid + 171)),
        ("model.layers.2.mlp.up_proj.weight", 100, 50, off["w3"] + 4 * (2 * hid * dim + 100 * dim + 50)),
        ("model.norm.weight", 63, None, off["rms_final"] + 4 * 63),
    ]
    with opened(path) as ck:
        c = ck.config
        assert (c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.max_seq_len) == (
            dim, hid, L, heads, kv_heads, vocab, seq)
        assert c.tied_embeddings == 1 and ck.rope_interleaved == 1
        t = tensors(ck)
        for name, r, col, byte in picks:
            a = as_f32(t[name])
            got = a[r] if col is None else a[r, col]
            assert got == np.float32(f32_at(raw, byte)), name
    j = json.loads(run("inspect", path, "--json").stdout)
    assert j["format"] == "llama2c" and j["config"]["n_kv_heads"] == kv_heads and j["parameters"] == 260032
