"""SparseGPT's fasterprune (IST-DASLab/sparsegpt sparsegpt.py) and GPTQ's
fasterquant (IST-DASLab/gptq gptq.py) restated in float64 NumPy, column by
column over whole blocks as the references loop, with the inverse Hessian
factor computed the references' way: cholesky -> cholesky_inverse ->
upper cholesky. Ties in N:M and act_order selection: lower index first."""
import numpy as np

from . import quant as Q


def prepare_hessian(H, percdamp):
    """Dead-column fix and damping; returns (H', dead, damp)."""
    H = np.array(H, dtype=np.float64, copy=True)
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    damp = percdamp * np.mean(np.diag(H))
    H[np.diag_indices_from(H)] += damp
    return H, dead, damp


def inverse_factor(Hd):
    """torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True).
    Raises np.linalg.LinAlgError when H is not positive definite."""
    L = np.linalg.cholesky(Hd)
    Linv = np.linalg.inv(L)
    Hi = Linv.T @ Linv
    return np.linalg.cholesky(Hi).T


def sparsegpt(W, H, sparsity=0.0, prunen=0, prunem=0, blocksize=128, percdamp=0.01, quant=None):
    """Returns (W' float64, mask bool, loss). quant: dict(bits=, sym=) or None."""
    W32 = np.asarray(W, dtype=np.float32)
    W = W32.astype(np.float64)
    rows, cols = W.shape
    if quant:
        scale, zero = Q.find_params(W32, quant["bits"], quant.get("sym", False))
    dead = np.diag(H) == 0
    Hd, _, _ = prepare_hessian(H, percdamp)
    W[:, dead] = 0
    Hinv = inverse_factor(Hd)
    mask = np.zeros(W.shape, bool)
    losses = np.zeros(rows)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Losses1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        dg = np.diag(Hinv1)
        mask1 = np.zeros(W1.shape, bool)
        if prunen == 0 and sparsity > 0:
            tmp = W1 ** 2 / (dg.reshape(1, -1)) ** 2
            thresh = np.sort(tmp.ravel())[int(tmp.size * sparsity)]
            mask1 = tmp <= thresh
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if prunen != 0 and i % prunem == 0:
                tmp = W1[:, i:i + prunem] ** 2 / (dg[i:i + prunem].reshape(1, -1)) ** 2
                idx = np.argsort(tmp, axis=1, kind="stable")[:, :prunen]
                np.put_along_axis(mask1[:, i:i + prunem], idx, True, axis=1)
            q = w.copy()
            q[mask1[:, i]] = 0
            if quant:
                q = Q.quantize(q.astype(np.float32), scale, zero, quant["bits"]).astype(np.float64)
            Q1[:, i] = q
            Losses1[:, i] = (w - q) ** 2 / d ** 2
            err1 = (w - q) / d
            W1[:, i:] -= np.outer(err1, Hinv1[i, i:])
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        mask[:, i1:i2] = mask1
        losses += Losses1.sum(axis=1) / 2
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return W, mask, float(losses.sum())


def gptq(W, H, bits, sym=False, groupsize=-1, actorder=False, blocksize=128, percdamp=0.01):
    """Returns (Q float64, loss, scales [rows, ngroups], zeros, perm)."""
    W32 = np.asarray(W, dtype=np.float32)
    W = W32.astype(np.float64)
    rows, cols = W.shape
    scale, zero = Q.find_params(W32, bits, sym)
    H = np.array(H, dtype=np.float64, copy=True)
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = np.arange(cols)
    if actorder:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]
    invperm = np.argsort(perm)
    Hd, _, _ = prepare_hessian(H, percdamp)
    Hinv = inverse_factor(Hd)
    Qm = np.zeros_like(W)
    losses = np.zeros_like(W)
    scales, zeros = [scale], [zero]
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Losses1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if groupsize != -1 and (i1 + i) % groupsize == 0:
                scale, zero = Q.find_params(W[:, i1 + i:i1 + i + groupsize].astype(np.float32), bits, sym)
                if i1 + i == 0:
                    scales, zeros = [], []
                scales.append(scale)
                zeros.append(zero)
            q = Q.quantize(w.astype(np.float32), scale, zero, bits).astype(np.float64)
            Q1[:, i] = q
            Losses1[:, i] = (w - q) ** 2 / d ** 2
            err1 = (w - q) / d
            W1[:, i:] -= np.outer(err1, Hinv1[i, i:])
            Err1[:, i] = err1
        Qm[:, i1:i2] = Q1
        losses[:, i1:i2] = Losses1 / 2
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    Qm = Qm[:, invperm]
    return Qm, float(losses.sum()), np.stack(scales, axis=1), np.stack(zeros, axis=1), perm
