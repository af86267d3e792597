"""Figures of a kickgrid cube (matplotlib; each function returns a Figure).

Every function plots what the cube has: a model, metric or calibration set
that holds no values is left out rather than drawn empty."""
import os

import numpy as np

from . import cube as kc

# One color per method, stable across figures; 18 before one repeats.
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#aec7e8", "#ff9896", "#98df8a", "#c5b0d5", "#ffbb78", "#c49c94", "#f7b6d2", "#9edae5"]


def _plt():
    import matplotlib
    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def method_colors(ds):
    return {str(m): _COLORS[i % len(_COLORS)] for i, m in enumerate(ds.prune_method.values)}


def is_quantization(method):
    """Quantization labels are rtn-w4, gptq-w4g128-sym-ao, ... (io/sweep_validate.c)."""
    kind, _, rest = str(method).partition("-")
    return kind in ("rtn", "gptq") and rest.startswith("w")


def short_source(source):
    """"file:/long/path/stories.txt" -> "file:stories.txt"."""
    kind, _, arg = str(source).partition(":")
    return f"{kind}:{os.path.basename(arg)}" if arg and "/" in arg else str(source)


def _metric_title(var, ds, extra):
    dim = kc.extra_dim(ds[var])
    label = kc.METRIC_LABEL.get(var, var)
    return f"{label} ({dim}={extra})" if dim else label


