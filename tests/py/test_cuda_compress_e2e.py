# ctest-labels: py slow
"""The compression pipeline end to end.

1. CPU backend, host engine: `kickgrid prune` on stories260K against an
   independent float64 NumPy restatement of the sequential layer-wise
   pipeline (oracles/llama_ref.py forward with hooks, oracles/prune.py and
   oracles/obs.py methods): every linear's statistics come from the block's
   inputs with the blocks before it already pruned, as the reference does.
2. CUDA backend (skipped without a GPU): the CUDA engine against the host
   engine on the same backend (KG_COMPRESS_ENGINE=cpu), so only the engine
   differs (both read the same 16-bit hook inputs; fp16-stored activations,
   tensor-core Gram, fp32 device solves vs float64 host ones, several samples
   a forward vs one): mask agreement and perplexity. Also the 16-bit hook
   against the float32 one, and exact device masters against uploads.
3. CUDA backend vs CPU backend: perplexity of the pruned models within about
   1% (stories260K; SmolLM2 when KG_SMOLLM2_GGUF names its GGUF)."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from kgtest import data_path, run
from oracles import llama_ref as R
from oracles import obs as O
from oracles import prune as P

NSAMPLES, SEQLEN = 6, 96
LINEARS = [("q_proj", "self_attn", "wq"), ("k_proj", "self_attn", "wk"), ("v_proj", "self_attn", "wv"),
           ("o_proj", "self_attn", "wo"), ("gate_proj", "mlp", "w_gate"), ("up_proj", "mlp", "w_up"),
           ("down_proj", "mlp", "w_down")]
INPUT_OF = {"wq": "attn", "wk": "attn", "wv": "attn", "wo": "attn_out", "w_gate": "mlp", "w_up": "mlp",
            "w_down": "hidden"}


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """stories260K written back as a float32 HF directory, and the
    calibration tokens every run below uses."""
    data_path("models/stories260K/stories260K.bin")
    data_path("text/c4/c4-train.00000-of-01024.head.jsonl")
    d = tmp_path_factory.mktemp("cc_e2e")
    run("prune", "--model", "stories260K", "--method", "dense", "--calib", "c4", "--nsamples", NSAMPLES,
        "--seqlen", SEQLEN, "--export-calib", d / "calib.npy", "--out", d / "dense", "--threads", 2)
    return d


def block_inputs(model, L, x):
    """One block of the reference forward (float64), returning its output and
    the four linear inputs the pipeline's hook sees."""
    c = model.cfg
    T = x.shape[0]
    pos = np.arange(T)
    f = R._f64
    h = model._norm(x, f(L["attn_norm"]))
    q = model._rope((h @ f(L["wq"]).T).reshape(T, c.n_heads, c.head_dim), pos)
    k = model._rope((h @ f(L["wk"]).T).reshape(T, c.n_kv_heads, c.head_dim), pos)
    v = (h @ f(L["wv"]).T).reshape(T, c.n_kv_heads, c.head_dim)
    group = c.n_heads // c.n_kv_heads
    kk, vv = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    s = np.einsum("thd,shd->hts", q, kk) / np.sqrt(c.head_dim)
    s[:, np.arange(T)[None, :] > pos[:, None]] = -np.inf
    s -= s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    att = np.einsum("hts,shd->thd", p, vv).reshape(T, c.n_heads * c.head_dim)
    x = x + att @ f(L["wo"]).T
    h2 = model._norm(x, f(L["ffn_norm"]))
    g = h2 @ f(L["w_gate"]).T
    u = h2 @ f(L["w_up"]).T
    hid = g / (1.0 + np.exp(-g)) * u
    x = x + hid @ f(L["w_down"]).T
    return x, {"attn": h, "attn_out": att, "mlp": h2, "hidden": hid}


