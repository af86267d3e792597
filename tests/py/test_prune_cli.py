"""kickgrid prune end to end: the written Hugging Face directory loads back and
reproduces the perplexity, holds the sparsity pattern asked for, and bad
arguments are refused with a clear message."""
import json
import struct

import numpy as np
import pytest

from kgtest import data_path, run

COMMON = ["--model", "stories260K", "--calib", "c4", "--nsamples", "8", "--seqlen", "128", "--threads", "1"]


def read_safetensors(path):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[8 + n + a:8 + n + b]
        if info["dtype"] == "F32":
            arr = np.frombuffer(buf, dtype=np.float32)
        else:
            bits = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
            arr = bits.view(np.float32)
        out[name] = arr.reshape(info["shape"])
    return out


def ppl_line(stdout):
    return float([l for l in stdout.splitlines() if l.startswith("perplexity")][0].split()[1])


def test_written_model_reloads_with_the_same_perplexity(tmp_path):
    data_path("models/stories260K/stories260K.bin")
    out = tmp_path / "wanda50"
    pruned = run("prune", *COMMON, "--method", "wanda", "--sparsity", "0.5", "--out", out, "--ppl", "tinystories",
                 "--ppl-seqlen", "256", "--json", tmp_path / "report.json")
    again = run("ppl", "--model", out, "--dataset", "tinystories", "--seqlen", "256", "--threads", "1")
    assert ppl_line(pruned.stdout) == ppl_line(again.stdout)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["overall_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert len(report["linears"]) == 5 * 7
    weights = read_safetensors(out / "model.safetensors")
    q = weights["model.layers.0.self_attn.q_proj.weight"]
    # Wanda compares weights within each output row: every row is exactly half zeros.
    np.testing.assert_array_equal((q == 0).sum(axis=1), q.shape[1] // 2)
    assert (out / "tok512.bin").exists(), "the tokenizer travels with the model"


def test_nm_pattern_in_written_weights(tmp_path):
    out = tmp_path / "sgpt24"
    run("prune", *COMMON, "--method", "sparsegpt", "--pattern", "2:4", "--out", out, "--dtype", "bf16")
    weights = read_safetensors(out / "model.safetensors")
    for name, w in weights.items():
        if name.endswith("proj.weight"):
            groups = (w.reshape(w.shape[0], -1, 4) == 0).sum(axis=2)
            assert (groups >= 2).all(), name
    # bf16 directories load too, with a close perplexity.
    run("ppl", "--model", out, "--dataset", "tinystories", "--seqlen", "256", "--max-windows", "4", "--threads", "1")


@pytest.mark.parametrize("args, message", [
    (["--method", "wanda", "--sparsity", "1.5"], "outside [0, 1)"),
    (["--method", "wanda", "--pattern", "4:2"], "--pattern expects N:M"),
    (["--method", "pruneit"], "unknown method"),
    (["--method", "gptq", "--bits", "9"], "--bits expects an integer in [2, 8]"),
])
def test_bad_arguments(args, message):
    proc = run("prune", *COMMON, *args, check=False)
    assert proc.returncode in (1, 2) and message in proc.stderr, proc.stderr


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_calibration_batch_changes_only_summation_order(tmp_path, method):
    """Samples run several to a block forward (8 samples in batches of 3, 3, 2)
    must give the weights and per-linear errors of one sample at a time."""
    data_path("models/stories260K/stories260K.bin")
    reports, weights = {}, {}
    for batch in (1, 3):
        out = tmp_path / f"b{batch}"
        run("prune", *COMMON, "--method", method, "--sparsity", "0.5", "--calib-batch", str(batch), "--out", out,
            "--json", tmp_path / f"b{batch}.json")
        reports[batch] = json.loads((tmp_path / f"b{batch}.json").read_text())
        weights[batch] = read_safetensors(out / "model.safetensors")
    assert weights[1].keys() == weights[3].keys()
    zeros_differ = total = 0
    for name, w1 in weights[1].items():
        w3 = weights[3][name]
        zeros_differ += int(np.sum((w1 == 0) != (w3 == 0)))
        total += w1.size
        np.testing.assert_allclose(w3, w1, rtol=1e-4, atol=1e-5 * float(np.abs(w1).max()), err_msg=name)
    assert zeros_differ <= total * 1e-4, f"{zeros_differ} of {total} mask entries differ"
    for a, b in zip(reports[1]["linears"], reports[3]["linears"]):
        assert b["recon_error"] == pytest.approx(a["recon_error"], rel=1e-4)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "magnitude"])
def test_recon_samples_sets_only_the_error_measurement(tmp_path, method):
    """--recon-samples changes which samples the reconstruction errors use
    (methods without a Hessian) or drops them (0), never the pruned weights;
    magnitude with 0 runs no calibration pass at all."""
    data_path("models/stories260K/stories260K.bin")
    reports, weights = {}, {}
    for n in (0, 4, 16):
        out = tmp_path / f"r{n}"
        run("prune", *COMMON, "--method", method, "--sparsity", "0.5", "--recon-samples", str(n), "--out", out,
            "--json", tmp_path / f"r{n}.json")
        reports[n] = json.loads((tmp_path / f"r{n}.json").read_text())
        weights[n] = read_safetensors(out / "model.safetensors")
    for name, w in weights[16].items():
        np.testing.assert_array_equal(weights[0][name], w, err_msg=name)
        np.testing.assert_array_equal(weights[4][name], w, err_msg=name)
    assert all("recon_error" not in l for l in reports[0]["linears"])
    assert reports[0]["recon_tokens"] == 0
    for n in (4, 16):
        assert all(l["recon_error"] >= 0 for l in reports[n]["linears"])
    # 8 calibration samples of 128 tokens: Hessian methods measure on all of them
    assert reports[4]["recon_tokens"] == (8 if method == "sparsegpt" else 4) * 128
    assert reports[16]["recon_tokens"] == 8 * 128
    if method != "sparsegpt":
        assert reports[4]["linears"][0]["recon_error"] != reports[16]["linears"][0]["recon_error"]
    if method == "magnitude":
        assert reports[0]["calib_forward_seconds"] == 0
        assert reports[4]["calib_forward_seconds"] > 0
