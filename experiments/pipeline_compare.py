"""The reproduction's verdict: ours against the paper's network on equal footing, and where the
structure differs.

* :func:`equal_footing`: ours and the paper's network trained from scratch with the same accuracy
  signal and schedule, ``seeds`` seeds each, accuracy on the test split (nothing was selected on
  it); the paper's network at several width multipliers gives a reference curve of accuracy
  against predicted pixel1 latency, on or above which ours should sit.
* :func:`verdict`: the figures a reader checks first (pure; tested on known numbers).
* :func:`structure_report`: per block and per stage, the seed, NetAdapt's result, ours and the
  paper's network; where NetAdapt cut against where the paper's network differs from its own
  seed (MnasNet-A1 -> V3-Large, expansion by expansion).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pandas as pd

from jobs import atomic_savefig
from latency import predict_ms
from search_spaces import ArchSpec, reference

# The network the paper's search started from, where the paper says (Section 4.2: Large reused
# MnasNet-A1 as its seed; Small was searched from scratch with w = -0.15, seed unpublished).
PAPER_SEEDS = {"mobilenet_v3_large": "mnasnet_a1"}


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def interpolate(curve: list[tuple[float, float]], x: float) -> float | None:
    """Linear interpolation of the (x, y) points of ``curve`` at ``x``; None outside their range."""
    points = sorted(curve)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    if len(points) == 1 and points[0][0] == x:
        return points[0][1]
    return None


def verdict(ours: dict, paper: dict, curve: list[dict]) -> dict:
    """``ours`` / ``paper``: ``{"pixel1_ms", "test_accuracy": [per seed]}``; ``curve``: the paper's
    network at several widths, the same keys plus ``width``.

    ``meets_target``: ours is not slower than the paper's network (predicted pixel1) and its mean
    test accuracy is at least the paper's. ``curve_at_ours_ms``: the reference curve's mean
    accuracy interpolated at ours' latency (None outside the curve); ``above_curve`` ours' mean
    minus it. ``delta_over_spread``: the difference of means over the larger seed spread.
    """
    ours_mean, ours_std = _mean_std(ours["test_accuracy"])
    paper_mean, paper_std = _mean_std(paper["test_accuracy"])
    out = {"ours_mean": ours_mean, "ours_std": ours_std, "paper_mean": paper_mean, "paper_std": paper_std,
           "ours_ms": ours["pixel1_ms"], "paper_ms": paper["pixel1_ms"],
           "not_slower": bool(ours["pixel1_ms"] <= paper["pixel1_ms"] + 1e-9)}
    if ours_mean is None or paper_mean is None:
        out.update(delta=None, meets_target=None, curve_at_ours_ms=None, above_curve=None, delta_over_spread=None)
        return out
    delta = ours_mean - paper_mean
    spread = max(ours_std or 0.0, paper_std or 0.0)
    points = [(c["pixel1_ms"], statistics.fmean(c["test_accuracy"])) for c in curve if c["test_accuracy"]]
    at = interpolate(points, ours["pixel1_ms"])
    out.update(delta=delta, meets_target=bool(out["not_slower"] and delta >= 0), curve_at_ours_ms=at,
               above_curve=None if at is None else ours_mean - at,
               delta_over_spread=None if spread == 0 else delta / spread)
    return out


def equal_footing(ours: ArchSpec, paper_name: str, widths: list[float], sig, *, seeds: int, workers: int,
                  folder: Path, log=print) -> dict:
    """Train ours and the paper's network (and its width curve) alike; returns the summary's
    ``comparison`` (``ours`` / ``reference``), ``reference_curve``, ``verdict`` and ``state``
    (ours' seed-0 weights, for ``proxy_trained.pt``)."""
    from .train_grid import test_accuracies, train_grid

    grid = sorted({float(w) for w in widths} | {1.0})
    specs = {"ours": ours, **{f"paper@{w:g}": reference(paper_name, w) for w in grid}}
    runs, state = train_grid(specs, seeds, sig, workers=workers, journal=folder / "trainings.jsonl",
                             keep=("ours", 0), log=log)

    def entry(label: str) -> dict:
        return {"pixel1_ms": round(predict_ms(specs[label], "pixel1"), 3), "test_accuracy": test_accuracies(runs[label]),
                "val_accuracy": [r["val_accuracy"] for r in runs[label] if r and r["status"] == "ok"]}

    comparison = {"ours": entry("ours"), "reference": entry("paper@1")}
    curve = [{"width": w, **entry(f"paper@{w:g}")} for w in grid]
    failed = [f"{label} seed {r['seed']}: {r['reason']}" for label, rs in runs.items() for r in rs
              if r is not None and r["status"] != "ok"]
    return {"comparison": comparison, "reference_curve": curve,
            "verdict": verdict(comparison["ours"], comparison["reference"], curve), "failed": failed,
            "seconds": {label: _mean_std([r["seconds"] for r in rs if r])[0] for label, rs in runs.items()},
            "state": state}


def comparison_plot(result: dict, path: Path, *, network: str, signal_text: str) -> None:
    """Test accuracy against predicted pixel1 latency: the paper's width curve (mean +- sd over
    seeds), its 1.0 point, and ours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = [c for c in result["reference_curve"] if c["test_accuracy"]]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs = [c["pixel1_ms"] for c in curve]
    means = [100 * statistics.fmean(c["test_accuracy"]) for c in curve]
    sds = [100 * (_mean_std(c["test_accuracy"])[1] or 0.0) for c in curve]
    ax.errorbar(xs, means, yerr=sds, fmt="-o", color="C0", capsize=3, label=f"the paper's V3-{network.title()} x width")
    for c, x, y in zip(curve, xs, means):
        ax.annotate(f"{c['width']:g}", (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ours = result["comparison"]["ours"]
    if ours["test_accuracy"]:
        mean, sd = _mean_std(ours["test_accuracy"])
        ax.errorbar([ours["pixel1_ms"]], [100 * mean], yerr=[100 * sd], fmt="*", ms=14, color="crimson", capsize=3,
                    markeredgecolor="k", label="ours (seed -> NetAdapt -> redesign)")
    ax.set(xlabel="predicted latency on pixel1 (ms)", ylabel="proxy test accuracy (%)",
           title=f"Equal footing: {len(ours['test_accuracy'])} seed(s), {signal_text}")
    ax.legend(fontsize=8, loc="lower right")
    atomic_savefig(fig, path)


# --------------------------------------------------------------------------- structure
def stages_of(spec: ArchSpec) -> list[int]:
    """The stage of each block: a new stage starts at a stride > 1 or a change of output width."""
    stages, stage = [], -1
    previous = None
    for block in spec.blocks:
        if previous is None or block.stride > 1 or block.out_channels != previous:
            stage += 1
        stages.append(stage)
        previous = block.out_channels
    return stages


def _inputs(spec: ArchSpec) -> list[int]:
    return [spec.stem.out_channels] + [b.out_channels for b in spec.blocks[:-1]]


def _expansion(spec: ArchSpec, i: int) -> int:
    block = spec.blocks[i]
    return block.expansion_channels if block.expansion_channels is not None else _inputs(spec)[i]


def _change(before: int | None, after: int | None) -> str:
    if before is None or after is None:
        return ""
    if before == after:
        return "="
    return f"{100 * (after - before) / before:+.0f} %"


def structure_report(seed: ArchSpec, pre: ArchSpec, ours: ArchSpec, paper: ArchSpec,
                     paper_seed: ArchSpec | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(blocks, stages). Blocks are paired by index (NetAdapt keeps the depth; the redesign drops
    the last block into the efficient last stage, so the paper's network may have one block
    less than its seed). ``NetAdapt cut``: seed -> NetAdapt's result; ``paper change``: the
    paper's seed -> the paper's network. Stages: the mean expansion ratio (expansion / input
    channels) of each stage for each network."""
    n = max(len(seed.blocks), len(pre.blocks), len(ours.blocks), len(paper.blocks),
            len(paper_seed.blocks) if paper_seed else 0)
    networks = {"seed": seed, "netadapt": pre, "ours": ours, "paper": paper, "paper_seed": paper_seed}
    rows = []
    for i in range(n):
        row = {"block": i}
        for key, spec in networks.items():
            if spec is not None and i < len(spec.blocks):
                row[f"{key} exp"] = _expansion(spec, i)
                row[f"{key} out"] = spec.blocks[i].out_channels
            else:
                row[f"{key} exp"] = row[f"{key} out"] = None
        row["NetAdapt cut (exp)"] = _change(row["seed exp"], row["netadapt exp"])
        row["NetAdapt cut (out)"] = _change(row["seed out"], row["netadapt out"])
        row["paper change (exp)"] = _change(row["paper_seed exp"], row["paper exp"]) if paper_seed else ""
        row["paper change (out)"] = _change(row["paper_seed out"], row["paper out"]) if paper_seed else ""
        rows.append(row)
    blocks = pd.DataFrame(rows)
    for column in blocks.columns:
        if column.endswith((" exp", " out")):
            blocks[column] = blocks[column].astype("Int64")
    stage_rows = {}
    for key, spec in networks.items():
        if spec is None:
            continue
        ins = _inputs(spec)
        for stage in sorted(set(stages_of(spec))):
            members = [i for i, s in enumerate(stages_of(spec)) if s == stage]
            ratio = float(np.mean([_expansion(spec, i) / ins[i] for i in members]))
            stage_rows.setdefault(stage, {"stage": stage})[f"{key} exp ratio"] = round(ratio, 2)
            stage_rows[stage][f"{key} out"] = spec.blocks[members[-1]].out_channels
            stage_rows[stage][f"{key} blocks"] = len(members)
    stages = pd.DataFrame(list(stage_rows.values()))
    for column in stages.columns:
        if column.endswith((" out", " blocks")):
            stages[column] = stages[column].astype("Int64")
    return blocks, stages


def cut_agreement(blocks: pd.DataFrame) -> dict:
    """Where NetAdapt cut expansions against where the paper's network has smaller expansions
    than its seed: blocks cut by both, by one only; None without a paper seed."""
    if blocks["paper_seed exp"].isna().all():
        return {}
    def cut(rows: pd.DataFrame, before: str, after: str) -> set[int]:
        return {int(r["block"]) for _, r in rows.iterrows()
                if pd.notna(r[before]) and pd.notna(r[after]) and r[after] < r[before]}

    ours_cut = cut(blocks, "seed exp", "netadapt exp")
    paper_cut = cut(blocks, "paper_seed exp", "paper exp")
    return {"netadapt_cut": sorted(ours_cut), "paper_cut": sorted(paper_cut), "both": sorted(ours_cut & paper_cut),
            "netadapt_only": sorted(ours_cut - paper_cut), "paper_only": sorted(paper_cut - ours_cut)}


def paper_seed_of(paper_name: str) -> ArchSpec | None:
    name = PAPER_SEEDS.get(paper_name)
    return reference(name) if name else None


__all__ = ["equal_footing", "verdict", "interpolate", "comparison_plot", "structure_report", "cut_agreement",
           "stages_of", "paper_seed_of", "PAPER_SEEDS"]
