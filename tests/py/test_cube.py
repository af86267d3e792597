# ctest-labels: py
"""Result cubes written by io/cube (through libkgapi.so) as analysts read them:
xarray with the h5netcdf engine and h5py. The oracle is a NumPy model of the
cube built here in Python alongside the C calls; `kickgrid status` and
`kickgrid merge` are checked against xarray (combine_by_coords for merge)."""
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import kgtest

F64, I32, STR = 0, 1, 2
I32_FILL = -2147483647
GLOBAL = -1


def dim_target(d):
    return -2 - d


_configured = False


def L():
    global _configured
    lib = kgtest.lib()
    if not _configured:
        vp, cp, i64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64
        sig = {
            "kg_cube_create": (vp, []),
            "kg_cube_free": (None, [vp]),
            "kg_cube_add_dim_f64": (ctypes.c_int, [vp, cp, ctypes.POINTER(ctypes.c_double), i64]),
            "kg_cube_add_dim_i32": (ctypes.c_int, [vp, cp, ctypes.POINTER(ctypes.c_int32), i64]),
            "kg_cube_add_dim_str": (ctypes.c_int, [vp, cp, ctypes.POINTER(cp), i64]),
            "kg_cube_add_var": (ctypes.c_int, [vp, cp, ctypes.c_int, ctypes.POINTER(cp), ctypes.c_int]),
            "kg_cube_set_f64": (ctypes.c_int, [vp, ctypes.c_int, ctypes.POINTER(i64), ctypes.c_double]),
            "kg_cube_set_i32": (ctypes.c_int, [vp, ctypes.c_int, ctypes.POINTER(i64), ctypes.c_int32]),
            "kg_cube_set_str": (ctypes.c_int, [vp, ctypes.c_int, ctypes.POINTER(i64), cp]),
            "kg_cube_set_fill_i32": (ctypes.c_int, [vp, ctypes.c_int, ctypes.c_int32]),
            "kg_cube_set_attr": (ctypes.c_int, [vp, ctypes.c_int, cp, cp]),
            "kg_cube_write": (ctypes.c_int, [vp, cp]),
            "kg_cube_read": (ctypes.c_int, [cp, ctypes.POINTER(vp)]),
        }
        for name, (res, args) in sig.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        _configured = True
    return lib


def ok(rc):
    assert rc >= 0, kgtest.last_error()
    return rc


class Cube:
    """Builds a cube through the C API and mirrors it as xarray would decode it
    (int32 variables become float64 with NaN at the fill value)."""

    def __init__(self):
        self.h = L().kg_cube_create()
        self.dims, self.vars, self.model, self.attrs = {}, {}, {}, {}

    def __del__(self):
        if getattr(self, "h", None):
            L().kg_cube_free(self.h)

    def dim(self, name, labels):
        n = len(labels)
        if all(isinstance(x, str) for x in labels):
            arr = (ctypes.c_char_p * n)(*[x.encode() for x in labels])
            ok(L().kg_cube_add_dim_str(self.h, name.encode(), arr, n))
        elif all(isinstance(x, int) for x in labels):
            ok(L().kg_cube_add_dim_i32(self.h, name.encode(), (ctypes.c_int32 * n)(*labels), n))
        else:
            ok(L().kg_cube_add_dim_f64(self.h, name.encode(), (ctypes.c_double * n)(*labels), n))
        self.dims[name] = list(labels)

    def var(self, name, kind, dims, fill=None):
        arr = (ctypes.c_char_p * max(len(dims), 1))(*[d.encode() for d in dims])
        v = ok(L().kg_cube_add_var(self.h, name.encode(), kind, arr, len(dims)))
        if fill is not None:
            ok(L().kg_cube_set_fill_i32(self.h, v, fill))
        shape = tuple(len(self.dims[d]) for d in dims)
        self.vars[name] = (v, kind, list(dims))
        self.model[name] = np.full(shape, "", dtype=object) if kind == STR else np.full(shape, np.nan)
        return v

    def set(self, name, idx, value):
        v, kind, dims = self.vars[name]
        cidx = (ctypes.c_int64 * max(len(idx), 1))(*idx)
        if kind == F64:
            ok(L().kg_cube_set_f64(self.h, v, cidx, float(value)))
        elif kind == I32:
            ok(L().kg_cube_set_i32(self.h, v, cidx, int(value)))
        else:
            ok(L().kg_cube_set_str(self.h, v, cidx, value.encode()))
        self.model[name][tuple(idx)] = value

    def attr(self, target, key, value):
        t = target if isinstance(target, int) else self.vars[target][0]
        ok(L().kg_cube_set_attr(self.h, t, key.encode(), value.encode()))
        self.attrs.setdefault(target, {})[key] = value

    def write(self, path):
        ok(L().kg_cube_write(self.h, str(path).encode()))

    def expected(self):
        """The xarray Dataset this cube should read back as (no attributes)."""
        coords = {d: np.array(v, dtype=object if isinstance(v[0], str) else None) for d, v in self.dims.items()}
        data = {}
        for name, (_, kind, dims) in self.vars.items():
            arr = self.model[name]
            data[name] = (dims, arr.astype(str) if kind == STR else arr)
        return xr.Dataset(data, coords=coords)


