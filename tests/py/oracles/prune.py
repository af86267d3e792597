"""Magnitude and Wanda masks (locuslab/wanda lib/prune.py), float64.

Tie rule for the rules that pick a count (per-row, N:M): a stable ascending
sort, so among equal scores the lower column is pruned first. The threshold
rule (`score <= sort(score)[int(n*s)]`) prunes every tie with the threshold.
Masks are boolean, True = pruned."""
import numpy as np


def threshold_mask(score, sparsity):
    if sparsity == 0:
        return np.zeros(score.shape, bool)
    flat = np.sort(score.ravel())
    return score <= flat[int(score.size * sparsity)]


def row_mask(score, sparsity):
    rows, cols = score.shape
    k = int(cols * sparsity)
    mask = np.zeros(score.shape, bool)
    idx = np.argsort(score, axis=1, kind="stable")[:, :k]
    np.put_along_axis(mask, idx, True, axis=1)
    return mask


def nm_mask(score, n, m):
    rows, cols = score.shape
    mask = np.zeros(score.shape, bool)
    for c in range(0, cols, m):
        idx = np.argsort(score[:, c:c + m], axis=1, kind="stable")[:, :n]
        np.put_along_axis(mask[:, c:c + m], idx, True, axis=1)
    return mask


def magnitude_mask(W, sparsity=0.0, n=0, m=0):
    score = np.abs(W.astype(np.float64))
    return nm_mask(score, n, m) if n else threshold_mask(score, sparsity)


def wanda_score(W, scaler_row):
    return np.abs(W.astype(np.float64)) * np.sqrt(scaler_row.reshape(1, -1))


def _given_alpha(alpha, sorted_s, cums, rowsum, score):
    """return_given_alpha: cut at the last sorted score whose cumulative sum
    is within alpha * row sum; rows with no such score keep everything."""
    cnt = (cums <= (rowsum * alpha)[:, None]).sum(axis=1)
    thr = np.where(cnt > 0, sorted_s[np.arange(len(cnt)), np.maximum(cnt - 1, 0)], -np.inf)
    mask = score <= thr[:, None]
    # the reference's tensors are float32: sum / numel computed in float32
    cur = np.float32(mask.sum()) / np.float32(mask.size)
    return mask, cur


def wanda_variant_mask(score, sparsity):
    sorted_s = np.sort(score, axis=1, kind="stable")
    cums = np.cumsum(sorted_s, axis=1)
    rowsum = score.sum(axis=1)
    target = np.float32(sparsity)
    tol = np.float32(0.001)
    alpha, lo, hi = 0.4, 0.0, 0.8
    mask, cur = _given_alpha(alpha, sorted_s, cums, rowsum, score)
    while np.abs(np.float32(cur - target)) > tol and (hi - lo >= 0.001):
        if cur > target:
            new = (alpha + lo) / 2.0
            hi = alpha
        else:
            new = (alpha + hi) / 2.0
            lo = alpha
        alpha = new
        mask, cur = _given_alpha(alpha, sorted_s, cums, rowsum, score)
    return mask, alpha


def wanda_mask(W, scaler_row, sparsity=0.0, n=0, m=0, variant=False):
    score = wanda_score(W, scaler_row)
    if n:
        return nm_mask(score, n, m)
    if variant:
        return wanda_variant_mask(score, sparsity)[0]
    return row_mask(score, sparsity)