def oracle_pipeline(model, tokens, method, sparsity=0.0, n=0, m=0):
    """The reference pipeline: per block, statistics over all samples with
    the dense block, every linear compressed, then the block's outputs with
    the compressed weights feed the next block (propagate = pruned)."""
    xs = [model.embed[t] for t in tokens]
    for L in model.layers:
        gram, sq = {}, {}
        for x in xs:
            _, ins = block_inputs(model, L, x)
            for key, a in ins.items():
                gram[key] = gram.get(key, 0) + a.T @ a
                sq[key] = sq.get(key, 0) + (a * a).sum(axis=0)
        ns = len(xs)
        for _, _, key in LINEARS:
            W = np.asarray(L[key], dtype=np.float32)
            inp = INPUT_OF[key]
            if method == "wanda":
                mask = P.wanda_mask(W, sq[inp] / ns, sparsity, n, m)
                L[key] = np.where(mask, 0.0, W.astype(np.float64))
            else:
                L[key], _, _ = O.sparsegpt(W, 2.0 / ns * gram[inp], sparsity=sparsity, prunen=n, prunem=m)
            L[key] = np.asarray(L[key], dtype=np.float32)
        xs = [block_inputs(model, L, x)[0] for x in xs]
    return model


def pruned_weights(d):
    t = R.read_safetensors(Path(d) / "model.safetensors")
    return {(l, name): t[f"model.layers.{l}.{part}.{name}.weight"]
            for l in range(len([k for k in t if k.endswith("input_layernorm.weight")]))
            for name, part, _ in LINEARS}


def prune(dense, out, method, args, backend="cpu", env=None, extra=()):
    run("prune", "--model", dense / "dense", "--method", method, *args, "--calib", f"tokens:{dense / 'calib.npy'}",
        "--nsamples", NSAMPLES, "--seqlen", SEQLEN, "--out", out, "--backend", backend, "--threads", 2, *extra, env=env)
    return pruned_weights(out)


CASES = [("wanda", ["--sparsity", "0.5"], dict(sparsity=0.5), 0.995),
         ("wanda", ["--pattern", "2:4"], dict(n=2, m=4), 0.995),
         ("sparsegpt", ["--sparsity", "0.5"], dict(sparsity=0.5), 0.98),
         ("sparsegpt", ["--pattern", "2:4"], dict(n=2, m=4), 0.98)]


@pytest.mark.parametrize("method,args,kw,min_agree", CASES, ids=[f"{c[0]}-{c[1][1]}" for c in CASES])
def test_cpu_pipeline_matches_float64_oracle(dense, tmp_path, method, args, kw, min_agree):
    ours = prune(dense, tmp_path / "out", method, args)
    tokens = np.load(dense / "calib.npy")
    ref = oracle_pipeline(R.load_hf(dense / "dense"), tokens, method, **kw)
    worst = 1.0
    for l, L in enumerate(ref.layers):
        for name, _, key in LINEARS:
            a, b = ours[(l, name)], np.asarray(L[key], dtype=np.float64)
            agree = np.mean((a == 0) == (b == 0))
            worst = min(worst, agree)
            assert agree >= min_agree, f"layer {l} {name}: mask agreement {agree:.4f}"
            if method == "sparsegpt":
                rel = np.linalg.norm(a - b) / np.linalg.norm(b)
                assert rel < 0.05, f"layer {l} {name}: |W - W_ref| / |W_ref| = {rel:.3g}"
    print(f"{method} {args}: worst per-linear mask agreement {worst:.4f}")


def cuda_usable():
    if os.environ.get("KG_HAVE_CUDA", "").upper() not in ("ON", "1", "TRUE", "YES"):
        return False
    proc = run("ppl", "--model", "stories260K", "--backend", "cuda", "--dataset", "tinystories", "--seqlen", 32,
               "--max-windows", 1, check=False)
    return proc.returncode == 0


@pytest.fixture(scope="module")
def gpu():
    if not cuda_usable():
        pytest.skip("no usable CUDA backend (build without CUDA, or no GPU)")


