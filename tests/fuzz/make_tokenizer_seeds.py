#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_tokenizer (tests/fuzz/corpus/tokenizer/):
tiny valid tokenizer files, each prefixed by the format byte the harness
reads first (0 llama2.c .bin, 1 SentencePiece .model, 2 tokenizer.json,
3 GGUF). The unit test test_tokenizer_errors also loads them.
Run: python3 tests/fuzz/make_tokenizer_seeds.py"""
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "py"))
from tokenizer_testlib import bytelevel_map, llama2c_bin, spm_model_proto  # noqa: E402

WS = "\u2581"
MERGED = ["th", "he", "the", "an", "in", "and", "er", "re", "on", "at", "ing", "ed", "it", "is", "ou", "was"]


def spm_pieces():
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("<tag>", 0.0, 4)]
    pieces += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    score = 0.0
    for p in [WS + "t", WS + "a", WS + "the", WS + "s"] + MERGED + [WS + WS, "e" + WS]:
        pieces.append((p, score, 1))
        score -= 1.0
    pieces.append(("ng", score, 5))  # UNUSED
    for c in WS + "etaoinshrdlucmwfgypbvkjxqz.,!?'":
        score -= 1.0
        pieces.append((c, score, 1))
    return pieces


def llama2c_seed():
    toks = [(b"<unk>", 0.0), (b"\n<s>\n", 0.0), (b"\n</s>\n", 0.0)]
    toks += [(f"<0x{b:02X}>".encode(), 0.0) for b in range(256)]
    score = 0.0
    for p in [" t", " a", " the", " s"] + MERGED:
        toks.append((p.encode(), score))
        score -= 1.0
    for c in " etaoinshrdlucmwfgypbvkjxqz.,!?'":
        score -= 1.0
        toks.append((c.encode(), score))
    return llama2c_bin(toks)


def hf_json(pre):
    m = bytelevel_map()
    vocab = {m[b]: b for b in range(256)}
    pairs = [("t", "h"), ("h", "e"), ("th", "e"), ("a", "n"), ("i", "n"), ("an", "d"), ("\u0120", "t"),
             ("\u0120t", "he"), ("\u0120", "a"), ("\u0120", "and"), ("1", "2"), ("12", "3")]
    merges = []
    for a, b in pairs:
        vocab.setdefault(a + b, len(vocab))
        merges.append(f"{a} {b}")
    n = len(vocab)
    added = [{"id": n, "content": "<|bos|>", "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True},
             {"id": n + 1, "content": "<tag>", "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": True, "special": False}]
    post = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|bos|>", "type_id": 0}},
                                                     {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [], "special_tokens": {"<|bos|>": {"id": "<|bos|>", "ids": [n], "tokens": ["<|bos|>"]}}}
    d = {"version": "1.0", "added_tokens": added, "normalizer": None, "pre_tokenizer": pre, "post_processor": post,
         "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "dropout": None, "unk_token": None,
                                                     "fuse_unk": False, "byte_fallback": False,
                                                     "ignore_merges": True, "vocab": vocab, "merges": merges}}
    return json.dumps(d, ensure_ascii=False).encode("utf-8")


def gguf_seed(tmp):
    import gguf
    m = bytelevel_map()
    tokens = [m[b] for b in range(256)] + ["th", "the", "<|eot|>"]
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([1] * 258 + [3])
    w.add_token_merges(["t h", "th e"])
    w.add_eos_token_id(258)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tmp.read_bytes()


def main():
    out = HERE / "corpus" / "tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    llama3_split = {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                                                 "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                                                 "\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": False}
    seeds = {
        "llama2c.bin": b"\x00" + llama2c_seed(),
        "spm.model": b"\x01" + spm_model_proto(spm_pieces(), byte_fallback=True),
        "spm-squeeze.model": b"\x01" + spm_model_proto([p for p in spm_pieces() if p[2] != 6], remove_extra_ws=True),
        "llama3-style.json": b"\x02" + hf_json({"type": "Sequence", "pretokenizers": [
            llama3_split, {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}),
        "digits-bytelevel.json": b"\x02" + hf_json({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}]}),
        "vocab.gguf": b"\x03" + gguf_seed(out / ".tmp.gguf"),
    }
    os.unlink(out / ".tmp.gguf")
    for name, data in seeds.items():
        (out / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
