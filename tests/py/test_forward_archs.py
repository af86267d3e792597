# ctest-labels: py
"""kickgrid's CPU forward pass on synthetic checkpoints that cover the
architecture variants and storage formats, against the float64 oracle:
LLaMA-2 style (MHA, theta 1e4, untied), LLaMA-3.1 style (GQA, theta 5e5,
"llama3" rope scaling), tied embeddings, fp16/bf16 storage, sharded
safetensors, llama2.c with a separate classifier, GGUF F32/F16/Q8_0/Q4_1 with
llama.cpp's q/k permutation, and OpenLM/DCLM. The files are written by the
test with numpy; the oracle reads the same files, so both see the same
rounded weights."""
import json
import zlib

import numpy as np
import pytest

from oracles import llama_ref, synth_ref
from oracles.capi_ref import REL_TOL, CModel, check_config, check_logits, require_model_api

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192}

# name: (dim, hidden, layers, heads, kv_heads, vocab, theta, rope_scaling, tied, storage, T)
HF_CASES = {
    "llama2_mha_untied": (64, 160, 2, 4, 4, 300, 1e4, None, False, "F32", 128),
    "llama31_gqa_scaled": (128, 256, 2, 4, 2, 256, 5e5, LLAMA3_SCALING, False, "F32", 256),
    "tied_gqa": (64, 128, 2, 8, 2, 256, 1e4, None, True, "F32", 96),
    "fp16_gqa": (64, 160, 2, 8, 4, 300, 1e4, None, False, "F16", 96),
    "bf16_gqa_scaled": (128, 256, 2, 4, 2, 256, 5e5, LLAMA3_SCALING, True, "BF16", 128),
}


def _hf_case(tmp_path, name, shards=1):
    dim, hidden, L, H, KV, V, theta, scaling, tied, storage, T = HF_CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    w = synth_ref.random_llama(rng, dim, hidden, L, H, KV, V, tied=tied, qk_std=3.0)
    cfg = synth_ref.llama_config(dim, hidden, L, H, KV, V, theta=theta, tied=tied, rope_scaling=scaling,
                                 max_pos=131072 if scaling else 4096)
    d = synth_ref.write_hf(tmp_path / name, cfg, w, dtype=storage, shards=shards)
    toks = rng.integers(0, V, T)
    return d, toks


@pytest.mark.parametrize("name", list(HF_CASES))
def test_hf_synthetic(tmp_path, name):
    require_model_api()
    d, toks = _hf_case(tmp_path, name)
    ref = llama_ref.load_hf(d)
    with CModel(d) as cm:
        check_config(cm, ref)
        assert cm.config.tied_embeddings == int(HF_CASES[name][8])
        check_logits(cm.logits(toks), ref.logits(toks), f"HF {name}")


def test_hf_sharded(tmp_path):
    require_model_api()
    d, toks = _hf_case(tmp_path, "llama2_mha_untied", shards=3)
    assert (d / "model.safetensors.index.json").exists()
    ref = llama_ref.load_hf(d)
    with CModel(d) as cm:
        check_logits(cm.logits(toks), ref.logits(toks), "HF sharded")


def test_llama31_scaling_is_read(tmp_path):
    """The scaled case must differ from an unscaled forward by far more than
    the tolerance, so a reader that drops rope_scaling fails above."""
    d, toks = _hf_case(tmp_path, "llama31_gqa_scaled")
    ref = llama_ref.load_hf(d)
    scaled = ref.logits(toks)
    ref.cfg.inv_freq = llama_ref.rope_inv_freq(ref.cfg.head_dim, 5e5)
    effect, _ = llama_ref.compare(ref.logits(toks), scaled)
    print(f"llama3 rope scaling changes the logits by {effect:.3e} (relative)")
    assert effect > 100 * REL_TOL
    require_model_api()
    with CModel(d) as cm:
        c = cm.config
        assert c.rope_scaling == 1, "rope_scaling should be KG_ROPE_SCALING_LLAMA3"
        assert (c.rope_factor, c.rope_low_freq_factor, c.rope_high_freq_factor, c.rope_original_max_pos) == \
            (8.0, 1.0, 4.0, 8192)


def test_llama2c_unshared_classifier(tmp_path):
    """llama2.c file with negative vocab (separate wcls) and GQA."""
    require_model_api()
    rng = np.random.default_rng(7)
    dim, hidden, L, H, KV, V = 64, 172, 3, 8, 4, 320
    w = synth_ref.random_llama(rng, dim, hidden, L, H, KV, V, qk_std=3.0)
    path = synth_ref.write_llama2c(tmp_path / "m.bin", w, L, H, KV, seq_len=256, shared=False, rng=rng)
    ref = llama_ref.load_llama2c(path)
    toks = rng.integers(0, V, 128)
    with CModel(path) as cm:
        check_config(cm, ref)
        assert cm.config.tied_embeddings == 0
        check_logits(cm.logits(toks), ref.logits(toks), "llama2.c unshared classifier")


