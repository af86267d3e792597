"""Wanda (compress/wanda.h) against the float64 oracle of locuslab/wanda's
prune_wanda (oracles/prune.py): unstructured per-row, N:M, and the
alpha-bisection variant."""
import numpy as np
import pytest

import compress_capi as K
from kgtest import last_error
from oracles import layers
from oracles import prune as P


@pytest.mark.parametrize("shape", [(64, 96), (128, 256)])
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.6])
def test_unstructured_rows(shape, sparsity):
    W, X, H, scaler, G = layers.make_layer(*shape, seed=shape[1])
    rc, mask, rep = K.wanda_mask(W, scaler, sparsity)
    assert rc == 0, last_error()
    assert np.array_equal(mask, P.wanda_mask(W, scaler, sparsity))
    assert (mask.sum(axis=1) == int(shape[1] * sparsity)).all()  # exact per row
    assert rep.pruned == mask.sum()


def test_ties_follow_stable_sort():
    rng = np.random.default_rng(2)
    W = (rng.integers(-4, 5, (32, 64)) / 4).astype(np.float32)
    scaler = np.repeat([1.0, 4.0], 32)
    for s in (0.25, 0.5, 0.8):
        rc, mask, _ = K.wanda_mask(W, scaler, s)
        assert rc == 0
        assert np.array_equal(mask, P.wanda_mask(W, scaler, s))
    rc, mask, _ = K.wanda_mask(W, scaler, n=2, m=4)
    assert np.array_equal(mask, P.wanda_mask(W, scaler, n=2, m=4))


@pytest.mark.parametrize("nm", [(2, 4), (4, 8)])
def test_nm(nm):
    W, X, H, scaler, G = layers.make_layer(64, 96, seed=9)
    rc, mask, rep = K.wanda_mask(W, scaler, n=nm[0], m=nm[1])
    assert rc == 0
    assert np.array_equal(mask, P.wanda_mask(W, scaler, n=nm[0], m=nm[1]))
    assert (mask.reshape(64, -1, nm[1]).sum(axis=2) == nm[0]).all()


@pytest.mark.parametrize("shape", [(64, 96), (128, 256)])
@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_variant(shape, sparsity):
    W, X, H, scaler, G = layers.make_layer(*shape, seed=3)
    rc, mask, rep = K.wanda_mask(W, scaler, sparsity, variant=True)
    assert rc == 0, last_error()
    ref, alpha = P.wanda_variant_mask(P.wanda_score(W, scaler), sparsity)
    assert np.array_equal(mask, ref)
    assert rep.alpha == alpha
    achieved = mask.sum() / mask.size
    print(f"{shape} s={sparsity}: alpha {alpha} after {rep.iterations} steps, sparsity {achieved:.5f}")
    # the reference stops within 0.001 of the target unless the bracket collapsed first
    assert abs(achieved - sparsity) <= 0.001 + 1e-6 or rep.iterations >= 9


def test_prune_applies_mask_and_rejects_bad_scaler():
    W, X, H, scaler, G = layers.make_layer(16, 32, seed=4)
    Wp = W.copy()
    import ctypes as C
    from kgtest import dptr, fptr
    rc = K.api().kg_wanda_prune(fptr(Wp), 16, 32, dptr(scaler), C.byref(K.PruneOpts(0.5, 0, 0, 0)), None)
    assert rc == 0
    mask = P.wanda_mask(W, scaler, 0.5)
    assert (Wp[mask] == 0).all() and np.array_equal(Wp[~mask], W[~mask])
    bad = scaler.copy()
    bad[3] = -1
    assert K.wanda_mask(W, bad, 0.5)[0] < 0 and "scaler_row[3]" in last_error()
