"""compress/pyrandom.c must reproduce CPython's random.seed/randint/getrandbits,
so calibration windows match the reference scripts for the same seed."""
import ctypes
import random

import pytest

from kgtest import lib


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 + 7, 2**40 + 3])
def test_randint_matches_python(seed):
    L = lib()
    state = ctypes.create_string_buffer(624 * 4 + 16)
    L.kg_pyrand_seed(state, ctypes.c_uint64(seed))
    L.kg_pyrand_randint.restype = ctypes.c_int64
    L.kg_pyrand_randint.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
    ref = random.Random(seed)
    bounds = [(0, 1040), (0, 287000), (5, 5), (0, 1), (0, 2**33 + 5), (-10, 10)]
    for i in range(400):
        a, b = bounds[i % len(bounds)]
        assert L.kg_pyrand_randint(state, a, b) == ref.randint(a, b), (seed, i, a, b)


def test_getrandbits_matches_python():
    L = lib()
    state = ctypes.create_string_buffer(624 * 4 + 16)
    L.kg_pyrand_seed(state, ctypes.c_uint64(7))
    L.kg_pyrand_getrandbits.restype = ctypes.c_uint64
    L.kg_pyrand_getrandbits.argtypes = [ctypes.c_void_p, ctypes.c_int]
    ref = random.Random(7)
    for k in [1, 5, 31, 32, 33, 47, 64] * 20:
        assert L.kg_pyrand_getrandbits(state, k) == ref.getrandbits(k)
