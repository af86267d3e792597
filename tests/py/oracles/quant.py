"""GPTQ's quantizer (IST-DASLab/gptq quant.py: Quantizer.find_params with
perchannel=True, weight=True, and quantize), in float32 like the torch
original so grids and roundings agree bit for bit."""
import numpy as np

f32 = np.float32


def find_params(x, bits, sym=False):
    """x: [rows, k] float32. Returns per-row (scale, zero) float32."""
    x = np.asarray(x, dtype=f32)
    maxq = f32(2 ** bits - 1)
    xmin = np.minimum(x.min(axis=1), f32(0))
    xmax = np.maximum(x.max(axis=1), f32(0))
    if sym:
        xmax = np.maximum(np.abs(xmin), xmax)
        neg = xmin < 0
        xmin = np.where(neg, -xmax, xmin)
    both0 = (xmin == 0) & (xmax == 0)
    xmin = np.where(both0, f32(-1), xmin).astype(f32)
    xmax = np.where(both0, f32(1), xmax).astype(f32)
    scale = ((xmax - xmin) / maxq).astype(f32)
    if sym:
        zero = np.full_like(scale, (maxq + f32(1)) / f32(2))
    else:
        zero = np.round(-xmin / scale).astype(f32)
    return scale, zero


def quantize(x, scale, zero, bits):
    """x: [rows] or [rows, k] float32; scale, zero per row."""
    x = np.asarray(x, dtype=f32)
    maxq = f32(2 ** bits - 1)
    s = scale if x.ndim == 1 else scale[:, None]
    z = zero if x.ndim == 1 else zero[:, None]
    q = np.clip(np.round(x / s) + z, f32(0), maxq).astype(f32)
    return (s * (q - z)).astype(f32)


def rtn(W, bits, sym=False, group_size=-1):
    W = np.asarray(W, dtype=f32)
    rows, cols = W.shape
    gs = cols if group_size <= 0 else group_size
    out = np.empty_like(W)
    scales, zeros = [], []
    for c in range(0, cols, gs):
        s, z = find_params(W[:, c:c + gs], bits, sym)
        out[:, c:c + gs] = quantize(W[:, c:c + gs], s, z, bits)
        scales.append(s)
        zeros.append(z)
    return out, np.stack(scales, axis=1), np.stack(zeros, axis=1)
