"""OWL (compress/owl.h) against luuyin/OWL's check_outlier_mean and layer
allocation restated in NumPy (oracles/owl.py)."""
import ctypes as C

import numpy as np
import pytest

import compress_capi as K
from kgtest import dptr, fptr, last_error
from oracles import owl as OW


def block(seed, shapes=((48, 32), (48, 32), (96, 32), (32, 96))):
    rng = np.random.default_rng(seed)
    out = []
    for r, c in shapes:
        W = (rng.standard_normal((r, c)) * 0.05).astype(np.float32)
        W[rng.random((r, c)) < 0.01 * (seed % 5)] *= 20  # a seed-dependent share of outlier weights
        s = np.exp(rng.standard_normal(c) * (0.5 + 0.2 * seed))
        out.append((W, s))
    return out


def c_ratio(linears, M):
    arr = (K.OwlLinear * len(linears))()
    keep = []
    for i, (W, s) in enumerate(linears):
        W, s = K.f32(W), K.f64(s)
        keep += [W, s]
        arr[i] = K.OwlLinear(fptr(W), W.shape[0], W.shape[1], dptr(s))
    out = C.c_double()
    rc = K.api().kg_owl_outlier_ratio(arr, len(linears), M, C.byref(out))
    return rc, out.value


def c_allocate(ratios, target, lam):
    r = K.f64(ratios)
    out = np.zeros(len(r))
    rc = K.api().kg_owl_allocate(dptr(r), len(r), target, lam, dptr(out))
    return rc, out


@pytest.mark.parametrize("M", [3.0, 5.0, 7.0])
def test_outlier_ratio_over_whole_block(M):
    for seed in range(6):
        lin = block(seed)
        rc, got = c_ratio(lin, M)
        assert rc == 0, last_error()
        ref = OW.outlier_ratio(lin, M)
        assert got == pytest.approx(ref, abs=1e-12)
    # the mean is taken over the block, not per linear: the block ratio is not
    # the mean of per-linear ratios in general
    lin = block(4)
    per = [OW.outlier_ratio([x], 5.0) for x in lin]
    assert c_ratio(lin, 5.0)[1] != pytest.approx(np.mean(per))


@pytest.mark.parametrize("n_layers", [2, 7, 12, 32, 80, 200])
@pytest.mark.parametrize("target,lam", [(0.5, 0.08), (0.7, 0.08), (0.7, 0.2), (0.9, 0.3)])
def test_allocation_bit_exact(n_layers, target, lam):
    rng = np.random.default_rng(n_layers)
    ratios = rng.random(n_layers) * 10
    rc, got = c_allocate(ratios, target, lam)
    assert rc == 0, last_error()
    ref = OW.allocate(ratios, target, lam)
    assert np.array_equal(got, ref)
    assert np.array_equal([int(4096 * s) for s in got], [int(4096 * s) for s in ref])
    if (ref > 0.01).all():
        assert np.mean(got) == pytest.approx(target, abs=1e-12)
        assert np.max(got) - np.min(got) == pytest.approx(2 * lam, abs=1e-12)
    # more outliers -> lower sparsity
    order = np.argsort(ratios)
    assert (np.diff(got[order]) <= 1e-15).all()


def test_allocation_edges():
    rc, got = c_allocate([1.0, 1.0, 1.0], 0.6, 0.08)  # reference: NaN; here the target
    assert rc == 0 and (got == 0.6).all()
    rc, got = c_allocate([0.0, 100.0], 0.05, 0.5)    # 1 - density <= 0 becomes 0.01
    assert rc == 0 and np.array_equal(got, OW.allocate([0.0, 100.0], 0.05, 0.5)) and got[1] == 0.01
    assert c_allocate([1.0, np.nan], 0.5, 0.08)[0] < 0
    assert c_allocate([1.0, 2.0], 1.0, 0.08)[0] < 0


@pytest.mark.parametrize("n", [0, 1, 5, 8, 9, 15, 16, 100, 128, 129, 255, 1000, 5003])
def test_numpy_summation_order(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
    assert K.api().kg_linalg_numpy_sum(dptr(x), n) == np.sum(x)