def sweep_cube(rng, models=("smollm2-135m",), sparsity=(0.0, 0.5), fill_fraction=0.6, commit="0123abcd"):
    """A grid like the coordinator's, with a random subset of cells run."""
    c = Cube()
    c.dim("model", list(models))
    c.dim("prune_method", ["dense", "magnitude", "wanda"])
    c.dim("sparsity", list(sparsity))
    c.dim("structure", ["unstructured", "2:4"])
    c.dim("calibration", ["c4"])
    c.dim("task", ["boolq", "piqa"])
    c.dim("layer", [0, 1, 2])
    cell = ["model", "prune_method", "sparsity", "structure", "calibration"]
    c.var("ppl", F64, cell)
    c.var("status", STR, cell)
    c.var("error", STR, cell)
    c.var("acc", F64, cell + ["task"])
    c.var("nnz", I32, cell + ["layer"])
    c.attr("ppl", "units", "1")
    c.attr("ppl", "long_name", "perplexity on WikiText-2")
    c.attr(dim_target(2), "long_name", "fraction of weights pruned")
    c.attr(GLOBAL, "git_commit", commit)
    c.attr(GLOBAL, "config", "sweep = {\n  sparsity = [0.0, 0.5];\n};\n")
    c.attr(GLOBAL, "slurm_job_id", "123456")
    shape = c.model["ppl"].shape
    for idx in np.ndindex(*shape):
        r = rng.random()
        if r < fill_fraction:
            c.set("status", idx, "done")
            c.set("ppl", idx, 10 + 40 * rng.random())
            for t in range(2):
                c.set("acc", idx + (t,), rng.random())
            for layer in range(3):
                c.set("nnz", idx + (layer,), int(rng.integers(-10**9, 10**9)))
        elif r < fill_fraction + 0.1:
            c.set("status", idx, "failed")
            c.set("error", idx, f"CUDA out of memory (cell {idx})")
        else:
            c.set("status", idx, "pending")
    return c


def open_xr(path):
    return xr.open_dataset(path, engine="h5netcdf")


def test_xarray_reads_dims_coords_values(tmp_path):
    c = sweep_cube(np.random.default_rng(1))
    c.set("status", (0, 2, 1, 0, 0), "done")
    c.set("ppl", (0, 2, 1, 0, 0), 23.4375)
    c.set("ppl", (0, 0, 0, 1, 0), np.nan)  # an explicit NaN stays NaN
    path = tmp_path / "cube.h5"
    c.write(path)
    with open_xr(path) as ds:
        assert dict(ds.sizes) == {"model": 1, "prune_method": 3, "sparsity": 2, "structure": 2,
                                  "calibration": 1, "task": 2, "layer": 3}
        assert list(ds.prune_method.values) == ["dense", "magnitude", "wanda"]
        assert ds.sparsity.dtype == np.float64 and list(ds.sparsity.values) == [0.0, 0.5]
        assert ds.layer.dtype == np.int32 and list(ds.layer.values) == [0, 1, 2]
        assert list(ds.structure.values) == ["unstructured", "2:4"]
        cell = ds.ppl.sel(prune_method="wanda", sparsity=0.5, structure="unstructured")
        assert float(cell.squeeze()) == 23.4375
        xr.testing.assert_equal(ds, c.expected())
        assert np.isnan(ds.ppl.values).sum() == np.isnan(c.model["ppl"]).sum() > 0
        assert ds.ppl.attrs == {"units": "1", "long_name": "perplexity on WikiText-2"}
        assert ds.sparsity.attrs == {"long_name": "fraction of weights pruned"}
        assert ds.attrs == c.attrs[GLOBAL]
        assert list(ds.data_vars) == ["ppl", "status", "error", "acc", "nnz"]


