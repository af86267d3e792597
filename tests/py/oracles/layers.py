"""Random test layers: weights, calibration tokens with uneven input-feature
scales (as LLM activations have), and the statistics the references derive
from them."""
import numpy as np


def make_layer(rows, cols, tokens=512, n_seq=4, seed=0, feature_spread=1.0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(0.05)
    scales = np.exp(feature_spread * rng.standard_normal(cols))
    mix = np.eye(cols) + 0.3 * rng.standard_normal((cols, cols)) / np.sqrt(cols)
    X = (rng.standard_normal((tokens, cols)) @ mix * scales).astype(np.float32)
    Xd = X.astype(np.float64)
    G = Xd.T @ Xd
    H = 2.0 / n_seq * G
    scaler = (Xd ** 2).sum(axis=0) / n_seq
    return W, X, H, scaler, G
