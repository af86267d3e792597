# ctest-labels: py
"""kickgrid's tokenizers against independent references on real text:
sentencepiece (LLaMA-2 tokenizer.model and its llama2.c export), HF
tokenizers (LLaMA-3 tokenizer.json, GPT-2 vocab.json + merges.txt, SmolLM2's
GGUF vocabulary with its pre-tokenizer), and a Python transcription of
llama2.c's encode for stories260K's tok512.bin. Also the encode speed."""
import os
import time

import pytest

from kgtest import data_path
from tokenizer_testlib import Tok, llama2c_encode, read_llama2c_vocab

spm = pytest.importorskip("sentencepiece")
hf = pytest.importorskip("tokenizers")

WIKI = "text/wikitext-2-raw/wiki.test.raw"


def wiki_text():
    return data_path(WIKI).read_bytes().decode("utf-8")


def first_mismatch(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def assert_same_ids(ours, ref, what):
    if ours != ref:
        i = first_mismatch(ours, ref)
        raise AssertionError(f"{what}: first difference at token {i} of {len(ref)}: "
                             f"ours {ours[max(0, i - 3):i + 5]} ref {ref[max(0, i - 3):i + 5]} "
                             f"(lengths {len(ours)} vs {len(ref)})")


def timed_encode(tok, text):
    b = text.encode("utf-8")
    t0 = time.perf_counter()
    ids = tok.encode(b)
    dt = time.perf_counter() - t0
    print(f"{tok.describe}: {len(b) / dt / 1e6:.1f} MB/s ({len(ids)} tokens in {dt:.3f} s)")
    return ids, dt


@pytest.fixture(scope="module")
def llama2_sp():
    return spm.SentencePieceProcessor(model_file=str(data_path("tokenizers/llama2/tokenizer.model")))


@pytest.mark.parametrize("rel", ["tokenizers/llama2/tokenizer.model", "tokenizers/llama2/tokenizer.bin"])
def test_llama2_wikitext_matches_sentencepiece(rel, llama2_sp):
    text = wiki_text()
    tok = Tok(data_path(rel))
    ids, dt = timed_encode(tok, text)
    assert_same_ids(ids, llama2_sp.encode(text), rel)
    assert dt < 3.0, f"{rel}: WikiText-2 took {dt:.2f} s"
    assert tok.decode(ids).decode("utf-8") == llama2_sp.decode(ids)
    # line by line too: short texts exercise the dummy prefix at every start
    lines = text.split("\n")[:400]
    for line in lines:
        assert tok.encode(line) == llama2_sp.encode(line), repr(line[:60])
    assert tok.encode(lines[5], bos=True) == [1] + llama2_sp.encode(lines[5])


def test_llama3_wikitext_matches_hf_tokenizers():
    path = data_path("tokenizers/llama3/tokenizer.json")
    ref = hf.Tokenizer.from_file(str(path))
    text = wiki_text()
    tok = Tok(path)
    ids, dt = timed_encode(tok, text)
    assert_same_ids(ids, ref.encode(text, add_special_tokens=False).ids, "llama3")
    assert dt < 3.0
    assert tok.decode(ids).decode("utf-8") == text
    assert tok.adds_bos and tok.bos == ref.token_to_id("<|begin_of_text|>")


def gpt2_reference():
    d = data_path("tokenizers/gpt2")
    ref = hf.Tokenizer(hf.models.BPE.from_file(str(d / "vocab.json"), str(d / "merges.txt")))
    ref.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    return ref


def test_gpt2_wikitext_matches_hf_tokenizers():
    ref = gpt2_reference()
    text = wiki_text()
    tok = Tok(data_path("tokenizers/gpt2/vocab.json"))
    ids, dt = timed_encode(tok, text)
    assert_same_ids(ids, ref.encode(text, add_special_tokens=False).ids, "gpt2")
    assert dt < 3.0
    assert tok.decode(ids).decode("utf-8") == text
    assert not tok.adds_bos and tok.eos == 50256


def test_smollm2_gguf_matches_hf_rebuilt_tokenizer():
    path = os.environ.get("KG_SMOLLM2_GGUF")
    if not path or not os.path.exists(path):
        pytest.skip("KG_SMOLLM2_GGUF not set")
    gguf = pytest.importorskip("gguf")
    r = gguf.GGUFReader(path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    vocab = {t: i for i, t in enumerate(strings("tokenizer.ggml.tokens"))}
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    assert bytes(r.fields["tokenizer.ggml.pre"].parts[-1]).decode() == "smollm"
    # SmolLM2's tokenizer.json: normalizer null, pre_tokenizer
    # Sequence[Digits(individual_digits=true), ByteLevel(add_prefix_space=false,
    # use_regex=true)], BPE without unk_token (missing bytes are dropped).
    ref = hf.Tokenizer(hf.models.BPE(vocab, merges))
    ref.pre_tokenizer = hf.pre_tokenizers.Sequence(
        [hf.pre_tokenizers.Digits(individual_digits=True),
         hf.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok = Tok(path)
    text = wiki_text()
    ids, dt = timed_encode(tok, text)
    assert_same_ids(ids, ref.encode(text, add_special_tokens=False).ids, "smollm2")
    for s in ["Room 101 costs $3,995.50!", "tabs\tand\u00a0nbsp 12\u0663", "bytes \x04\x06 missing from the vocab"]:
        assert tok.encode(s) == ref.encode(s, add_special_tokens=False).ids, repr(s)
    assert not tok.adds_bos and tok.eos == vocab["<|im_end|>"]
    assert tok.decode(ids).decode("utf-8") == text


def test_tok512_matches_llama2c_encode():
    path = data_path("models/stories260K/tok512.bin")
    toks, scores = read_llama2c_vocab(path)
    tok = Tok(path)
    lines = data_path("text/tinystories/TinyStories-valid.head.txt").read_bytes().split(b"\n")
    sample = [ln for ln in lines[::4] if ln][:300]
    assert len(sample) > 100
    for line in sample:
        assert tok.encode(line) == llama2c_encode(toks, scores, line), line[:60]
    text = data_path("text/tinystories/TinyStories-valid.head.txt").read_bytes()
    ids, dt = timed_encode(tok, text.decode("utf-8"))
    assert tok.decode(ids) == text