def test_h5py_sees_netcdf4_layout(tmp_path):
    c = sweep_cube(np.random.default_rng(2))
    path = tmp_path / "cube.h5"
    c.write(path)
    dim_names = list(c.dims)
    with h5py.File(path, "r") as f:
        root = h5py.h5g.open(f.id, b"/")
        tracked_indexed = h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED
        assert root.get_create_plist().get_link_creation_order() == tracked_indexed
        assert root.get_create_plist().get_attr_creation_order() == tracked_indexed
        # Creation order, not alphabetical: h5py lists in tracked order.
        assert list(f.keys()) == dim_names + list(c.vars)
        assert f.attrs["_NCProperties"].decode().startswith("version=2,kickgrid=")
        assert list(f.attrs) == ["_NCProperties", "git_commit", "config", "slurm_job_id"]
        assert h5py.h5o.get_info(root).ctime == 0
        for i, d in enumerate(dim_names):
            ds = f[d]
            assert ds.is_scale and ds.attrs["CLASS"] == b"DIMENSION_SCALE"
            assert ds.attrs["NAME"] == d.encode()
            assert int(ds.attrs["_Netcdf4Dimid"]) == i
            assert ds.id.get_create_plist().get_attr_creation_order() == tracked_indexed
            assert h5py.h5o.get_info(ds.id).ctime == 0
            assert ds.id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS
        info = h5py.check_string_dtype(f["prune_method"].dtype)
        assert info.encoding == "utf-8" and info.length is None  # variable-length UTF-8
        for name, (_, kind, dims) in c.vars.items():
            ds = f[name]
            assert list(ds.attrs["_Netcdf4Coordinates"]) == [dim_names.index(d) for d in dims]
            assert [ds.dims[k][0].name for k in range(ds.ndim)] == ["/" + d for d in dims]
            assert h5py.h5o.get_info(ds.id).ctime == 0
            if kind == F64:
                assert np.isnan(ds.attrs["_FillValue"]).all() and ds.attrs["_FillValue"].dtype == np.float64
                assert np.isnan(ds.fillvalue)
            elif kind == I32:
                assert ds.dtype == np.int32 and list(ds.attrs["_FillValue"]) == [I32_FILL]
            else:
                assert "_FillValue" not in ds.attrs
                assert h5py.check_string_dtype(ds.dtype).encoding == "utf-8"
        raw = f["nnz"][()]
        want = c.model["nnz"]
        assert (raw[np.isnan(want)] == I32_FILL).all() and (raw[~np.isnan(want)] == want[~np.isnan(want)]).all()
        assert list(f["status"].asstr()[()].ravel()) == list(c.model["status"].ravel())


def test_netcdf_c_reads_the_same_dataset(tmp_path):
    """netCDF-C (through the netCDF4 package) is an independent reader of the
    format: it must see a NETCDF4 file and xarray's netcdf4 engine must give
    exactly what the h5netcdf engine gives."""
    netCDF4 = pytest.importorskip("netCDF4")
    c = sweep_cube(np.random.default_rng(8))
    path = tmp_path / "cube.nc"
    c.write(path)
    with netCDF4.Dataset(path) as nc:
        assert nc.data_model == "NETCDF4"
        assert {k: len(v) for k, v in nc.dimensions.items()} == {k: len(v) for k, v in c.dims.items()}
        assert nc["nnz"].dimensions == tuple(c.vars["nnz"][2])
        assert nc.getncattr("git_commit") == "0123abcd"
    with xr.open_dataset(path, engine="netcdf4") as a, open_xr(path) as b:
        xr.testing.assert_identical(a, b)


def test_int_fill_and_unicode(tmp_path):
    c = Cube()
    c.dim("model", ["llama-\u00e9t\u00e9", "\u6a21\u578b"])
    c.dim("linear", ["q_proj", "k_proj"])
    c.var("count", I32, ["model", "linear"], fill=-1)
    c.var("note", STR, ["model"])
    c.set("count", (1, 0), 7)
    c.set("note", (0,), "\u2713 done")
    path = tmp_path / "u.h5"
    c.write(path)
    with open_xr(path) as ds:
        assert list(ds.model.values) == ["llama-\u00e9t\u00e9", "\u6a21\u578b"]
        assert float(ds["count"].sel(model="\u6a21\u578b", linear="q_proj")) == 7
        assert np.isnan(ds["count"].values).sum() == 3
        assert ds.note.values[0] == "\u2713 done" and ds.note.values[1] == ""
    with h5py.File(path) as f:
        assert list(f["count"].attrs["_FillValue"]) == [-1] and f["count"][0, 0] == -1


