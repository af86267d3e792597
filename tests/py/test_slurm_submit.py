# ctest-labels: py
"""`kickgrid submit --dry-run`: the batch script it writes (checked as text,
by bash -n, and by evaluating its settings in bash), the validation of its
options, splitting a sweep into shards, Slurm time limits and shell quoting.
No Slurm needed; test_slurm_cluster.py runs the scripts on a real one."""
import ctypes
import re
import subprocess

import pytest

from kgtest import SOURCE_DIR, data_path, last_error, lib, run

TINY = """name = "tiny";
models = ( {models} );
prune_method = [ "magnitude", "wanda" ];
sparsity = ( 0.5, "2:4" );
calibration = ( {{ name = "c4"; source = "c4"; nsamples = 4; seqlen = 64; seed = 0; }} );
evaluation = {{ perplexity = ( {{ dataset = "tinystories"; seqlen = 128; max_windows = 2; }} ); }};
grid = {{ team_size = {team}; output = "out/tiny.h5"; log_dir = "out/tiny.logs"; backend = "{backend}"; }};
"""
ONE_MODEL = '{ name = "stories260K"; path = "stories260K"; }'


def write_sweep(tmp_path, models=ONE_MODEL, team=1, backend="cpu", name="tiny.cfg"):
    data_path("models/stories260K/stories260K.bin")
    cfg = tmp_path / name
    cfg.write_text(TINY.format(models=models, team=team, backend=backend))
    return cfg


def submit(tmp_path, *args, check=True, env=None):
    # Relative config paths resolve in the working directory.
    return run("submit", *args, check=check, env=env, cwd=tmp_path)


def settings_of(script):
    """The shell settings of a generated script, evaluated by bash: every
    line between the #SBATCH head and the body's marker."""
    head = script.split("# ---- kickgrid body:")[0]
    probe = head + '\nprintf "%s\\n" "$KG_SWEEP" "$KICKGRID" "$KG_WORKERS_PER_NODE" "$KG_SIGNAL_LEAD" ' \
                   '"$KG_DRAIN_TIMEOUT" "$KG_MAX_RESTARTS" "$KG_FRESH" "$KG_SRUN_MPI" "${#KG_RUN_ARGS[@]}"\n' \
                   'for a in "${KG_RUN_ARGS[@]}"; do printf "<%s>\\n" "$a"; done\n'
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    keys = ["sweep", "kickgrid", "workers", "lead", "drain", "restarts", "fresh", "mpi", "n_args"]
    values = dict(zip(keys, out))
    values["args"] = [line[1:-1] for line in out[len(keys):] if line.startswith("<")]
    return values


def sbatch_options(script):
    return re.findall(r"^#SBATCH (\S+)$", script, re.M)


def test_gpu_script(tmp_path):
    cfg = write_sweep(tmp_path, backend="cuda")
    proc = submit(tmp_path, cfg.name, "--nodes", "2", "--gpus-per-node", "4", "--time", "1-00:00:00",
                  "--partition", "gpu", "--account", "proj-1", "--cpus-per-task", "8", "--mem", "200G",
                  "--signal-lead", "600", "--job-name", "big", "--dry-run", "--", "--publish-every", "30")
    script = proc.stdout
    assert (tmp_path / "out" / "slurm" / "big.sbatch").read_text() == script
    opts = sbatch_options(script)
    for want in ("--job-name=big", "--nodes=2", "--ntasks-per-node=5", "--gpus-per-node=4", "--cpus-per-task=8",
                 "--mem=200G", "--time=1-00:00:00", "--partition=gpu", "--account=proj-1", "--requeue",
                 "--open-mode=append", "--signal=USR1@600", f"--chdir={tmp_path}",
                 f"--output={tmp_path}/out/slurm/%x-%j.out"):
        assert want in opts, (want, opts)
    assert not [o for o in opts if o.startswith("--gpus-per-task")]
    assert "9 ranks: 2 node(s) x 4 working + the coordinator" in script
    s = settings_of(script)
    assert s["sweep"] == str(cfg) and s["workers"] == "4" and s["lead"] == "600"
    assert float(s["drain"]) < 600 and s["drain"] == "480"
    assert s["fresh"] == "0" and s["mpi"] == "pmix" and s["args"] == ["--publish-every", "30"]
    body = script.split("# ---- kickgrid body:")[1]
    template = (SOURCE_DIR / "slurm" / "kickgrid.sbatch").read_text().split("# ---- kickgrid body:")[1]
    assert body == template
    for piece in ("export NCCL_NVLS_ENABLE=0", "SLURM_RESTART_COUNT", "scontrol requeue", "--resume",
                  '"$rc" = 75'):
        assert piece in body, piece
    subprocess.run(["bash", "-n", "-c", script], check=True)