def ppl(model_dir, backend, dataset="tinystories", seqlen=256, windows=16):
    proc = run("ppl", "--model", model_dir, "--backend", backend, "--dataset", dataset, "--seqlen", seqlen,
               "--max-windows", windows, "--json")
    return json.loads(proc.stdout.strip().splitlines()[-1])["ppl"]


# stories260K is tiny (64 inputs per row) and 2:4 SparseGPT leaves it badly
# damaged: a near-tie decided differently in block 0 changes every later
# block's inputs, so its agreement and perplexity are given more room (seen
# on an H100: worst block 0.89, perplexity +2.9%). True-sequential runs are
# compared unstructured for the same reason (with 2:4, o_proj of block 0
# already sees the few q/k/v weights that differed).
# Both engines read 16-bit hook inputs, and the CUDA engine keeps the
# residual stream between blocks in fp16: from block 1 on, the inputs differ
# by that rounding, and a bf16 input rounded the other way moves a Wanda
# score by 2^-8. Seen on an H100 (run40): Wanda 2:4 worst block 0.9858,
# perplexity 61.36 vs 63.52 (+3.5%); true-sequential SparseGPT +1.45%.
GPU_CASES = [("wanda", ["--sparsity", "0.5"], 0.99, 0.01), ("wanda", ["--pattern", "2:4"], 0.98, 0.05),
             ("magnitude", ["--sparsity", "0.5"], 1.0, 1e-9), ("sparsegpt", ["--sparsity", "0.5"], 0.97, 0.01),
             ("sparsegpt", ["--pattern", "2:4"], 0.8, 0.05),
             ("sparsegpt", ["--sparsity", "0.5", "--true-sequential"], 0.97, 0.025),
             ("sparsegpt", ["--sparsity", "0.5", "--propagate", "dense"], 0.97, 0.01),
             ("owl-wanda", ["--sparsity", "0.5"], 0.99, 0.01),
             ("gptq", ["--bits", "4"], None, 0.01),
             ("gptq", ["--bits", "4", "--group-size", "32", "--act-order"], None, 0.01)]


@pytest.mark.parametrize("method,args,min_agree,ppl_tol", GPU_CASES, ids=[f"{c[0]}-{'-'.join(c[1])}" for c in GPU_CASES])
def test_cuda_engine_matches_host_engine(dense, gpu, tmp_path, method, args, min_agree, ppl_tol):
    # The same samples a forward for both: a batch of another size changes
    # the GEMMs' rounding, which on this tiny model moves 2:4 results by
    # percents (seen: Wanda 2:4 ppl 61.4 at 1 a forward vs 63.5 at 6).
    batch = ("--calib-batch", "3")
    host = prune(dense, tmp_path / "host", method, args, backend="cuda", env={"KG_COMPRESS_ENGINE": "cpu"}, extra=batch)
    dev = prune(dense, tmp_path / "dev", method, args, backend="cuda", env={"KG_COMPRESS_ENGINE": "cuda"}, extra=batch)
    layers = sorted({k[0] for k in host})
    per_layer = [min(np.mean((host[k] == 0) == (dev[k] == 0)) for k in host if k[0] == l) for l in layers]
    agree = min(per_layer)
    same = np.mean(np.concatenate([(host[k] == dev[k]).ravel() for k in host]))
    p_host, p_dev = ppl(tmp_path / "host", "cuda"), ppl(tmp_path / "dev", "cuda")
    print(f"{method} {args}: worst mask agreement per layer {' '.join(f'{a:.4f}' for a in per_layer)}, "
          f"equal weights {same:.4f}, ppl host engine {p_host:.4f}, cuda engine {p_dev:.4f}")
    if min_agree is not None:
        assert agree >= min_agree
    assert abs(p_dev / p_host - 1) < ppl_tol
    if "--pattern" in args:  # every group of 4 inputs keeps at most 2 weights
        for k, w in dev.items():
            assert ((w.reshape(w.shape[0], -1, 4) == 0).sum(axis=2) >= 2).all(), k


