"""``python -m latency.calibrate [--json] [--out DIR]``: how well the ``pixel1`` model fits the paper.

Prints the coefficients, each published Pixel-1 point (published vs predicted, % error), the
leave-one-out error of each (refit without that network, predict it) and their mean (LOO
MAPE), the leave-one-family-out error (refit without every width of that network: V3-Large
1.0 and 0.75 together, and so on; LOFO MAPE, the honest figure for an unseen network, since
LOO keeps a sibling width in the fit), the published points that are not fitted (Mnas-small:
the paper's network was never released, see :data:`latency.pixel1.NOT_FITTED`), the Table 3
check (V3-Large 1.0 / 0.75 and V3-Small 1.0 / 0.75 within 10 %), Table 5's ordering
(ReLU < h-swish @112 < default < h-swish @16) and, for sanity only (not fitted),
predicted latencies of V3-Large / Small over the paper's widths and resolutions, which must
rise monotonically. ``--out DIR`` also writes ``points.csv``, ``sweep.csv``,
``calibration.json``, ``pixel1_ops.csv`` (+ provenance: the model's rows for every op of the
published networks) and ``pixel1_fit.png`` (predicted vs published). The exit status is 1 when
a benchmark target is missed.

``loo_mape`` / ``lofo_mape`` / ``fit_mape`` are fractions (as scikit-learn's MAPE); ``*_pct``
fields are percent. A bad ``--out`` (a file, a path under a file, a read-only folder) is one line
on stderr and exit status 2.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from jobs import atomic_write_text
from jobs.cli import ArgumentParser, check_output_dir
from search_spaces import reference
from search_spaces.references import RESOLUTIONS, WIDTHS

from . import pixel1

LOO_MAPE_MAX = 0.10
TABLE3_MAX_ERROR = 0.10
TABLE3_CHECK = ("V3-Large 1.0", "V3-Large 0.75", "V3-Small 1.0", "V3-Small 0.75")
TABLE5_ORDER = ("ReLU", "h-swish @112", "V3-Large 1.0 (Table 5)", "h-swish @16")  # fastest first
SWEEP_NETWORKS = ("mobilenet_v3_large", "mobilenet_v3_small")


def _pct(predicted: float, published: float) -> float:
    return 100.0 * (predicted / published - 1.0)


def _points(table: pixel1.ModelTable) -> list[dict]:
    loo, lofo = pixel1.leave_one_out(), pixel1.leave_one_family_out()
    rows = []
    for point, loo_ms, lofo_ms in zip(pixel1.PUBLISHED, loo, lofo):
        predicted = table.predict_ms(point.spec())
        rows.append({
            "label": point.label, "table": point.table, "network": point.spec().name, "published_ms": point.p1_ms,
            "predicted_ms": round(predicted, 3), "error_pct": round(_pct(predicted, point.p1_ms), 2),
            "loo_ms": round(loo_ms, 3), "loo_error_pct": round(_pct(loo_ms, point.p1_ms), 2),
            "loo_left_out": ", ".join(pixel1.loo_exclusions(point)),
            "lofo_ms": round(lofo_ms, 3), "lofo_error_pct": round(_pct(lofo_ms, point.p1_ms), 2),
            "lofo_left_out": ", ".join(pixel1.lofo_exclusions(point)),
        })
    return rows


def _not_fitted(table: pixel1.ModelTable) -> list[dict]:
    """Published points for networks we do not have exactly: the public spec's prediction, for reference."""
    rows = []
    for point in pixel1.NOT_FITTED:
        predicted = table.predict_ms(point.spec())
        rows.append({"label": point.label, "table": point.table, "public_spec": point.spec().name,
                     "published_ms": point.p1_ms, "predicted_public_spec_ms": round(predicted, 3),
                     "reason": pixel1.NOT_FITTED_REASON[point.label]})
    return rows


def _sweep(table: pixel1.ModelTable) -> list[dict]:
    rows = []
    for name in SWEEP_NETWORKS:
        for width in WIDTHS:
            rows.append({"network": name, "axis": "width", "width": width, "resolution": 224,
                         "predicted_ms": round(table.predict_ms(reference(name, width)), 3)})
        for resolution in RESOLUTIONS:
            rows.append({"network": name, "axis": "resolution", "width": 1.0, "resolution": resolution,
                         "predicted_ms": round(table.predict_ms(reference(name, 1.0, resolution)), 3)})
    return rows


def _sweep_monotone(rows: list[dict]) -> bool:
    df = pd.DataFrame(rows)
    ok = True
    for name in SWEEP_NETWORKS:
        by_width = df[(df.network == name) & (df.axis == "width")].sort_values("width")
        by_res = df[(df.network == name) & (df.axis == "resolution")].sort_values("resolution")
        ok &= bool(np.all(np.diff(by_width.predicted_ms) > 0)) and bool(np.all(np.diff(by_res.predicted_ms) > 0))
    return ok