def test_cpu_script_fresh_and_quoting(tmp_path):
    cfg = write_sweep(tmp_path)
    odd = "it's a $HOME `x` \\ \"q\""
    proc = submit(tmp_path, cfg.name, "--gpus-per-node", "0", "--ntasks-per-node", "3", "--fresh",
                  "--signal-lead", "120", "--drain-timeout", "30", "--max-restarts", "4", "--mpi", "pmi2",
                  "--dry-run", "--", "--output", odd)
    opts = sbatch_options(proc.stdout)
    assert "--ntasks-per-node=4" in opts and not [o for o in opts if o.startswith("--gpus")]
    assert "--signal=USR1@120" in opts and "--job-name=tiny" in opts
    s = settings_of(proc.stdout)
    assert (s["workers"], s["drain"], s["restarts"], s["fresh"], s["mpi"]) == ("3", "30", "4", "1", "pmi2")
    assert s["args"] == ["--output", odd]


def test_template_runs_alone_only_with_a_sweep():
    template = SOURCE_DIR / "slurm" / "kickgrid.sbatch"
    subprocess.run(["bash", "-n", template], check=True)
    proc = subprocess.run(["bash", template], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "no sweep config" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--ntasks-per-node", "2", "--gpus-per-node", "2"], "--ntasks-per-node is for CPU-only"),
    (["--gpus-per-node", "0"], "needs --ntasks-per-node"),
    ([], "--gpus-per-node is required"),
    (["--gpus-per-node", "1", "--time", "5", "--signal-lead", "300"], "leaves no work time"),
    (["--gpus-per-node", "1", "--time", "1:2:3:4"], "time limit '1:2:3:4'"),
    (["--gpus-per-node", "1", "--signal-lead", "60", "--drain-timeout", "60"], "must be below the signal lead"),
    (["--gpus-per-node", "1", "--partition", "a b"], "cannot go on an #SBATCH line"),
    (["--gpus-per-node", "1", "--split", "2"], "cannot split 1 model into 2 jobs"),
    (["--gpus-per-node", "1", "--bogus"], "unknown option"),
    (["--gpus-per-node", "1", "second.cfg"], "unexpected argument 'second.cfg'"),
])
def test_bad_options(tmp_path, args, message):
    cfg = write_sweep(tmp_path)
    proc = submit(tmp_path, cfg.name, *args, "--dry-run", check=False)
    assert proc.returncode in (1, 2) and message in proc.stderr, proc.stderr


def test_sweep_problems_are_reported(tmp_path):
    cfg = write_sweep(tmp_path, team=3)
    proc = submit(tmp_path, cfg.name, "--gpus-per-node", "2", "--nodes", "4", "--dry-run", check=False)
    assert proc.returncode == 1 and "team of 3 ranks must fit on one node, which has 2" in proc.stderr
    bad = tmp_path / "bad.cfg"
    bad.write_text('name = "x";\nmodels = ( { name = "m"; path = "stories260K"; } );\nsparsityy = 0.5;\n')
    proc = submit(tmp_path, "bad.cfg", "--gpus-per-node", "1", "--dry-run", check=False)
    assert proc.returncode == 1 and re.search(r"bad\.cfg:3: .*sparsityy", proc.stderr), proc.stderr
    proc = submit(tmp_path, cfg.name, "--gpus-per-node", "0", "--ntasks-per-node", "3", "--dry-run", check=False,
                  env={"KG_SBATCH_TEMPLATE": str(tmp_path / "none.sbatch")})
    assert proc.returncode == 1 and "none.sbatch" in proc.stderr
    cfg = write_sweep(tmp_path, name="one.cfg")
    cpu_on_gpus = submit(tmp_path, cfg.name, "--gpus-per-node", "1", "--dry-run")
    assert "grid.backend is cpu" in cpu_on_gpus.stderr


