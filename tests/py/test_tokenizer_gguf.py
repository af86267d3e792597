# ctest-labels: py
"""Tokenizers read from GGUF metadata (kg_tokenizer_from_gguf). Vocab-only
GGUF files are written here with the gguf package from the LLaMA-2, LLaMA-3
and GPT-2 vocabularies, the way llama.cpp's converter lays them out, and
must encode exactly as the references (sentencepiece, HF tokenizers, the
llama.cpp test vectors) do."""
import json

import pytest

from kgtest import data_path
from tokenizer_testlib import FMT_GGUF, Tok, TokError, bytelevel_map

gguf = pytest.importorskip("gguf")
spm = pytest.importorskip("sentencepiece")
hf = pytest.importorskip("tokenizers")

NORMAL, UNKNOWN, CONTROL, USER, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def write_gguf(path, model, tokens, scores=None, types=None, merges=None, pre=None, ids=(None, None, None),
               add_bos=None):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    if scores is not None:
        w.add_token_scores(scores)
    if types is not None:
        w.add_token_types(types)
    if merges is not None:
        w.add_token_merges(merges)
    for value, add in zip(ids, (w.add_unk_token_id, w.add_bos_token_id, w.add_eos_token_id)):
        if value is not None:
            add(value)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def vectors(name):
    inp = data_path(f"tokenizers/vectors/ggml-vocab-{name}.gguf.inp").read_text("utf-8")
    out = data_path(f"tokenizers/vectors/ggml-vocab-{name}.gguf.out").read_text("utf-8")
    texts = inp.split("\n__ggml_vocab_test__\n")[:-1]
    want = [[int(x) for x in line.split()] for line in out.split("\n")[:len(texts)]]
    assert len(texts) == len(want) > 40
    return list(zip(texts, want))


def wiki_lines(n=600):
    lines = data_path("text/wikitext-2-raw/wiki.test.raw").read_text("utf-8").split("\n")
    return lines[:n]


@pytest.fixture(scope="module")
def llama2_gguf(tmp_path_factory):
    sp = spm.SentencePieceProcessor(model_file=str(data_path("tokenizers/llama2/tokenizer.model")))
    n = sp.get_piece_size()
    types = [UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else BYTE if sp.is_byte(i)
             else UNUSED if sp.is_unused(i) else NORMAL for i in range(n)]
    path = write_gguf(tmp_path_factory.mktemp("g") / "llama2-vocab.gguf", "llama",
                      [sp.id_to_piece(i) for i in range(n)], [sp.get_score(i) for i in range(n)], types,
                      ids=(0, 1, 2))
    return path, sp


def test_llama_gguf_matches_sentencepiece(llama2_gguf):
    path, sp = llama2_gguf
    tok = Tok(path)
    assert tok.vocab_size == 32000 and tok.bos == 1 and tok.eos == 2 and tok.adds_bos
    for text, want in vectors("llama-spm"):
        assert tok.encode(text) == want, repr(text[:40])
    lines = wiki_lines()
    for line in lines:
        assert tok.encode(line) == sp.encode(line), repr(line[:60])
    whole = "\n".join(lines)
    assert tok.encode(whole) == sp.encode(whole)
    assert tok.decode(sp.encode(whole)).decode("utf-8") == whole


def bpe_tokens_from_json(path):
    d = json.loads(path.read_text("utf-8"))
    vocab = d["model"]["vocab"]
    n = max(list(vocab.values()) + [a["id"] for a in d.get("added_tokens", [])]) + 1
    tokens, types = [""] * n, [NORMAL] * n
    for t, i in vocab.items():
        tokens[i] = t
    for a in d.get("added_tokens", []):
        tokens[a["id"]] = a["content"]
        types[a["id"]] = CONTROL if a["special"] else USER
    merges = [m if isinstance(m, str) else " ".join(m) for m in d["model"]["merges"]]
    return tokens, types, merges


def test_llama3_gguf_matches_vectors_and_hf(tmp_path):
    src = data_path("tokenizers/llama3/tokenizer.json")
    tokens, types, merges = bpe_tokens_from_json(src)
    path = write_gguf(tmp_path / "llama3-vocab.gguf", "gpt2", tokens, types=types, merges=merges, pre="llama-bpe",
                      ids=(None, 128000, 128001))
    tok = Tok(path)
    assert tok.adds_bos and tok.bos == 128000 and "pre=llama-bpe" in tok.describe
    for text, want in vectors("llama-bpe"):
        assert tok.encode(text) == want, repr(text[:40])
    ref = hf.Tokenizer.from_file(str(src))
    whole = "\n".join(wiki_lines(2000))
    assert tok.encode(whole) == ref.encode(whole, add_special_tokens=False).ids


def test_gpt2_gguf_matches_vectors(tmp_path):
    d = data_path("tokenizers/gpt2")
    vocab = json.loads((d / "vocab.json").read_text("utf-8"))
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    merges = [ln for ln in (d / "merges.txt").read_text("utf-8").split("\n")[1:] if ln]
    types = [CONTROL if t == "<|endoftext|>" else NORMAL for t in tokens]
    path = write_gguf(tmp_path / "gpt2-vocab.gguf", "gpt2", tokens, types=types, merges=merges, pre="gpt-2",
                      ids=(None, 50256, 50256))
    tok = Tok(path)
    assert not tok.adds_bos
    for text, want in vectors("gpt-2"):
        assert tok.encode(text) == want, repr(text[:40])
    # the same file from memory
    mem = Tok.from_memory(FMT_GGUF, path.read_bytes(), "gpt2-vocab.gguf")
    assert mem.encode("Hello world, 2024!") == tok.encode("Hello world, 2024!")


def small_bpe(tmp_path, name, **kw):
    m = bytelevel_map()
    tokens = [m[b] for b in range(256)] + ["ab", "abc"]
    args = dict(types=[NORMAL] * len(tokens), merges=["a b", "ab c"], pre="gpt-2")
    args.update(kw)
    return write_gguf(tmp_path / name, "gpt2", tokens, **args)


def test_gguf_bad_tokenizer_metadata(tmp_path):
    good = Tok(small_bpe(tmp_path, "ok.gguf"))
    # ids 0..255 are the bytes' characters, 256 "ab", 257 "abc"
    assert good.encode("abc abx") == [257, ord(" "), 256, ord("x")]
    cases = {
        "pre.gguf": (dict(pre="no-such-pre"), "no-such-pre"),
        "merge.gguf": (dict(merges=["a b", "ab zz"]), "merge 1"),
        "types.gguf": (dict(types=[NORMAL] * 3), "token_type"),
    }
    for name, (kw, needle) in cases.items():
        with pytest.raises(TokError) as e:
            Tok(small_bpe(tmp_path, name, **kw))
        assert name in e.value.msg and needle in e.value.msg, e.value.msg
    with pytest.raises(TokError) as e:
        Tok(write_gguf(tmp_path / "spm-empty.gguf", "llama", ["<unk>", "", "x"], ids=(0, None, None)))
    assert "spm-empty.gguf" in e.value.msg
    with pytest.raises(TokError) as e:
        Tok(write_gguf(tmp_path / "bert.gguf", "bert", ["[UNK]", "a"]))
    assert "bert" in e.value.msg
