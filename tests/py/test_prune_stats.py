"""Calibration statistics (compress/stats.h) against the references' running
means restated in float64 (oracles/stats.py)."""
import ctypes as C

import numpy as np
import pytest

import compress_capi as K
from kgtest import dptr, fptr, last_error
from oracles import stats as S


def batches(d, seed, spec=((1, 37), (2, 64), (1, 1), (3, 150), (1, 90))):
    rng = np.random.default_rng(seed)
    return [((rng.standard_normal((t, d)) * np.exp(rng.standard_normal(d))).astype(np.float32), b) for b, t in spec]


def accumulate(bs, d, with_gram=True):
    st = K.LinearStats()
    assert K.api().kg_stats_init(C.byref(st), d, int(with_gram)) == 0
    for X, b in bs:
        assert K.api().kg_stats_accumulate(C.byref(st), fptr(X), X.shape[0], b) == 0, last_error()
    return st


def hessian(st, d):
    H = np.zeros((d, d))
    assert K.api().kg_stats_hessian(C.byref(st), dptr(H)) == 0, last_error()
    return H


def scaler(st, d):
    s = np.zeros(d)
    assert K.api().kg_stats_scaler_row(C.byref(st), dptr(s)) == 0, last_error()
    return s


@pytest.mark.parametrize("d", [1, 7, 96, 300])
def test_sum_then_scale_equals_running_means(d):
    bs = batches(d, seed=d)
    st = accumulate(bs, d)
    try:
        H, n = S.running_hessian(bs)
        Hc = hessian(st, d)
        assert st.n_samples == n == sum(b for _, b in bs)
        assert st.n_tokens == sum(X.shape[0] for X, _ in bs)
        rel = np.abs(Hc - H).max() / np.abs(H).max()
        print(f"d={d}: hessian max rel diff {rel:.3g}")
        assert rel < 1e-13
        assert np.array_equal(Hc, Hc.T)
        s_ref = S.running_scaler_row(bs)
        rel_s = np.abs(scaler(st, d) - s_ref).max() / s_ref.max()
        print(f"d={d}: scaler_row max rel diff {rel_s:.3g}")
        assert rel_s < 1e-13
        Hf = np.zeros((d, d), np.float32)
        assert K.api().kg_stats_hessian_f32(C.byref(st), fptr(Hf)) == 0
        assert np.array_equal(Hf, Hc.astype(np.float32))
    finally:
        K.api().kg_stats_free(C.byref(st))


def test_gram_is_exact_sum_and_merge_adds():
    d = 40
    bs = batches(d, seed=3)
    a = accumulate(bs[:2], d)
    b = accumulate(bs[2:], d)
    try:
        assert K.api().kg_stats_merge(C.byref(a), C.byref(b)) == 0
        G = np.zeros((d, d))
        assert K.api().kg_stats_gram(C.byref(a), dptr(G)) == 0
        X = np.concatenate([x for x, _ in bs]).astype(np.float64)
        assert np.abs(G - X.T @ X).max() / np.abs(G).max() < 1e-13
        assert a.n_samples == 8 and a.n_tokens == X.shape[0]
        # MPI_COMM_NULL / NULL: no-op
        before = G.copy()
        assert K.api().kg_stats_allreduce(C.byref(a), None) == 0
        assert K.api().kg_stats_gram(C.byref(a), dptr(G)) == 0
        assert np.array_equal(G, before)
    finally:
        K.api().kg_stats_free(C.byref(a))
        K.api().kg_stats_free(C.byref(b))


def test_scaler_only_and_errors():
    d = 16
    st = K.LinearStats()
    assert K.api().kg_stats_init(C.byref(st), d, 0) == 0
    try:
        H = np.zeros((d, d))
        s = np.zeros(d)
        assert K.api().kg_stats_scaler_row(C.byref(st), dptr(s)) < 0   # no samples yet
        assert "no calibration samples" in last_error()
        X = np.ones((4, d), np.float32)
        X[2, 5] = np.nan
        assert K.api().kg_stats_accumulate(C.byref(st), fptr(X), 4, 1) < 0
        assert "token 2, column 5" in last_error()
        assert st.n_tokens == 0                                       # unchanged on error
        X[2, 5] = 1
        assert K.api().kg_stats_accumulate(C.byref(st), fptr(X), 4, 2) == 0
        assert K.api().kg_stats_hessian(C.byref(st), dptr(H)) < 0     # no Gram kept
        assert "without a Gram" in last_error()
        assert K.api().kg_stats_scaler_row(C.byref(st), dptr(s)) == 0
        assert np.allclose(s, 2.0)                                    # 4 tokens of 1 over 2 sequences
    finally:
        K.api().kg_stats_free(C.byref(st))
    assert K.api().kg_stats_init(C.byref(st), 0, 1) < 0


def test_reconstruction_error_from_gram():
    rng = np.random.default_rng(5)
    rows, d = 24, 50
    W = rng.standard_normal((rows, d)).astype(np.float32)
    W2 = W.copy()
    W2[rng.random(W.shape) < 0.5] = 0
    X = rng.standard_normal((300, d)).astype(np.float32)
    G = X.astype(np.float64).T @ X.astype(np.float64)
    G_lower_only = np.tril(G)  # only the lower triangle is read
    got = K.recon_error(W, W2, G_lower_only)
    ref = S.recon_error(W, W2, X)
    assert abs(got - ref) / ref < 1e-12
    assert K.recon_error(W, W, G) == 0.0
