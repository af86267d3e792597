"""Magnitude pruning and the shared mask rules (compress/masks.h) against the
float64 oracle of locuslab/wanda's prune_magnitude (oracles/prune.py),
including inputs full of ties."""
import ctypes as C

import numpy as np
import pytest

import compress_capi as K
from kgtest import dptr, fptr, last_error
from oracles import prune as P

SHAPES = [(64, 96), (128, 256), (7, 12)]


def weights(shape, seed, ties=False):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct magnitudes: most comparisons are ties
        return (rng.integers(-6, 7, shape) / 8).astype(np.float32)
    return (rng.standard_normal(shape) * 0.05).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.7, 0.95])
def test_magnitude_unstructured(shape, ties, sparsity):
    W = weights(shape, seed=shape[0] + int(100 * sparsity), ties=ties)
    rc, mask = K.magnitude_mask(W, sparsity)
    assert rc == 0, last_error()
    ref = P.magnitude_mask(W, sparsity)
    assert np.array_equal(mask, ref)
    k = int(W.size * sparsity)
    thresh = np.sort(np.abs(W).ravel())[k]
    # the reference rule: k+1 weights, plus every tie with the threshold
    assert mask.sum() == np.count_nonzero(np.abs(W) <= thresh) >= k + 1
    if not ties:
        assert mask.sum() == k + 1


@pytest.mark.parametrize("shape", SHAPES[:2])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("nm", [(2, 4), (4, 8), (1, 4), (3, 4)])
def test_magnitude_nm(shape, ties, nm):
    n, m = nm
    W = weights(shape, seed=7 * n + m, ties=ties)
    rc, mask = K.magnitude_mask(W, n=n, m=m)
    assert rc == 0, last_error()
    assert np.array_equal(mask, P.magnitude_mask(W, n=n, m=m))
    groups = mask.reshape(shape[0], -1, m)
    assert (groups.sum(axis=2) == n).all()  # every group valid
    # pruned ones are never larger than kept ones within a group
    a = np.abs(W).reshape(shape[0], -1, m)
    assert (np.where(groups, a, -np.inf).max(axis=2) <= np.where(groups, np.inf, a).min(axis=2)).all()


def test_tie_rule_prunes_lower_index_first():
    W = np.full((1, 8), 0.5, np.float32)
    rc, mask = K.magnitude_mask(W, n=2, m=4)
    assert rc == 0
    assert mask.tolist() == [[True, True, False, False, True, True, False, False]]


def test_prune_zeroes_weights():
    W = weights((32, 64), 11)
    Wp = W.copy()
    assert K.api().kg_magnitude_prune(fptr(Wp), 32, 64, C.byref(K.PruneOpts(0.5, 0, 0, 0))) == 0
    mask = P.magnitude_mask(W, 0.5)
    assert (Wp[mask] == 0).all() and np.array_equal(Wp[~mask], W[~mask])


@pytest.mark.parametrize("n", [1, 2, 9, 1000, 4097])
def test_select_kth(n):
    rng = np.random.default_rng(n)
    for data in (rng.standard_normal(n), rng.integers(0, 3, n).astype(np.float64), np.sort(rng.random(n)),
                 np.sort(rng.random(n))[::-1].copy()):
        s = np.sort(data)
        for k in {0, n // 3, n // 2, n - 1}:
            x = data.copy()
            assert K.api().kg_select_kth(dptr(x), n, k) == s[k]
            assert np.array_equal(np.sort(x), s)  # a permutation of the input


def test_bad_options_are_errors():
    W = weights((8, 12), 0)
    assert K.magnitude_mask(W, 1.0)[0] < 0 and "outside [0, 1)" in last_error()
    assert K.magnitude_mask(W, -0.1)[0] < 0
    assert K.magnitude_mask(W, n=2, m=5)[0] < 0 and "not a multiple of M=5" in last_error()
    assert K.magnitude_mask(W, n=5, m=4)[0] < 0 and "bad N:M" in last_error()
    W[3, 3] = np.inf
    assert K.magnitude_mask(W, 0.5)[0] < 0 and "non-finite" in last_error()
    rc, mask = K.magnitude_mask(weights((8, 12), 0), 0.0)
    assert rc == 0 and not mask.any()
