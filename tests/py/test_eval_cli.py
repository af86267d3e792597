# ctest-labels: py
"""`kickgrid eval` on stories260K: the table and the JSON agree and hold
every asked task's metrics; --against the same model gives zero deltas and
zero JS divergence (task prompts and WikiText-2 windows); usage errors exit
2 and runtime errors exit 1 with a one-line message."""
import json
import math

import kgtest

MODEL = "models/stories260K/stories260K.bin"


def test_eval_table_and_json(tmp_path):
    model = kgtest.data_path(MODEL)
    out = tmp_path / "r.json"
    p = kgtest.run("eval", "--model", model, "--threads", "1", "--tasks", "arc_easy,winogrande,lambada,triviaqa",
                   "--limit", "6", "--bootstrap-iters", "1000", "--json", out)
    res = json.loads(out.read_text())
    rows = [l.split() for l in p.stdout.splitlines()[1:] if l.strip()]
    seen = {(r[0], r[1]): float(r[2]) for r in rows}
    expect = {"arc_easy": ["acc", "acc_norm"], "winogrande": ["acc"], "lambada": ["acc", "perplexity"],
              "triviaqa": ["em", "f1"]}
    for task, metrics in expect.items():
        t = res["tasks"][task]
        assert t["n"] == 6 and t["num_fewshot"] == 0
        assert sorted(t["metrics"]) == sorted(metrics)
        for m in metrics:
            v = t["metrics"][m]["value"]
            assert math.isfinite(v) and abs(seen[(task, m)] - v) < 1e-4 * max(1.0, abs(v))
            if m != "perplexity":
                assert 0.0 <= v <= 1.0
    assert res["tasks"]["lambada"]["metrics"]["perplexity"]["stderr"] > 0


def test_eval_against_itself(tmp_path):
    model = kgtest.data_path(MODEL)
    out = tmp_path / "r.json"
    p = kgtest.run("eval", "--model", model, "--against", model, "--threads", "1", "--tasks", "boolq,js",
                   "--limit", "4", "--js-seqlen", "64", "--js-windows", "2", "--json", out)
    res = json.loads(out.read_text())
    t = res["tasks"]["boolq"]
    assert t["dense"]["metrics"]["acc"]["value"] == t["metrics"]["acc"]["value"]
    assert t["js"]["mean"] == 0.0 and t["js"]["top1_agree"] == 1.0 and t["js"]["sequences"] == 4
    w = res["js_wikitext2"]
    assert w["mean"] == 0.0 and w["tokens"] == 128 and w["seqlen"] == 64
    assert "js wikitext2" in p.stdout


def test_prefix_reuse_does_not_change_scores(tmp_path):
    model = kgtest.data_path(MODEL)
    res = []
    for extra in ([], ["--no-prefix-reuse", "--batch", "1"]):
        out = tmp_path / f"r{len(extra)}.json"
        kgtest.run("eval", "--model", model, "--threads", "1", "--tasks", "hellaswag,mmlu", "--limit", "3",
                   "--num-fewshot", "1", "--json", out, *extra)
        res.append(json.loads(out.read_text())["tasks"])
    for task in ("hellaswag", "mmlu"):
        for m, v in res[0][task]["metrics"].items():
            assert v["value"] == res[1][task]["metrics"][m]["value"], (task, m)


def test_eval_errors():
    model = kgtest.data_path(MODEL)
    for args in (["--tasks", "nope"], ["--tasks", "js"], ["--tasks", "mmlu", "--mmlu-mode", "x"],
                 ["--tasks", "boolq", "--limit", "-3"], ["--tasks", "boolq", "--bogus", "1"]):
        p = kgtest.run("eval", "--model", model, *args, check=False)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.strip()
    p = kgtest.run("eval", "--tasks", "boolq", check=False)
    assert p.returncode == 2
    p = kgtest.run("eval", "--model", "/nonexistent/model.bin", "--tasks", "boolq", check=False)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1
    p = kgtest.run("eval", "--model", model, "--tasks", "boolq", "--data-dir", "/nonexistent", check=False)
    assert p.returncode == 1 and "boolq" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = kgtest.run("eval", "--help")
    assert "--tasks" in p.stdout and "--against" in p.stdout
