# ctest-labels: py
"""kickgrid tokenize: ids out for text in (argument, -f FILE, stdin), the
tokenizer's own BOS default and the --bos/--no-bos overrides, --decode,
--info, and clean failures (exit 1 naming the file, exit 2 for usage)."""
import pytest

from kgtest import data_path, run

spm = pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def llama2():
    model = data_path("tokenizers/llama2/tokenizer.model")
    return model, spm.SentencePieceProcessor(model_file=str(model))


def ids_of(proc):
    return [int(x) for x in proc.stdout.split()]


def test_encode_argument_file_and_stdin(llama2, tmp_path):
    model, sp = llama2
    text = "The quick brown fox, 1984 \u00e9t\u00e9 \U0001f999"
    want = sp.encode(text)
    assert ids_of(run("tokenize", "--tokenizer", model, text)) == [1] + want  # LLaMA-2 adds BOS
    assert ids_of(run("tokenize", "--tokenizer", model, "--no-bos", text)) == want
    f = tmp_path / "in.txt"
    f.write_text(text, encoding="utf-8")
    assert ids_of(run("tokenize", "--tokenizer", model, "--no-bos", "-f", f)) == want
    assert ids_of(run("tokenize", "--tokenizer", model, "--no-bos", input=text)) == want


def test_bos_default_follows_the_tokenizer():
    gpt2 = data_path("tokenizers/gpt2/vocab.json")
    ids = ids_of(run("tokenize", "--tokenizer", gpt2, "Hello world"))
    assert ids == [15496, 995]  # GPT-2 adds no BOS ("Hello", " world")
    assert ids_of(run("tokenize", "--tokenizer", gpt2, "--bos", "Hello world")) == [50256, 15496, 995]


def test_decode_round_trip(llama2):
    model, sp = llama2
    text = "  two leading spaces\nand a new line"
    ids = run("tokenize", "--tokenizer", model, text).stdout
    out = run("tokenize", "--tokenizer", model, "--decode", ids.strip()).stdout
    assert out == text + "\n"
    assert out[:-1] == sp.decode(ids_of(run("tokenize", "--tokenizer", model, "--no-bos", text)))
    assert run("tokenize", "--tokenizer", model, "--decode", input=ids).stdout == text + "\n"


def test_info():
    out = run("tokenize", "--tokenizer", data_path("tokenizers/llama3/tokenizer.json"), "--info").stdout
    assert "vocab      128256" in out and "bos        128000" in out and "adds_bos   yes" in out


def test_failures(tmp_path):
    model = data_path("tokenizers/llama2/tokenizer.model")
    bad = tmp_path / "broken.model"
    bad.write_bytes(b"\x0a\xff\xff\xff\x0f")
    p = run("tokenize", "--tokenizer", bad, "x", check=False)
    assert p.returncode == 1 and str(bad) in p.stderr and p.stderr.count("\n") == 1
    p = run("tokenize", "--tokenizer", model, "--decode", "1 99999", check=False)
    assert p.returncode == 1 and "99999" in p.stderr
    p = run("tokenize", "--tokenizer", model, "--decode", "1 x", check=False)
    assert p.returncode == 1 and "not a token id" in p.stderr
    assert run("tokenize", "x", check=False).returncode == 2
    assert run("tokenize", "--tokenizer", model, "--frobnicate", check=False).returncode == 2
    assert run("tokenize", "--tokenizer", model, "a", "b", check=False).returncode == 2
    assert run("tokenize", "--help").stdout.startswith("usage: kickgrid tokenize")