def test_identical_bytes_and_read_back(tmp_path):
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    cube = sweep_cube(np.random.default_rng(3))
    cube.write(a)
    cube.write(b)
    assert a.read_bytes() == b.read_bytes()
    # The same cube built in another process gives the same bytes too.
    code = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import test_cube as t; "
            "t.sweep_cube(np.random.default_rng(3)).write(sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(c)], check=True, timeout=120)
    assert a.read_bytes() == c.read_bytes()
    # read -> write is lossless down to the byte.
    h = ctypes.c_void_p()
    ok(L().kg_cube_read(str(a).encode(), ctypes.byref(h)))
    ok(L().kg_cube_write(h, str(b).encode()))
    L().kg_cube_free(h)
    assert a.read_bytes() == b.read_bytes()
    # and the comparison is able to fail: one changed value changes the file.
    cube.set("ppl", (0, 0, 0, 0, 0), 1.5)
    cube.write(b)
    assert a.read_bytes() != b.read_bytes()


def big_cube(version, n=1 << 21):
    c = Cube()
    c.dim("cell", [float(i) for i in range(n // 64)])
    c.dim("layer", list(range(64)))
    c.var("v", F64, ["cell", "layer"])
    c.attr(GLOBAL, "version", str(version))
    # One set() per cell through ctypes is too slow for 2M cells; set a
    # marker cell per layer and check consistency through it and the attribute.
    for layer in range(64):
        c.set("v", (layer * 7, layer), float(version))
    return c


def check_published(path, versions_seen):
    with h5py.File(path, "r") as f:
        version = int(f.attrs["version"])
        v = f["v"][()]
    marks = v[np.arange(64) * 7, np.arange(64)]
    assert (marks == version).all(), f"cube {version} is mixed with another"
    assert np.isnan(v).sum() == v.size - 64
    versions_seen.add(version)
    return version


def test_atomic_publish_while_reading(tmp_path):
    path = tmp_path / "live.h5"
    cubes = [big_cube(k) for k in range(1, 5)]
    cubes[0].write(path)
    seen, errors = set(), []

    def writer():
        try:
            for c in cubes[1:]:  # ctypes drops the GIL during kg_cube_write
                c.write(path)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    reads = 0
    while t.is_alive() or reads == 0:
        check_published(path, seen)
        reads += 1
    t.join()
    assert not errors
    assert check_published(path, seen) == 4
    assert reads > 1 and len(seen) >= 2
    assert [p.name for p in tmp_path.iterdir()] == ["live.h5"]  # no temporary left behind


def test_killed_writer_leaves_old_or_new_cube(tmp_path):
    path = tmp_path / "live.h5"
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_cube as t
cubes = [t.big_cube(k, n=1 << 20) for k in (1, 2)]
k = 0
while True:
    cubes[k % 2].write({str(path)!r})
    print(k % 2 + 1, flush=True)
    k += 1
"""
    rng = np.random.default_rng(7)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # one cube is published
        assert first.strip() in ("1", "2")
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert check_published(path, set()) in (1, 2)
        for p in tmp_path.glob("live.h5.tmp.*"):  # a killed writer may leave its temporary
            p.unlink()


def test_not_a_cube_is_a_clear_error(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3.0)
    text = tmp_path / "text.h5"
    text.write_text("hello\n")
    h = ctypes.c_void_p()
    assert L().kg_cube_read(str(plain).encode(), ctypes.byref(h)) < 0
    assert "not a kickgrid cube" in kgtest.last_error() and "plain.h5" in kgtest.last_error()
    for p, why in ((plain, "not a kickgrid cube"), (text, "not an HDF5 file"), (tmp_path / "none.h5", "No such file")):
        proc = kgtest.run("status", p, check=False)
        assert proc.returncode == 1 and why in proc.stderr and str(p) in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_status_counts_and_failures(tmp_path):
    c = sweep_cube(np.random.default_rng(4))
    c.set("status", (0, 0, 0, 0, 0), "n/a")
    for idx, msg in (((0, 1, 1, 0, 0), "NaN loss at layer 3"), ((0, 2, 0, 1, 0), "CUDA out of memory")):
        c.set("status", idx, "failed")
        c.set("error", idx, msg)
    path = tmp_path / "cube.h5"
    c.write(path)
    with open_xr(path) as ds:
        values, counts = np.unique(ds.status.values, return_counts=True)
        want_counts = dict(zip(values.tolist(), counts.tolist()))
        failed = ds.status.where(ds.status == "failed").to_series().dropna()
        want_failed = {key: str(ds.error.sel(dict(zip(failed.index.names, key))).values) for key in failed.index}
    rep = json.loads(kgtest.run("status", path, "--json").stdout)
    assert {k: v for k, v in rep["status"]["counts"].items() if v} == want_counts
    assert rep["status"]["cells"] == sum(want_counts.values())
    got_failed = {tuple(f["cell"][d] for d in failed.index.names): f["error"] for f in rep["failed"]}
    assert got_failed == want_failed and len(got_failed) > 0
    assert [d["name"] for d in rep["dims"]] == list(c.dims)
    assert rep["dims"][2]["labels"] == [0.0, 0.5]
    assert rep["attributes"] == c.attrs[GLOBAL]
    ppl = next(v for v in rep["variables"] if v["name"] == "ppl")
    assert ppl["set"] == int((~np.isnan(c.model["ppl"])).sum())
    text = kgtest.run("status", path).stdout
    for k, v in want_counts.items():
        assert any(line.split() == [k, str(v)] for line in text.splitlines()), (k, v, text)
    first_failed = next(iter(want_failed.items()))
    assert first_failed[1] in text
    assert "git_commit" in text and "0123abcd" in text and "[3 lines" in text
    limited = kgtest.run("status", path, "--max-failed", "1").stdout
    assert f"and {len(want_failed) - 1} more" in limited


def write_tiles(tmp_path, fill_fraction=1.0):
    """Four cubes of a sweep split over model x sparsity, each with its own commit."""
    rng = np.random.default_rng(5)
    tiles = {}
    for m in ("m1", "m2"):
        for sp in ((0.0, 0.5), (0.7, 0.9)):
            c = sweep_cube(rng, models=(m,), sparsity=sp, fill_fraction=fill_fraction, commit=f"c-{m}-{sp[0]}")
            p = tmp_path / f"{m}_{sp[0]}.h5"
            c.write(p)
            tiles[p] = c
    return list(tiles)


def test_merge_matches_combine_by_coords(tmp_path):
    paths = write_tiles(tmp_path, fill_fraction=0.7)
    out = tmp_path / "all.h5"
    kgtest.run("merge", *paths, "-o", out)
    parts = [open_xr(p) for p in paths]
    combined = xr.combine_by_coords(parts, combine_attrs="drop")  # provenance is checked below
    with open_xr(out) as merged:
        xr.testing.assert_equal(merged, combined)
        assert merged.attrs["config"] == parts[0].attrs["config"]
        for i, p in enumerate(paths):
            assert merged.attrs[f"git_commit_input{i}"] == parts[i].attrs["git_commit"]
        assert "git_commit" not in merged.attrs
        assert merged.attrs["merged_from"].split("\n") == [str(p) for p in paths]
    for p in parts:
        p.close()
    # Another input order gives the same cells (string labels follow the first input).
    shuffled = tmp_path / "shuffled.h5"
    kgtest.run("merge", *paths[::-1], "-o", shuffled)
    with open_xr(shuffled) as s, open_xr(out) as merged:
        assert list(s.sparsity.values) == [0.0, 0.5, 0.7, 0.9]
        assert list(s.model.values) == ["m2", "m1"]
        xr.testing.assert_equal(s.sel(model=merged.model), merged)
    # Two processes merging the same inputs write the same bytes.
    again = tmp_path / "again.h5"
    kgtest.run("merge", *paths, "-o", again)
    assert again.read_bytes() == out.read_bytes()


def test_merge_conflict_names_the_cell(tmp_path):
    a = sweep_cube(np.random.default_rng(6), fill_fraction=1.0)
    b = sweep_cube(np.random.default_rng(6), fill_fraction=1.0)
    b.set("ppl", (0, 2, 1, 1, 0), 99.0)
    pa, pb, out = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "out.h5"
    a.write(pa)
    b.write(pb)
    proc = kgtest.run("merge", pa, pb, "-o", out, check=False)
    assert proc.returncode == 1 and not out.exists()
    assert "'ppl' at model=smollm2-135m, prune_method=wanda, sparsity=0.5, structure=2:4, calibration=c4" in proc.stderr
    assert "99 in" in proc.stderr and str(pa) in proc.stderr and str(pb) in proc.stderr
    # A cell one input finished and the other only has pending is no conflict.
    a.set("ppl", (0, 2, 1, 1, 0), 99.0)
    b.set("status", (0, 0, 0, 0, 0), "pending")
    b.set("ppl", (0, 0, 0, 0, 0), 1.0)
    a.write(pa)
    b.write(pb)
    kgtest.run("merge", pa, pb, "-o", out)
    with open_xr(out) as m:
        assert float(m.ppl.values[0, 0, 0, 0, 0]) == a.model["ppl"][0, 0, 0, 0, 0]
        assert m.status.values[0, 0, 0, 0, 0] == "done"
    usage = kgtest.run("merge", pa, check=False)
    assert usage.returncode == 2 and "-o" in usage.stderr
