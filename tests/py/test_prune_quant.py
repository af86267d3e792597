"""RTN and GPTQ (compress/quant.h, compress/gptq.h) against float32/float64
restatements of IST-DASLab/gptq's Quantizer and fasterquant
(oracles/quant.py, oracles/obs.py)."""
import numpy as np
import pytest

import compress_capi as K
from kgtest import last_error
from oracles import layers
from oracles import obs as O
from oracles import quant as Q


def on_grid(Wq, scales, zeros, bits, gs, perm):
    """Every value equals scale * (k - zero) for an integer k in [0, maxq] of
    its row and group (groups over permuted positions)."""
    rows, cols = Wq.shape
    maxq = 2 ** bits - 1
    Wp = Wq[:, perm]
    g = np.arange(cols) // (cols if gs <= 0 else gs)
    s = scales[:, g]
    z = zeros[:, g]
    k = np.round(Wp / s + z)
    return bool(((k >= 0) & (k <= maxq)).all() and np.array_equal((s * (k - z)).astype(np.float32), Wp))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("sym", [False, True])
@pytest.mark.parametrize("gs", [-1, 32])
def test_rtn_bit_exact(bits, sym, gs):
    W, X, H, scaler, G = layers.make_layer(64, 96, seed=bits)
    W[5] = 0  # an all-zero row takes the xmin = -1, xmax = +1 fallback
    W[6] = np.abs(W[6])  # all-positive row: xmin clamps to 0
    rc, Wq, sc, ze = K.rtn(W, bits, sym, gs)
    assert rc == 0, last_error()
    Wo, so, zo = Q.rtn(W, bits, sym, gs)
    assert np.array_equal(Wq, Wo) and np.array_equal(sc, so) and np.array_equal(ze, zo)
    assert on_grid(Wq, sc, ze, bits, gs, np.arange(96))
    assert (Wq[5] == 0).all() and sc[5, 0] == np.float32(2 / (2 ** bits - 1))


GPTQ_CASES = [dict(), dict(group_size=32), dict(act_order=True), dict(act_order=True, group_size=32),
              dict(sym=True), dict(group_size=48, blocksize=32), dict(group_size=20)]


@pytest.mark.parametrize("shape", [(64, 96), (128, 256)])
@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("kw", GPTQ_CASES)
def test_gptq_matches_reference(shape, bits, kw):
    W, X, H, scaler, G = layers.make_layer(*shape, seed=bits + shape[0])
    gs = kw.get("group_size", -1)
    bs = kw.get("blocksize", 128)
    rc, Wq, res, sc, ze, perm = K.gptq(W, H, bits, sym=kw.get("sym", False), group_size=gs,
                                       act_order=kw.get("act_order", False), blocksize=bs)
    assert rc == 0, last_error()
    Qo, lo, so, zo, po = O.gptq(W, H, bits, sym=kw.get("sym", False), groupsize=gs,
                                actorder=kw.get("act_order", False), blocksize=bs)
    diff = np.abs(Wq - Qo)
    print(f"{shape} {bits}b {kw}: {np.count_nonzero(diff)} of {diff.size} values differ (max {diff.max():.3g}), "
          f"loss {res.loss:.10g} vs {lo:.10g}")
    # float64 on both sides: a grid point flips only on a rounding tie, which
    # random data does not produce
    assert np.array_equal(Wq, Qo.astype(np.float32))
    assert abs(res.loss - lo) <= 1e-9 * lo
    assert np.array_equal(perm, po)
    assert np.abs(sc - so).max() <= 1e-6 * np.abs(so).max() and np.array_equal(ze, zo)
    assert on_grid(Wq, sc, ze, bits, gs, perm)


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("gs", [-1, 32])
def test_gptq_beats_rtn(bits, gs):
    for shape in [(64, 96), (128, 256)]:
        W, X, H, scaler, G = layers.make_layer(*shape, seed=11)
        rc, Wg, res, *_ = K.gptq(W, H, bits, group_size=gs)
        rc2, Wr, *_ = K.rtn(W, bits, group_size=gs)
        assert rc == 0 and rc2 == 0
        eg, er = K.recon_error(W, Wg, G), K.recon_error(W, Wr, G)
        print(f"{shape} {bits}b gs={gs}: reconstruction error gptq {eg:.4g} <= rtn {er:.4g}")
        assert eg <= er


def test_gptq_dead_columns_and_errors():
    W, X, H, scaler, G = layers.make_layer(32, 64, seed=3)
    H[7, :] = 0
    H[:, 7] = 0
    rc, Wq, res, sc, ze, perm = K.gptq(W, H, 4, act_order=True)
    assert rc == 0 and res.dead_columns == 1
    Qo, lo, so, zo, po = O.gptq(W, H, 4, actorder=True)
    assert np.array_equal(Wq, Qo.astype(np.float32)) and np.array_equal(perm, po)
    assert (Wq[:, 7] == Wq[:, 7][0]).all()  # a dead input quantizes 0 in every row: the grid point of 0
    assert K.gptq(W, H, 9)[0] == -4 and "outside 2..8" in last_error()
    assert K.gptq(W, H, 1)[0] == -4
    assert K.gptq(W, H, 4, group_size=65)[0] == -4
