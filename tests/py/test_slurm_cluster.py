# ctest-labels: py slurm
"""`kickgrid submit` against a real single-node Slurm (tests/slurm/kgslurm.py):
a sweep completes; a job requeued mid-sweep resumes and computes every cell
exactly once; a USR1 drain leaves a consistent cube and journal; a split
sweep's shard jobs and their merge job give one cube. CPU ranks only."""
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kgtest import KICKGRID, SOURCE_DIR, data_path

sys.path.insert(0, str(SOURCE_DIR / "tests" / "slurm"))
import kgjournal  # noqa: E402
import kgslurm  # noqa: E402

xr = pytest.importorskip("xarray")

# Slow enough (about 2 s a cell with one thread) that a requeue or a signal
# lands between cells; threads = 1 because ranks share two cores.
SWEEP = """name = "{name}";
models = ( {{ name = "stories260K"; path = "stories260K"; }} );
prune_method = [ "magnitude", "wanda", "sparsegpt" ];
sparsity = ( 0.5, "2:4" );
calibration = ( {{ name = "c4"; source = "c4"; nsamples = 8; seqlen = 128; seed = 0; }} );
evaluation = {{
  perplexity = ( {{ dataset = "tinystories"; seqlen = 256; max_windows = 96; }} );
  js_divergence = {{ dataset = "tinystories"; seqlen = 256; max_windows = 48; }};
}};
grid = {{ team_size = 1; retries = 0; threads = 1; output = "out/{name}.h5"; log_dir = "out/{name}.logs"; }};
"""
N_COMPUTED = 7  # dense + 3 methods x (0.5, 2:4)
NUMERIC = ["ppl", "js_mean", "js_median", "js_p95", "js_top1", "sparsity_actual", "recon_rel_mean",
           "layer_sparsity", "recon_error", "recon_rel"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = kgslurm.missing_requirements()
    if why:
        pytest.skip(why)
    data_path("models/stories260K/stories260K.bin")
    data_path("text/tinystories/TinyStories-valid.head.txt")
    c = kgslurm.SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
    except kgslurm.SlurmError as e:
        c.stop()
        pytest.fail(f"private Slurm did not start: {e}")
    yield c
    c.stop()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweeps")
    for name in ("plain", "requeued", "drained", "relaunched", "reference"):
        (d / f"{name}.cfg").write_text(SWEEP.format(name=name))
    return d


def submit(cluster, work, *args):
    proc = subprocess.run([KICKGRID, "submit", *map(str, args)], capture_output=True, text=True,
                          cwd=work, env=cluster.env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    ids = re.findall(r"^(\d+)", proc.stdout, re.M)
    assert ids, proc.stdout
    return ids


def cpu_submit(cluster, work, name, *extra):
    return submit(cluster, work, f"{name}.cfg", "--gpus-per-node", "0", "--ntasks-per-node", "2",
                  "--output-dir", "slurm", *extra)[0]


def slurm_log(work, name, job):
    return (work / "slurm" / f"{name}-{job}.out").read_text(errors="replace")


def journal_len(path):
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_journal(path, n, job, cluster, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if journal_len(path) >= n:
            return
        state = cluster.job(job).get("JobState")
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), f"job {job} is {state} before {n} cells finished"
        time.sleep(0.1)
    pytest.fail(f"{path} has fewer than {n} records after {timeout} s")


def open_cube(path):
    return xr.open_dataset(path, engine="h5netcdf")


def assert_same_values(a, b):
    for v in NUMERIC:
        x, y = a[v].values, b[v].values
        assert np.array_equal(np.isnan(x), np.isnan(y)), f"{v}: set cells differ"
        np.testing.assert_allclose(x, y, rtol=1e-6, equal_nan=True, err_msg=v)
    assert (a["status"].values == b["status"].values).all()


def check_complete(work, name, job=None):
    cube = work / "out" / f"{name}.h5"
    records = kgjournal.read(f"{cube}.journal")
    counts = kgjournal.done_counts(records)
    log_path = work / "slurm" / f"{name}-{job}.out"
    log = log_path.read_text(errors="replace")[-3000:] if job is not None and log_path.exists() else ""
    assert len(counts) == N_COMPUTED and set(counts.values()) == {1}, f"{counts}\n{log}"
    with open_cube(cube) as ds:
        ds.load()
    assert kgjournal.check_cube_holds(records, ds) > 0
    status = ds["status"].values.ravel()
    assert (status == "done").sum() == N_COMPUTED and set(status) <= {"done", "n/a"}
    if job is not None:
        assert ds.attrs["slurm_job_id"] == job
    return ds


@pytest.fixture(scope="module")
def reference(work):
    """The same sweep run directly, one rank, no Slurm."""
    proc = subprocess.run([KICKGRID, "run", "reference.cfg"], capture_output=True, text=True, cwd=work, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return check_complete(work, "reference")


def test_submitted_sweep_completes(cluster, work, reference):
    job = cpu_submit(cluster, work, "plain")
    info = cluster.wait_job(job, ("COMPLETED",), timeout=300)
    assert info["ExitCode"] == "0:0" and info["Restarts"] == "0"
    ds = check_complete(work, "plain", job)
    assert ds.attrs["mpi_world_size"] == "3"  # two CPU workers and the coordinator
    assert_same_values(ds, reference)
    log = slurm_log(work, "plain", job)
    assert "restart 0" in log and "kickgrid run exited 0" in log


def test_requeued_job_resumes_every_cell_once(cluster, work, reference):
    journal = work / "out" / "requeued.h5.journal"
    job = cpu_submit(cluster, work, "requeued")
    wait_journal(journal, 2, job, cluster)
    cluster.run("scontrol", "requeue", job)
    before = journal_len(journal)
    assert before < N_COMPUTED, "the sweep finished before the requeue: make its cells slower"
    info = cluster.wait_job(job, ("COMPLETED",), timeout=300)
    assert int(info["Restarts"]) >= 1
    ds = check_complete(work, "requeued", job)
    assert ds.attrs["slurm_restart_count"] == info["Restarts"]
    assert_same_values(ds, reference)
    log = slurm_log(work, "requeued", job)
    assert "restart 0" in log and "restart 1" in log
    assert re.search(r"resumed from .*requeued\.h5\.journal: \d+ records", log), log[-3000:]


def test_usr1_drains_to_a_consistent_cube(cluster, work, reference):
    cube = work / "out" / "drained.h5"
    # No automatic requeue, so the state the drain left can be inspected.
    job = cpu_submit(cluster, work, "drained", "--max-restarts", "0", "--signal-lead", "30")
    wait_journal(Path(f"{cube}.journal"), 2, job, cluster)
    cluster.run("scancel", "--signal=USR1", "--full", job)
    info = cluster.wait_job(job, ("FAILED",), timeout=120)
    assert info["ExitCode"] == "75:0", info
    log = slurm_log(work, "drained", job)
    assert "kickgrid run exited 75" in log and "not requeueing" in log

    records = kgjournal.read(f"{cube}.journal")
    counts = kgjournal.done_counts(records)
    assert 1 <= len(counts) < N_COMPUTED and set(counts.values()) == {1}, counts
    with open_cube(cube) as ds:
        ds.load()
    assert kgjournal.check_cube_holds(records, ds) > 0
    status = ds["status"].values.ravel()
    # The drain waits for running cells and publishes the cube: it holds
    # exactly the journaled cells.
    assert (status == "done").sum() == len(counts)
    # kickgrid's own replay accepts the journal: requeue by hand and finish.
    cluster.run("scontrol", "requeue", job)
    info = cluster.wait_job(job, ("COMPLETED",), timeout=300)
    assert_same_values(check_complete(work, "drained", job), reference)


def test_step_that_never_started_is_launched_again(cluster, work, reference):
    """Slurm can end a step with status 0 although its tasks never ran (a
    restart's launch aborted by the previous run's step cleanup). The batch
    script must notice that kickgrid reported no outcome and launch again.
    The first step here runs a wrapper that exits 0 without starting kickgrid."""
    script = work / "slurm" / "relaunched.sbatch"
    proc = subprocess.run([KICKGRID, "submit", "relaunched.cfg", "--gpus-per-node", "0", "--ntasks-per-node", "2",
                           "--output-dir", "slurm", "--dry-run"], capture_output=True, text=True, cwd=work,
                          env=cluster.env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    wrapper = work / "kickgrid-first-step-empty"
    wrapper.write_text(f'#!/bin/bash\n[ "${{SLURM_STEP_ID:-}}" = 0 ] && exit 0\nexec {KICKGRID} "$@"\n')
    wrapper.chmod(0o755)
    text = re.sub(r"^KICKGRID=.*$", f"KICKGRID='{wrapper}'", script.read_text(), count=1, flags=re.M)
    script.write_text(text)
    env = dict(cluster.env, KG_LAUNCH_DELAY="1")
    out = cluster.run("sbatch", "--parsable", script, env=env).stdout.strip()
    job = out.split(";")[0]
    info = cluster.wait_job(job, ("COMPLETED",), timeout=300)
    assert info["ExitCode"] == "0:0" and info["Restarts"] == "0", info
    log = slurm_log(work, "relaunched", job)
    assert "without kickgrid's outcome; launching again in 1s (launch 2 of 4)" in log, log[-3000:]
    assert_same_values(check_complete(work, "relaunched", job), reference)


SPLIT = """name = "parts";
models = ( { name = "stories260K"; path = "stories260K"; },
           { name = "synth260k"; synthetic = "stories260k"; seed = 3; } );
prune_method = [ "magnitude", "wanda" ];
sparsity = ( 0.5 );
calibration = ( { name = "c4"; source = "c4"; nsamples = 4; seqlen = 64; seed = 0; } );
evaluation = {
  perplexity = ( { dataset = "tinystories"; seqlen = 128; max_windows = 4; } );
  js_divergence = { dataset = "tinystories"; seqlen = 128; max_windows = 2; };
};
grid = { team_size = 1; retries = 0; threads = 1; output = "out/parts.h5"; log_dir = "out/parts.logs"; };
"""


def test_split_jobs_merge_into_one_cube(cluster, work):
    (work / "parts.cfg").write_text(SPLIT)
    ids = submit(cluster, work, "parts.cfg", "--gpus-per-node", "0", "--ntasks-per-node", "1",
                 "--output-dir", "slurm", "--split", "2")
    assert len(ids) == 3  # two shards and the merge job
    for job in ids:
        cluster.wait_job(job, ("COMPLETED",), timeout=300)
    shards = [work / "out" / f"parts.shard{i}of2.h5" for i in (1, 2)]
    parts = [open_cube(p).load() for p in shards]
    assert sorted(str(p.model.values[0]) for p in parts) == ["stories260K", "synth260k"]
    with open_cube(work / "out" / "parts.h5") as merged:
        merged.load()
    assert set(merged.model.values) == {"stories260K", "synth260k"}
    # The shards also combine directly in xarray, to the same values.
    combined = xr.combine_by_coords(parts, combine_attrs="drop_conflicts")
    combined = combined.reindex_like(merged[NUMERIC])
    for v in NUMERIC:
        np.testing.assert_array_equal(combined[v].values, merged[v].values, err_msg=v)
    assert (combined["status"].values == merged["status"].values).all()
    assert (merged["status"].values == "done").sum() == 6