def _speed_us(table: pixel1.ModelTable, repeats: int = 2000) -> dict:
    spec = reference("mobilenet_v3_large")
    table.predict_ms(spec)  # warm the cache
    start = time.perf_counter()
    for _ in range(repeats):
        table.predict_ms(spec)
    warm = (time.perf_counter() - start) / repeats * 1e6
    fresh = pixel1.ModelTable("speed", table.calibration, {})
    start = time.perf_counter()
    fresh.predict_ms(spec)
    cold = (time.perf_counter() - start) * 1e6
    return {"predict_spec_warm_us": round(warm, 1), "predict_spec_cold_us": round(cold, 1),
            "ops_per_spec": len(spec.op_keys())}


def report(measure_speed: bool = True) -> dict:
    """Everything the CLI prints, as one JSON-able dict."""
    table = pixel1.pixel1_table()
    points = _points(table)
    by_label = {p["label"]: p for p in points}
    loo_mape = float(np.mean([abs(p["loo_error_pct"]) for p in points])) / 100
    lofo_mape = float(np.mean([abs(p["lofo_error_pct"]) for p in points])) / 100
    fit_mape = float(np.mean([abs(p["error_pct"]) for p in points])) / 100
    table3 = [{"label": label, "published_ms": by_label[label]["published_ms"],
               "predicted_ms": by_label[label]["predicted_ms"], "error_pct": by_label[label]["error_pct"],
               "within_10pct": abs(by_label[label]["error_pct"]) <= 100 * TABLE3_MAX_ERROR} for label in TABLE3_CHECK]
    order = [by_label[label]["predicted_ms"] for label in TABLE5_ORDER]
    table5 = {"order": list(TABLE5_ORDER), "predicted_ms": order,
              "published_ms": [by_label[label]["published_ms"] for label in TABLE5_ORDER],
              "holds": bool(np.all(np.diff(order) > 0))}
    sweep = _sweep(table)
    checks = {"loo_mape_le_10pct": loo_mape <= LOO_MAPE_MAX, "lofo_mape_le_10pct": lofo_mape <= LOO_MAPE_MAX,
              "table3_within_10pct": all(r["within_10pct"] for r in table3),
              "table5_order": table5["holds"], "sweep_monotone": _sweep_monotone(sweep)}
    prov = table.provenance
    out = {
        "target": "pixel1", "source": prov["source"], "model": prov["model"],
        "coefficients": prov["coefficients"], "coefficient_units": prov["coefficient_units"],
        "loo_coefficient_ranges": {k: [round(lo, 6), round(hi, 6)]
                                   for k, (lo, hi) in pixel1.loo_coefficient_ranges().items()},
        "network_overhead_ms": table.network_overhead_ms, "priors": prov["priors"],
        "duplicate_v3_large": prov["duplicate_v3_large"],
        "points": points, "fit_mape": round(fit_mape, 5), "loo_mape": round(loo_mape, 5),
        "lofo_mape": round(lofo_mape, 5), "not_fitted": _not_fitted(table),
        "table3": table3, "table5": table5, "sweep": sweep, "checks": checks, "passed": all(checks.values()),
    }
    if measure_speed:
        out["speed"] = _speed_us(table)
    return out


