"""Reading a kickgrid result cube into xarray and the derived tables the
report and the notebook show: status counts, metric tables (method x
sparsity), the downstream drop against the dense model, and the calibration
source effect over seeds.

A cube's cell dimensions are model, prune_method, sparsity, structure and
calibration; metrics add one dimension (ppl_dataset, js_source or task) and
per-layer variables add layer and linear (see worker/schema.h)."""
import re

import numpy as np
import pandas as pd
import xarray as xr

CELL_DIMS = ("model", "prune_method", "sparsity", "structure", "calibration")
LAYER_DIMS = ("layer", "linear")
UNSTRUCTURED = "unstructured"
DENSE = "dense"

# Metrics in the order a reader looks for them: (variable, label, lower is better).
METRICS = (
    ("ppl", "perplexity", True),
    ("js_mean", "JS divergence (mean)", True),
    ("js_median", "JS divergence (median)", True),
    ("js_p95", "JS divergence (p95)", True),
    ("js_top1", "top-1 agreement", False),
    ("acc", "accuracy", False),
    ("acc_norm", "accuracy (length-normalized)", False),
    ("em", "exact match", False),
    ("f1", "F1", False),
    ("match", "match", False),
    ("task_ppl", "task perplexity", True),
    ("sparsity_actual", "measured sparsity", None),
    ("recon_rel_mean", "relative reconstruction error", True),
    ("wall_s", "wall time (s)", None),
)
METRIC_LABEL = {v: label for v, label, _ in METRICS}


def open_cube(path):
    """The whole cube in memory (the file is closed again, so a running sweep
    can replace it)."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def extra_dim(da):
    """The one dimension a metric has beyond the cell (ppl_dataset,
    js_source, task), or None."""
    rest = [d for d in da.dims if d not in CELL_DIMS]
    return rest[0] if len(rest) == 1 and rest[0] not in LAYER_DIMS else None


def has_values(ds, var):
    return var in ds and bool(np.isfinite(ds[var].values.astype(float)).any())


def metric_vars(ds):
    """Known metrics the cube holds values of, in METRICS order."""
    return [v for v, _, _ in METRICS if has_values(ds, v) and all(d in CELL_DIMS or d == extra_dim(ds[v])
                                                                   for d in ds[v].dims)]


def setting_label(sparsity, structure):
    """How a (sparsity, structure) pair is written: "0.5" or "2:4"."""
    return format(float(sparsity), "g") if str(structure) == UNSTRUCTURED else str(structure)


def settings(ds):
    """(sparsity, structure) pairs that hold at least one planned cell,
    ordered by sparsity then unstructured first."""
    st = ds["status"]
    out = []
    for s in ds.sparsity.values:
        for t in ds.structure.values:
            if (st.sel(sparsity=s, structure=t) != "n/a").any():
                out.append((float(s), str(t)))
    return sorted(out, key=lambda p: (p[0], p[1] != UNSTRUCTURED, p[1]))


def status_counts(ds):
    """Cells per status value (done, failed, pending, n/a, ...)."""
    values = pd.Series(ds["status"].values.ravel()).replace("", "unset")
    order = ["done", "failed", "pending", "n/a", "unset"]
    counts = values.value_counts()
    return counts.reindex([o for o in order if o in counts] + [v for v in counts.index if v not in order])


def failed_cells(ds):
    """One row per failed cell: its coordinates and error message."""
    frame = ds[["status", "error"]].to_dataframe().reset_index()
    return frame[frame["status"] == "failed"][list(CELL_DIMS) + ["error"]].reset_index(drop=True)


def metric_frame(ds, var):
    """Long table of a metric's set values: cell coordinates, the extra
    dimension's label (if any), `value`."""
    frame = ds[var].to_dataframe(name="value").reset_index()
    frame = frame[np.isfinite(frame["value"].astype(float))]
    keep = [d for d in ds[var].dims] + ["value"]
    return frame[keep].reset_index(drop=True)


def method_table(ds, var, model, calibration, extra=None):
    """Methods x settings of one metric for one model and calibration set.
    Cells that are not planned hold NaN; the `status` table with the same
    shape tells n/a from failed (see status_table)."""
    da = ds[var].sel(model=model, calibration=calibration)
    dim = extra_dim(ds[var])
    if dim is not None:
        da = da.sel({dim: extra if extra is not None else ds[dim].values[0]})
    cols = settings(ds)
    table = pd.DataFrame(index=[str(m) for m in ds.prune_method.values],
                         columns=[setting_label(s, t) for s, t in cols], dtype=float)
    for s, t in cols:
        table[setting_label(s, t)] = da.sel(sparsity=s, structure=t).values.astype(float)
    table.index.name = "prune_method"
    return table


def status_table(ds, model, calibration):
    """The status of every cell of method_table's shape."""
    st = ds["status"].sel(model=model, calibration=calibration)
    cols = settings(ds)
    table = pd.DataFrame(index=[str(m) for m in ds.prune_method.values],
                         columns=[setting_label(s, t) for s, t in cols], dtype=object)
    for s, t in cols:
        table[setting_label(s, t)] = st.sel(sparsity=s, structure=t).values
    return table


def _config_texts(ds):
    """Sweep config texts kept as provenance (a merged cube keeps one per input)."""
    return [v for k, v in ds.attrs.items() if k == "config_text" or k.startswith("config_text_input")]