@pytest.mark.parametrize("qtype", ["F32", "F16", "Q8_0", "Q4_1"])
def test_gguf_synthetic(tmp_path, qtype):
    """GGUF written like llama.cpp's converter (permuted q/k, untied output)."""
    require_model_api()
    rng = np.random.default_rng(11)
    dim, hidden, L, H, KV, V = 128, 256, 2, 4, 2, 288
    w = synth_ref.random_llama(rng, dim, hidden, L, H, KV, V, qk_std=3.0)
    path = synth_ref.write_gguf(tmp_path / f"m-{qtype}.gguf", w, L, H, KV, theta=1e5, qtype=qtype)
    ref = llama_ref.load_gguf(path)
    toks = rng.integers(0, V, 96)
    with CModel(path) as cm:
        check_config(cm, ref)
        assert cm.config.tied_embeddings == 0
        check_logits(cm.logits(toks), ref.logits(toks), f"GGUF {qtype}")


def test_oracle_formats_agree(tmp_path):
    """The oracle's three routes (HF rotate-half on HF rows, llama2.c and
    GGUF interleaved pairs on llama.cpp-permuted rows) give the same logits
    for the same weights: checks the oracle itself, no C involved."""
    rng = np.random.default_rng(3)
    dim, hidden, L, H, KV, V = 64, 96, 2, 8, 4, 200
    w = synth_ref.random_llama(rng, dim, hidden, L, H, KV, V, qk_std=3.0)
    hf = synth_ref.write_hf(tmp_path / "hf", synth_ref.llama_config(dim, hidden, L, H, KV, V), w)
    c2 = synth_ref.write_llama2c(tmp_path / "m.bin", w, L, H, KV, seq_len=128, shared=False, rng=rng)
    gg = synth_ref.write_gguf(tmp_path / "m.gguf", w, L, H, KV)
    toks = rng.integers(0, V, 100)
    base = llama_ref.load_hf(hf).logits(toks)
    for p in (c2, gg):
        rel, _ = llama_ref.compare(llama_ref.load(p).logits(toks), base)
        assert rel < 1e-9, f"{p.name}: oracle routes disagree ({rel:.2e})"
    # OpenLM names with rms_norm and no qk-norm are a LLaMA (MHA) in other clothes
    w_mha = synth_ref.random_llama(rng, dim, hidden, L, H, H, V, qk_std=3.0)
    hf2 = synth_ref.write_hf(tmp_path / "hf_mha", synth_ref.llama_config(dim, hidden, L, H, H, V), w_mha)
    ol = tmp_path / "openlm"
    ol.mkdir()
    (ol / "config.json").write_text(json.dumps(synth_ref.openlm_config(dim, L, H, V, qk_norm=False, norm="rms_norm")))
    synth_ref.write_safetensors(ol / "model.safetensors", synth_ref.openlm_from_llama(w_mha, L))
    rel, _ = llama_ref.compare(llama_ref.load_hf(ol).logits(toks), llama_ref.load_hf(hf2).logits(toks))
    assert rel < 1e-9, f"OpenLM route disagrees with the LLaMA route ({rel:.2e})"
    wrong = llama_ref.load_hf(hf)
    wrong.cfg.rope_style = "interleaved"
    rel, _ = llama_ref.compare(wrong.logits(toks), base)
    assert rel > 1e-2, "RoPE form must matter for this test to mean anything"


# ---------------------------------------------------------------- DCLM / OpenLM

DCLM_CASES = {
    # name: (tensor prefix, nested params_args_dict, weight tying, qk-norm, norm_type)
    "dclm_hf_export": ("model.", True, False, True, "gain_only_lp_layer_norm"),
    "open_lm_raw_tied": ("", False, True, True, "gain_only_layer_norm"),
    "open_lm_rms_no_qknorm": ("model.", True, False, False, "rms_norm"),
}


@pytest.mark.parametrize("name", list(DCLM_CASES))
def test_dclm_synthetic(tmp_path, name):
    require_model_api()
    prefix, nested, tied, qk, norm = DCLM_CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    dim, L, H, V = 128, 2, 4, 320
    hidden = 256 * ((int(2 * 4 * dim / 3) + 255) // 256)  # OpenLM's swiglu width rule
    w = synth_ref.random_llama(rng, dim, hidden, L, H, H, V, tied=tied, qk_std=3.0)
    o = synth_ref.openlm_from_llama(w, L, tied=tied, qk_norm_dim=dim if qk else None, rng=rng, prefix=prefix)
    d = tmp_path / f"DCLM-{name}"
    d.mkdir()
    cfg = synth_ref.openlm_config(dim, L, H, V, tied=tied, qk_norm=qk, nested=nested, norm=norm)
    (d / "config.json").write_text(json.dumps(cfg))
    synth_ref.write_safetensors(d / "model.safetensors", o)
    toks = rng.integers(0, V, 128)
    ref = llama_ref.load_hf(d)
    assert ref.cfg.qk_norm == qk
    with CModel(d) as cm:
        c = cm.config
        assert c.arch == 1, "expected KG_ARCH_DCLM"
        assert c.norm == (0 if norm == "rms_norm" else 1) and c.qk_norm == int(qk)
        assert c.tied_embeddings == int(tied)
        check_config(cm, ref)
        check_logits(cm.logits(toks), ref.logits(toks), f"DCLM {name}")
