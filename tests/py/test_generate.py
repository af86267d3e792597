# ctest-labels: py
"""Greedy decoding of stories260K must reproduce llama2.c's published
outputs, checked three ways: the float64 NumPy oracle (llama_ref), the C API
(kg_generate) and the `kickgrid generate` command.

Published outputs (run.c, temperature 0; run.c's -n counts forward steps,
prompt included, so the printed text holds n tokens after BOS):
  * ytmytm/llama2.c64 README, "Verification against llama2.c":
      ./run stories260K.bin -z tok512.bin -t 0 -i "Zoo" -n 60
  * karpathy/llama2.c test_all.py, expected_stdout (final newline stripped):
      ./run stories260K.bin -z tok512.bin -t 0.0 -n 200      (empty prompt)
"""
from pathlib import Path

import pytest

import kgtest
from oracles import llama_ref
from oracles.capi_ref import CModel, require_model_api

ZOO_60 = ("Zoo was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, "
          "red ball. She wanted to play with it, but she didn't want to play with")

EMPTY_200 = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
             "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
             "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. "
             "She said, \"I want to play with your ball, but I can't find it.\"\n"
             "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n"
             "Lily didn't want to help her mom, so she")

CASES = [("Zoo", 60, ZOO_60), ("", 200, EMPTY_200)]


@pytest.fixture(scope="module")
def files():
    return (kgtest.data_path("models/stories260K/stories260K.bin"),
            kgtest.data_path("models/stories260K/tok512.bin"))


@pytest.mark.parametrize("prompt,steps,expected", CASES)
def test_oracle_matches_published(files, prompt, steps, expected):
    model, tok = files
    text = llama_ref.run_c_generate(llama_ref.load_llama2c(model), llama_ref.Llama2cTokenizer(tok), prompt, steps)
    assert text == expected


@pytest.mark.parametrize("prompt,steps,expected", CASES)
def test_c_api_greedy(files, prompt, steps, expected):
    model, tok_path = files
    require_model_api(("kg_backend_create", "kg_model_load", "kg_generate"))
    tok = llama_ref.Llama2cTokenizer(tok_path)
    ids = tok.encode(prompt, bos=True)
    with CModel(model) as cm:
        # run.c stops when BOS comes out: BOS is the stop token
        new = cm.greedy(ids, steps + 1 - len(ids), eos_id=1)
    if new and new[-1] == 1:
        new = new[:-1]
    assert tok.render(ids + new) == expected


def _cli_generate(model, tok, prompt, new_tokens):
    if not Path(kgtest.KICKGRID).exists():
        pytest.skip(f"{kgtest.KICKGRID} not built")
    proc = kgtest.run("generate", "--model", model, "--tokenizer", tok, "--prompt", prompt,
                      "--temperature", "0", "--steps", new_tokens, "--threads", "1", check=False, timeout=300)
    if proc.returncode != 0 and "generate" in proc.stderr and "unknown" in proc.stderr.lower():
        pytest.xfail("this build has no `kickgrid generate` command yet")
    assert proc.returncode == 0, f"kickgrid generate failed:\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("prompt,steps,expected", CASES)
def test_cli_generate(files, prompt, steps, expected):
    """`kickgrid generate` prints prompt + continuation; its --steps counts
    new tokens, so run.c's -n N becomes N + 1 - (prompt tokens with BOS)."""
    model, tok = files
    n_prompt = len(llama_ref.Llama2cTokenizer(tok).encode(prompt, bos=True))
    out = _cli_generate(model, tok, prompt, steps + 1 - n_prompt)
    assert out.rstrip("\n") == expected
