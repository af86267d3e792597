"""SparseGPT (compress/sparsegpt.h) against a float64 restatement of
IST-DASLab/sparsegpt's fasterprune (oracles/obs.py): same masks, weights
within float32 rounding, same loss, the reference's per-block counts, N:M
validity, dead and ill-conditioned inputs, and the damping retry."""
import numpy as np
import pytest

import compress_capi as K
from kgtest import last_error
from oracles import layers
from oracles import obs as O
from oracles import prune as P
from oracles import stats as S

# (4096, 64) is tall enough for the sweep's threaded row loop.
CASES = [((64, 96), 32), ((64, 96), 128), ((128, 256), 128), ((128, 256), 64), ((4096, 64), 32)]


def compare(Wc, res, Wo, mo, lo, what):
    err = np.abs(Wc.astype(np.float64) - Wo).max()
    scale = np.abs(Wo).max()
    print(f"{what}: max |W_c - W_oracle| = {err:.3g} (max |W| {scale:.3g}), loss {res.loss:.10g} vs {lo:.10g}")
    assert err <= 4e-7 * scale
    assert abs(res.loss - lo) <= 1e-9 * max(lo, 1e-30)
    assert np.array_equal(Wc == 0, mo)
    assert res.masked == mo.sum()


@pytest.mark.parametrize("shape,bs", CASES)
@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_unstructured(shape, bs, sparsity):
    W, X, H, scaler, G = layers.make_layer(*shape, seed=shape[0] + bs)
    rc, Wc, res = K.sparsegpt(W, H, sparsity, blocksize=bs)
    assert rc == 0, last_error()
    Wo, mo, lo = O.sparsegpt(W, H, sparsity=sparsity, blocksize=bs)
    compare(Wc, res, Wo, mo, lo, f"{shape} bs={bs} s={sparsity}")
    rows, cols = shape
    for i1 in range(0, cols, bs):  # reference count per block: floor(n*s) + 1 (no ties in random data)
        count = min(bs, cols - i1)
        assert (Wc[:, i1:i1 + count] == 0).sum() == int(rows * count * sparsity) + 1
    assert res.retries == 0 and res.percdamp == 0.01
    assert res.damp == pytest.approx(0.01 * np.mean(np.diag(H)), rel=1e-12)


@pytest.mark.parametrize("shape,bs", CASES)
@pytest.mark.parametrize("nm", [(2, 4), (4, 8)])
def test_nm(shape, bs, nm):
    W, X, H, scaler, G = layers.make_layer(*shape, seed=5)
    rc, Wc, res = K.sparsegpt(W, H, n=nm[0], m=nm[1], blocksize=bs)
    assert rc == 0, last_error()
    Wo, mo, lo = O.sparsegpt(W, H, prunen=nm[0], prunem=nm[1], blocksize=bs)
    compare(Wc, res, Wo, mo, lo, f"{shape} bs={bs} {nm[0]}:{nm[1]}")
    assert ((Wc == 0).reshape(shape[0], -1, nm[1]).sum(axis=2) == nm[0]).all()


def test_with_quantizer_matches_reference():
    W, X, H, scaler, G = layers.make_layer(64, 96, seed=8)
    for bits in (3, 4):
        rc, Wc, res = K.sparsegpt(W, H, 0.5, blocksize=32, quant=dict(bits=bits))
        assert rc == 0, last_error()
        Wo, mo, lo = O.sparsegpt(W, H, sparsity=0.5, blocksize=32, quant=dict(bits=bits))
        err = np.abs(Wc - Wo).max()
        print(f"sparsegpt+{bits}bit: max diff {err:.3g}, loss {res.loss:.10g} vs {lo:.10g}")
        assert err == 0.0  # quantized values are float32 grid points on both sides
        assert abs(res.loss - lo) <= 1e-9 * lo
        assert (Wc[mo] == 0).all() and res.masked == mo.sum()


