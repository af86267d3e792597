"""ctypes bridge to kickgrid's model (the code under test, not a reference):
load a checkpoint on the CPU backend and read logits, config, rope
frequencies and greedy generations, so tests can hold them against the
float64 oracles in llama_ref.py, plus the comparison the tests share.
Needs build*/libkgapi.so (kgtest.lib())."""
import ctypes
from ctypes import POINTER, byref, c_char, c_float, c_int, c_int32, c_uint64, c_void_p

import numpy as np

import kgtest
from oracles import llama_ref

REL_TOL = 1e-4  # max|ours - ref| / max|ref| over all logits


class KgModelConfig(ctypes.Structure):
    """Mirror of io/model_config.h's kg_model_config (first member of kg_model)."""
    _fields_ = [("arch", c_int), ("name", c_char * 64), ("dim", c_int), ("hidden_dim", c_int),
                ("n_layers", c_int), ("n_heads", c_int), ("n_kv_heads", c_int), ("head_dim", c_int),
                ("vocab_size", c_int), ("max_seq_len", c_int), ("norm_eps", c_float), ("norm", c_int),
                ("qk_norm", c_int), ("rope_theta", c_float), ("rope_scaling", c_int), ("rope_factor", c_float),
                ("rope_low_freq_factor", c_float), ("rope_high_freq_factor", c_float),
                ("rope_original_max_pos", c_int), ("tied_embeddings", c_int), ("bos_id", c_int),
                ("eos_id", c_int)]


class KgSampling(ctypes.Structure):
    _fields_ = [("temperature", c_float), ("top_k", c_int), ("top_p", c_float), ("repetition_penalty", c_float)]


class KgGeneration(ctypes.Structure):
    _fields_ = [("tokens", POINTER(c_int32)), ("n_tokens", c_int), ("stopped_at_eos", c_int)]


_REQUIRED = ("kg_backend_create", "kg_model_load", "kg_model_logits", "kg_model_free", "kg_backend_destroy")


def missing_symbols(names=_REQUIRED):
    lib = kgtest.lib()
    return [n for n in names if not hasattr(lib, n)]


def require_model_api(names=_REQUIRED):
    """Skips when libkgapi.so is not built; fails when it lacks the model API."""
    kgtest.lib()
    missing = missing_symbols(names)
    assert not missing, f"libkgapi.so lacks {', '.join(missing)}"


def check_logits(c_logits, ref_logits, label):
    rel, row_abs = llama_ref.compare(c_logits, ref_logits)
    print(f"{label}: T={len(row_abs)} max rel err {rel:.3e}; per-row max abs err "
          f"min {row_abs.min():.2e} median {np.median(row_abs):.2e} max {row_abs.max():.2e} "
          f"(worst row {int(np.argmax(row_abs))}); max|ref| {np.abs(ref_logits).max():.3g}")
    assert np.all(np.isfinite(c_logits)), f"{label}: non-finite logits"
    assert rel < REL_TOL, f"{label}: max relative error {rel:.3e} >= {REL_TOL}"
    return rel


def check_config(cm, ref):
    """Sizes, eps and rope frequencies of the loaded model against the oracle's."""
    c, r = cm.config, ref.cfg
    got = (c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size)
    want = (r.dim, r.hidden_dim, r.n_layers, r.n_heads, r.n_kv_heads, r.head_dim, r.vocab_size)
    assert got == want, f"config {got} != reference {want}"
    assert abs(c.norm_eps - r.norm_eps) <= 1e-6 * r.norm_eps + 1e-12
    inv = cm.rope_inv_freq().astype(np.float64)
    np.testing.assert_allclose(inv, r.inv_freq, rtol=2e-6, err_msg="rope inverse frequencies")


def _check(rc, what):
    if rc != 0:
        raise RuntimeError(f"{what} failed ({rc}): {kgtest.last_error()}")


class CModel:
    """One model on its own CPU backend; use as a context manager."""

    def __init__(self, spec, n_threads=1):
        self.lib = kgtest.lib()
        self.be = c_void_p()
        self.model = c_void_p()
        _check(self.lib.kg_backend_create(b"cpu", n_threads, byref(self.be)), "kg_backend_create")
        try:
            _check(self.lib.kg_model_load(str(spec).encode(), self.be, byref(self.model), None),
                   f"kg_model_load({spec})")
        except Exception:
            self.lib.kg_backend_destroy(self.be)
            raise

    @property
    def config(self):
        return ctypes.cast(self.model, POINTER(KgModelConfig)).contents

    def logits(self, tokens):
        toks = np.ascontiguousarray(tokens, dtype=np.int32)
        out = np.zeros((toks.size, self.config.vocab_size), dtype=np.float32)
        _check(self.lib.kg_model_logits(self.model, toks.ctypes.data_as(POINTER(c_int32)), c_int(toks.size),
                                        kgtest.fptr(out)), "kg_model_logits")
        return out

    def rope_inv_freq(self):
        cfg = self.config
        out = np.zeros(cfg.head_dim // 2, dtype=np.float32)
        self.lib.kg_rope_inv_freq(byref(cfg), kgtest.fptr(out))
        return out

    def greedy(self, prompt, max_new, eos_id):
        """New tokens from kg_generate at temperature 0."""
        toks = np.ascontiguousarray(prompt, dtype=np.int32)
        s = KgSampling(temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
        g = KgGeneration()
        _check(self.lib.kg_generate(self.model, toks.ctypes.data_as(POINTER(c_int32)), c_int(toks.size),
                                    c_int(max_new), c_int(eos_id), byref(s), c_uint64(0), byref(g)), "kg_generate")
        try:
            return [g.tokens[i] for i in range(g.n_tokens)]
        finally:
            libc = ctypes.CDLL(None)
            libc.free(ctypes.cast(g.tokens, c_void_p))

    def close(self):
        if self.model:
            self.lib.kg_model_free(self.model)
            self.model = c_void_p()
        if self.be:
            self.lib.kg_backend_destroy(self.be)
            self.be = c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
