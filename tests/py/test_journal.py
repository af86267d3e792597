# ctest-labels: py
"""The journal written by io/journal (through libkgapi.so), checked from the
outside: every line is JSON whose crc32 is zlib.crc32 of the record text,
replay returns exactly what was appended, torn tails and damaged bytes are
handled, a killed appender loses no acknowledged record, and replayed
records land in a cube that xarray reads back."""
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import kgtest

F64, I32, STR = 0, 1, 2
HEAD = len('{"crc32":"00000000","record":')


class Entry(ctypes.Structure):
    _fields_ = [("var", ctypes.c_char_p), ("ndims", ctypes.c_int), ("index", ctypes.POINTER(ctypes.c_int64)),
                ("type", ctypes.c_int), ("f64", ctypes.c_double), ("i32", ctypes.c_int32), ("str", ctypes.c_char_p)]


class Record(ctypes.Structure):
    _fields_ = [("cell", ctypes.c_char_p), ("status", ctypes.c_int), ("attempts", ctypes.c_int),
                ("wall_s", ctypes.c_double), ("host", ctypes.c_char_p), ("error", ctypes.c_char_p),
                ("n_entries", ctypes.c_int), ("entries", ctypes.POINTER(Entry))]


class Stats(ctypes.Structure):
    _fields_ = [("records", ctypes.c_int64), ("torn", ctypes.c_int64), ("corrupt", ctypes.c_int64)]


CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(Record), ctypes.c_void_p)
_configured = False


def L():
    global _configured
    lib = kgtest.lib()
    if not _configured:
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        sig = {
            "kg_journal_open": (ctypes.c_int, [cp, ctypes.POINTER(vp)]),
            "kg_journal_append": (ctypes.c_int, [vp, ctypes.POINTER(Record)]),
            "kg_journal_close": (ctypes.c_int, [vp]),
            "kg_journal_replay": (ctypes.c_int, [cp, ctypes.c_int, CALLBACK, vp, ctypes.POINTER(Stats)]),
            "kg_journal_apply": (ctypes.c_int, [vp, ctypes.POINTER(Record)]),
            "kg_crc32": (ctypes.c_uint32, [ctypes.c_uint32, cp, ctypes.c_size_t]),
        }
        for name, (res, args) in sig.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        _configured = True
    return lib


def make_record(rng, i):
    """A Python description of record i (random values of every type)."""
    kinds = [F64, I32, STR]
    entries = []
    for k in range(int(rng.integers(0, 4))):
        kind = kinds[(i + k) % 3]
        idx = [int(x) for x in rng.integers(0, 3, size=3)]
        if kind == F64:
            choice = rng.random()
            value = [math.nan, math.inf, -math.inf, -0.0][int(choice * 4)] if choice < 0.2 else float(rng.normal() * 10.0 ** rng.integers(-8, 8))
            entries.append(("ppl", idx, F64, value))
        elif kind == I32:
            entries.append(("nnz", idx, I32, int(rng.integers(-2**31, 2**31))))
        else:
            entries.append(("status", idx, STR, ["done", "d\u00f6ne \"q\"\n\t\\", "\u2713"][k % 3]))
    return {
        "cell": f"model=smollm2/prune_method=wanda/sparsity={i / 10}",
        "status": "failed" if i % 4 == 3 else "done",
        "attempts": 1 + i % 3,
        "wall_s": float(rng.random() * 100),
        "host": f"node{i:02d}",
        "error": f"line one\nline \"two\" {i}" if i % 4 == 3 else "",
        "values": entries,
    }


def append(journal, rec):
    ents = (Entry * max(len(rec["values"]), 1))()
    keep = []
    for e, (var, idx, kind, value) in zip(ents, rec["values"]):
        arr = (ctypes.c_int64 * 3)(*idx)
        keep.append(arr)
        e.var, e.ndims, e.index, e.type = var.encode(), 3, arr, kind
        if kind == F64:
            e.f64 = value
        elif kind == I32:
            e.i32 = value
        else:
            e.str = value.encode()
    r = Record(rec["cell"].encode(), 0 if rec["status"] == "done" else 1, rec["attempts"], rec["wall_s"],
               rec["host"].encode(), rec["error"].encode(), len(rec["values"]), ents)
    rc = L().kg_journal_append(journal, ctypes.byref(r))
    assert rc == 0, kgtest.last_error()


