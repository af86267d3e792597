"""OWL's layer-wise sparsity (luuyin/OWL lib/prune_all.py,
prune_wanda_outlier): check_outlier_mean over the concatenated Wanda metric of
a block's linears, then the NumPy allocation expressions in the reference's
order."""
import numpy as np


def outlier_ratio(linears, M):
    """linears: list of (W, scaler_row)."""
    metric = np.concatenate([(np.abs(W.astype(np.float64)) * np.sqrt(s.reshape(1, -1))).ravel()
                             for W, s in linears])
    thresh = np.mean(metric) * M
    return float((metric > thresh).sum()) / metric.size * 100


def allocate(ratios, sparsity_ratio, lamda):
    r = np.array(ratios, dtype=np.float64)
    r = ((r - r.min()) * (1 / (r.max() - r.min()) * lamda * 2))
    r = r - np.mean(r) + (1 - sparsity_ratio)
    out = []
    for i in range(len(r)):
        s = 1 - r[i]
        if s <= 0:
            s = 0.01
        out.append(s)
    return np.array(out)
