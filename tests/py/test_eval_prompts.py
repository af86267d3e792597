# ctest-labels: py
"""Task prompts built in C (io/tasks*.c) against an independent Python
rebuild of lm-evaluation-harness's doc_to_text/doc_to_choice/fewshot_context
(tests/py/oracles/eval_ref.py) on the shared task files: zero-shot and
few-shot (random.Random(1234).sample drawn per document in order, the
evaluated document removed), MMLU's first_n dev shots, LLM-KICK's MMLU and
FreebaseQA prompts; and the C port of CPython's `random` against CPython."""
import random
from ctypes import byref, c_double, c_size_t, c_uint64

import numpy as np
import pytest

import kgtest
from oracles import eval_ref
from oracles.eval_capi import PyRand, Task, lib

TASKS = ["boolq", "piqa", "arc_easy", "arc_challenge", "openbookqa", "winogrande", "lambada", "hellaswag",
         "triviaqa", "freebaseqa"]


def _data_dir():
    return kgtest.data_path("tasks").parent


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("k", [0, 3])
def test_harness_prompts(task, k):
    data_dir = _data_dir()
    docs = eval_ref.load_docs(data_dir, task)
    t = Task(task, data_dir)
    try:
        assert t.n_docs == len(docs)
        ref = eval_ref.Harness(task, docs)
        state = t.fewshot_state(1234)
        style = 1 if task in ("freebaseqa", "triviaqa") else 0
        # documents in ascending order, like the harness; 40 of them spread over the file
        for i in sorted(set(np.linspace(0, len(docs) - 1, 40).astype(int).tolist())):
            want = ref.prompt(i, k)
            got = t.prompt(i, k, style, state)
            assert got == tuple(want) or list(got) == list(want), f"{task} doc {i} k={k}:\nC:  {got!r}\nPy: {want!r}"
    finally:
        t.close()


@pytest.mark.parametrize("style", ["harness", "llmkick"])
def test_mmlu_prompts(style):
    data_dir = _data_dir()
    mmlu = eval_ref.load_mmlu(data_dir)
    t = Task("mmlu", data_dir)
    try:
        assert t.n_docs == sum(len(v[1]) for v in mmlu.values())
        assert t.ptr.contents.n_subjects == len(mmlu) == 57
        idx = 0
        for subject, (dev, test) in mmlu.items():
            for j in (0, len(test) - 1):  # first and last question of each subject
                for k in (0, 5):
                    got, conts = t.prompt(idx + j, k, 0 if style == "harness" else 1)
                    want = eval_ref.mmlu_prompt(subject, dev, test[j], k, style)
                    assert got == [want], f"{subject} q{j} k={k}"
                    assert conts == [" A", " B", " C", " D"]
            idx += len(test)
    finally:
        t.close()


def test_pyrandom_matches_cpython():
    L = lib()
    for seed in (0, 1, 1234, 2**32 + 5, 2**63 - 1):
        r, ref = PyRand(), random.Random(seed)
        L.kg_pyrand_seed(byref(r), c_uint64(seed))
        for _ in range(700):  # crosses a 624-word regeneration
            assert L.kg_pyrand_random(byref(r)) == ref.random()
        for k in (1, 7, 32, 33, 53, 64):
            assert L.kg_pyrand_getrandbits(byref(r), k) == ref.getrandbits(k)
        for n in (1, 2, 3, 10, 1000, 2**40 + 3):
            assert L.kg_pyrand_randbelow(byref(r), c_uint64(n)) == ref._randbelow(n)
    # random.sample: the pool algorithm (n small) and the set algorithm (n large)
    for n, k in ((10, 4), (30, 6), (500, 4), (3270, 6), (14042, 26)):
        for seed in (1234, 7):
            r, ref = PyRand(), random.Random(seed)
            L.kg_pyrand_seed(byref(r), c_uint64(seed))
            for _ in range(5):
                out = (c_size_t * k)()
                assert L.kg_pyrand_sample(byref(r), c_size_t(n), c_size_t(k), out) == 0
                assert list(out) == ref.sample(range(n), k), (n, k, seed)
    r, ref = PyRand(), random.Random(3)
    L.kg_pyrand_seed(byref(r), c_uint64(3))
    out = (c_size_t * 50)()
    L.kg_pyrand_choices(byref(r), c_size_t(17), c_size_t(50), out)
    assert list(out) == ref.choices(range(17), k=50)


def test_calibration_texts_carry_answers():
    from oracles.eval_capi import check
    import ctypes
    L = lib()
    L.kg_paths_set_data_dir(str(_data_dir()).encode())

    class TextList(ctypes.Structure):
        _fields_ = [("texts", ctypes.POINTER(ctypes.c_char_p)), ("lens", ctypes.POINTER(c_size_t)),
                    ("count", c_size_t), ("capacity", c_size_t)]
    for task in ("piqa", "hellaswag", "lambada", "triviaqa"):
        docs = eval_ref.load_docs(_data_dir(), task)
        tl = TextList()
        check(L.kg_task_calibration_texts(task.encode(), byref(tl)), "kg_task_calibration_texts")
        try:
            assert tl.count == len(docs)
            for i in (0, len(docs) // 2, len(docs) - 1):
                d = docs[i]
                if task == "lambada":
                    want = d["text"] + d["target"]
                elif task == "triviaqa":
                    want = d["text"] + " " + d["answers"][0]
                else:
                    want = d["text"] + " " + d["choices"][d["gold"]]
                assert tl.texts[i].decode("utf-8") == want
        finally:
            L.kg_text_list_free(byref(tl))
