# ctest-labels: py mpi
"""The grid end to end with real mpirun: cubes read back by xarray, parity
with single-cell commands, team equivalence, and crash/resume faults."""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kgtest import KICKGRID, SOURCE_DIR, data_path, run

SWEEPS = SOURCE_DIR / "tests" / "data" / "sweeps"
# Values that legitimately differ between two runs of the same cell.
VOLATILE = {"wall_s", "compress_s", "eval_s", "host", "attempts", "peak_rss_mb"}


def mpi_env():
    env = dict(os.environ)
    env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                "OMPI_MCA_btl_vader_single_copy_mechanism": "none", "OMPI_MCA_mpi_yield_when_idle": "1",
                "OMP_NUM_THREADS": "1"})
    return env


def mpirun(n, *args, check=True, timeout=600, cwd=None):
    """Runs kickgrid under mpirun; relative paths in the sweep (logs) land in cwd."""
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(n), KICKGRID, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(), timeout=timeout, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def scalar(da):
    """The single value of a selection (one model, one calibration)."""
    return float(da.values.squeeze())


def open_cube(path):
    return xr.open_dataset(path, engine="h5netcdf")


def journal_records(path):
    out = []
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                out.append(json.loads(line)["record"])
    return out


def assert_same_results(a, b):
    for name in a.data_vars:
        if name in VOLATILE:
            continue
        x, y = a[name].values, b[name].values
        if x.dtype.kind in "fc":
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=name)
        else:
            assert (x == y).all(), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted single-rank run of the tiny sweep."""
    data_path("models/stories260K/stories260K.bin")
    out = tmp_path_factory.mktemp("ref") / "tiny.h5"
    run("run", SWEEPS / "tiny.cfg", "--output", out, "--fresh", env={"OMP_NUM_THREADS": "1"}, cwd=out.parent)
    return out


def test_cube_layout_and_status(reference):
    ds = open_cube(reference)
    assert list(ds.status.dims) == ["model", "prune_method", "sparsity", "structure", "calibration"]
    assert list(ds.prune_method.values) == ["dense", "magnitude", "wanda", "sparsegpt"]
    assert ds.sparsity.dtype == np.float64 and list(ds.sparsity.values) == [0.0, 0.5]
    status = ds.status.values
    assert (status == "done").sum() == 7 and (status == "n/a").sum() == 9
    # dense exists only at sparsity 0, unstructured
    assert ds.status.sel(prune_method="dense", sparsity=0.0, structure="unstructured").values.squeeze() == "done"
    assert ds.status.sel(prune_method="dense", sparsity=0.5, structure="2:4").values.squeeze() == "n/a"
    ppl = ds.ppl.sel(ppl_dataset="tinystories")
    assert np.isnan(ppl.sel(prune_method="dense", sparsity=0.5)).all()
    dense = scalar(ppl.sel(prune_method="dense", sparsity=0.0, structure="unstructured"))
    # The known pattern: data-aware pruning stays far closer to dense than magnitude.
    mag = scalar(ppl.sel(prune_method="magnitude", sparsity=0.5, structure="unstructured"))
    for m in ["wanda", "sparsegpt"]:
        assert dense < scalar(ppl.sel(prune_method=m, sparsity=0.5, structure="unstructured")) < mag
    js = ds.js_mean.sel(js_source="tinystories")
    assert scalar(js.sel(prune_method="dense", sparsity=0.0, structure="unstructured")) == 0.0
    assert 0 < scalar(js.sel(prune_method="wanda", sparsity=0.5, structure="unstructured")) <= np.log(2)
    # per-layer sparsity of a 2:4 cell is exactly one half everywhere
    ls = ds.layer_sparsity.sel(prune_method="wanda", sparsity=0.5, structure="2:4").values
    np.testing.assert_allclose(ls, 0.5)
    assert ds.attrs["config_text"].startswith("# A fast sweep")
    assert ds.attrs["git_commit"]


def test_mpirun_matches_single_rank(reference, tmp_path):
    out = tmp_path / "tiny4.h5"
    mpirun(4, "run", SWEEPS / "tiny.cfg", "--output", out, "--fresh", cwd=tmp_path)
    assert_same_results(open_cube(reference), open_cube(out))
    hosts = open_cube(out).host.values
    assert set(hosts[hosts != ""]) == {os.uname().nodename}


def test_cell_equals_single_cell_commands(reference, tmp_path):
    """.sel() of a cell gives what prune + ppl + eval give for that cell alone."""
    ds = open_cube(reference)
    cell = dict(model="stories260K", prune_method="wanda", sparsity=0.5, structure="unstructured", calibration="c4")
    pruned = tmp_path / "wanda50"
    run("prune", "--model", "stories260K", "--method", "wanda", "--sparsity", "0.5", "--calib", "c4",
        "--nsamples", "8", "--seqlen", "128", "--seed", "0", "--out", pruned, "--threads", "1")
    ppl = json.loads(run("ppl", "--model", pruned, "--dataset", "tinystories", "--seqlen", "256",
                         "--max-windows", "24", "--json", "--threads", "1").stdout)
    assert ppl["ppl"] == pytest.approx(scalar(ds.ppl.sel(**cell, ppl_dataset="tinystories")), rel=1e-6)


def test_team_of_two_matches_team_of_one(reference, tmp_path):
    out = tmp_path / "team2.h5"
    mpirun(3, "run", SWEEPS / "tiny_team2.cfg", "--output", out, "--fresh", cwd=tmp_path)
    a, b = open_cube(reference), open_cube(out)
    # Statistics are summed in another order across the team: equal within float tolerance.
    for name in ["ppl", "js_mean", "recon_error", "layer_sparsity", "sparsity_actual"]:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=2e-4, atol=1e-7, equal_nan=True, err_msg=name)


def rank_pids(root_pid):
    """{MPI rank: pid} of the kickgrid processes mpirun started."""
    out = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            env = (p / "environ").read_bytes().split(b"\0")
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not cmd or not cmd[0].endswith(b"kickgrid"):
            continue
        for e in env:
            if e.startswith(b"OMPI_COMM_WORLD_RANK="):
                out[int(e.split(b"=")[1])] = int(p.name)
    return out


def run_until_journal(n_ranks, cfg, out, records, kill_rank):
    """Starts the sweep under mpirun, SIGKILLs one rank once `records` cells are journaled."""
    journal = Path(str(out) + ".journal")
    proc = subprocess.Popen(["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(n_ranks), KICKGRID, "run",
                             str(cfg), "--output", str(out), "--fresh"], env=mpi_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=Path(out).parent)
    deadline = time.time() + 300
    killed = False
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal_records(journal)) >= records:
            pids = rank_pids(proc.pid)
            if kill_rank in pids:
                os.kill(pids[kill_rank], signal.SIGKILL)
                killed = True
                break
        time.sleep(0.05)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return killed, proc.returncode


def slow_config(tmp_path, out_name):
    """The tiny sweep with more perplexity windows, so cells take long enough to be killed mid-run."""
    text = (SWEEPS / "tiny.cfg").read_text().replace("max_windows = 24", "max_windows = 200")
    cfg = tmp_path / f"{out_name}.cfg"
    cfg.write_text(text)
    return cfg


@pytest.mark.parametrize("victim", ["worker", "coordinator"])
def test_kill_and_resume(tmp_path, victim):
    data_path("models/stories260K/stories260K.bin")
    cfg = slow_config(tmp_path, "slow")
    ref = tmp_path / "ref.h5"
    run("run", cfg, "--output", ref, "--fresh", env={"OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    out = tmp_path / "killed.h5"
    killed, rc = run_until_journal(3, cfg, out, records=2, kill_rank=1 if victim == "worker" else 0)
    assert killed, "the sweep finished before a rank could be killed"
    assert rc != 0
    done_before = {r["cell"] for r in journal_records(str(out) + ".journal") if r["status"] == "done"}
    assert 2 <= len(done_before) < 7
    # The published cube is always complete and readable, even after the crash.
    open_cube(out).load()
    proc = mpirun(3, "run", cfg, "--output", out, "--resume", cwd=tmp_path)
    assert "resumed from" in proc.stderr
    records = journal_records(str(out) + ".journal")
    done = [r["cell"] for r in records if r["status"] == "done"]
    assert len(done) == len(set(done)) == 7, "every cell exactly once"
    assert done_before <= set(done)
    assert_same_results(open_cube(ref), open_cube(out))


def test_existing_output_needs_resume_or_fresh(reference, tmp_path):
    out = tmp_path / "again.h5"
    shutil.copy(reference, out)
    proc = run("run", SWEEPS / "tiny.cfg", "--output", out, check=False, cwd=tmp_path)
    assert proc.returncode == 1 and "--resume" in proc.stderr and "--fresh" in proc.stderr


def test_failed_cell_is_recorded_and_grid_goes_on(tmp_path):
    """A cell that cannot be computed (calibration windows longer than any
    document) is retried, recorded as failed with its message, and the other
    cells finish."""
    text = (SWEEPS / "tiny.cfg").read_text()
    text = text.replace('calibration = ( { name = "c4"; source = "c4"; nsamples = 8; seqlen = 128; seed = 0; } );',
                        'calibration = ( { name = "c4"; source = "file:' + str(tmp_path / "short.txt") +
                        '"; nsamples = 8; seqlen = 128; seed = 0; } );')
    (tmp_path / "short.txt").write_text("Once upon a time there was a tiny text.\n")
    cfg = tmp_path / "failing.cfg"
    cfg.write_text(text)
    out = tmp_path / "failing.h5"
    proc = run("run", cfg, "--output", out, "--fresh", env={"OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    ds = open_cube(out)
    status = ds.status.values
    # dense and magnitude need no calibration data; wanda and sparsegpt fail.
    assert (status == "done").sum() == 3 and (status == "failed").sum() == 4
    err = str(ds.error.sel(prune_method="wanda", sparsity=0.5, structure="unstructured").values.squeeze())
    assert "calibration" in err and "tokens" in err
    assert scalar(ds.attempts.sel(prune_method="wanda", sparsity=0.5, structure="unstructured")) == 2
    assert "failed" in proc.stderr
    strict = run("run", cfg, "--output", out, "--resume", "--strict", check=False, cwd=tmp_path)
    assert strict.returncode == 3
