"""ctypes view of the compress/ C API (structs and signatures mirrored from
compress/*.h) for the test_prune_*.py oracle tests."""
import ctypes as C

import numpy as np

from kgtest import dptr, fptr, lib

i64 = C.c_int64


class PruneOpts(C.Structure):
    _fields_ = [("sparsity", C.c_double), ("prune_n", C.c_int), ("prune_m", C.c_int), ("use_variant", C.c_int)]


class WandaReport(C.Structure):
    _fields_ = [("pruned", i64), ("alpha", C.c_double), ("iterations", C.c_int)]


class QuantOpts(C.Structure):
    _fields_ = [("bits", C.c_int), ("sym", C.c_int), ("group_size", C.c_int)]


class ObsResult(C.Structure):
    _fields_ = [("loss", C.c_double), ("percdamp", C.c_double), ("damp", C.c_double), ("retries", C.c_int),
                ("dead_columns", i64), ("masked", i64), ("zeros", i64), ("seconds", C.c_double)]


class SparseGPTOpts(C.Structure):
    _fields_ = [("sparsity", C.c_double), ("prune_n", C.c_int), ("prune_m", C.c_int), ("blocksize", C.c_int),
                ("percdamp", C.c_double), ("max_damp_retries", C.c_int), ("quant", C.POINTER(QuantOpts))]


class GPTQOpts(C.Structure):
    _fields_ = [("quant", QuantOpts), ("act_order", C.c_int), ("blocksize", C.c_int), ("percdamp", C.c_double),
                ("max_damp_retries", C.c_int)]


class LinearStats(C.Structure):
    _fields_ = [("d", i64), ("with_gram", C.c_int), ("gram", C.POINTER(C.c_double)),
                ("sqnorm", C.POINTER(C.c_double)), ("n_samples", i64), ("n_tokens", i64)]


class OwlLinear(C.Structure):
    _fields_ = [("W", C.POINTER(C.c_float)), ("rows", i64), ("cols", i64), ("scaler_row", C.POINTER(C.c_double))]


