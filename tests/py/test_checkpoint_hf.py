# ctest-labels: py
"""Hugging Face directories written here with NumPy from the safetensors and
config.json formats (fp32/fp16/bf16, single and sharded, tied and untied,
LLaMA-3.1 rope_scaling, DCLM/OpenLM names with fused in_proj and w12), read
back through ctypes and `kickgrid inspect --json` with exact comparisons; and
kg_hf_write's output read by independent readers (this file's parser, the
safetensors package)."""
import ctypes
import json

import numpy as np
import pytest

from checkpoint_ctypes import (KG_ARCH_DCLM, KG_ARCH_LLAMA, KG_NORM_LAYER_GAIN, KG_NORM_RMS, KG_ROPE_LLAMA3,
                               KG_ROPE_NONE, bf16_bits_to_f32, dtype_id, f32_to_bf16_bits, opened, raw_bytes,
                               shape_of, st_array, st_bytes, st_parse, tensors)
from kgtest import run


def llama_arrays(rng, dim, hid, layers, heads, kv, vocab, head_dim=None, tied=False):
    hd = head_dim or dim // heads
    a = {"model.embed_tokens.weight": rng.standard_normal((vocab, dim))}
    for i in range(layers):
        p = f"model.layers.{i}."
        a[p + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(dim)
        a[p + "self_attn.q_proj.weight"] = rng.standard_normal((heads * hd, dim))
        a[p + "self_attn.k_proj.weight"] = rng.standard_normal((kv * hd, dim))
        a[p + "self_attn.v_proj.weight"] = rng.standard_normal((kv * hd, dim))
        a[p + "self_attn.o_proj.weight"] = rng.standard_normal((dim, heads * hd))
        a[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(dim)
        a[p + "mlp.gate_proj.weight"] = rng.standard_normal((hid, dim))
        a[p + "mlp.up_proj.weight"] = rng.standard_normal((hid, dim))
        a[p + "mlp.down_proj.weight"] = rng.standard_normal((dim, hid))
    a["model.norm.weight"] = 1 + 0.1 * rng.standard_normal(dim)
    if not tied:
        a["lm_head.weight"] = rng.standard_normal((vocab, dim))
    return {k: (0.05 * v).astype(np.float32) for k, v in a.items()}


def encode(arr, dt):
    """(raw little-endian bytes, the float32 values a reader must see)"""
    if dt == "F32":
        return arr.astype("<f4").tobytes(), arr.astype(np.float32)
    if dt == "F16":
        h = arr.astype("<f2")
        return h.tobytes(), h.astype(np.float32)
    bits = f32_to_bf16_bits(arr)
    return bits.astype("<u2").tobytes(), bf16_bits_to_f32(bits).reshape(arr.shape)


def write_hf(d, config, arrays, dt="F32", shards=1, extra=()):
    """Writes config.json and safetensors (sharded with an index when shards > 1)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config))
    names = list(arrays)
    expect, entries = {}, []
    for n in names:
        raw, f = encode(arrays[n], dt)
        entries.append((n, dt, arrays[n].shape, raw))
        expect[n] = (raw, f)
    entries += list(extra)
    if shards == 1:
        (d / "model.safetensors").write_bytes(st_bytes(entries, metadata={"format": "pt"}))
        return expect
    groups = np.array_split(np.arange(len(entries)), shards)
    weight_map = {}
    for k, g in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = [entries[i] for i in g]
        (d / fname).write_bytes(st_bytes(part, metadata={"format": "pt"}))
        weight_map.update({e[0]: fname for e in part})
    index = {"metadata": {"total_size": sum(len(e[3]) for e in entries)}, "weight_map": weight_map}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    return expect


def llama_config(dim, hid, layers, heads, kv, vocab, **kw):
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": dim,
         "intermediate_size": hid, "num_hidden_layers": layers, "num_attention_heads": heads,
         "num_key_value_heads": kv, "vocab_size": vocab, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
         "rope_theta": 10000.0, "tie_word_embeddings": False, "hidden_act": "silu", "bos_token_id": 1,
         "eos_token_id": 2, "torch_dtype": "float32"}
    c.update(kw)
    return c


def check_same(ck, expect):
    got = tensors(ck)
    for name, (raw, _) in expect.items():
        if name in got:
            assert raw_bytes(got[name]) == raw, name


def inspect_json(path):
    return json.loads(run("inspect", path, "--json", "--tensors").stdout)


def test_llama2_f32_single_untied(tmp_path):
    rng = np.random.default_rng(1)
    arrays = llama_arrays(rng, 32, 80, 2, 4, 4, 50)
    expect = write_hf(tmp_path / "m", llama_config(32, 80, 2, 4, 4, 50), arrays)
    with opened(tmp_path / "m") as ck:
        c = ck.config
        assert (c.arch, c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size) == (
            KG_ARCH_LLAMA, 32, 80, 2, 4, 4, 8, 50)
        assert (c.max_seq_len, c.norm, c.rope_scaling, c.tied_embeddings, c.bos_id, c.eos_id) == (
            4096, KG_NORM_RMS, KG_ROPE_NONE, 0, 1, 2)
        assert c.norm_eps == np.float32(1e-5) and c.rope_theta == 10000.0
        assert ck.rope_interleaved == 0 and ck.n_tensors == len(arrays)
        check_same(ck, expect)
        for name, t in tensors(ck).items():
            assert shape_of(t) == arrays[name].shape and t.dtype == dtype_id("f32")
    j = inspect_json(tmp_path / "m")
    assert j["format"] == "hf" and j["config"]["dim"] == 32 and j["config"]["n_kv_heads"] == 4
    assert j["config"]["norm_eps"] == pytest.approx(1e-5, rel=1e-7) and j["rope_interleaved"] is False
    assert {t["name"]: tuple(t["shape"]) for t in j["tensors"]} == {k: v.shape for k, v in arrays.items()}
    assert j["parameters"] == sum(v.size for v in arrays.values())


def test_fp16_sharded_tied(tmp_path):
    rng = np.random.default_rng(2)
    arrays = llama_arrays(rng, 32, 64, 3, 4, 2, 40, tied=True)
    inv = np.arange(4, dtype=np.float32)
    extra = [("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", (4,), inv.tobytes())]
    cfg = llama_config(32, 64, 3, 4, 2, 40, tie_word_embeddings=True)
    expect = write_hf(tmp_path / "m", cfg, arrays, dt="F16", shards=3, extra=extra)
    with opened(tmp_path / "m") as ck:
        assert ck.config.tied_embeddings == 1 and ck.config.n_kv_heads == 2
        got = tensors(ck)
        assert set(got) == set(arrays)  # inv_freq ignored, no lm_head
        check_same(ck, expect)
        assert all(t.dtype == dtype_id("f16") for t in got.values())
    j = inspect_json(tmp_path / "m")
    assert j["config"]["tied_embeddings"] is True and j["dtypes"] == {"f16": len(arrays)}


def test_bf16_llama31_rope_scaling_and_head_dim(tmp_path):
    rng = np.random.default_rng(3)
    arrays = llama_arrays(rng, 48, 96, 2, 4, 1, 64, head_dim=16)
    rs = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192}
    cfg = llama_config(48, 96, 2, 4, 1, 64, head_dim=16, rope_theta=500000.0, rope_scaling=rs,
                       max_position_embeddings=131072, eos_token_id=[60, 61, 62], bos_token_id=59)
    expect = write_hf(tmp_path / "m", cfg, arrays, dt="BF16", shards=2)
    with opened(tmp_path / "m") as ck:
        c = ck.config
        assert (c.head_dim, c.n_kv_heads, c.rope_scaling, c.rope_original_max_pos) == (16, 1, KG_ROPE_LLAMA3, 8192)
        assert (c.rope_factor, c.rope_low_freq_factor, c.rope_high_freq_factor) == (8.0, 1.0, 4.0)
        assert c.rope_theta == 500000.0 and c.max_seq_len == 131072 and (c.bos_id, c.eos_id) == (59, 60)
        check_same(ck, expect)
        q = tensors(ck)["model.layers.1.self_attn.q_proj.weight"]
        assert shape_of(q) == (64, 48)


def dclm_arrays(rng, dim, layers, vocab, hidden, tied=False, prefix="model."):
    a = {prefix + "tok_embeddings.weight": rng.standard_normal((vocab, dim))}
    for i in range(layers):
        p = f"{prefix}layers.{i}."
        a[p + "attention.in_proj.weight"] = rng.standard_normal((3 * dim, dim))
        a[p + "attention.out_proj.weight"] = rng.standard_normal((dim, dim))
        a[p + "attention.q_norm.weight"] = 1 + 0.1 * rng.standard_normal(dim)
        a[p + "attention.k_norm.weight"] = 1 + 0.1 * rng.standard_normal(dim)
        a[p + "attention_norm.weight"] = 1 + 0.1 * rng.standard_normal(dim)
        a[p + "ffn_norm.weight"] = 1 + 0.1 * rng.standard_normal(dim)
        a[p + "feed_forward.w12.weight"] = rng.standard_normal((2 * hidden, dim))
        a[p + "feed_forward.w3.weight"] = rng.standard_normal((dim, hidden))
    a[prefix + "norm.weight"] = 1 + 0.1 * rng.standard_normal(dim)
    if not tied:
        a[prefix + "output.weight"] = rng.standard_normal((vocab, dim))
    return {k: (0.05 * v).astype(np.float32) for k, v in a.items()}


def dclm_config(dim, heads, layers, vocab, nested=False, tied=False):
    params = {"dim": dim, "n_heads": heads, "n_layers": layers, "vocab_size": vocab, "norm_eps": 1e-5,
              "seq_len": 2048, "weight_tying": tied, "apply_qk_norm": True, "qk_norm": True,
              "positional_embedding_type": "rotary", "ffn_type": "swiglu_torch", "post_embed_norm": False,
              "moe_freq": 0, "attn_name": "torch_attn"}
    if nested:  # the first apple/DCLM-7B upload: params under params_args_dict, model_norm
        params["model_norm"] = "gain_only_lp_layer_norm"
        return {"architectures": ["OpenLMModel"], "model_type": "openlm", "params": None,
                "params_args_dict": params, "torch_dtype": "float32"}
    params["norm_type"] = "gain_only_lp_layer_norm"
    return {"architectures": ["OpenLMModel"], "model_type": "openlm", "params": None, **params}


@pytest.mark.parametrize("nested,prefix,dt", [(False, "model.", "BF16"), (True, "", "F32")])
def test_dclm_names_and_fused_splits(tmp_path, nested, prefix, dt):
    dim, heads, layers, vocab = 32, 4, 2, 60
    hidden = 256 * ((int(2 * 4 * dim / 3) + 256 - 1) // 256)  # open_lm's rule, as in its Block
    rng = np.random.default_rng(4)
    arrays = dclm_arrays(rng, dim, layers, vocab, hidden, prefix=prefix)
    expect = write_hf(tmp_path / "d", dclm_config(dim, heads, layers, vocab, nested=nested), arrays, dt=dt)
    with opened(tmp_path / "d") as ck:
        c = ck.config
        assert (c.arch, c.norm, c.qk_norm, c.dim, c.hidden_dim, c.n_heads, c.n_kv_heads, c.head_dim) == (
            KG_ARCH_DCLM, KG_NORM_LAYER_GAIN, 1, dim, hidden, heads, heads, dim // heads)
        assert (c.vocab_size, c.max_seq_len, c.tied_embeddings, ck.rope_interleaved) == (vocab, 2048, 0, 0)
        assert c.norm_eps == np.float32(1e-5) and c.rope_theta == 10000.0
        got = tensors(ck)
        esz = 4 if dt == "F32" else 2

        def rows(name, lo, hi):
            raw = expect[prefix + name][0]
            cols = arrays[prefix + name].shape[1]
            return raw[lo * cols * esz:hi * cols * esz]

        for i in range(layers):
            L = f"layers.{i}."
            C = f"model.layers.{i}."
            assert raw_bytes(got[C + "self_attn.q_proj.weight"]) == rows(L + "attention.in_proj.weight", 0, dim)
            assert raw_bytes(got[C + "self_attn.k_proj.weight"]) == rows(L + "attention.in_proj.weight", dim, 2 * dim)
            assert raw_bytes(got[C + "self_attn.v_proj.weight"]) == rows(L + "attention.in_proj.weight", 2 * dim,
                                                                         3 * dim)
            assert raw_bytes(got[C + "mlp.gate_proj.weight"]) == rows(L + "feed_forward.w12.weight", 0, hidden)
            assert raw_bytes(got[C + "mlp.up_proj.weight"]) == rows(L + "feed_forward.w12.weight", hidden, 2 * hidden)
            assert raw_bytes(got[C + "mlp.down_proj.weight"]) == expect[prefix + L + "feed_forward.w3.weight"][0]
            assert raw_bytes(got[C + "self_attn.o_proj.weight"]) == expect[prefix + L + "attention.out_proj.weight"][0]
            assert raw_bytes(got[C + "self_attn.q_norm.weight"]) == expect[prefix + L + "attention.q_norm.weight"][0]
            assert raw_bytes(got[C + "self_attn.k_norm.weight"]) == expect[prefix + L + "attention.k_norm.weight"][0]
            assert raw_bytes(got[C + "input_layernorm.weight"]) == expect[prefix + L + "attention_norm.weight"][0]
            assert raw_bytes(got[C + "post_attention_layernorm.weight"]) == expect[prefix + L + "ffn_norm.weight"][0]
        assert raw_bytes(got["model.embed_tokens.weight"]) == expect[prefix + "tok_embeddings.weight"][0]
        assert raw_bytes(got["model.norm.weight"]) == expect[prefix + "norm.weight"][0]
        assert raw_bytes(got["lm_head.weight"]) == expect[prefix + "output.weight"][0]
        assert len(got) == 1 + layers * 11 + 2
    j = inspect_json(tmp_path / "d")
    assert j["config"]["arch"] == "dclm" and j["config"]["norm"] == "layer_gain" and j["config"]["qk_norm"] is True


# ---- kg_hf_write, read by independent readers ----

def hf_write(ck, out, dtype, shard_bytes=0):
    from kgtest import lib, last_error
    L = lib()
    rc = L.kg_hf_write(str(out).encode(), ctypes.byref(ck.config), ck.tensors, ck.n_tensors, dtype_id(dtype),
                       shard_bytes)
    assert rc == 0, last_error()


LLAMA_CONFIG_KEYS = {"architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
                     "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling", "tie_word_embeddings",
                     "hidden_act", "bos_token_id", "eos_token_id", "torch_dtype"}


def test_writer_output_read_independently(tmp_path):
    rng = np.random.default_rng(5)
    arrays = llama_arrays(rng, 32, 64, 2, 4, 2, 40)
    rs = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192}
    write_hf(tmp_path / "src", llama_config(32, 64, 2, 4, 2, 40, rope_scaling=rs, rope_theta=500000.0), arrays)
    with opened(tmp_path / "src") as ck:
        hf_write(ck, tmp_path / "f32", "f32")
        hf_write(ck, tmp_path / "bf16", "bf16", shard_bytes=6000)
    # f32: the safetensors package reads it and gets the arrays back exactly
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    loaded = safetensors_numpy.load_file(str(tmp_path / "f32" / "model.safetensors"))
    assert set(loaded) == set(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(loaded[k], v)
    cfg = json.loads((tmp_path / "f32" / "config.json").read_text())
    assert LLAMA_CONFIG_KEYS <= set(cfg)
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["hidden_size"] == 32
    assert cfg["num_key_value_heads"] == 2 and cfg["rope_theta"] == 500000.0 and cfg["rms_norm_eps"] == 1e-5
    assert cfg["rope_scaling"] == rs and cfg["tie_word_embeddings"] is False and cfg["torch_dtype"] == "float32"
    hdr, _ = st_parse(tmp_path / "f32" / "model.safetensors")
    assert hdr["__metadata__"] == {"format": "pt"}
    raw = (tmp_path / "f32" / "model.safetensors").read_bytes()
    assert (8 + int.from_bytes(raw[:8], "little")) % 8 == 0  # data section 8-byte aligned
    # bf16 shards: the index covers every tensor, total_size adds up, values are the RNE rounding
    index = json.loads((tmp_path / "bf16" / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) >= 2 and set(index["weight_map"]) == set(arrays)
    total = 0
    for f in files:
        hdr, data = st_parse(tmp_path / "bf16" / f)
        for name, e in hdr.items():
            if name == "__metadata__":
                continue
            assert index["weight_map"][name] == f and e["dtype"] == "BF16"
            total += e["data_offsets"][1] - e["data_offsets"][0]
            want = bf16_bits_to_f32(f32_to_bf16_bits(arrays[name])).reshape(arrays[name].shape)
            np.testing.assert_array_equal(st_array(hdr, data, name), want)
    assert index["metadata"]["total_size"] == total
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_writer_dclm_layout(tmp_path):
    dim, heads, layers, vocab = 32, 4, 1, 30
    hidden = 256 * ((int(2 * 4 * dim / 3) + 256 - 1) // 256)
    rng = np.random.default_rng(6)
    arrays = dclm_arrays(rng, dim, layers, vocab, hidden)
    write_hf(tmp_path / "src", dclm_config(dim, heads, layers, vocab), arrays)
    with opened(tmp_path / "src") as ck:
        hf_write(ck, tmp_path / "out", "f32")
    hdr, data = st_parse(tmp_path / "out" / "model.safetensors")
    assert set(hdr) - {"__metadata__"} == set(arrays)  # the OpenLM names, fused again
    for k, v in arrays.items():
        np.testing.assert_array_equal(st_array(hdr, data, k), v)
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["model_type"] == "openlm" and cfg["dim"] == dim and cfg["n_heads"] == heads
    assert cfg["norm_type"] == "gain_only_lp_layer_norm" and cfg["ffn_type"] == "swiglu_torch"
    assert cfg["apply_qk_norm"] is True and cfg["weight_tying"] is False and cfg["norm_eps"] == 1e-5
