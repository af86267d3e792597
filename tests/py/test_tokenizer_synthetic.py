# ctest-labels: py
"""Tokenizer corner cases on small vocabularies trained here, each checked
against the reference implementation loading the very same file:
sentencepiece for SentencePiece models (user-defined pieces, UNUSED pieces,
pieces spanning a word start, whitespace squeezing, <unk> without byte
fallback, invalid UTF-8), a transcription of llama2.c's encode for llama2.c
exports, and HF tokenizers for tokenizer.json variants (pre-tokenizer
shapes, ignore_merges, added tokens, missing bytes, unk + fuse_unk)."""
import io
import json
import random

import pytest

from kgtest import data_path
from tokenizer_testlib import (FMT_HF_JSON, FMT_LLAMA2C, FMT_SPM_MODEL, Tok, TokError, llama2c_bin, llama2c_encode,
                               spm_model_proto)

spm = pytest.importorskip("sentencepiece")
hf = pytest.importorskip("tokenizers")

NORMAL, UNKNOWN, CONTROL, USER, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
WS = "\u2581"


def story_lines():
    lines = data_path("text/tinystories/TinyStories-valid.head.txt").read_text("utf-8").split("\n")
    return [ln for ln in lines if ln.strip()]


def probe_texts(rng, lines):
    """Real lines plus strings aimed at the edges of both encoders."""
    fixed = ["", " ", "   ", "a", " a", "a ", "  lead and trail  ", "double  space\t\ttab\nnew\r\nline",
             "<tag>ab<tag> xab ab", "e the e  the se s ", "Omega \u03a9 snow \u2603 llama \U0001f999 \u00e9t\u00e9",
             "digits 1234567 and 3.14", "<|sp|> is plain text", "\u2581 literal lower block", "unknown \u4e2d\u6587",
             "mixed\u00a0nbsp\u3000wide", "x" * 300 + " " + "y z" * 50]
    pieces = ["the", " ", "  ", "e", "t", "a", "b", "ab", "<tag>", "\n", "1", "\u00e9", "\U0001f999", "Q", ".", "'s"]
    rand = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))) for _ in range(150)]
    return fixed + rng.sample(lines, 150) + rand


@pytest.fixture(scope="module")
def trained_spm():
    lines = story_lines()
    m = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines[:400]), model_writer=m, model_type="bpe",
                                   vocab_size=600, user_defined_symbols=["<tag>", "ab"], byte_fallback=True,
                                   minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=m.getvalue())
    pieces = []
    for i in range(sp.get_piece_size()):
        p = sp.id_to_piece(i)
        typ = (UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else BYTE if sp.is_byte(i)
               else USER if p in ("<tag>", "ab") else NORMAL)
        pieces.append((p, sp.get_score(i), typ))
    return pieces, lines


def compare_spm(pieces, texts, name, **opts):
    proto = spm_model_proto(pieces, **opts)
    ref = spm.SentencePieceProcessor(model_proto=proto)
    ours = Tok.from_memory(FMT_SPM_MODEL, proto, name)
    for t in texts:
        want = ref.encode(t)
        got = ours.encode(t)
        assert got == want, f"{name}: {t[:50]!r}: ours {got[:20]} ref {want[:20]}"
        if isinstance(t, str):
            assert ours.decode(got).decode("utf-8") == ref.decode(want), f"{name}: decode of {t[:50]!r}"
    return ours


def test_spm_as_trained(trained_spm):
    pieces, lines = trained_spm
    rng = random.Random(1)
    texts = probe_texts(rng, lines) + [b"a \xff b", b"\xc3(\xe2\x82 x", b"\xf0\x9f\xa6"]
    ours = compare_spm(pieces, texts, "trained", byte_fallback=True)
    assert "byte_fallback" in ours.describe


def test_spm_squeeze_spaces_and_unk_runs(trained_spm):
    """remove_extra_whitespaces, and no byte fallback: unknown characters
    become <unk>, a run of them a single <unk>."""
    pieces, lines = trained_spm
    no_bytes = [p for p in pieces if p[2] != BYTE]
    texts = probe_texts(random.Random(2), lines) + ["\u4e2d\u6587\u4e2d x \u4e2d", "  \u03a9\u03a9  "]
    compare_spm(no_bytes, texts, "squeeze", byte_fallback=False, remove_extra_ws=True)