def api():
    L = lib()
    if getattr(L, "_compress_bound", False):
        return L
    P = C.POINTER
    sig = {
        "kg_stats_init": (C.c_int, [P(LinearStats), i64, C.c_int]),
        "kg_stats_free": (None, [P(LinearStats)]),
        "kg_stats_accumulate": (C.c_int, [P(LinearStats), P(C.c_float), i64, i64]),
        "kg_stats_merge": (C.c_int, [P(LinearStats), P(LinearStats)]),
        "kg_stats_allreduce": (C.c_int, [P(LinearStats), C.c_void_p]),
        "kg_stats_hessian": (C.c_int, [P(LinearStats), P(C.c_double)]),
        "kg_stats_hessian_f32": (C.c_int, [P(LinearStats), P(C.c_float)]),
        "kg_stats_gram": (C.c_int, [P(LinearStats), P(C.c_double)]),
        "kg_stats_scaler_row": (C.c_int, [P(LinearStats), P(C.c_double)]),
        "kg_recon_error": (C.c_int, [P(C.c_float), P(C.c_float), i64, i64, P(C.c_double), P(C.c_double)]),
        "kg_select_kth": (C.c_double, [P(C.c_double), i64, i64]),
        "kg_magnitude_mask": (C.c_int, [P(C.c_float), i64, i64, P(PruneOpts), P(C.c_uint8)]),
        "kg_magnitude_prune": (C.c_int, [P(C.c_float), i64, i64, P(PruneOpts)]),
        "kg_wanda_mask": (C.c_int, [P(C.c_float), i64, i64, P(C.c_double), P(PruneOpts), P(C.c_uint8),
                                    P(WandaReport)]),
        "kg_wanda_prune": (C.c_int, [P(C.c_float), i64, i64, P(C.c_double), P(PruneOpts), P(WandaReport)]),
        "kg_sparsegpt_opts_default": (None, [P(SparseGPTOpts), C.c_double]),
        "kg_sparsegpt_prune": (C.c_int, [P(C.c_float), i64, i64, P(C.c_double), P(SparseGPTOpts), P(ObsResult)]),
        "kg_gptq_opts_default": (None, [P(GPTQOpts), C.c_int]),
        "kg_gptq_quantize": (C.c_int, [P(C.c_float), i64, i64, P(C.c_double), P(GPTQOpts), P(ObsResult),
                                       P(C.c_float), P(C.c_float), P(C.c_int32)]),
        "kg_rtn_quantize": (C.c_int, [P(C.c_float), i64, i64, P(QuantOpts), P(C.c_float), P(C.c_float)]),
        "kg_owl_outlier_ratio": (C.c_int, [P(OwlLinear), C.c_int, C.c_double, P(C.c_double)]),
        "kg_owl_allocate": (C.c_int, [P(C.c_double), C.c_int, C.c_double, C.c_double, P(C.c_double)]),
        "kg_linalg_numpy_sum": (C.c_double, [P(C.c_double), i64]),
        "kg_linalg_upper_chol_of_inverse": (C.c_int, [P(C.c_double), i64]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(L, name)
        fn.restype = res
        fn.argtypes = args
    L._compress_bound = True
    return L


def u8ptr(arr):
    assert arr.dtype == np.uint8 and arr.flags["C_CONTIGUOUS"]
    return arr.ctypes.data_as(C.POINTER(C.c_uint8))


def i32ptr(arr):
    assert arr.dtype == np.int32 and arr.flags["C_CONTIGUOUS"]
    return arr.ctypes.data_as(C.POINTER(C.c_int32))


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def f64(a):
    return np.ascontiguousarray(a, dtype=np.float64)


# --- thin wrappers returning numpy results -------------------------------------------------

def magnitude_mask(W, sparsity=0.0, n=0, m=0):
    W = f32(W)
    mask = np.zeros(W.shape, np.uint8)
    rc = api().kg_magnitude_mask(fptr(W), W.shape[0], W.shape[1], PruneOpts(sparsity, n, m, 0), u8ptr(mask))
    return rc, mask.astype(bool)


def wanda_mask(W, scaler, sparsity=0.0, n=0, m=0, variant=False):
    W, scaler = f32(W), f64(scaler)
    mask = np.zeros(W.shape, np.uint8)
    rep = WandaReport()
    rc = api().kg_wanda_mask(fptr(W), W.shape[0], W.shape[1], dptr(scaler), PruneOpts(sparsity, n, m, int(variant)),
                             u8ptr(mask), C.byref(rep))
    return rc, mask.astype(bool), rep


def sparsegpt(W, H, sparsity=0.0, n=0, m=0, blocksize=128, percdamp=0.01, retries=3, quant=None):
    W, H = f32(W).copy(), f64(H)
    o = SparseGPTOpts()
    api().kg_sparsegpt_opts_default(C.byref(o), sparsity)
    o.prune_n, o.prune_m, o.blocksize, o.percdamp, o.max_damp_retries = n, m, blocksize, percdamp, retries
    q = None
    if quant:
        q = QuantOpts(quant["bits"], int(quant.get("sym", False)), quant.get("group_size", -1))
        o.quant = C.pointer(q)
    res = ObsResult()
    rc = api().kg_sparsegpt_prune(fptr(W), W.shape[0], W.shape[1], dptr(H), C.byref(o), C.byref(res))
    return rc, W, res


def gptq(W, H, bits, sym=False, group_size=-1, act_order=False, blocksize=128, percdamp=0.01):
    W, H = f32(W).copy(), f64(H)
    o = GPTQOpts()
    api().kg_gptq_opts_default(C.byref(o), bits)
    o.quant.sym, o.quant.group_size, o.act_order, o.blocksize, o.percdamp = int(sym), group_size, int(act_order), \
        blocksize, percdamp
    ng = 1 if group_size <= 0 else -(-W.shape[1] // group_size)
    scales = np.zeros((W.shape[0], ng), np.float32)
    zeros = np.zeros((W.shape[0], ng), np.float32)
    perm = np.zeros(W.shape[1], np.int32)
    res = ObsResult()
    rc = api().kg_gptq_quantize(fptr(W), W.shape[0], W.shape[1], dptr(H), C.byref(o), C.byref(res), fptr(scales),
                                fptr(zeros), i32ptr(perm))
    return rc, W, res, scales, zeros, perm


def rtn(W, bits, sym=False, group_size=-1):
    W = f32(W).copy()
    ng = 1 if group_size <= 0 else -(-W.shape[1] // group_size)
    scales = np.zeros((W.shape[0], ng), np.float32)
    zeros = np.zeros((W.shape[0], ng), np.float32)
    rc = api().kg_rtn_quantize(fptr(W), W.shape[0], W.shape[1], C.byref(QuantOpts(bits, int(sym), group_size)),
                               fptr(scales), fptr(zeros))
    return rc, W, scales, zeros


def recon_error(W, W2, G):
    W, W2, G = f32(W), f32(W2), f64(G)
    out = C.c_double()
    rc = api().kg_recon_error(fptr(W), fptr(W2), W.shape[0], W.shape[1], dptr(G), C.byref(out))
    assert rc == 0
    return out.value
