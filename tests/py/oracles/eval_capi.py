"""ctypes bridge to kickgrid's evaluation code (the code under test, not a
reference): task prompts, the log-likelihood engine, scoring functions, the
Python-compatible RNG and JS divergence, through build*/libkgapi.so. The
struct mirrors follow io/tasks.h, io/pyrandom.h, evaluate/loglik.h,
evaluate/tasks.h and evaluate/jsd.h."""
import ctypes
from ctypes import (POINTER, byref, c_char, c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_size_t,
                    c_uint32, c_uint64, c_void_p)

import numpy as np

import kgtest


class PyRand(ctypes.Structure):
    _fields_ = [("mt", c_uint32 * 624), ("index", c_int)]


class TaskData(ctypes.Structure):
    _fields_ = [("info", c_void_p), ("docs", c_void_p), ("n_docs", c_size_t), ("fewshot", c_void_p),
                ("n_fewshot", c_size_t), ("subjects", POINTER(c_char_p)), ("n_subjects", c_int),
                ("source", c_char * 512), ("arena", c_void_p)]


class TaskPrompt(ctypes.Structure):
    _fields_ = [("contexts", POINTER(c_char_p)), ("n_contexts", c_int), ("continuations", POINTER(c_char_p)),
                ("n_continuations", c_int)]


class LoglikRequest(ctypes.Structure):
    _fields_ = [("context", POINTER(c_int32)), ("n_context", c_int), ("continuation", POINTER(c_int32)),
                ("n_continuation", c_int), ("want_next", c_int)]


class LoglikResult(ctypes.Structure):
    _fields_ = [("logprob", c_double), ("is_greedy", c_int), ("next_token", c_int32), ("truncated", c_int)]


class LoglikOptions(ctypes.Structure):
    _fields_ = [("batch", c_int), ("max_len", c_int), ("reuse_prefix", c_int), ("cache_bytes", c_size_t),
                ("progress", c_int), ("label", c_char_p), ("stats", c_void_p)]


class TaskSpec(ctypes.Structure):
    _fields_ = [("task", c_char_p), ("limit", c_int64), ("limit_random", c_int), ("seed", c_uint64),
                ("num_fewshot", c_int), ("fewshot_seed", c_uint64), ("mmlu_mode", c_int), ("batch", c_int),
                ("add_bos", c_int), ("bootstrap_iters", c_int), ("max_len", c_int), ("cache_bytes", c_size_t),
                ("progress", c_int), ("data", c_void_p), ("no_prefix_reuse", c_int)]


class Metric(ctypes.Structure):
    _fields_ = [("name", c_char * 24), ("value", c_double), ("stderr", c_double)]


class TaskResult(ctypes.Structure):
    _fields_ = [("task", c_char * 32), ("n", c_int64), ("num_fewshot", c_int), ("metrics", Metric * 6),
                ("n_metrics", c_int), ("subjects", c_void_p), ("n_subjects", c_int), ("seconds", c_double)]

    def metric(self, name):
        for i in range(self.n_metrics):
            if self.metrics[i].name.decode() == name:
                return self.metrics[i].value, self.metrics[i].stderr
        raise KeyError(name)


class JsResult(ctypes.Structure):
    _fields_ = [("mean", c_double), ("median", c_double), ("p95", c_double), ("max", c_double),
                ("top1_agree", c_double), ("n_tokens", c_int64), ("n_windows", c_int64), ("seconds", c_double)]


def lib():
    L = kgtest.lib()
    L.kg_pyrand_random.restype = c_double
    L.kg_pyrand_u32.restype = c_uint32
    L.kg_pyrand_getrandbits.restype = c_uint64
    L.kg_pyrand_getrandbits.argtypes = [POINTER(PyRand), c_int]
    L.kg_pyrand_randbelow.restype = c_uint64
    L.kg_pyrand_randbelow.argtypes = [POINTER(PyRand), c_uint64]
    L.kg_pyrand_seed.argtypes = [POINTER(PyRand), c_uint64]
    L.kg_js_logits.restype = c_double
    L.kg_js_logits.argtypes = [POINTER(c_float), POINTER(c_float), c_int]
    L.kg_squad_normalize.restype = c_void_p
    L.kg_squad_f1.restype = c_double
    L.kg_bootstrap_stderr_perplexity.restype = c_double
    L.kg_bootstrap_stderr_perplexity.argtypes = [POINTER(c_double), c_size_t, c_int]
    L.kg_mean_stderr.restype = c_double
    L.kg_mean_stderr.argtypes = [POINTER(c_double), c_size_t]
    L.kg_pooled_stderr.restype = c_double
    L.kg_paths_set_data_dir.argtypes = [c_char_p]
    return L