def test_split_writes_shards_and_a_merge_job(tmp_path):
    models = ('{ name = "big"; synthetic = "smollm2-135m,layers=2"; }, { name = "small1"; synthetic = "stories260k"; }'
              ', { name = "small2"; synthetic = "stories260k"; seed = 2; }')
    cfg = write_sweep(tmp_path, models=models)
    proc = submit(tmp_path, cfg.name, "--gpus-per-node", "0", "--ntasks-per-node", "2", "--split", "2", "--dry-run")
    slurm = tmp_path / "out" / "slurm"
    shards = [slurm / f"tiny.shard{i}of2.cfg" for i in (1, 2)]
    # The largest model gets a shard of its own; the two small ones share the other.
    plans = [run("plan", "--json", "--no-cells", s).stdout for s in shards]
    names = [sorted(re.findall(r'"name":\s*"(big|small1|small2)"', p)) for p in plans]
    assert sorted(map(tuple, names)) == [("big",), ("small1", "small2")], names
    for i, s in enumerate(shards, 1):
        text = s.read_text()
        assert f'output = "out/tiny.shard{i}of2.h5"' in text and f'log_dir = "out/tiny.logs/shard{i}of2"' in text
        job = (slurm / f"tiny.shard{i}of2.sbatch").read_text()
        assert f"--job-name=tiny-{i}of2" in job and settings_of(job)["sweep"] == str(s)
    merge = (slurm / "tiny.merge.sbatch").read_text()
    assert re.search(r"merge 'out/tiny\.shard1of2\.h5' 'out/tiny\.shard2of2\.h5' -o 'out/tiny\.h5'", merge), merge
    assert "--job-name=tiny-merge" in merge and "--ntasks=1" in merge
    subprocess.run(["bash", "-n", "-c", merge], check=True)
    assert proc.stdout.count("#!/bin/bash") == 3


def test_slurm_time_limits():
    f = lib().kg_slurm_time_seconds
    f.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_long)]
    # Seconds from Slurm's documented forms, computed here.
    cases = {"90": 90 * 60, "90:30": 90 * 60 + 30, "4:00:00": 4 * 3600, "1-12": 36 * 3600,
             "1-12:30": 36 * 3600 + 30 * 60, "2-0:0:15": 2 * 86400 + 15, "0:45": 45}
    for text, want in cases.items():
        out = ctypes.c_long(-1)
        assert f(text.encode(), ctypes.byref(out)) == 0, text
        assert out.value == want, text
    for bad in ("", "UNLIMITED", "1:2:3:4", "-5", "1-", "a:10", "10:", "1-2-3", "1.5"):
        out = ctypes.c_long(-1)
        assert f(bad.encode(), ctypes.byref(out)) < 0, bad
        assert "time limit" in last_error() or "empty" in last_error()


def test_shell_quote_round_trips_through_bash():
    q = lib().kg_shell_quote
    q.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    libc = ctypes.CDLL(None)
    for s in ["plain", "", "it's", "'", "''", "a b\tc\nd", "$HOME `id` $(id) \\ \" !x", "snowman \u2603"]:
        out = ctypes.c_void_p()
        assert q(s.encode(), ctypes.byref(out)) == 0
        word = ctypes.string_at(out.value).decode()
        libc.free(out)
        got = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, text=True, check=True).stdout
        assert got == s, (s, word)