def smollm2():
    p = os.environ.get("KG_SMOLLM2_GGUF")
    return p if p and Path(p).exists() else None


@pytest.mark.parametrize("model", ["stories260K", "smollm2"])
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_cuda_backend_ppl_matches_cpu(gpu, tmp_path, model, method):
    if model == "smollm2":
        spec = smollm2()
        if not spec:
            pytest.skip("KG_SMOLLM2_GGUF does not name SmolLM2-135M's GGUF")
        dataset, calib, seqlen = "wikitext2", ["--nsamples", 16, "--seqlen", 256], 512
    else:
        spec = "stories260K"
        dataset, calib, seqlen = "tinystories", ["--nsamples", 16, "--seqlen", 128], 256
    out = {}
    for be in ("cpu", "cuda"):
        run("prune", "--model", spec, "--method", method, "--sparsity", "0.5", "--calib", "c4", *calib,
            "--out", tmp_path / be, "--backend", be)
        out[be] = ppl(tmp_path / be, "cpu", dataset, seqlen)
    print(f"{model} {method}: ppl after pruning on cpu {out['cpu']:.4f}, on cuda {out['cuda']:.4f}")
    assert abs(out["cuda"] / out["cpu"] - 1) < 0.015


def test_cuda_engine_budget_mode_matches_resident(dense, gpu, tmp_path):
    """With a memory budget the CUDA engine keeps the activations in pinned
    host memory (and the backend may stream blocks): the result must not
    change, since both paths round and compute the same way."""
    a = prune(dense, tmp_path / "resident", "sparsegpt", ["--sparsity", "0.5"], backend="cuda",
              extra=("--calib-batch", "4"))
    b = prune(dense, tmp_path / "budget", "sparsegpt", ["--sparsity", "0.5"], backend="cuda",
              extra=("--gpu-memory-gb", "0.2", "--calib-batch", "4"))
    diff = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not diff, f"{len(diff)} linears differ, first {diff[0]}"


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_cuda_engine_recon_samples_zero(dense, gpu, tmp_path, method):
    """--recon-samples 0 drops the reconstruction errors and nothing else; for
    magnitude it routes to the data-free path, which solves block after block
    with no statistics plan in between (it once failed there on the CUDA
    engine with "statistics ... were released"). Magnitude's masks are exact
    per-row selections on the float32 masters, so the CUDA engine matches
    the host engine bit for bit."""
    a = prune(dense, tmp_path / "with", method, ["--sparsity", "0.5"], backend="cuda")
    b = prune(dense, tmp_path / "without", method, ["--sparsity", "0.5"], backend="cuda",
              extra=("--recon-samples", "0"))
    diff = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not diff, f"{len(diff)} linears differ, first {diff[0]}"
    if method == "magnitude":
        host = prune(dense, tmp_path / "host", method, ["--sparsity", "0.5"], backend="cuda",
                     env={"KG_COMPRESS_ENGINE": "cpu"}, extra=("--recon-samples", "0"))
        diff = [k for k in a if not np.array_equal(host[k], b[k])]
        assert not diff, f"{len(diff)} linears differ from the host engine, first {diff[0]}"


