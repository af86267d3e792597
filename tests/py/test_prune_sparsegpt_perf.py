# ctest-labels: py slow
"""Times SparseGPT on LLaMA-7B-sized layers (4096x4096 and 4096x11008) and
checks the per-block sparsity the reference's threshold rule gives. Needs
about 3 GiB of memory and half a minute on 2 cores."""
import time

import numpy as np
import pytest

import compress_capi as K
from kgtest import last_error


@pytest.mark.parametrize("rows,cols", [(4096, 4096), (4096, 11008)])
def test_sparsegpt_llama_sizes(rows, cols):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((cols, 512))
    H = A @ A.T / 512 + 0.1 * np.eye(cols)
    del A
    W = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    t = time.time()
    rc, Wc, res = K.sparsegpt(W, H, 0.5)
    wall = time.time() - t
    assert rc == 0, last_error()
    print(f"sparsegpt {rows}x{cols}: solve {res.seconds:.2f} s (call {wall:.2f} s), loss {res.loss:.6g}")
    for i1 in range(0, cols, 128):
        c = min(128, cols - i1)
        assert (Wc[:, i1:i1 + c] == 0).sum() == int(rows * c * 0.5) + 1
    assert np.isfinite(res.loss) and res.retries == 0
