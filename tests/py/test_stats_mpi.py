"""Runs the statistics all-reduce test program (tests/unit/test_stats_mpi.c)
on 3 MPI ranks: disjoint shards of the calibration sequences, summed with
kg_stats_allreduce, must equal the single-process statistics."""
import os
import shutil
import subprocess

import pytest

from kgtest import BUILD_DIR


def test_three_ranks_equal_one():
    exe = BUILD_DIR / "tests" / "test_stats_mpi"
    if not exe.exists():
        pytest.skip(f"{exe} not built")
    mpirun = shutil.which("mpirun")
    if not mpirun:
        pytest.skip("mpirun not found")
    env = dict(os.environ, OMPI_MCA_rmaps_base_oversubscribe="1")
    proc = subprocess.run([mpirun, "-np", "3", "--oversubscribe", str(exe)], capture_output=True, text=True,
                          env=env, timeout=120)
    print(proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ranks 3:" in proc.stderr and "FAILED" not in proc.stderr