def test_cuda_profile_times_every_operation(gpu):
    """KG_CUDA_PROFILE=1 times each backend operation with events: the counts
    follow the model's structure (7 GEMMs, 2 norms, 2 ropes and a SwiGLU per
    attention; one head GEMM and final norm per NLL chunk), the timed work
    fits in the span, and timing changes nothing computed."""
    args = ("ppl", "--model", "stories260K", "--backend", "cuda", "--dataset", "tinystories", "--seqlen", 256,
            "--max-windows", 8, "--json")
    plain = run(*args)
    timed = run(*args, env={"KG_CUDA_PROFILE": "1"})
    assert json.loads(timed.stdout.strip().splitlines()[-1])["ppl"] == json.loads(plain.stdout.strip().splitlines()[-1])["ppl"]
    assert "cuda profile" not in plain.stderr
    calls, ms = {}, {}
    for line in timed.stderr.splitlines():
        parts = line.split("cuda profile: ", 1)
        if len(parts) == 2 and " calls " in parts[1]:
            f = parts[1].split()
            calls[f[0]], ms[f[0]] = int(f[3]), float(f[1])
        elif len(parts) == 2 and parts[1].startswith("span"):
            f = parts[1].replace(",", "").split()
            span, busy = float(f[1]), float(f[4])
    attn, head = calls["attention"], calls["head"]
    assert attn > 0 and attn % 5 == 0 and head > 0, calls  # stories260K has 5 blocks
    assert calls["gemm"] == 7 * attn + head, calls
    assert calls["norm"] == 2 * attn + head, calls
    assert calls["rope"] == 2 * attn and calls["swiglu"] == attn, calls
    assert abs(sum(ms.values()) - busy) < 0.01 * busy + 0.6, (ms, busy)
    assert 0 < busy <= span * 1.001, (busy, span)


# Seen on an H100: worst block 0.9888 for both, perplexity within 0.1%.
@pytest.mark.parametrize("method,args,min_agree", [("wanda", ["--sparsity", "0.5"], 0.98),
                                                   ("sparsegpt", ["--sparsity", "0.5"], 0.97)])
def test_cuda_16bit_hook_and_batches_match_float32_hook(dense, gpu, tmp_path, method, args, min_agree):
    """The CUDA engine's statistics from the 16-bit activation path, several
    samples to a forward, against the float32 path one sample at a time: the
    linears read the same 16-bit values either way, so only roundings inside
    attention and SwiGLU differ."""
    f32 = prune(dense, tmp_path / "f32", method, args, backend="cuda", env={"KG_CALIB_ACT16": "0"},
                extra=("--calib-batch", "1"))
    h16 = prune(dense, tmp_path / "h16", method, args, backend="cuda", extra=("--calib-batch", "4"))
    per_layer = [min(np.mean((f32[k] == 0) == (h16[k] == 0)) for k in f32 if k[0] == l)
                 for l in sorted({k[0] for k in f32})]
    p32, p16 = ppl(tmp_path / "f32", "cuda"), ppl(tmp_path / "h16", "cuda")
    print(f"{method}: worst mask agreement per layer {' '.join(f'{a:.4f}' for a in per_layer)}, "
          f"ppl float32 hook {p32:.4f}, 16-bit hook {p16:.4f}")
    assert min(per_layer) >= min_agree
    assert abs(p16 / p32 - 1) < 0.01


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_cuda_engine_reads_exact_masters_from_the_device(dense, gpu, tmp_path, method):
    """A bf16 checkpoint's device copy is its master: the engine widens it
    instead of uploading the host floats, and the result is bit for bit the
    one the upload gives."""
    run("prune", "--model", dense / "dense", "--method", "dense", "--dtype", "bf16", "--out", tmp_path / "bf16")
    outs, widened = {}, {}
    for mode in ("0", "1"):
        out = tmp_path / f"exact{mode}"
        proc = run("prune", "--model", tmp_path / "bf16", "--method", method, "--sparsity", "0.5", "--calib",
            f"tokens:{dense / 'calib.npy'}", "--nsamples", NSAMPLES, "--seqlen", SEQLEN, "--out", out,
            "--dtype", "f32", "--backend", "cuda", env={"KG_CC_EXACT_MASTER": mode})
        outs[mode] = pruned_weights(out)
        m = re.search(r"(\d+) of (\d+) masters read from exact device copies", proc.stderr)
        assert m, proc.stderr[-2000:]
        widened[mode] = (int(m.group(1)), int(m.group(2)))
    assert widened["0"][0] == 0 and widened["1"][0] == widened["1"][1] > 0, widened
    diff = [k for k in outs["0"] if not np.array_equal(outs["0"][k], outs["1"][k])]
    assert not diff, f"{len(diff)} linears differ, first {diff[0]}"
