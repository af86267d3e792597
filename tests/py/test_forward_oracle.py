# ctest-labels: py
"""kickgrid's CPU forward pass against the independent float64 NumPy oracle
(tests/py/oracles/llama_ref.py) on real models: stories260K (llama2.c
format) and SmolLM2-135M (GGUF, Q8_0/Q4_1). Pass mark: max relative error
max|a-b| / max|b| over all logits below 1e-4."""
import os
from pathlib import Path

import numpy as np
import pytest

import kgtest
from oracles import llama_ref
from oracles.capi_ref import CModel, check_config, check_logits, require_model_api


# ---------------------------------------------------------------- stories260K

@pytest.fixture(scope="module")
def stories():
    require_model_api()
    path = kgtest.data_path("models/stories260K/stories260K.bin")
    ref = llama_ref.load_llama2c(path)
    with CModel(path) as cm:
        check_config(cm, ref)
        yield cm, ref


def tinystories_tokens(n):
    text = kgtest.data_path("text/tinystories/TinyStories-valid.head.txt").read_text()
    story = text.split("<|endoftext|>")[1].strip()  # the first complete story
    tok = llama_ref.Llama2cTokenizer(kgtest.data_path("models/stories260K/tok512.bin"))
    ids = tok.encode(story, bos=True)
    assert len(ids) >= n, "story too short"
    return ids[:n]


def test_stories260k_random_tokens(stories):
    cm, ref = stories
    toks = np.random.default_rng(260).integers(0, ref.cfg.vocab_size, 256)
    check_logits(cm.logits(toks), ref.logits(toks), "stories260K random ids")


def test_stories260k_tinystories_text(stories):
    cm, ref = stories
    toks = tinystories_tokens(200)
    check_logits(cm.logits(toks), ref.logits(toks), "stories260K TinyStories text")


@pytest.mark.parametrize("T", [1, 2, 7])
def test_stories260k_short_sequences(stories, T):
    cm, ref = stories
    toks = tinystories_tokens(T)
    check_logits(cm.logits(toks), ref.logits(toks), f"stories260K T={T}")


def test_stories260k_predicts_text(stories):
    """On real text the model must be far better than chance; guards against
    comparing two equally broken forwards (e.g. misread weights)."""
    cm, _ = stories
    toks = tinystories_tokens(200)
    lg = cm.logits(toks).astype(np.float64)
    lp = lg - lg.max(-1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    nll = -lp[np.arange(len(toks) - 1), toks[1:]].mean()
    print(f"stories260K mean NLL on TinyStories text: {nll:.3f} nats (uniform: {np.log(512):.3f})")
    assert nll < 2.0


# ---------------------------------------------------------------- SmolLM2 GGUF

def smollm2_path():
    p = os.environ.get("KG_SMOLLM2_GGUF")
    if not p or not Path(p).is_file():
        pytest.skip("KG_SMOLLM2_GGUF is not set to an existing SmolLM2 GGUF file")
    return Path(p)


def smollm2_text_tokens(path, n):
    """WikiText text through the GGUF's own byte-level BPE (vocab + merges)
    built with the `tokenizers` package."""
    import gguf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    r = gguf.GGUFReader(str(path))
    vocab = r.fields["tokenizer.ggml.tokens"].contents()
    merges = [tuple(m.split(" ", 1)) for m in r.fields["tokenizer.ggml.merges"].contents()]
    tk = Tokenizer(models.BPE({t: i for i, t in enumerate(vocab)}, merges))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    text = kgtest.data_path("text/wikitext-2-raw/wiki.test.raw").read_text()[:4000]
    ids = tk.encode(" ".join(text.split())).ids
    assert len(ids) >= n
    return ids[:n]


def test_smollm2_gguf():
    require_model_api()
    path = smollm2_path()
    ref = llama_ref.load_gguf(path)
    toks = smollm2_text_tokens(path, 96)
    ref_logits = ref.logits(toks)
    with CModel(path) as cm:
        check_config(cm, ref)
        assert cm.config.tied_embeddings == 1, "SmolLM2 has no output.weight: the head is tied"
        c_logits = cm.logits(toks)
    check_logits(c_logits, ref_logits, "SmolLM2 GGUF WikiText")
    agree = float(np.mean(np.argmax(c_logits, -1) == np.argmax(ref_logits, -1)))
    print(f"SmolLM2 top-1 agreement with the oracle: {agree:.3f}")


def test_smollm2_wikitext_perplexity_matches_oracle(tmp_path):
    """`kickgrid ppl` on SmolLM2 (the first WikiText-2 window) equals the
    perplexity the float64 reference computes on the same token ids."""
    path = smollm2_path()
    seqlen = 256
    proc = kgtest.run("ppl", "--model", path, "--dataset", "wikitext2", "--seqlen", seqlen, "--max-windows", 1,
                      "--json", "--threads", "1")
    import json
    got = json.loads(proc.stdout)
    # The same window, tokenized by the kickgrid tokenizer (verified against
    # HF tokenizers elsewhere) and scored by the float64 oracle.
    text = "\n\n".join(kgtest_wikitext_rows())
    ids = [int(t) for t in kgtest.run("tokenize", "--tokenizer", path, "--no-bos", input=text).stdout.split()]
    window = ids[:seqlen]
    ref = llama_ref.load_gguf(path)
    lg = ref.logits(window).astype(np.float64)
    lp = lg - lg.max(-1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    nll = -lp[np.arange(seqlen - 1), window[1:]].mean()
    print(f"SmolLM2 WikiText-2 window ppl: kickgrid {got['ppl']:.6f}, float64 oracle {np.exp(nll):.6f}")
    assert got["ppl"] == pytest.approx(float(np.exp(nll)), rel=1e-4)


def kgtest_wikitext_rows():
    """HF `wikitext` rows of the raw test file (lines with their newline, blank lines as '')."""
    raw = kgtest.data_path("text/wikitext-2-raw/wiki.test.raw").read_text(encoding="utf-8")
    return ["" if not line.strip() else line for line in raw.splitlines(keepends=True)]