def append_all(path, records):
    j = ctypes.c_void_p()
    assert L().kg_journal_open(str(path).encode(), ctypes.byref(j)) == 0, kgtest.last_error()
    for rec in records:
        append(j, rec)
    assert L().kg_journal_close(j) == 0


def replay(path, strict=False):
    """Returns (records as Python dicts, stats, rc)."""
    out = []

    def cb(rp, _user):
        r = rp.contents
        vals = []
        for k in range(r.n_entries):
            e = r.entries[k]
            idx = [e.index[d] for d in range(e.ndims)]
            value = e.f64 if e.type == F64 else e.i32 if e.type == I32 else e.str.decode()
            vals.append((e.var.decode(), idx, e.type, value))
        out.append({"cell": r.cell.decode(), "status": "done" if r.status == 0 else "failed",
                    "attempts": r.attempts, "wall_s": r.wall_s, "host": r.host.decode(),
                    "error": r.error.decode(), "values": vals})
        return 0

    stats = Stats()
    rc = L().kg_journal_replay(str(path).encode(), int(strict), CALLBACK(cb), None, ctypes.byref(stats))
    return out, stats, rc


def same_value(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b


def same_record(a, b):
    keys = ("cell", "status", "attempts", "host", "error")
    if any(a[k] != b[k] for k in keys) or a["wall_s"] != b["wall_s"] or len(a["values"]) != len(b["values"]):
        return False
    return all(x[:3] == y[:3] and same_value(x[3], y[3]) for x, y in zip(a["values"], b["values"]))


def decode_json_value(kind, v):
    if kind == "f64" and isinstance(v, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[v]
    return v


def test_crc_matches_zlib():
    rng = np.random.default_rng(0)
    for n in (0, 1, 9, 1000):
        data = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        assert L().kg_crc32(0, data, n) == zlib.crc32(data)


def test_lines_are_checksummed_json(tmp_path):
    rng = np.random.default_rng(1)
    records = [make_record(rng, i) for i in range(40)]
    path = tmp_path / "j.jsonl"
    append_all(path, records)
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert len(lines) == len(records)
    for line, want in zip(lines, records):
        obj = json.loads(line)
        text = line[HEAD:-1]
        assert obj["crc32"] == f"{zlib.crc32(text):08x}"
        rec = obj["record"]
        assert json.loads(text) == rec
        got = dict(rec, values=[(e["var"], e["index"], {"f64": F64, "i32": I32, "str": STR}[e["type"]],
                                 decode_json_value(e["type"], e["value"])) for e in rec["values"]])
        assert same_record(got, want), (got, want)


def test_replay_returns_what_was_appended(tmp_path):
    rng = np.random.default_rng(2)
    records = [make_record(rng, i) for i in range(25)]
    path = tmp_path / "j.jsonl"
    append_all(path, records[:10])
    append_all(path, records[10:])  # reopen and continue
    got, stats, rc = replay(path, strict=True)
    assert rc == 0 and (stats.records, stats.torn, stats.corrupt) == (25, 0, 0)
    assert all(same_record(a, b) for a, b in zip(got, records)) and len(got) == 25
    _, _, rc = replay(tmp_path / "missing.jsonl")
    assert rc < 0 and "missing.jsonl" in kgtest.last_error()


def test_torn_last_line_is_skipped_then_cut(tmp_path):
    rng = np.random.default_rng(3)
    records = [make_record(rng, i) for i in range(12)]
    path = tmp_path / "j.jsonl"
    append_all(path, records)
    full = path.read_bytes()
    last_start = full.rstrip(b"\n").rfind(b"\n") + 1
    for cut in sorted(set(int(x) for x in rng.integers(last_start + 1, len(full), size=6))):
        path.write_bytes(full[:cut])  # a crash part-way through the last append
        got, stats, rc = replay(path, strict=True)
        assert rc == 0 and stats.torn == 1 and stats.records == 11 and stats.corrupt == 0
        assert all(same_record(a, b) for a, b in zip(got, records[:11]))
    # Appending after the crash drops the torn tail first.
    extra = make_record(rng, 99)
    append_all(path, [extra])
    got, stats, rc = replay(path, strict=True)
    assert rc == 0 and stats.torn == 0 and len(got) == 12
    assert same_record(got[-1], extra) and all(same_record(a, b) for a, b in zip(got, records[:11]))
    assert path.read_bytes().startswith(full[:last_start])


def test_damaged_byte_is_detected(tmp_path):
    rng = np.random.default_rng(4)
    records = [make_record(rng, i) for i in range(15)]
    path = tmp_path / "j.jsonl"
    append_all(path, records)
    full = bytearray(path.read_bytes())
    starts = [0] + [i + 1 for i, b in enumerate(full) if b == 0x0A][:-1]
    for trial in range(8):
        line = int(rng.integers(0, len(records)))
        end = full.index(b"\n", starts[line])
        pos = int(rng.integers(starts[line] + HEAD, end))
        damaged = bytearray(full)
        damaged[pos] ^= 1 << int(rng.integers(0, 7))  # stays non-newline ASCII
        if damaged[pos] == 0x0A:
            continue
        path.write_bytes(bytes(damaged))
        got, stats, rc = replay(path)
        assert rc == 0 and stats.corrupt == 1 and stats.records == 14
        assert all(same_record(a, b) for a, b in zip(got, records[:line] + records[line + 1:]))
        _, _, rc = replay(path, strict=True)
        assert rc < 0 and f":{line + 1}:" in kgtest.last_error()


CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, test_journal as t, ctypes
start = int(sys.argv[3])
j = ctypes.c_void_p()
assert t.L().kg_journal_open(sys.argv[2].encode(), ctypes.byref(j)) == 0
i = start
while True:
    t.append(j, t.make_record(np.random.default_rng(i), i))
    print(i, flush=True)  # acknowledged: append returned after fsync
    i += 1
"""


def test_killed_appender_loses_no_acknowledged_record(tmp_path):
    path = tmp_path / "j.jsonl"
    rng = np.random.default_rng(5)
    count = 0
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(Path(__file__).parent), str(path), str(count)],
                                stdout=subprocess.PIPE, text=True)
        acked = [int(proc.stdout.readline())]
        deadline = time.time() + float(rng.uniform(0.05, 0.3))
        while time.time() < deadline:
            acked.append(int(proc.stdout.readline()))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        acked += [int(x) for x in proc.stdout.read().split()]
        proc.stdout.close()
        got, stats, rc = replay(path, strict=True)
        assert rc == 0 and stats.corrupt == 0
        assert len(got) >= max(acked) + 1
        for i, rec in enumerate(got):
            assert same_record(rec, make_record(np.random.default_rng(i), i)), i
        count = len(got)
    assert count > 3


def test_replayed_records_fill_a_cube(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    import test_cube as tc

    rng = np.random.default_rng(6)
    records = []
    for i in range(30):
        rec = make_record(rng, i)
        rec["values"] = [(var, [0] + idx[1:], kind, value) for var, idx, kind, value in rec["values"]]
        records.append(rec)
    path = tmp_path / "j.jsonl"
    append_all(path, records)
    cube = tc.Cube()
    cube.dim("model", ["m"])
    cube.dim("prune_method", ["dense", "magnitude", "wanda"])
    cube.dim("sparsity", [0.0, 0.5, 0.7])
    dims = ["model", "prune_method", "sparsity"]
    cube.var("ppl", tc.F64, dims)
    cube.var("nnz", tc.I32, dims)
    cube.var("status", tc.STR, dims)
    for rec in records:  # the oracle: later records overwrite earlier ones
        for var, idx, kind, value in rec["values"]:
            cube.model[var][tuple(idx)] = value

    def apply(rp, _user):
        return L().kg_journal_apply(cube.h, rp)

    stats = Stats()
    rc = L().kg_journal_replay(str(path).encode(), 1, CALLBACK(apply), None, ctypes.byref(stats))
    assert rc == 0, kgtest.last_error()
    assert stats.records == 30
    out = tmp_path / "cube.h5"
    cube.write(out)
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds.ppl.values, cube.model["ppl"])
        np.testing.assert_array_equal(ds.nnz.values, cube.model["nnz"])
        assert ds.status.values.tolist() == cube.model["status"].tolist()
    # A record that does not fit the cube stops the replay with an error naming its cell.
    bad = make_record(rng, 7)
    bad["values"] = [("ppl", [1, 0, 0], F64, 1.0)]
    append_all(path, [bad])
    rc = L().kg_journal_replay(str(path).encode(), 1, CALLBACK(apply), None, ctypes.byref(stats))
    assert rc < 0 and f"journal cell '{bad['cell']}'" in kgtest.last_error() and "model" in kgtest.last_error()