_SEED_SUFFIX = re.compile(r"^(.*?)[-_.]?(?:s|seed)(\d+)$")


def calibration_info(ds):
    """Per calibration label: its data source and sampling seed, from the
    sweep config the cube carries; labels not found there are split as
    NAME-sSEED (else the label is its own source, seed unknown)."""
    known = {}
    try:
        import libconf
        for text in _config_texts(ds):
            try:
                cfg = libconf.loads(text)
            except Exception:  # a config with @include: not self-contained
                continue
            for c in cfg.get("calibration", ()):
                known[c["name"]] = (str(c["source"]), int(c.get("seed", 0)))
    except ImportError:
        pass
    rows = []
    for name in map(str, ds.calibration.values):
        if name in known:
            source, seed = known[name]
        else:
            m = _SEED_SUFFIX.match(name)
            source, seed = (m.group(1), int(m.group(2))) if m else (name, np.nan)
        rows.append({"calibration": name, "source": source, "seed": seed})
    return pd.DataFrame(rows).set_index("calibration")


def calibration_free_methods(ds):
    """Methods whose cells are replicas across calibration sets (dense,
    magnitude, RTN): their values are the same at every set."""
    metric = next((v for v in metric_vars(ds) if v != "wall_s"), None)
    if metric is None or ds.sizes["calibration"] < 2:
        return []
    free = []
    for m in map(str, ds.prune_method.values):
        da = ds[metric].sel(prune_method=m)
        ref = da.isel(calibration=0)
        if bool(((da == ref) | (da.isnull() & ref.isnull())).all()):
            free.append(m)
    return free


def _mean_over_extra(da):
    dim = extra_dim(da)
    return da.mean(dim) if dim is not None else da


def downstream_drop(ds):
    """Per compressed cell: mean JS divergence and how much worse than the
    dense model it is downstream. With task accuracies that is dense accuracy
    minus accuracy (mean over tasks); without tasks, the log perplexity ratio
    log(ppl / ppl_dense) (mean over texts). Returns (frame, label); frame is
    empty when the cube has neither JS divergence nor a downstream metric."""
    if has_values(ds, "acc"):
        var, label = "acc", "accuracy drop (dense - compressed, mean over tasks)"
    elif has_values(ds, "ppl"):
        var, label = "ppl", "log perplexity ratio log(ppl / dense ppl)"
    else:
        return pd.DataFrame(), ""
    if not has_values(ds, "js_mean"):
        return pd.DataFrame(), label
    dense = ds[var].sel(prune_method=DENSE, sparsity=0.0, structure=UNSTRUCTURED, drop=True)
    if var == "acc":
        drop = (dense - ds[var]).mean("task")
    else:
        drop = _mean_over_extra(np.log(ds[var] / dense))
    frame = xr.Dataset({"js_mean": _mean_over_extra(ds["js_mean"]), "drop": drop}).to_dataframe().reset_index()
    frame = frame[(frame["prune_method"] != DENSE) & np.isfinite(frame["js_mean"]) & np.isfinite(frame["drop"])]
    # Replicas (methods that ignore calibration data) count once.
    free = frame["prune_method"].isin(calibration_free_methods(ds))
    first = frame["calibration"] == str(ds.calibration.values[0])
    frame = frame[~free | first]
    frame["setting"] = [setting_label(s, t) for s, t in zip(frame["sparsity"], frame["structure"])]
    return frame[list(CELL_DIMS) + ["setting", "js_mean", "drop"]].reset_index(drop=True), label


def correlation(x, y):
    """Pearson and Spearman correlation of two equally long sequences."""
    x, y = pd.Series(np.asarray(x, float)), pd.Series(np.asarray(y, float))
    n = int(len(x))
    if n < 3 or x.nunique() < 2 or y.nunique() < 2:
        return {"n": n, "pearson": float("nan"), "spearman": float("nan")}
    # Spearman is Pearson on ranks (ties share their mean rank).
    return {"n": n, "pearson": float(x.corr(y)), "spearman": float(x.rank().corr(y.rank()))}


def calibration_effect(ds, var, extra=None):
    """Mean and standard deviation over seeds, per (model, method, setting,
    calibration source), of one metric, for the methods that use calibration
    data. Sources with one seed get std NaN."""
    dim = extra_dim(ds[var])
    da = ds[var]
    if dim is not None:
        da = da.sel({dim: extra if extra is not None else ds[dim].values[0]}, drop=True)
    frame = da.to_dataframe(name="value").reset_index()
    frame = frame[np.isfinite(frame["value"]) & ~frame["prune_method"].isin(calibration_free_methods(ds))]
    if frame.empty:
        return pd.DataFrame(columns=["model", "prune_method", "setting", "source", "mean", "std", "seeds"])
    info = calibration_info(ds)
    frame["source"] = frame["calibration"].map(info["source"])
    frame["setting"] = [setting_label(s, t) for s, t in zip(frame["sparsity"], frame["structure"])]
    out = (frame.groupby(["model", "prune_method", "sparsity", "setting", "source"], sort=False)["value"]
           .agg(mean="mean", std="std", seeds="count").reset_index())
    return out.sort_values(["model", "prune_method", "sparsity", "setting", "source"]).drop(columns="sparsity") \
        .reset_index(drop=True)
