# ctest-labels: py
"""evaluate/scoring.c against the reference definitions written in Python
(tests/py/oracles/eval_ref.py): SQuAD normalization, EM and F1 on generated
strings (punctuation, articles, Unicode letters and spaces), LLM-KICK's
answer matching, lm-eval's acc/acc_norm (numpy argmax, ties included),
mean_stderr and the bootstrap perplexity stderr (random.Random(i).choices)."""
import ctypes
import random
from ctypes import POINTER, c_char_p, c_double, c_int, c_size_t

import numpy as np

from oracles import eval_ref
from oracles.eval_capi import cfree, lib

ALPHABET = list("abcAB xyzTHE the an a,.!?'\"-_()é ÉüÜ\t\n") + ["ſ", "ß", "–", "’", "\u00a0", "日本", "Ω"]


def _random_text(rng, n):
    words = ["the", "The", "a", "An", "an", "anthem", "theory", "A.", "(the)", "x-ray", "New", "York", "city"]
    parts = []
    for _ in range(n):
        parts.append(rng.choice(words) if rng.random() < 0.5 else "".join(rng.choice(ALPHABET)
                                                                        for _ in range(rng.randint(1, 6))))
    return rng.choice([" ", "  ", "\t", " "]).join(parts)


def _c_normalize(L, s):
    p = L.kg_squad_normalize(s.encode("utf-8"))
    out = ctypes.cast(p, c_char_p).value.decode("utf-8")
    cfree(p)
    return out


def test_squad_normalization_em_f1():
    L = lib()
    L.kg_squad_f1.argtypes = [c_char_p, c_char_p]
    L.kg_squad_exact_match.argtypes = [c_char_p, c_char_p]
    rng = random.Random(5)
    for _ in range(3000):
        a, b = _random_text(rng, rng.randint(0, 6)), _random_text(rng, rng.randint(0, 6))
        assert _c_normalize(L, a) == eval_ref.squad_normalize(a), repr(a)
        assert abs(L.kg_squad_f1(a.encode(), b.encode()) - eval_ref.squad_f1(a, b)) < 1e-12, (a, b)
        assert L.kg_squad_exact_match(a.encode(), b.encode()) == eval_ref.squad_em(a, b)
    # shared words so F1 is mostly non-zero
    for _ in range(500):
        words = ["paris", "france", "the", "city", "of", "light", "paris"]
        a = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        b = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        assert abs(L.kg_squad_f1(a.encode(), b.encode()) - eval_ref.squad_f1(a, b)) < 1e-12, (a, b)


def test_llmkick_answer_match():
    L = lib()
    rng = random.Random(9)
    for _ in range(2000):
        out = _random_text(rng, rng.randint(0, 8))
        answers = [_random_text(rng, rng.randint(1, 2)) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.4:  # plant one answer, spaced and cased differently
            ans = answers[0]
            out = out + " " + ans.upper().replace(" ", "  ") + " tail"
        arr = (c_char_p * len(answers))(*[a.encode() for a in answers])
        got = L.kg_llmkick_answer_match(out.encode(), arr, c_int(len(answers)))
        # ASCII/Latin casing only: skip strings whose Python lower() our table does not cover
        if any(ch in out + "".join(answers) for ch in "ſßΩ"):
            continue
        assert got == eval_ref.llmkick_validate(answers, out), (out, answers)


def test_multiple_choice_scoring():
    L = lib()
    L.kg_score_multiple_choice.argtypes = [POINTER(c_double), POINTER(c_size_t), c_int, c_int, POINTER(c_double),
                                           POINTER(c_double)]
    rng = np.random.default_rng(3)
    for trial in range(3000):
        n = int(rng.integers(2, 6))
        lls = np.round(rng.normal(-10, 4, n), int(rng.integers(0, 3)))  # rounding makes ties common
        chars = rng.integers(1, 12, n)
        if trial % 50 == 0:
            chars[0] = 0
        choices = ["x" * int(c) for c in chars]
        gold = int(rng.integers(0, n))
        acc, accn = c_double(), c_double()
        arr = (c_double * n)(*lls)
        carr = (c_size_t * n)(*[int(c) for c in chars])
        L.kg_score_multiple_choice(arr, carr, n, gold, ctypes.byref(acc), ctypes.byref(accn))
        assert (acc.value, accn.value) == eval_ref.multiple_choice(lls, choices, gold), (lls, chars, gold)


def test_stderrs():
    L = lib()
    rng = random.Random(2)
    for n in (2, 7, 500):
        x = [float(rng.random() < 0.4) for _ in range(n)]
        arr = (c_double * n)(*x)
        assert abs(L.kg_mean_stderr(arr, n) - eval_ref.mean_stderr(x)) < 1e-14
    for n, iters in ((5, 1000), (40, 3000), (200, 2000)):
        ll = [-rng.expovariate(0.3) for _ in range(n)]
        arr = (c_double * n)(*ll)
        got = L.kg_bootstrap_stderr_perplexity(arr, n, iters)
        want = eval_ref.bootstrap_stderr_perplexity(ll, iters)
        assert abs(got - want) <= 1e-9 * abs(want), (n, iters, got, want)