def test_spm_pieces_across_word_starts(trained_spm):
    """Pieces that contain "e▁" can merge across a word start, so the
    encoder must not cut the text into words for this vocabulary."""
    pieces, lines = trained_spm
    extra = [("e" + WS, 5.0, NORMAL), ("e" + WS + "the", 4.0, NORMAL), ("s" + WS, -50.0, NORMAL),
             (WS + WS + "a", 3.0, NORMAL), ("." + WS, 1.0, NORMAL)]
    texts = probe_texts(random.Random(3), lines)
    ours = compare_spm(pieces + extra, texts, "cross", byte_fallback=True)
    # the merge across the word start did happen
    assert len(pieces) in ours.encode("e the")


def test_spm_unused_pieces(trained_spm):
    """UNUSED pieces may be merged into but are emitted as the pieces they
    were merged from."""
    pieces, lines = trained_spm
    marked = [(p, s, UNUSED if p in (WS + "the", "he", "nd", WS + "a") else t) for p, s, t in pieces]
    compare_spm(marked, probe_texts(random.Random(4), lines), "unused", byte_fallback=True)


def test_spm_without_dummy_prefix(trained_spm):
    pieces, lines = trained_spm
    compare_spm(pieces, probe_texts(random.Random(5), lines), "noprefix", byte_fallback=True, add_dummy_prefix=False)


def llama2c_tokens(pieces, extra=()):
    """A llama2.c export of the trained vocabulary: <unk> <s> </s>, the 256
    byte tokens, then the rest; ▁ written as a space."""
    head = [(b"<unk>", 0.0), (b"\n<s>\n", 0.0), (b"\n</s>\n", 0.0)]
    head += [(f"<0x{b:02X}>".encode(), 0.0) for b in range(256)]
    rest = [(p.replace(WS, " ").encode(), s) for p, s, t in list(pieces) + list(extra) if t == NORMAL]
    return head + rest


@pytest.mark.parametrize("cross", [False, True])
def test_llama2c_export_matches_llama2c_encode(trained_spm, cross):
    pieces, lines = trained_spm
    extra = [("e" + WS, 5.0, NORMAL), ("e" + WS + "the", 4.0, NORMAL)] if cross else []
    toks = llama2c_tokens(pieces, extra)
    ours = Tok.from_memory(FMT_LLAMA2C, llama2c_bin(toks), "synthetic.bin")
    words, scores = [t for t, _ in toks], [s for _, s in toks]
    for t in probe_texts(random.Random(6), lines):
        b = t.encode("utf-8")
        assert ours.encode(b) == llama2c_encode(words, scores, b), repr(t[:50])
    for b in [b"a \xff b", b"\xe2\x82 x\x80"]:
        assert ours.encode(b) == llama2c_encode(words, scores, b), repr(b)


# ---- HF tokenizer.json variants ----
def train_hf(pre, lines, alphabet=True, unk=None, fuse_unk=False, ignore_merges=False, added=("<tag>", "  ")):
    model = hf.models.BPE(unk_token=unk, fuse_unk=fuse_unk, ignore_merges=ignore_merges)
    tk = hf.Tokenizer(model)
    tk.pre_tokenizer = pre
    specials = ["<|sp|>"] + ([unk] if unk else [])
    kw = {"initial_alphabet": hf.pre_tokenizers.ByteLevel.alphabet()} if alphabet else {}
    tk.train_from_iterator(lines, hf.trainers.BpeTrainer(vocab_size=700, special_tokens=specials, **kw))
    tk.add_tokens(list(added))
    tk.encode_special_tokens = True  # special tokens are plain text, as in kg_tokenizer_encode
    tk.decoder = hf.decoders.ByteLevel()
    return tk


LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")


def hf_variants():
    P = hf.pre_tokenizers
    return {
        "bytelevel_prefix_space": dict(pre=P.ByteLevel(add_prefix_space=True, use_regex=True)),
        "llama3_split_ignore_merges": dict(pre=P.Sequence([P.Split(hf.Regex(LLAMA3_RE), "isolated"),
                                                           P.ByteLevel(add_prefix_space=False, use_regex=False)]),
                                          ignore_merges=True),
        "digits_grouped_missing_bytes": dict(pre=P.Sequence([P.Digits(individual_digits=False),
                                                             P.ByteLevel(add_prefix_space=False, use_regex=True)]),
                                            alphabet=False),
        "split_removed": dict(pre=P.Sequence([P.Split(" ", "removed"), P.ByteLevel(add_prefix_space=False,
                                                                                    use_regex=False)])),
        "unk_fused": dict(pre=P.ByteLevel(add_prefix_space=False, use_regex=True), alphabet=False, unk="<unk>",
                          fuse_unk=True),
        "unk_unfused": dict(pre=P.ByteLevel(add_prefix_space=False, use_regex=True), alphabet=False, unk="<unk>"),
    }