def check(rc, what):
    if rc != 0:
        raise RuntimeError(f"{what} failed ({rc}): {kgtest.last_error()}")


def cfree(ptr):
    ctypes.CDLL(None).free(ctypes.cast(ptr, c_void_p))


class Task:
    """kg_task_data of one task, loaded from the data directory."""

    def __init__(self, name, data_dir):
        self.L = lib()
        self.L.kg_paths_set_data_dir(str(data_dir).encode())
        self.ptr = POINTER(TaskData)()
        check(self.L.kg_task_load(name.encode(), byref(self.ptr)), f"kg_task_load({name})")

    @property
    def n_docs(self):
        return self.ptr.contents.n_docs

    def fewshot_state(self, seed=1234):
        st = PyRand()
        self.L.kg_fewshot_init(byref(st), c_uint64(seed))
        return st

    def prompt(self, doc, k, style=0, state=None):
        p = TaskPrompt()
        check(self.L.kg_task_prompt_build(self.ptr, c_size_t(doc), c_int(k), c_int(style),
                                          byref(state) if state is not None else None, byref(p)),
              f"kg_task_prompt_build({doc})")
        ctx = [p.contexts[i].decode("utf-8") for i in range(p.n_contexts)]
        cont = [p.continuations[i].decode("utf-8") for i in range(p.n_continuations)]
        self.L.kg_task_prompt_free(byref(p))
        return ctx, cont

    def close(self):
        if self.ptr:
            self.L.kg_task_free(self.ptr)
            self.ptr = POINTER(TaskData)()


class Tokenizer:
    def __init__(self, path):
        self.L = lib()
        self.ptr = c_void_p()
        check(self.L.kg_tokenizer_load(str(path).encode(), byref(self.ptr)), f"kg_tokenizer_load({path})")

    def encode(self, text, bos=False):
        raw = text.encode("utf-8")
        ids, n = POINTER(c_int32)(), c_size_t()
        check(self.L.kg_tokenizer_encode(self.ptr, raw, c_size_t(len(raw)), c_int(int(bos)), byref(ids), byref(n)),
              "kg_tokenizer_encode")
        out = [ids[i] for i in range(n.value)]
        cfree(ids)
        return out

    def encode_pair(self, context, continuation, bos=False):
        c, t = POINTER(c_int32)(), POINTER(c_int32)()
        nc, nt = c_int(), c_int()
        check(self.L.kg_loglik_encode_pair(self.ptr, context.encode(), continuation.encode(), c_int(int(bos)),
                                           byref(c), byref(nc), byref(t), byref(nt)), "kg_loglik_encode_pair")
        out = [c[i] for i in range(nc.value)], [t[i] for i in range(nt.value)]
        cfree(c)
        cfree(t)
        return out

    def close(self):
        if self.ptr:
            self.L.kg_tokenizer_free(self.ptr)
            self.ptr = c_void_p()


def loglik_run(model_ptr, pairs, batch=8, max_len=0, reuse=1):
    """kg_loglik_run over [(ctx ids, cont ids)] -> [(logprob, is_greedy)]."""
    L = lib()
    keep = []
    reqs = (LoglikRequest * len(pairs))()
    for i, (c, t) in enumerate(pairs):
        ca = np.ascontiguousarray(c, dtype=np.int32)
        ta = np.ascontiguousarray(t if len(t) else [0], dtype=np.int32)
        keep += [ca, ta]
        reqs[i] = LoglikRequest(ca.ctypes.data_as(POINTER(c_int32)), len(c), ta.ctypes.data_as(POINTER(c_int32)),
                                len(t), 0)
    out = (LoglikResult * len(pairs))()
    opt = LoglikOptions()
    L.kg_loglik_options_default(byref(opt))
    opt.batch, opt.max_len, opt.reuse_prefix = batch, max_len, reuse
    check(L.kg_loglik_run(model_ptr, reqs, c_size_t(len(pairs)), byref(opt), out), "kg_loglik_run")
    return [(out[i].logprob, bool(out[i].is_greedy)) for i in range(len(pairs))]


def eval_task(model_ptr, tok_ptr, task, limit, num_fewshot=-1, batch=8, mmlu_mode=0, bootstrap_iters=0):
    L = lib()
    spec = TaskSpec()
    L.kg_task_spec_default(byref(spec))
    spec.task, spec.limit, spec.num_fewshot, spec.batch = task.encode(), limit, num_fewshot, batch
    spec.mmlu_mode, spec.bootstrap_iters = mmlu_mode, bootstrap_iters
    res = TaskResult()
    check(L.kg_eval_task(model_ptr, tok_ptr, byref(spec), byref(res)), f"kg_eval_task({task})")
    L.kg_task_result_free(byref(res))
    return res
