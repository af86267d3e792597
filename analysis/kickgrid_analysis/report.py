"""`kickgrid report CUBE -o DIR` (also `python3 -m kickgrid_analysis.report`):
PNG plots, one self-contained HTML page (plots embedded as data: URIs, no
external assets), and CSV/JSON exports of a result cube.

DIR/report.html   status summary, failed cells, metric tables (method x
                  sparsity per model and calibration set), plots
DIR/plots/*.png   the same plots as files
DIR/csv/*.csv     one long table per metric, status, failed cells, the
                  JS-vs-drop points and the calibration effect
DIR/report.json   everything in the tables, for scripts"""
import argparse
import sys

REQUIRED = ("numpy", "pandas", "xarray", "h5netcdf", "matplotlib")


def _missing_packages():
    import importlib.util
    return [m for m in REQUIRED if importlib.util.find_spec(m) is None]


def fmt(v):
    """How numbers are shown: 4 significant digits ("33.98", "0.0612")."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if v != v:
        return "-"
    return format(v, ".4g")


class Report:
    """Collects sections of HTML, plot files and JSON while it walks a cube."""

    def __init__(self, ds, path, outdir, title):
        import html
        self.esc = html.escape
        self.ds, self.path, self.outdir, self.title = ds, path, outdir, title
        self.html, self.plots, self.json = [], [], {}
        (outdir / "plots").mkdir(parents=True, exist_ok=True)
        (outdir / "csv").mkdir(parents=True, exist_ok=True)

    # ---- pieces ----------------------------------------------------------
    def h(self, level, text, anchor=None):
        a = f' id="{self.esc(anchor)}"' if anchor else ""
        self.html.append(f"<h{level}{a}>{self.esc(text)}</h{level}>")

    def p(self, text, cls=None):
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{c}>{self.esc(text)}</p>")

    def table(self, header, rows, cls="grid"):
        out = [f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{self.esc(str(x))}</th>" for x in header)
               + "</tr></thead><tbody>"]
        for row in rows:
            cells = []
            for i, x in enumerate(row):
                tag = "th" if i == 0 else "td"
                if isinstance(x, tuple):  # (text, css class)
                    cells.append(f'<{tag} class="{x[1]}">{self.esc(str(x[0]))}</{tag}>')
                else:
                    cells.append(f"<{tag}>{self.esc(str(x))}</{tag}>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
        self.html.append("".join(out))

    def figure(self, fig, name, caption):
        """Saves the figure as plots/NAME.png and embeds the same bytes."""
        import base64
        import matplotlib.pyplot as plt
        png = self.outdir / "plots" / f"{name}.png"
        fig.savefig(png, dpi=100)
        plt.close(fig)
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        self.plots.append(png.name)
        self.html.append(f'<figure><img alt="{self.esc(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{self.esc(caption)}</figcaption></figure>")

    def csv(self, frame, name):
        frame.to_csv(self.outdir / "csv" / f"{name}.csv", index=False)


def _json_safe(v):
    import math
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _provenance(ds):
    keys = ("title", "kickgrid_version", "git_commit", "config_path", "command_line", "mpi_world_size",
            "team_size", "backend", "slurm_job_id", "slurm_restart_count", "merged_from")
    return {k: str(ds.attrs[k]) for k in keys if k in ds.attrs and str(ds.attrs[k])}


def section_status(r, kc):
    ds = r.ds
    r.h(2, "Status", "status")
    counts = kc.status_counts(ds)
    r.table(["status", "cells"], [[k, int(v)] for k, v in counts.items()], cls="small")
    r.json["status"] = {k: int(v) for k, v in counts.items()}
    r.csv(ds["status"].to_dataframe().reset_index(), "status")
    failed = kc.failed_cells(ds)
    r.json["failed"] = failed.to_dict(orient="records")
    if len(failed):
        r.h(3, f"Failed cells ({len(failed)})")
        r.table(list(failed.columns), failed.values.tolist())
        r.csv(failed, "failed")
    r.h(3, "Provenance")
    prov = _provenance(ds)
    r.json["provenance"] = prov
    r.table(["attribute", "value"], [[k, v[:300]] for k, v in prov.items()], cls="small")


def section_tables(r, kc):
    ds = r.ds
    r.h(2, "Metrics: method x sparsity", "tables")
    r.p("One table per metric, model and calibration set. Columns are sparsities (unstructured) and N:M "
        "patterns; n/a marks combinations the sweep does not define, failed/pending cells not finished.")
    r.json["tables"] = {}
    for var in kc.metric_vars(ds):
        dim = kc.extra_dim(ds[var])
        extras = [str(x) for x in ds[dim].values] if dim else [None]
        r.csv(kc.metric_frame(ds, var), var)
        r.h(3, kc.METRIC_LABEL.get(var, var) + f" ({var})", f"t-{var}")
        for extra in extras:
            for model in map(str, ds.model.values):
                r.html.append('<div class="row">')
                for calib in map(str, ds.calibration.values):
                    table = kc.method_table(ds, var, model, calib, extra)
                    if not table.notna().values.any():
                        continue
                    status = kc.status_table(ds, model, calib)
                    rows = []
                    for method in table.index:
                        row = [method]
                        for col in table.columns:
                            v, st = table.at[method, col], status.at[method, col]
                            if st == "done" and v == v:
                                row.append(fmt(v))
                            elif st == "done":
                                row.append(("-", "na"))
                            else:
                                row.append((st or "unset", "na" if st == "n/a" else "bad"))
                        rows.append(row)
                    where = f"model {model}, calibration {calib}" + (f", {dim} {extra}" if dim else "")
                    r.html.append("<div>")
                    r.p(where, cls="caption")
                    r.table(["method"] + list(table.columns), rows)
                    r.html.append("</div>")
                    r.json["tables"].setdefault(var, {}).setdefault(extra or "", {}).setdefault(model, {})[calib] = {
                        m: {c: _json_safe(float(table.at[m, c])) for c in table.columns} for m in table.index}
                r.html.append("</div>")


def section_plots(r, kc, kp, max_heatmaps):
    ds = r.ds
    r.h(2, "Plots", "plots")
    metrics = [v for v in kc.metric_vars(ds) if v not in ("wall_s", "sparsity_actual")]
    # The JS median and p95 follow the mean closely; their numbers are in the tables.
    plotted = [v for v in metrics if v not in ("js_median", "js_p95")][:6]
    r.html.append('<div class="figs">')
    for var in plotted:
        for model in map(str, ds.model.values):
            if not kc.has_values(ds.sel(model=[model]), var):
                continue
            fig = kp.metric_vs_sparsity(ds, var, model)
            r.figure(fig, f"{var}_vs_sparsity_{model}", f"{model}: {kc.METRIC_LABEL.get(var, var)} vs sparsity "
                     "per method (mean and std over calibration sets)")
            fig = kp.quantization_bars(ds, var, model)
            if fig is not None:
                r.figure(fig, f"{var}_quantized_{model}", f"{model}: {kc.METRIC_LABEL.get(var, var)} per "
                         "quantization method (mean and std over calibration sets)")
    r.html.append("</div>")
    frame, label = kc.downstream_drop(ds)
    if not frame.empty:
        corr = kc.correlation(frame["js_mean"], frame["drop"])
        r.json["js_vs_drop"] = {"drop": label, **{k: _json_safe(v) for k, v in corr.items()}}
        r.csv(frame, "js_vs_drop")
        r.h(3, "JS divergence vs downstream drop", "js-drop")
        r.table(["drop measure", "cells", "Pearson r", "Spearman rho"],
                [[label, corr["n"], fmt(corr["pearson"]), fmt(corr["spearman"])]], cls="small")
        r.figure(kp.js_vs_drop(ds), "js_vs_drop", f"JS divergence vs {label}")
    r.json["calibration_effect"] = {}
    for var in [v for v in ("ppl", "js_mean", "acc") if v in metrics]:
        eff = kc.calibration_effect(ds, var)
        if eff.empty or eff["source"].nunique() < 2:
            continue
        r.csv(eff, f"calibration_effect_{var}")
        r.json["calibration_effect"][var] = eff.to_dict(orient="records")
        r.h(3, f"Calibration source effect: {kc.METRIC_LABEL.get(var, var)}", f"calib-{var}")
        r.table(["model", "method", "setting", "source", "mean", "std", "seeds"],
                [[row.model, row.prune_method, row.setting, kp.short_source(row.source), fmt(row.mean),
                  fmt(row.std), int(row.seeds)] for row in eff.itertuples()])
        fig = kp.calibration_effect(ds, var)
        if fig is not None:
            r.figure(fig, f"calibration_effect_{var}", f"{kc.METRIC_LABEL.get(var, var)} by calibration source, "
                     "mean and std over seeds")
    shown = 0
    for var in ("recon_rel", "layer_sparsity"):
        for model in map(str, ds.model.values):
            if shown >= max_heatmaps:
                break
            fig = kp.layer_heatmaps(ds, var, model)
            if fig is not None:
                if shown == 0:
                    r.h(3, "Per-layer heatmaps", "layers")
                r.figure(fig, f"layers_{var}_{model}", f"{model}: {var} per layer and linear")
                shown += 1


CSS = """body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.4em 0 1.2em}th,td{border:1px solid #ccc;padding:2px 8px;text-align:right}
thead th{background:#eee}tbody th{text-align:left;background:#f7f7f7}td.na{color:#aaa}td.bad{color:#b00;font-weight:bold}
table.small td{text-align:left}p.caption{margin:.8em 0 0;font-style:italic}figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:90%;color:#555}nav a{margin-right:1em}
div.row{display:flex;flex-wrap:wrap;gap:0 1.5em}div.figs{display:flex;flex-wrap:wrap;gap:0 1em}
div.figs figure{width:570px}div.figs figure img{width:100%}"""


def build(cube_path, outdir, title=None, max_heatmaps=4):
    """Writes the report of cube_path into outdir; returns the HTML path."""
    import json
    from pathlib import Path

    from . import cube as kc
    from . import plots as kp
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    ds = kc.open_cube(cube_path)
    title = title or f"kickgrid report: {ds.attrs.get('title', Path(cube_path).stem)}"
    r = Report(ds, cube_path, outdir, title)
    r.json["cube"] = str(cube_path)
    r.json["dims"] = {d: [str(x) if not isinstance(x, float) else x for x in ds[d].values.tolist()] for d in ds.dims}
    section_status(r, kc)
    section_plots(r, kc, kp, max_heatmaps)
    section_tables(r, kc)
    head = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{r.esc(title)}</title><style>{CSS}</style>"
            "</head><body>", f"<h1>{r.esc(title)}</h1>",
            f"<p>cube <code>{r.esc(str(cube_path))}</code>: "
            + ", ".join(f"{r.esc(d)} {ds.sizes[d]}" for d in ds.dims) + "</p>",
            '<nav><a href="#status">status</a><a href="#tables">tables</a><a href="#plots">plots</a></nav>']
    page = "\n".join(head + r.html + ["</body></html>"])
    html_path = outdir / "report.html"
    html_path.write_text(page, encoding="utf-8")
    r.json["plots"] = r.plots
    (outdir / "report.json").write_text(json.dumps(r.json, indent=1, default=str, allow_nan=False))
    return html_path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="kickgrid report", description="Plots, one self-contained HTML page "
                                     "(report.html) and CSV/JSON exports of a kickgrid result cube.")
    parser.add_argument("cube", help="result cube (.h5)")
    parser.add_argument("-o", "--output", required=True, help="output directory")
    parser.add_argument("--title", help="page title")
    parser.add_argument("--max-heatmaps", type=int, default=4, help="per-layer heatmap figures (default 4)")
    args = parser.parse_args(argv)
    missing = _missing_packages()
    if missing:
        print(f"kickgrid report: missing Python packages: {', '.join(missing)} "
              f"(pip install {' '.join(missing)})", file=sys.stderr)
        return 1
    import os
    if not os.path.isfile(args.cube):
        print(f"kickgrid report: {args.cube}: no such file", file=sys.stderr)
        return 1
    try:
        path = build(args.cube, args.output, args.title, args.max_heatmaps)
    except (OSError, ValueError, KeyError) as e:
        print(f"kickgrid report: {args.cube}: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