def format_text(rep: dict) -> str:
    lines = [f"pixel1 cost model ({rep['source']})", "", "coefficients (range over the leave-one-out fits):"]
    for name, value in rep["coefficients"].items():
        lo, hi = rep["loo_coefficient_ranges"][name]
        lines.append(f"  {name:<20} {value:10.5f}  [{lo:.4f}, {hi:.4f}]  {rep['coefficient_units'][name]}")
    lines.append(f"  network_overhead_ms  {rep['network_overhead_ms']:10.5f}")
    lines += ["", f"{'point':<24} {'table':<8} {'published':>9} {'predicted':>9} {'err %':>7} {'LOO':>8} {'LOO %':>7} "
                  f"{'LOFO':>8} {'LOFO %':>7}"]
    for p in rep["points"]:
        lines.append(f"{p['label']:<24} {p['table']:<8} {p['published_ms']:9.1f} {p['predicted_ms']:9.2f} "
                     f"{p['error_pct']:7.2f} {p['loo_ms']:8.2f} {p['loo_error_pct']:7.2f} {p['lofo_ms']:8.2f} "
                     f"{p['lofo_error_pct']:7.2f}")
    lines += ["", f"fit MAPE {100 * rep['fit_mape']:.2f} %, LOO MAPE {100 * rep['loo_mape']:.2f} % "
                  f"(target <= {100 * LOO_MAPE_MAX:.0f} %), leave-one-family-out MAPE {100 * rep['lofo_mape']:.2f} % "
                  "(every width of a network left out together)"]
    for p in rep["not_fitted"]:
        lines.append(f"not fitted: {p['label']} ({p['table']}, {p['published_ms']:.1f} ms): {p['reason']}; "
                     f"the public {p['public_spec']} predicts {p['predicted_public_spec_ms']:.2f} ms (not scored)")
    lines += ["", "Table 3 check (within 10 %):"]
    for r in rep["table3"]:
        lines.append(f"  {r['label']:<14} published {r['published_ms']:5.1f}  predicted {r['predicted_ms']:6.2f}  "
                     f"{r['error_pct']:+6.2f} %  {'ok' if r['within_10pct'] else 'FAIL'}")
    t5 = rep["table5"]
    lines += ["", "Table 5 order (predicted ms): " + " < ".join(f"{k} {v:.2f}" for k, v in zip(t5["order"],
                                                                                           t5["predicted_ms"]))
              + f"  {'holds' if t5['holds'] else 'VIOLATED'}", "", "sanity sweep (not fitted), predicted ms:"]
    df = pd.DataFrame(rep["sweep"])
    for name in SWEEP_NETWORKS:
        w = df[(df.network == name) & (df.axis == "width")]
        r = df[(df.network == name) & (df.axis == "resolution")]
        lines.append(f"  {name} widths:      " + ", ".join(f"{a:g}: {b:.1f}" for a, b in zip(w.width, w.predicted_ms)))
        lines.append(f"  {name} resolutions: " + ", ".join(f"{a}: {b:.1f}" for a, b in zip(r.resolution, r.predicted_ms)))
    if "speed" in rep:
        s = rep["speed"]
        lines += ["", f"speed: one spec ({s['ops_per_spec']} ops) {s['predict_spec_warm_us']:.1f} us warm, "
                      f"{s['predict_spec_cold_us']:.1f} us with an empty cache"]
    lines += ["", "checks: " + ", ".join(f"{k}={'ok' if v else 'FAIL'}" for k, v in rep["checks"].items())]
    return "\n".join(lines)


def plot(rep: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    df = pd.DataFrame(rep["points"])
    fig, ax = plt.subplots(figsize=(6.5, 6))
    lo, hi = 10, 80
    grid = np.array([lo, hi])
    ax.plot(grid, grid, color="black", lw=1)
    ax.fill_between(grid, grid * 0.9, grid * 1.1, color="0.9", label="±10 %")
    for table, color in (("Table 3", "tab:blue"), ("Table 5", "tab:orange")):
        sub = df[df.table == table]
        ax.scatter(sub.published_ms, sub.predicted_ms, color=color, label=f"{table}: fit", zorder=3)
        ax.scatter(sub.published_ms, sub.loo_ms, facecolors="none", edgecolors=color, label=f"{table}: leave-one-out",
                   zorder=3)
        ax.scatter(sub.published_ms, sub.lofo_ms, marker="x", color=color, label=f"{table}: leave-one-family-out",
                   zorder=3)
    for _, row in df[df.table == "Table 3"].iterrows():
        ax.annotate(row.label, (row.published_ms, row.predicted_ms), fontsize=7, xytext=(4, -9),
                    textcoords="offset points")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="published Pixel-1 latency (ms)",
           ylabel="pixel1 model (ms)",
           title=f"pixel1 model vs Howard et al. 2019\nLOO MAPE {100 * rep['loo_mape']:.2f} %, "
                 f"leave-one-family-out MAPE {100 * rep['lofo_mape']:.2f} %")
    ticks = [10, 15, 20, 30, 40, 50, 60, 70, 80]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
        axis.set_major_formatter(matplotlib.ticker.FixedFormatter([str(x) for x in ticks]))
        axis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.legend(fontsize=8, loc="upper left")
    not_fitted = "; ".join(f"{p['label']} ({p['published_ms']:g} ms) not fitted: architecture never released"
                           for p in rep["not_fitted"])
    fig.text(0.01, 0.005, "Leave-one-family-out: every width of a network left out of the fit together. "
             + not_fitted + ".", fontsize=6.5, va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(rep: dict, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    paths = [out / "points.csv", out / "sweep.csv", out / "calibration.json"]
    atomic_write_text(paths[0], pd.DataFrame(rep["points"]).to_csv(index=False))
    atomic_write_text(paths[1], pd.DataFrame(rep["sweep"]).to_csv(index=False))
    atomic_write_text(paths[2], json.dumps(rep, indent=2) + "\n")
    keys = [k for p in pixel1.PUBLISHED for k in p.spec().op_keys()]
    paths.append(pixel1.write_table(out / "pixel1_ops.csv", keys))
    paths.append(plot(rep, out / "pixel1_fit.png"))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m latency.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--out", metavar="DIR", help="also write CSV / JSON results and a scatter plot PNG to DIR")
    args = parser.parse_args(argv)
    if args.out is not None:
        check_output_dir("--out", args.out)
    rep = report()
    if args.out:
        rep["written"] = [str(p) for p in write_outputs(rep, args.out)]
    print(json.dumps(rep, indent=2) if args.json else format_text(rep))
    return 0 if rep["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
