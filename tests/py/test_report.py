# ctest-labels: py report
"""`kickgrid report`: a real sweep's cube (stories260K, two calibration
sources x two seeds, a small task) is turned into PNGs, one self-contained
HTML page, CSV and JSON; headless Chromium renders the page, and the numbers
it shows are checked against values computed here with xarray/numpy."""
import base64
import json
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

from kgtest import KICKGRID, data_path, run

xr = pytest.importorskip("xarray")
pytest.importorskip("matplotlib")
pytest.importorskip("pandas")

STORIES = "text/tinystories/TinyStories-valid.head.txt"
# The interpreter running these tests has the analysis packages.
PY = {"KG_PYTHON": sys.executable}


def analysis_sweep(name, out, stories, tasks=True):
    """Sweep config text: 3 methods x (0.3, 0.5, 2:4) and two 4-bit
    quantizations, calibration on C4 and
    on TinyStories with seeds 0 and 1, perplexity, JS divergence, and
    optionally PIQA (8 examples). About 5 s on one core."""
    task = 'tasks = ( { name = "piqa"; limit = 8; } );' if tasks else ""
    calib = ",\n".join(
        f'{{ name = "{n}-s{seed}"; source = "{src}"; nsamples = 4; seqlen = 64; seed = {seed}; }}'
        for n, src in (("c4", "c4"), ("stories", f"file:{stories}")) for seed in (0, 1))
    return f"""name = "{name}";
models = ( {{ name = "stories260K"; path = "stories260K"; }} );
prune_method = [ "magnitude", "wanda", "sparsegpt" ];
sparsity = ( 0.3, 0.5, "2:4" );
quantization = ( {{ method = "rtn"; bits = 4; }}, {{ method = "gptq"; bits = 4; act_order = true; }} );
calibration = ( {calib} );
evaluation = {{
  perplexity = ( {{ dataset = "tinystories"; seqlen = 128; max_windows = 4; }} );
  js_divergence = {{ dataset = "tinystories"; seqlen = 128; max_windows = 2; }};
  {task}
}};
grid = {{ team_size = 1; retries = 0; threads = 1; output = "{out}"; log_dir = "{out}.logs"; }};
"""


def make_cube(tmp, name, tasks=True):
    data_path("models/stories260K/stories260K.bin")
    stories = data_path(STORIES)
    if tasks:
        data_path("tasks/piqa.jsonl")
    cube = tmp / f"{name}.h5"
    cfg = tmp / f"{name}.cfg"
    cfg.write_text(analysis_sweep(name, cube, stories, tasks))
    run("run", cfg, "--fresh")
    return cube


def fmt(v):
    # The report's documented display: 4 significant digits.
    return format(float(v), ".4g")


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    return make_cube(tmp_path_factory.mktemp("report"), "ana")


@pytest.fixture(scope="module")
def report(cube, tmp_path_factory):
    out = tmp_path_factory.mktemp("report_out")
    proc = run("report", cube, "-o", out, env=PY)
    assert "report.html" in proc.stdout
    return out


class Assets(HTMLParser):
    """Every resource reference of a page."""

    def __init__(self):
        super().__init__()
        self.imgs, self.external = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for key in ("src", "href"):
            v = a.get(key)
            if v and not v.startswith(("data:", "#")) and tag != "a":
                self.external.append((tag, v))
        if tag in ("link", "script") and (a.get("src") or a.get("href")):
            self.external.append((tag, a.get("src") or a.get("href")))


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_report_files_and_self_contained_html(report):
    html = (report / "report.html").read_text()
    pngs = sorted((report / "plots").glob("*.png"))
    assert len(pngs) >= 5  # metric plots, JS vs drop, calibration effect, heatmaps
    # quantized methods get bars of their own, not points on the sparsity axis
    assert (report / "plots" / "ppl_quantized_stories260K.png").is_file()
    p = Assets()
    p.feed(html)
    assert not p.external, p.external
    assert len(p.imgs) == len(pngs)
    embedded = [base64.b64decode(src.split(",", 1)[1]) for src in p.imgs]
    assert all(src.startswith("data:image/png;base64,") for src in p.imgs)
    # The embedded images are the PNG files, byte for byte.
    assert sorted(embedded) == sorted(f.read_bytes() for f in pngs)
    for data in embedded:
        w, h = png_size(data)
        assert w >= 300 and h >= 200
    for name in ("ppl", "js_mean", "acc", "status", "js_vs_drop", "calibration_effect_ppl"):
        assert (report / "csv" / f"{name}.csv").stat().st_size > 0, name


def test_tables_and_json_match_the_cube(cube, report):
    ds = xr.open_dataset(cube, engine="h5netcdf").load()
    summary = json.loads((report / "report.json").read_text())
    st = ds.status.values.ravel()
    assert summary["status"] == {k: int((st == k).sum()) for k in set(st)}
    ppl = ds.ppl.sel(model="stories260K", ppl_dataset="tinystories")
    table = summary["tables"]["ppl"]["tinystories"]["stories260K"]
    for calib in map(str, ds.calibration.values):
        for method in ("wanda", "sparsegpt"):
            assert table[calib][method]["0.5"] == float(ppl.sel(prune_method=method, calibration=calib,
                                                                  sparsity=0.5, structure="unstructured"))
            assert table[calib][method]["2:4"] == float(ppl.sel(prune_method=method, calibration=calib,
                                                                  sparsity=0.5, structure="2:4"))
        assert table[calib]["dense"]["0.3"] is None  # n/a
    import csv
    rows = list(csv.DictReader(open(report / "csv" / "ppl.csv")))
    assert len(rows) == int(np.isfinite(ds.ppl.values).sum())


