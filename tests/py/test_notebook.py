# ctest-labels: py report
"""docs/analysis.ipynb runs top to bottom (nbclient) against a fresh cube
without tasks, shows its plots, and prints the JS-vs-drop correlation that
the definitions give (here the drop is the log perplexity ratio)."""
import re

import pytest

from kgtest import SOURCE_DIR
from test_report import independent_correlation, make_cube

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
xr = pytest.importorskip("xarray")
pytest.importorskip("matplotlib")


def test_notebook_runs_on_a_cube_without_tasks(tmp_path, monkeypatch):
    cube = make_cube(tmp_path, "nb", tasks=False)
    monkeypatch.setenv("KG_CUBE", str(cube))
    monkeypatch.setenv("KG_SOURCE_DIR", str(SOURCE_DIR))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(SOURCE_DIR / "docs" / "analysis.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(SOURCE_DIR / "docs")}})
    client.execute()  # raises CellExecutionError on any failing cell

    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                text.append(out.text)
            elif out.output_type in ("display_data", "execute_result"):
                images += "image/png" in out.data
                text.append(out.data.get("text/plain", ""))
            assert out.output_type != "error"
    text = "\n".join(text)
    # metric vs sparsity, JS vs drop, calibration effect, two heatmaps
    assert images >= 5, images
    assert "log perplexity ratio" in text
    m = re.search(r"pearson r = (-?[0-9.]+), spearman rho = (-?[0-9.]+), n = (\d+)", text)
    assert m, text[-3000:]
    ds = xr.open_dataset(cube, engine="h5netcdf").load()
    r, n = independent_correlation(ds, "ppl")
    assert int(m.group(3)) == n
    assert abs(float(m.group(1)) - r) < 5e-6
    # The calibration sources are read from the config the cube carries.
    assert "stories" in text and "c4" in text
