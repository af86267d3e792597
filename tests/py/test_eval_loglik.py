# ctest-labels: py
"""The log-likelihood engine and task scoring against independent
references: lm-eval's _encode_pair rule applied in Python to kickgrid's own
tokenizer; summed log-probabilities and greedy flags from the float64 NumPy
reference model (tests/py/oracles/llama_ref.py) on stories260K (and
SmolLM2-135M when KG_SMOLLM2_GGUF names its GGUF); and kg_eval_task's
acc/acc_norm/stderr against the whole pipeline rebuilt in Python (harness
prompts, encode_pair, reference log-likelihoods, np.argmax scoring)."""
import os
from pathlib import Path

import numpy as np
import pytest

import kgtest
from oracles import eval_ref, llama_ref
from oracles.capi_ref import CModel
from oracles.eval_capi import Tokenizer, eval_task, loglik_run

TOL = 2e-3  # float32 forward vs float64 reference, summed over a continuation


@pytest.fixture(scope="module")
def stories():
    path = kgtest.data_path("models/stories260K/stories260K.bin")
    tok = Tokenizer(kgtest.data_path("models/stories260K/tok512.bin"))
    ref = llama_ref.load_llama2c(path)
    with CModel(path, n_threads=1) as cm:
        yield cm, tok, ref
    tok.close()


def _requests(tok, task, n_docs, k=0):
    docs = eval_ref.load_docs(kgtest.DATA_DIR, task)
    h = eval_ref.Harness(task, docs)
    out = []
    for i in range(n_docs):
        ctxs, conts = h.prompt(i, k)
        for c in ctxs:
            for t in conts:
                out.append((c, t))
    return out


def _near_tie(ref, ctx, cont, max_len):
    """True when some scored position's top two logits are within 1e-4 (the
    greedy flag may then differ between fp32 and fp64 legitimately)."""
    inp = (list(ctx) + list(cont))[-(max_len + 1):][:-1]
    lg = ref.logits(inp)[len(inp) - len(cont):]
    top = np.sort(lg, axis=-1)[:, -2:]
    return bool(np.any(top[:, 1] - top[:, 0] < 1e-4))


def test_encode_pair_rule(stories):
    _, tok, _ = stories
    pairs = _requests(tok, "arc_easy", 5) + _requests(tok, "winogrande", 3) + _requests(tok, "lambada", 3)
    pairs += [("The answer is ", "Paris"), ("Hello  \n", " world"), ("x", "")]
    for ctx, cont in pairs:
        want = eval_ref.encode_pair(tok.encode, ctx, cont)
        assert tok.encode_pair(ctx, cont) == want, (ctx[-40:], cont)


def test_loglik_matches_reference(stories):
    cm, tok, ref = stories
    pairs = [tok.encode_pair(c, t) for c, t in
             _requests(tok, "arc_easy", 4) + _requests(tok, "boolq", 2) + _requests(tok, "winogrande", 3) +
             _requests(tok, "lambada", 3) + _requests(tok, "piqa", 2, k=2)]
    max_len = cm.config.max_seq_len
    got = loglik_run(cm.model, pairs, batch=8, max_len=max_len)
    worst = 0.0
    for (c, t), (lp, greedy) in zip(pairs, got):
        want_lp, want_greedy = eval_ref.loglikelihood(ref, c, t, max_len)
        worst = max(worst, abs(lp - want_lp))
        assert abs(lp - want_lp) < TOL, (lp, want_lp)
        if greedy != want_greedy:
            assert _near_tie(ref, c, t, max_len)
    print(f"{len(pairs)} requests, max |logprob - reference| = {worst:.2e}")
    # the same through batch 1 without the cache
    again = loglik_run(cm.model, pairs, batch=1, reuse=0, max_len=max_len)
    assert max(abs(a[0] - b[0]) for a, b in zip(got, again)) < 1e-4


def test_task_scores_match_pipeline(stories):
    """kg_eval_task(arc_easy/piqa/winogrande) == the harness pipeline in Python."""
    cm, tok, ref = stories
    max_len = cm.config.max_seq_len
    for task, n in (("arc_easy", 12), ("piqa", 10), ("winogrande", 10)):
        docs = eval_ref.load_docs(kgtest.DATA_DIR, task)
        h = eval_ref.Harness(task, docs)
        accs, accns, ties = [], [], 0
        for i in range(n):
            ctxs, conts = h.prompt(i, 0)
            reqs = [(c, t) for c in ctxs for t in conts]
            lls = []
            for c, t in reqs:
                ci, ti = eval_ref.encode_pair(tok.encode, c, t)
                lls.append(eval_ref.loglikelihood(ref, ci, ti, max_len)[0])
            s = np.sort(lls)
            ties += bool(s[-1] - s[-2] < 2 * TOL)
            if task == "winogrande":
                accs.append(float(np.argmax(lls) == docs[i]["gold"]))
            else:
                a, an = eval_ref.multiple_choice(lls, docs[i]["choices"], docs[i]["gold"])
                accs.append(a)
                accns.append(an)
        res = eval_task(cm.model, tok.ptr, task, n)
        assert res.n == n
        acc, se = res.metric("acc")
        if ties == 0:
            assert acc == pytest.approx(np.mean(accs), abs=1e-12)
            assert se == pytest.approx(eval_ref.mean_stderr(accs), abs=1e-12)
            if accns:
                assert res.metric("acc_norm")[0] == pytest.approx(np.mean(accns), abs=1e-12)
        else:
            assert abs(acc - np.mean(accs)) <= ties / n


def test_smollm2_loglik_matches_reference():
    gguf = os.environ.get("KG_SMOLLM2_GGUF")
    if not gguf or not Path(gguf).exists():
        pytest.skip("KG_SMOLLM2_GGUF is not set to the SmolLM2-135M GGUF")
    tok = Tokenizer(gguf)
    ref = llama_ref.load_gguf(gguf)
    try:
        pairs = [tok.encode_pair(c, t) for c, t in _requests(tok, "arc_easy", 2) + _requests(tok, "lambada", 1)]
        with CModel(gguf, n_threads=1) as cm:
            got = loglik_run(cm.model, pairs, max_len=2048)
        for (c, t), (lp, greedy) in zip(pairs, got):
            want_lp, want_greedy = eval_ref.loglikelihood(ref, c, t, 2048)
            assert abs(lp - want_lp) < 5e-3, (lp, want_lp)
            if greedy != want_greedy:
                assert _near_tie(ref, c, t, 2048)
    finally:
        tok.close()
