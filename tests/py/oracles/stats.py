"""Calibration statistics as the references keep them: running means updated
per batch (Wanda's WrappedGPT.add_batch, SparseGPT/GPTQ add_batch), in float64."""
import math

import numpy as np


def running_hessian(batches):
    """batches: list of (X [tokens, d], n_sequences). Returns H and n."""
    d = batches[0][0].shape[1]
    H = np.zeros((d, d))
    n = 0
    for X, b in batches:
        H *= n / (n + b)
        n += b
        inp = math.sqrt(2 / n) * X.astype(np.float64).T
        H += inp @ inp.T
    return H, n


def running_scaler_row(batches):
    d = batches[0][0].shape[1]
    s = np.zeros(d)
    n = 0
    for X, b in batches:
        s *= n / (n + b)
        n += b
        s += np.linalg.norm(X.astype(np.float64), axis=0) ** 2 / n
    return s


def recon_error(W, W2, X):
    """||X W^T - X W2^T||_F^2 straight from the tokens."""
    D = X.astype(np.float64) @ (W.astype(np.float64) - W2.astype(np.float64)).T
    return float(np.sum(D * D))