def independent_correlation(ds, measure="acc"):
    """Pearson r of mean JS divergence vs the downstream drop, from the
    definitions: one point per compressed cell, quantized ones included
    (magnitude and RTN ignore calibration data, so their replicated cells
    count once); the drop is dense acc - acc
    (measure "acc") or log(ppl / dense ppl) (measure "ppl"), mean over
    tasks or texts."""
    js, drop = [], []
    dense = ds[measure].sel(prune_method="dense", sparsity=0.0, structure="unstructured")
    pruned = ((0.3, "unstructured"), (0.5, "unstructured"), (0.5, "2:4"))
    for m in ("magnitude", "wanda", "sparsegpt", "rtn-w4", "gptq-w4-ao"):
        calibs = ds.calibration.values[:1] if m in ("magnitude", "rtn-w4") else ds.calibration.values
        for c in calibs:
            for s, t in (((0.0, "unstructured"),) if "-w4" in m else pruned):
                cell = dict(model="stories260K", prune_method=m, calibration=c, sparsity=s, structure=t)
                ref = dense.sel(model="stories260K", calibration=c)
                js.append(float(ds.js_mean.sel(**cell).mean()))
                if measure == "acc":
                    drop.append(float((ref - ds.acc.sel(**cell)).mean()))
                else:
                    drop.append(float(np.log(ds.ppl.sel(**cell) / ref).mean()))
    return np.corrcoef(js, drop)[0, 1], len(js)


def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return exe


def browse(report, tmp_path, *args):
    exe = chromium()
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", *args, (report / "report.html").as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_chromium_renders_the_numbers(cube, report, tmp_path):
    proc = browse(report, tmp_path, "--dump-dom")
    dom = proc.stdout
    assert "<h1>" in dom, proc.stderr[-2000:]
    ds = xr.open_dataset(cube, engine="h5netcdf").load()
    for text in ("stories260K", "magnitude", "wanda", "sparsegpt", "c4-s1", "stories-s0", "2:4"):
        assert text in dom, text
    # A table cell: SparseGPT at 2:4, calibrated on TinyStories seed 1.
    v = float(ds.ppl.sel(model="stories260K", prune_method="sparsegpt", sparsity=0.5, structure="2:4",
                         calibration="stories-s1", ppl_dataset="tinystories"))
    assert f"<td>{fmt(v)}</td>" in dom
    # The calibration effect: Wanda at 0.5 on C4, mean and std over seeds 0 and 1.
    pair = ds.ppl.sel(model="stories260K", prune_method="wanda", sparsity=0.5, structure="unstructured",
                      calibration=["c4-s0", "c4-s1"], ppl_dataset="tinystories").values
    assert f"<td>{fmt(pair.mean())}</td>" in dom and f"<td>{fmt(pair.std(ddof=1))}</td>" in dom
    r, n = independent_correlation(ds)
    assert f"<td>{fmt(r)}</td>" in dom and f"<td>{n}</td>" in dom


def test_chromium_screenshot(report, tmp_path):
    shot = tmp_path / "shot.png"
    proc = browse(report, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400")
    assert shot.exists(), proc.stderr[-2000:]
    data = shot.read_bytes()
    assert png_size(data) == (1280, 2400)
    from PIL import Image
    img = Image.open(shot).convert("RGB").resize((320, 600))
    colors = len(img.getcolors(1 << 20))
    assert colors > 50, f"the page looks blank ({colors} colors)"


def test_report_errors(tmp_path):
    proc = run("report", tmp_path / "missing.h5", "-o", tmp_path / "out", check=False, env=PY)
    assert proc.returncode == 1 and "missing.h5" in proc.stderr
    bad = tmp_path / "bad.h5"
    bad.write_text("not a cube")
    proc = run("report", bad, "-o", tmp_path / "out", check=False, env=PY)
    assert proc.returncode == 1 and "bad.h5" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("report", bad, "-o", tmp_path / "out", check=False, env={"KG_PYTHON": str(tmp_path / "nopython")})
    assert proc.returncode == 1 and "nopython" in proc.stderr


def test_report_names_missing_packages(cube, tmp_path):
    # A bare virtual environment: Python without any of the packages.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", tmp_path / "bare"], check=True)
    bare = tmp_path / "bare" / "bin" / "python"
    proc = run("report", cube, "-o", tmp_path / "out", check=False, env={"KG_PYTHON": str(bare)})
    assert proc.returncode == 1 and "missing Python packages" in proc.stderr, proc.stderr
    for package in ("numpy", "xarray", "matplotlib"):
        assert package in proc.stderr
    assert not (tmp_path / "out").exists()
