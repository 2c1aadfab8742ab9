"""The reproduction's verdict: ours against the paper's network on equal footing.

* :func:`equal_footing`: ours and the paper's network trained from scratch with the same accuracy
  signal and schedule, ``seeds`` seeds each, accuracy on the test split (nothing was selected on
  it); the paper's network at several width multipliers gives a reference curve of accuracy
  against predicted latency on the run's target, on or above which ours should sit.
* :func:`verdict`: the figures a reader checks first (pure; tested on known numbers).
* The structure report is :mod:`experiments.pipeline.structure`.
"""

from __future__ import annotations

import statistics
from pathlib import Path


from jobs import atomic_savefig
from jobs.stats import interpolate, mean_sd
from latency import predict_ms
from search_spaces import ArchSpec, reference

def verdict(ours: dict, paper: dict, curve: list[dict]) -> dict:
    """``ours`` / ``paper``: ``{"latency_ms", "test_accuracy": [per seed]}`` (``target``: the
    latency target both were predicted on, e.g. ``pixel1``); ``curve``: the paper's network at
    several widths, the same keys plus ``width``.

    ``meets_target``: ours is not slower than the paper's network (predicted on the target) and its mean
    test accuracy is at least the paper's. ``curve_at_ours_ms``: the reference curve's mean
    accuracy interpolated at ours' latency (None outside the curve); ``above_curve`` ours' mean
    minus it. ``delta_over_spread``: the difference of means over the larger seed spread.
    """
    ours_mean, ours_std = mean_sd(ours["test_accuracy"])
    paper_mean, paper_std = mean_sd(paper["test_accuracy"])
    out = {"ours_mean": ours_mean, "ours_std": ours_std, "paper_mean": paper_mean, "paper_std": paper_std,
           "target": ours.get("target", paper.get("target")), "ours_ms": ours["latency_ms"],
           "paper_ms": paper["latency_ms"], "not_slower": bool(ours["latency_ms"] <= paper["latency_ms"] + 1e-9)}
    if ours_mean is None or paper_mean is None:
        out.update(delta=None, meets_target=None, curve_at_ours_ms=None, above_curve=None, delta_over_spread=None)
        return out
    delta = ours_mean - paper_mean
    spread = max(ours_std or 0.0, paper_std or 0.0)
    points = [(c["latency_ms"], statistics.fmean(c["test_accuracy"])) for c in curve if c["test_accuracy"]]
    at = interpolate(points, ours["latency_ms"])
    out.update(delta=delta, meets_target=bool(out["not_slower"] and delta >= 0), curve_at_ours_ms=at,
               above_curve=None if at is None else ours_mean - at,
               delta_over_spread=None if spread == 0 else delta / spread)
    return out


def equal_footing(ours: ArchSpec, paper_name: str, widths: list[float], sig, *, seeds: int, workers: int,
                  folder: Path, target: str = "pixel1", log=print) -> dict:
    """Train ours and the paper's network (and its width curve) alike with :func:`proxytask.grid.train_grid`;
    returns the summary's ``comparison`` (``ours`` / ``reference``), ``reference_curve``,
    ``verdict`` and ``trained`` (the path of ours' first-seed weights, ``proxy_trained.pt``, or
    None when that training failed). A resumed run keeps the weights its first run saved."""
    from proxytask.grid import grid_seeds, test_accuracies, train_grid

    grid = sorted({float(w) for w in widths} | {1.0})
    specs = {"ours": ours, **{f"paper@{w:g}": reference(paper_name, w) for w in grid}}
    trained = folder / "proxy_trained.pt"
    runs = train_grid(specs, seeds, sig, workers=workers, journal=folder / "trainings.jsonl",
                      keep=("ours", grid_seeds(sig, 1)[0], trained), log=log)

    def entry(label: str) -> dict:
        return {"target": target, "latency_ms": round(predict_ms(specs[label], target), 3),
                "test_accuracy": test_accuracies(runs[label]),
                "val_accuracy": [r["val_accuracy"] for r in runs[label] if r and r["status"] == "ok"]}

    comparison = {"ours": entry("ours"), "reference": entry("paper@1")}
    curve = [{"width": w, **entry(f"paper@{w:g}")} for w in grid]
    failed = [f"{label} seed {r['seed']}: {r['reason']}" for label, rs in runs.items() for r in rs
              if r is not None and r["status"] != "ok"]
    return {"comparison": comparison, "reference_curve": curve,
            "verdict": verdict(comparison["ours"], comparison["reference"], curve), "failed": failed,
            "seconds": {label: mean_sd([r["seconds"] for r in rs if r])[0] for label, rs in runs.items()},
            "trained": trained if trained.is_file() else None}


def comparison_plot(result: dict, path: Path, *, network: str, signal_text: str) -> None:
    """Test accuracy against predicted pixel1 latency: the paper's width curve (mean +- sd over
    seeds), its 1.0 point, and ours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = [c for c in result["reference_curve"] if c["test_accuracy"]]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs = [c["latency_ms"] for c in curve]
    means = [100 * statistics.fmean(c["test_accuracy"]) for c in curve]
    sds = [100 * (mean_sd(c["test_accuracy"])[1] or 0.0) for c in curve]
    ax.errorbar(xs, means, yerr=sds, fmt="-o", color="C0", capsize=3, label=f"the paper's V3-{network.title()} x width")
    for c, x, y in zip(curve, xs, means):
        ax.annotate(f"{c['width']:g}", (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ours = result["comparison"]["ours"]
    if ours["test_accuracy"]:
        mean, sd = mean_sd(ours["test_accuracy"])
        ax.errorbar([ours["latency_ms"]], [100 * mean], yerr=[100 * sd], fmt="*", ms=14, color="crimson", capsize=3,
                    markeredgecolor="k", label="ours (seed -> NetAdapt -> redesign)")
    ax.set(xlabel=f"predicted latency on {ours.get('target', 'pixel1')} (ms)", ylabel="proxy test accuracy (%)",
           title=f"Equal footing: {len(ours['test_accuracy'])} seed(s), {signal_text}")
    ax.legend(fontsize=8, loc="lower right")
    atomic_savefig(fig, path)


__all__ = ["equal_footing", "verdict", "interpolate", "comparison_plot"]