def test_dead_columns_and_ill_conditioning():
    rows, cols = 64, 96
    W, X, H, scaler, G = layers.make_layer(rows, cols, tokens=80, seed=2, feature_spread=2.5)
    X[:, [3, 40, 41]] = 0  # inputs never active: dead columns
    Xd = X.astype(np.float64)
    H = 2.0 / 4 * Xd.T @ Xd  # 80 tokens < 96 inputs: singular without damping
    rc, Wc, res = K.sparsegpt(W, H, 0.5, blocksize=32)
    assert rc == 0, last_error()
    print(f"cond(H) = {np.linalg.cond(H + 1e-300):.3g}")
    assert res.dead_columns == 3
    assert (Wc[:, [3, 40, 41]] == 0).all()
    Wo, mo, lo = O.sparsegpt(W, H, sparsity=0.5, blocksize=32)
    err = np.abs(Wc - Wo).max()
    print(f"ill-conditioned: max diff {err:.3g}, loss {res.loss:.6g} vs {lo:.6g}")
    assert err <= 1e-6 * np.abs(Wo).max()
    assert np.array_equal(Wc == 0, (Wo == 0) | mo)


def not_pd_hessian(cols, seed):
    """H = G - (lambda_min(G) + 0.05 mean(diag G)) I: indefinite, fixed by
    0.1 * mean(diag) damping but not by 0.01."""
    W, X, H, scaler, G = layers.make_layer(64, cols, seed=seed)
    lmin = np.linalg.eigvalsh(H)[0]
    Hn = H - (lmin + 0.05 * np.mean(np.diag(H))) * np.eye(cols)
    return W, Hn


def test_non_positive_definite_retries():
    W, Hn = not_pd_hessian(96, 4)
    with pytest.raises(np.linalg.LinAlgError):
        O.inverse_factor(O.prepare_hessian(Hn, 0.01)[0])  # the reference would stop here
    rc, Wc, res = K.sparsegpt(W, Hn, 0.5, blocksize=32)
    assert rc == 0, last_error()
    assert res.retries == 1 and res.percdamp == pytest.approx(0.1)
    Wo, mo, lo = O.sparsegpt(W, Hn, sparsity=0.5, blocksize=32, percdamp=res.percdamp)
    assert np.abs(Wc - Wo).max() <= 1e-6 * np.abs(Wo).max()
    assert np.array_equal(Wc == 0, mo)
    # with retries disallowed it is a numeric error and W is untouched
    rc, Wc2, res2 = K.sparsegpt(W, Hn, 0.5, blocksize=32, retries=0)
    assert rc == -5 and "not positive definite" in last_error()
    assert np.array_equal(Wc2, W)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reconstruction_error_ordering(seed):
    # Input features spread over e^(+-1) in scale. With far larger spreads the
    # reference's damping (1% of the mean diagonal) swamps the small features
    # and SparseGPT can lose to Wanda: that is the method, not a defect.
    for shape in [(64, 96), (128, 256)]:
        W, X, H, scaler, G = layers.make_layer(*shape, tokens=1024, seed=seed, feature_spread=1.0)
        mag = W.copy()
        mag[P.magnitude_mask(W, 0.5)] = 0
        wan = W.copy()
        wan[P.wanda_mask(W, scaler, 0.5)] = 0
        rc, sgpt, res = K.sparsegpt(W, H, 0.5)
        assert rc == 0
        e = [K.recon_error(W, x, G) for x in (sgpt, wan, mag)]
        assert e[1] == pytest.approx(S.recon_error(W, wan, X), rel=1e-9)
        print(f"{shape}: reconstruction error sparsegpt {e[0]:.4g} <= wanda {e[1]:.4g} <= magnitude {e[2]:.4g}")
        assert e[0] <= e[1] <= e[2]


def test_bad_arguments():
    W, X, H, scaler, G = layers.make_layer(16, 32, seed=1)
    assert K.sparsegpt(W, H, 1.0)[0] == -4 and "sparsity" in last_error()
    assert K.sparsegpt(W, H, n=2, m=3)[0] == -4
    assert K.sparsegpt(W, H, n=2, m=4, blocksize=6)[0] == -4 and "blocksize" in last_error()
    Hb = H.copy()
    Hb[2, 5] = np.nan
    assert K.sparsegpt(W, Hb, 0.5)[0] == -5 and "(2, 5)" in last_error()
    assert K.sparsegpt(W, H, 0.5, percdamp=0)[0] == -4