@pytest.mark.parametrize("variant", sorted(hf_variants()))
def test_hf_json_variant(variant):
    lines = story_lines()
    tk = train_hf(lines=lines[:400], **hf_variants()[variant])
    js = tk.to_str().encode()
    ours = Tok.from_memory(FMT_HF_JSON, js, variant)
    rng = random.Random(7)
    for t in probe_texts(rng, lines) + ["\x04\x06 control bytes", "\u00ff\u00fe\u00fd", "123456789 0 12"]:
        want = tk.encode(t, add_special_tokens=False).ids
        got = ours.encode(t)
        assert got == want, f"{variant}: {t[:50]!r}: ours {got[:20]} ref {want[:20]}"
    text = "".join(lines[:50])
    want = tk.encode(text, add_special_tokens=False).ids
    assert ours.decode(want).decode("utf-8", "replace") == tk.decode(want, skip_special_tokens=True)


def test_hf_json_rejects_what_it_cannot_do_exactly():
    tk = train_hf(hf.pre_tokenizers.Whitespace(), story_lines()[:100])
    with pytest.raises(TokError) as e:
        Tok.from_memory(FMT_HF_JSON, tk.to_str().encode(), "ws.json")
    assert "ws.json" in e.value.msg and "Whitespace" in e.value.msg
    d = json.loads(train_hf(hf.pre_tokenizers.ByteLevel(), story_lines()[:100]).to_str())
    d["normalizer"] = {"type": "Lowercase"}
    with pytest.raises(TokError) as e:
        Tok.from_memory(FMT_HF_JSON, json.dumps(d).encode(), "lc.json")
    assert "Lowercase" in e.value.msg


def test_nfc_normalizer_is_exact_or_refused():
    """A tokenizer.json asking for NFC: text that passes the NFC quick check
    encodes as HF does (NFC leaves it unchanged); other text is refused
    instead of being encoded without normalization."""
    import unicodedata
    lines = story_lines()
    tk = train_hf(hf.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), lines[:300])
    tk.normalizer = hf.normalizers.NFC()
    ours = Tok.from_memory(FMT_HF_JSON, tk.to_str().encode(), "nfc.json")
    wiki = data_path("text/wikitext-2-raw/wiki.test.raw").read_text("utf-8").split("\n")
    passed = 0
    for t in wiki[:3000] + ["\u00e9t\u00e9 caf\u00e9", "\u0915\u093c\u0916", "a\u0316\u0301", "\u4e2d\u6587"]:
        try:
            got = ours.encode(t)
        except TokError as e:
            assert "nfc.json" in e.msg and "NFC" in e.msg
            assert not unicodedata.is_normalized("NFC", t) or any(ord(c) >= 0x300 for c in t), repr(t[:40])
            continue
        assert unicodedata.is_normalized("NFC", t), repr(t[:40])
        assert got == tk.encode(t, add_special_tokens=False).ids, repr(t[:40])
        passed += 1
    assert passed > 2900
    for t in ["e\u0301", "a\u0301\u0316", "\u212b"]:  # decomposed, misordered marks, a singleton
        with pytest.raises(TokError):
            ours.encode(t)


def test_unicode_tables_match_unicodedata():
    import ctypes
    import unicodedata
    from kgtest import lib
    L = lib()
    L.kg_unicode_ccc.argtypes = L.kg_unicode_nfc_qc_yes.argtypes = [ctypes.c_uint32]
    for cp in list(range(0, 0x3400)) + list(range(0x3400, 0x110000, 97)):
        if 0xD800 <= cp < 0xE000:
            continue
        assert L.kg_unicode_ccc(cp) == unicodedata.combining(chr(cp)), hex(cp)
        if not unicodedata.is_normalized("NFC", chr(cp)):
            assert not L.kg_unicode_nfc_qc_yes(cp), hex(cp)
