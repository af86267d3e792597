"""Text dataset readers (io/datasets.h) against independent Python rebuilds.

WikiText-2: the reference (SparseGPT/Wanda datautils) tokenizes
"\\n\\n".join(load_dataset('wikitext', 'wikitext-2-raw-v1', split='test')['text']).
The Hugging Face `wikitext` loading script (huggingface/datasets,
datasets/wikitext/wikitext.py, _generate_examples) makes the rows with

    with open(data_file, encoding="utf-8") as f:
        for idx, row in enumerate(f):
            yield idx, {"text": row if row.strip() else ""}

so the oracle below does exactly that with Python's own file iteration
(universal newlines, "\\n" kept, whitespace-only rows as ""), never looking at
the C code. C4: ' '.join(valdata[:1100]['text']) of the validation shard.
"""
import ctypes
import json
import random

import pytest

from kgtest import DATA_DIR, data_path, last_error, lib


class TextList(ctypes.Structure):
    _fields_ = [("texts", ctypes.POINTER(ctypes.POINTER(ctypes.c_char))),
                ("lens", ctypes.POINTER(ctypes.c_size_t)),
                ("count", ctypes.c_size_t),
                ("capacity", ctypes.c_size_t)]


@pytest.fixture(scope="module")
def api():
    L = lib()
    L.kg_paths_set_data_dir.argtypes = [ctypes.c_char_p]
    L.kg_paths_set_data_dir(str(DATA_DIR).encode())
    for name in ("kg_jsonl_texts",):
        getattr(L, name).argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(TextList)]
    for name in ("kg_wikitext_rows", "kg_tinystories_texts"):
        getattr(L, name).argtypes = [ctypes.c_char_p, ctypes.POINTER(TextList)]
    L.kg_wikitext_text.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
    L.kg_wikitext2_test_text.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
    L.kg_c4_validation_text.argtypes = [ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p),
                                        ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]
    L.kg_text_free.argtypes = [ctypes.c_void_p]
    L.kg_text_list_free.argtypes = [ctypes.POINTER(TextList)]
    return L


def texts_of(api, fn, *args):
    """Calls a list-filling reader; returns (rc, [bytes])."""
    tl = TextList()
    rc = fn(*args, ctypes.byref(tl))
    out = [ctypes.string_at(tl.texts[i], tl.lens[i]) for i in range(tl.count)]
    api.kg_text_list_free(ctypes.byref(tl))
    return rc, out


def text_of(api, fn, *args):
    p = ctypes.c_void_p()
    n = ctypes.c_size_t()
    rc = fn(*args, ctypes.byref(p), ctypes.byref(n))
    data = ctypes.string_at(p.value, n.value) if rc == 0 else None
    api.kg_text_free(p)
    return rc, data


def hf_wikitext_rows(path):
    with open(path, encoding="utf-8") as f:
        return [row if row.strip() else "" for row in f]


def test_wikitext2_test_join_matches_hf_rule(api):
    path = data_path("text/wikitext-2-raw/wiki.test.raw")
    rows = hf_wikitext_rows(path)
    assert len(rows) == 4358 and rows.count("") == 1467
    expected = "\n\n".join(rows).encode("utf-8")
    rc, got = text_of(api, api.kg_wikitext2_test_text)
    assert rc == 0, last_error()
    assert got == expected
    rc, got_rows = texts_of(api, api.kg_wikitext_rows, str(path).encode())
    assert rc == 0 and [r.decode() for r in got_rows] == rows


def test_wikitext_rule_on_random_files(api, tmp_path):
    rng = random.Random(7)
    pieces = ["word", " ", "\t", "\u00a0", "\u3000", "\u2028", "\x1c", "é", "= Title =", "\r\n", "\n", "\r", "\x85"]
    for trial in range(30):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
        p = tmp_path / f"w{trial}.raw"
        p.write_bytes(text.encode("utf-8"))
        rc, got = text_of(api, api.kg_wikitext_text, str(p).encode())
        assert rc == 0, last_error()
        assert got == "\n\n".join(hf_wikitext_rows(p)).encode("utf-8"), repr(text)


def test_c4_readers_match_json(api):
    for rel, count in [("text/c4/c4-train.00000-of-01024.head.jsonl", 1041),
                       ("text/c4/c4-validation.00000-of-00008.head.jsonl", 1025)]:
        path = data_path(rel)
        docs = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        assert len(docs) == count
        rc, got = texts_of(api, api.kg_jsonl_texts, str(path).encode(), b"text")
        assert rc == 0, last_error()
        assert [g.decode("utf-8") for g in got] == docs


@pytest.mark.parametrize("n_docs", [1, 7, 1100])
def test_c4_validation_protocol_join(api, n_docs):
    path = data_path("text/c4/c4-validation.00000-of-00008.head.jsonl")
    docs = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    expected = " ".join(docs[:n_docs]).encode("utf-8")
    p = ctypes.c_void_p()
    n = ctypes.c_size_t()
    used = ctypes.c_size_t()
    rc = api.kg_c4_validation_text(n_docs, ctypes.byref(p), ctypes.byref(n), ctypes.byref(used))
    assert rc == 0, last_error()
    assert ctypes.string_at(p.value, n.value) == expected
    assert used.value == min(n_docs, len(docs))
    api.kg_text_free(p)


def tinystories_oracle(raw):
    stories, cur = [], []
    for line in raw.split("\n"):
        if line.strip(" \t\r") == "<|endoftext|>":
            stories.append("\n".join(cur))
            cur = []
        else:
            cur.append(line)
    stories.append("\n".join(cur))
    stories = [s.strip(" \t\n\r\v\f") for s in stories]
    return [s for s in stories if s]


def test_tinystories_split(api):
    path = data_path("text/tinystories/TinyStories-valid.head.txt")
    raw = path.read_bytes().decode("utf-8")
    expected = tinystories_oracle(raw)
    assert len(expected) == 232  # a leading partial story + 231 complete ones (SOURCES.md)
    rc, got = texts_of(api, api.kg_tinystories_texts, str(path).encode())
    assert rc == 0, last_error()
    assert [g.decode() for g in got] == expected


def test_malformed_jsonl_names_file_and_line(api, tmp_path):
    cases = {
        '{"text": "a"}\n{"text": "b"}\n{"text": "c",}\n': (3, "invalid JSON"),
        '{"text": "a"}\n\n{"title": "b"}\n': (3, 'no field "text"'),
        '{"text": ["a"]}\n': (1, "is not a string"),
        '{"text": "a"}\n{"text": "b"}{"text": "c"}\n': (2, "unexpected text"),
    }
    for i, (content, (line, words)) in enumerate(cases.items()):
        p = tmp_path / f"bad{i}.jsonl"
        p.write_text(content)
        rc, _ = texts_of(api, api.kg_jsonl_texts, str(p).encode(), b"text")
        msg = last_error()
        assert rc == -2, msg  # KG_ERR_FORMAT
        assert f"{p}:{line}:" in msg and words in msg, msg
