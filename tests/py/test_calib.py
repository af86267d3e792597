"""Calibration sets: the reference's C4 sampling reproduced draw for draw,
sequential windows, export/import, determinism, self-generated and task data."""
import ctypes
import json
import random

import numpy as np
import pytest

from kgtest import data_path, lib, run

TOK = "models/stories260K/tok512.bin"


class Tokenizer:
    """The project's tokenizer through ctypes (verified separately against references)."""

    def __init__(self, path):
        self.L = lib()
        self.h = ctypes.c_void_p()
        assert self.L.kg_tokenizer_load(str(path).encode(), ctypes.byref(self.h)) == 0
        self.L.kg_tokenizer_adds_bos.restype = ctypes.c_int
        self.add_bos = self.L.kg_tokenizer_adds_bos(self.h)

    def encode(self, text):
        raw = text.encode()
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        assert self.L.kg_tokenizer_encode(self.h, raw, ctypes.c_size_t(len(raw)), self.add_bos, ctypes.byref(ids),
                                          ctypes.byref(n)) == 0
        out = [ids[i] for i in range(n.value)]
        ctypes.CDLL(None).free(ids)
        return out

    def decode(self, ids):
        arr = (ctypes.c_int32 * len(ids))(*[int(i) for i in ids])
        text = ctypes.c_void_p()
        assert self.L.kg_tokenizer_decode(self.h, arr, ctypes.c_size_t(len(ids)), ctypes.byref(text)) == 0
        out = ctypes.string_at(text).decode("utf-8", "replace")
        ctypes.CDLL(None).free(text)
        return out


def c4_docs():
    with open(data_path("text/c4/c4-train.00000-of-01024.head.jsonl")) as f:
        return [json.loads(line)["text"] for line in f]


def reference_get_c4(docs, tok, nsamples, seqlen, seed):
    """SparseGPT/Wanda datautils.get_c4, written from its definition."""
    random.seed(seed)
    out = []
    for _ in range(nsamples):
        while True:
            i = random.randint(0, len(docs) - 1)
            enc = tok.encode(docs[i])
            if len(enc) > seqlen:
                break
        i = random.randint(0, len(enc) - seqlen - 1)
        out.append(enc[i:i + seqlen])
    return np.array(out, dtype=np.int32)


def build(tmp_path, name, *args):
    out = tmp_path / f"{name}.npy"
    run("calib", "build", "--model", "stories260K", "--out", out, "--threads", "1", *args)
    return np.load(out)


def test_c4_matches_reference_sampling(tmp_path):
    tok = Tokenizer(data_path(TOK))
    got = build(tmp_path, "c4", "--source", "c4", "--nsamples", "6", "--seqlen", "256", "--seed", "3")
    ref = reference_get_c4(c4_docs(), tok, 6, 256, 3)
    assert got.shape == (6, 256)
    np.testing.assert_array_equal(got, ref)


def test_same_seed_same_windows_other_seed_differs(tmp_path):
    a = build(tmp_path, "a", "--nsamples", "4", "--seqlen", "64", "--seed", "11")
    b = build(tmp_path, "b", "--nsamples", "4", "--seqlen", "64", "--seed", "11")
    c = build(tmp_path, "c", "--nsamples", "4", "--seqlen", "64", "--seed", "12")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sequential_takes_first_windows_of_a_text_file(tmp_path):
    text = (data_path("text/tinystories/TinyStories-valid.head.txt")).read_text()
    src = tmp_path / "stories.txt"
    src.write_text(text)
    got = build(tmp_path, "seq", "--source", f"file:{src}", "--nsamples", "5", "--seqlen", "100",
                "--sampling", "sequential")
    ids = Tokenizer(data_path(TOK)).encode(text)
    np.testing.assert_array_equal(got, np.array(ids[:500], dtype=np.int32).reshape(5, 100))


def test_import_gives_the_same_pruned_model(tmp_path):
    exported = tmp_path / "set.npy"
    run("calib", "build", "--model", "stories260K", "--out", exported, "--nsamples", "8", "--seqlen", "128",
        "--threads", "1")
    common = ["prune", "--model", "stories260K", "--method", "wanda", "--sparsity", "0.5", "--ppl", "tinystories",
              "--ppl-seqlen", "256", "--threads", "1"]
    direct = run(*common, "--calib", "c4", "--nsamples", "8", "--seqlen", "128").stdout
    imported = run(*common, "--calib", f"tokens:{exported}").stdout
    line = lambda s: [l for l in s.splitlines() if l.startswith("perplexity")][0]
    assert line(direct) == line(imported)


def test_bad_token_file_is_rejected(tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[1, 2, 3, 100000]], dtype=np.int32))
    proc = run("prune", "--model", "stories260K", "--method", "wanda", "--calib", f"tokens:{bad}", check=False)
    assert proc.returncode == 1 and "outside the vocabulary" in proc.stderr
    bad.write_bytes(b"not numpy")
    proc = run("calib", "show", bad, check=False)
    assert proc.returncode == 1 and "not a .npy file" in proc.stderr


def test_self_generated_is_deterministic_and_in_vocab(tmp_path):
    a = build(tmp_path, "s1", "--source", "self", "--nsamples", "3", "--seqlen", "32", "--seed", "5")
    b = build(tmp_path, "s2", "--source", "self", "--nsamples", "3", "--seqlen", "32", "--seed", "5")
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 32) and a.min() >= 0 and a.max() < 512


def test_task_source_uses_task_examples(tmp_path):
    data_path("tasks/boolq.jsonl")
    got = build(tmp_path, "task", "--source", "task:boolq", "--nsamples", "4", "--seqlen", "128")
    assert got.shape == (4, 128)
    text = " ".join(Tokenizer(data_path(TOK)).decode(row) for row in got)
    # BoolQ calibration texts are passages with their question and gold answer.
    assert "Question:" in text or "Answer:" in text, text[:300]
