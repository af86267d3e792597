"""Shared helpers for the Python tests: where the binary, the ctypes library
and the data live, and small runners. Tests are run by ctest, which sets
KICKGRID, KG_BUILD_DIR, KG_DATA_DIR and KG_SOURCE_DIR."""
import ctypes
import os
import subprocess
from pathlib import Path

import pytest

SOURCE_DIR = Path(os.environ.get("KG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BUILD_DIR = Path(os.environ.get("KG_BUILD_DIR", SOURCE_DIR / "build"))
KICKGRID = os.environ.get("KICKGRID", str(BUILD_DIR / "kickgrid"))
DATA_DIR = Path(os.environ.get("KG_DATA_DIR", SOURCE_DIR.parent / "shared" / "data"))


def data_path(rel):
    p = DATA_DIR / rel
    if not p.exists():
        pytest.skip(f"data file {p} is not present (run 'kickgrid data fetch')")
    return p


def run(*args, check=True, env=None, timeout=1800, input=None, cwd=None):
    """Runs the kickgrid binary; returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run([KICKGRID, *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, input=input, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"kickgrid {' '.join(map(str, args))} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


_lib = None


def lib():
    """libkgapi.so loaded through ctypes (every layer's public C functions)."""
    global _lib
    if _lib is None:
        path = BUILD_DIR / "libkgapi.so"
        if not path.exists():
            pytest.skip(f"{path} not built")
        _lib = ctypes.CDLL(str(path))
        _lib.kg_error_message.restype = ctypes.c_char_p
    return _lib


def last_error():
    return lib().kg_error_message().decode("utf-8", "replace")


def fptr(arr):
    """ctypes float* into a C-contiguous float32 numpy array."""
    import numpy as np
    assert arr.dtype == np.float32 and arr.flags["C_CONTIGUOUS"]
    return arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def dptr(arr):
    import numpy as np
    assert arr.dtype == np.float64 and arr.flags["C_CONTIGUOUS"]
    return arr.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