def metric_vs_sparsity(ds, var, model, extra=None, ax=None):
    """One line per method over the unstructured sparsities, N:M patterns as
    open markers at N/M, the dense model as a dashed line. Values are the
    mean over calibration sets with the standard deviation as error bars
    (replicated methods have none)."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    da = ds[var].sel(model=model)
    dim = kc.extra_dim(ds[var])
    if dim is not None:
        extra = extra if extra is not None else str(ds[dim].values[0])
        da = da.sel({dim: extra})
    mean, std = da.mean("calibration"), da.std("calibration")
    colors = method_colors(ds)
    for m in map(str, ds.prune_method.values):
        if m == kc.DENSE:
            v = float(mean.sel(prune_method=m, sparsity=0.0, structure=kc.UNSTRUCTURED))
            if np.isfinite(v):
                ax.axhline(v, color="black", ls="--", lw=1, label="dense")
            continue
        if is_quantization(m):  # no sparsity axis: quantization_bars draws them
            continue
        xs, ys, es = [], [], []
        for s in ds.sparsity.values:
            y = float(mean.sel(prune_method=m, sparsity=s, structure=kc.UNSTRUCTURED))
            if np.isfinite(y):
                xs.append(float(s))
                ys.append(y)
                es.append(float(std.sel(prune_method=m, sparsity=s, structure=kc.UNSTRUCTURED)))
        if xs:
            ax.errorbar(xs, ys, yerr=np.nan_to_num(es), marker="o", color=colors[m], label=m, capsize=3)
        for t in ds.structure.values:
            if str(t) == kc.UNSTRUCTURED:
                continue
            for s in ds.sparsity.values:
                y = float(mean.sel(prune_method=m, sparsity=s, structure=t))
                if np.isfinite(y):
                    e = float(std.sel(prune_method=m, sparsity=s, structure=t))
                    ax.errorbar([float(s)], [y], yerr=[np.nan_to_num(e)], marker="s", mfc="white", ls="none",
                                color=colors[m], capsize=3)
                    ax.annotate(str(t), (float(s), y), textcoords="offset points", xytext=(6, 0), fontsize=8,
                                color=colors[m])
    if var in ("ppl", "task_ppl"):
        ax.set_yscale("log")
    ax.margins(x=0.1)  # room for the N:M labels at the right edge
    ax.set_xlabel("sparsity (open squares: N:M patterns at N/M)")
    ax.set_ylabel(_metric_title(var, ds, extra))
    ax.set_title(f"{model}: {kc.METRIC_LABEL.get(var, var)} vs sparsity")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing labelled yet in a partly run cube
        ax.legend(fontsize=8)
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


def quantization_bars(ds, var, model, extra=None):
    """One bar per quantization method (mean over calibration sets, std as
    error bar), the dense model as a dashed line; None when the cube holds
    no quantized values of var."""
    da = ds[var].sel(model=model, sparsity=0.0, structure=kc.UNSTRUCTURED)
    dim = kc.extra_dim(ds[var])
    if dim is not None:
        extra = extra if extra is not None else str(ds[dim].values[0])
        da = da.sel({dim: extra})
    mean, std = da.mean("calibration"), da.std("calibration")
    methods = [m for m in map(str, ds.prune_method.values) if is_quantization(m)]
    rows = [(m, float(mean.sel(prune_method=m)), float(std.sel(prune_method=m))) for m in methods]
    rows = [r for r in rows if np.isfinite(r[1])]
    if not rows:
        return None
    plt = _plt()
    colors = method_colors(ds)
    fig, ax = plt.subplots(figsize=(6.4, max(2.4, 0.9 + 0.32 * len(rows))))
    ys = np.arange(len(rows))
    ax.barh(ys, [r[1] for r in rows], xerr=np.nan_to_num([r[2] for r in rows]), color=[colors[r[0]] for r in rows],
            capsize=3)
    for y, (_, v, _) in zip(ys, rows):
        ax.annotate(f"{v:.4g}", (v, y), textcoords="offset points", xytext=(4, -3), fontsize=8)
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    if kc.DENSE in ds.prune_method.values:
        d = float(ds[var].sel(model=model, prune_method=kc.DENSE, sparsity=0.0, structure=kc.UNSTRUCTURED)
                  .sel({dim: extra} if dim else {}).mean("calibration"))
        if np.isfinite(d):
            ax.axvline(d, color="black", ls="--", lw=1, label="dense")
            ax.legend(fontsize=8, loc="lower right")
    if var in ("ppl", "task_ppl"):
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(_metric_title(var, ds, extra))
    ax.set_title(f"{model}: {kc.METRIC_LABEL.get(var, var)} of the quantized models")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def js_vs_drop(ds):
    """JS divergence from the dense model against the downstream drop, one
    point per compressed cell, with Pearson and Spearman correlations.
    None when the cube lacks JS divergence or a downstream metric."""
    frame, label = kc.downstream_drop(ds)
    if frame.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = method_colors(ds)
    for m, part in frame.groupby("prune_method", sort=False):
        ax.scatter(part["js_mean"], part["drop"], color=colors[str(m)], label=str(m), alpha=0.8)
    r = kc.correlation(frame["js_mean"], frame["drop"])
    ax.set_xlabel("JS divergence from dense (mean per token, nats)")
    ax.set_ylabel(label)
    ax.set_title(f"JS divergence vs downstream drop: Pearson r = {r['pearson']:.3f}, "
                 f"Spearman rho = {r['spearman']:.3f} (n = {r['n']})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def calibration_effect(ds, var, model=None, extra=None):
    """Grouped bars: per method and setting, one bar per calibration source
    at the mean over its seeds, the standard deviation as error bar. None
    when no method uses calibration data or there is one source only."""
    eff = kc.calibration_effect(ds, var, extra)
    if model is not None:
        eff = eff[eff["model"] == model]
    if eff.empty or eff["source"].nunique() < 2:
        return None
    plt = _plt()
    groups = list(dict.fromkeys(zip(eff["model"], eff["prune_method"], eff["setting"])))
    sources = list(dict.fromkeys(eff["source"]))
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(groups) + 2), 4.4))
    width = 0.8 / len(sources)
    for j, src in enumerate(sources):
        part = eff[eff["source"] == src].set_index(["model", "prune_method", "setting"])
        ys = [float(part["mean"].get(g, np.nan)) for g in groups]
        es = [float(part["std"].get(g, np.nan)) for g in groups]
        xs = np.arange(len(groups)) + (j - (len(sources) - 1) / 2) * width
        seeds = int(part["seeds"].max()) if len(part) else 0
        ax.bar(xs, ys, width, yerr=np.nan_to_num(es), capsize=3, label=f"{short_source(src)} ({seeds} seeds)")
    multi_model = len({g[0] for g in groups}) > 1
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([(f"{g[0]}\n" if multi_model else "") + f"{g[1]}\n{g[2]}" for g in groups], fontsize=8)
    if var in ("ppl", "task_ppl"):
        ax.set_yscale("log")
    ax.set_ylabel(_metric_title(var, ds, extra if extra is not None else (
        str(ds[kc.extra_dim(ds[var])].values[0]) if kc.extra_dim(ds[var]) else None)))
    ax.set_title(f"calibration source effect on {kc.METRIC_LABEL.get(var, var)} (mean +- std over seeds)",
                 fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def layer_heatmaps(ds, var, model, calibration=None, max_methods=6, max_settings=6, ncols=4):
    """Per-layer values (layer x linear) of one model: one heatmap per
    (method, setting) that holds values (quantization rows sit at sparsity 0),
    laid out ncols to a row, on one colour scale. None when the variable holds
    nothing for the model."""
    if not kc.has_values(ds, var):
        return None
    calibration = calibration if calibration is not None else str(ds.calibration.values[0])
    da = ds[var].sel(model=model, calibration=calibration)
    methods = [str(m) for m in ds.prune_method.values if str(m) != kc.DENSE
               and np.isfinite(da.sel(prune_method=m).values).any()][:max_methods]
    panels = []
    for m in methods:
        used = [p for p in kc.settings(ds)
                if np.isfinite(da.sel(prune_method=m, sparsity=p[0], structure=p[1]).values).any()]
        panels += [(m, p) for p in used[:max_settings]]
    if not panels:
        return None
    plt = _plt()
    valid = da.values[np.isfinite(da.values)]
    vmin, vmax = float(valid.min()), float(valid.max())
    ncols = min(ncols, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols + 1.4, 2.9 * nrows + 0.6), squeeze=False,
                             layout="constrained")
    image = None
    n_layers = da.sizes["layer"]
    step = 1 if n_layers <= 12 else 5  # readable ticks for deep models
    for k, (m, (s, t)) in enumerate(panels):
        ax = axes[k // ncols][k % ncols]
        cell = da.sel(prune_method=m, sparsity=s, structure=t)
        image = ax.imshow(cell.values, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
        label = m if float(s) == 0.0 and str(t) == kc.UNSTRUCTURED else f"{m} {kc.setting_label(s, t)}"
        ax.set_title(label, fontsize=8)
        ax.set_yticks(range(0, n_layers, step))
        ax.set_yticklabels([str(x) for x in cell.layer.values[::step]], fontsize=6)
        ax.set_xticks(range(cell.sizes["linear"]))
        ax.set_xticklabels([str(x).replace("_proj", "") for x in cell.linear.values], fontsize=6, rotation=90)
        if k % ncols == 0:
            ax.set_ylabel("layer", fontsize=7)
    for k in range(len(panels), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    fig.suptitle(f"{model}: {var} per layer and linear (calibration {calibration})", fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.8, label=var)
    return fig
