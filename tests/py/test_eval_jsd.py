# ctest-labels: py
"""JS divergence (evaluate/jsd.c) against a float64 NumPy computation from
the definition (tests/py/oracles/eval_ref.py): random logits at several
scales, extreme logits (+-80), near one-hot and disjoint rows, identical
rows (exactly 0); and a model against its clone (stories260K)."""
import math
from ctypes import POINTER, byref, c_int, c_int32, c_int64, c_void_p

import numpy as np

import kgtest
from oracles import eval_ref
from oracles.eval_capi import JsResult, check, lib


def _c_js(L, p, q):
    p = np.ascontiguousarray(p, dtype=np.float32)
    q = np.ascontiguousarray(q, dtype=np.float32)
    return L.kg_js_logits(kgtest.fptr(p), kgtest.fptr(q), c_int(p.size))


def test_js_rows_match_numpy():
    L = lib()
    rng = np.random.default_rng(11)
    worst = 0.0
    cases = []
    for scale in (0.1, 1.0, 5.0, 20.0):
        for V in (2, 50, 5000):
            for _ in range(5):
                cases.append((rng.normal(0, scale, V), rng.normal(0, scale, V)))
    V = 4096
    for _ in range(10):  # extreme logits: entries at +-80
        a = rng.choice([-80.0, 80.0, 0.0], V)
        b = rng.choice([-80.0, 80.0, 0.0], V)
        cases.append((a, b))
    for _ in range(10):  # near one-hot: one logit far above the rest
        a = rng.normal(0, 1, V)
        a[rng.integers(V)] += 60
        b = a + rng.normal(0, 1e-3, V)
        cases.append((a, b))
        b2 = rng.normal(0, 1, V)
        b2[rng.integers(V)] += 60
        cases.append((a, b2))
    for a, b in cases:
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        want = float(eval_ref.js_divergence(a32, b32))
        got = _c_js(L, a32, b32)
        err = abs(got - want)
        worst = max(worst, err / max(want, 1e-300) if want > 1e-6 else err)
        assert err <= 1e-9 * want + 1e-13, (got, want)
        assert 0.0 <= got <= math.log(2.0)
        assert abs(_c_js(L, b32, a32) - got) <= 1e-12  # symmetric
    print(f"max error vs NumPy over {len(cases)} rows: {worst:.3g}")
    a = rng.normal(0, 3, 1000).astype(np.float32)
    assert _c_js(L, a, a) == 0.0
    # disjoint one-hot distributions: the bound ln 2
    x = np.full(8, -1e4, np.float32)
    y = x.copy()
    x[1], y[6] = 0.0, 0.0
    assert abs(_c_js(L, x, y) - math.log(2.0)) < 1e-12


def test_model_against_itself_is_zero():
    """stories260K and its kg_model_clone on one CPU backend."""
    L = lib()
    path = kgtest.data_path("models/stories260K/stories260K.bin")
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 512, 4 * 64).astype(np.int32)
    be, a, b = c_void_p(), c_void_p(), c_void_p()
    check(L.kg_backend_create(b"cpu", 1, byref(be)), "kg_backend_create")
    try:
        check(L.kg_model_load(str(path).encode(), be, byref(a), None), "kg_model_load")
        check(L.kg_model_clone(a, be, byref(b)), "kg_model_clone")
        res = JsResult()
        check(L.kg_js_divergence(a, b, tokens.ctypes.data_as(POINTER(c_int32)), c_int64(tokens.size), c_int(64),
                                 c_int(0), byref(res)), "kg_js_divergence")
        assert res.n_tokens == 256 and res.n_windows == 4
        assert res.mean == 0.0 and res.max == 0.0 and res.top1_agree == 1.0
    finally:
        if b:
            L.kg_model_free(b)
        if a:
            L.kg_model_free(a)
        L.kg_backend_destroy(be)
