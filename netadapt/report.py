"""A run's tables and plot, rebuilt from its journal: ``history.csv`` and ``trajectory.png``."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from jobs import atomic_savefig, atomic_write_text

from .selection import noise_groups, pooled_noise_accuracy

HISTORY_COLUMNS = ["iteration", "proposal", "proposal_index", "kind", "channels", "from_channels", "to_channels",
                   "predicted_latency_ms", "latency_cut_ms", "step_target_ms", "accuracy_before", "accuracy_after",
                   "metric", "chosen", "noise", "lead", "lead_exceeds_noise", "margin", "margin_exceeds_noise",
                   "noise_accuracy", "noise_dof", "status", "reason", "seconds"]


def _nan(value):
    return math.nan if value is None else value


def _selection_columns(chosen: dict, pooled: tuple[float | None, int]) -> dict:
    """Lead, noise and margin of a chosen proposal, the noise pooled over the whole run
    (:func:`~netadapt.selection.pooled_noise_accuracy`; the estimate when it was chosen used only
    the iterations before). A journal written before ``noise_scale`` keeps its own figures."""
    noise, noise_accuracy, dof = chosen.get("noise"), chosen.get("noise_accuracy"), chosen.get("noise_dof")
    if isinstance(chosen.get("noise_scale"), (int, float)):
        noise_accuracy, dof = pooled
        noise = None if noise_accuracy is None else noise_accuracy * chosen["noise_scale"]
    lead, margin = chosen.get("lead"), chosen.get("margin")
    return {"noise": _nan(noise), "lead": _nan(lead), "margin": _nan(margin), "noise_accuracy": _nan(noise_accuracy),
            "noise_dof": dof,
            "lead_exceeds_noise": None if lead is None or noise is None else bool(lead > noise),
            "margin_exceeds_noise": None if margin is None or noise is None else bool(margin > noise)}


def history(records: list[dict]) -> pd.DataFrame:
    """One row for the seed (iteration 0) and one per proposal of every iteration, skipped ones
    included; ``metric`` is the selection metric, ``chosen`` marks the proposal each iteration kept."""
    seed = next((r for r in records if r["type"] == "seed"), None)
    rows = []
    if seed is not None:
        rows.append({"iteration": 0, "proposal": "seed", "proposal_index": -1, "kind": "seed", "channels": "",
                     "predicted_latency_ms": seed["latency_ms"], "accuracy_after": _nan(seed.get("accuracy")),
                     "chosen": True, "status": "ok"})
    done = {(r["iteration"], r["index"]): r for r in records if r["type"] == "proposal"}
    chosen_records = {(r["iteration"], r["index"]): r for r in records if r["type"] == "chosen"}
    chosen = set(chosen_records)
    pooled = pooled_noise_accuracy(noise_groups(records))
    for it in (r for r in records if r["type"] == "iteration"):
        for p in it["proposals"]:
            key = (it["iteration"], p["index"])
            row = {"iteration": it["iteration"], "proposal": p["name"], "proposal_index": p["index"], "kind": p["kind"],
                   "channels": f"{p['from_channels']}->{p['to_channels'] if p['to_channels'] is not None else ''}",
                   "from_channels": p["from_channels"], "to_channels": p["to_channels"],
                   "predicted_latency_ms": p["latency_ms"], "latency_cut_ms": p["cut_ms"],
                   "step_target_ms": p["step_target_ms"], "chosen": key in chosen}
            if p["to_channels"] is None:
                row.update(status="skipped", reason=p["reason"])
            elif key in done:
                r = done[key]
                row.update(accuracy_before=_nan(r.get("accuracy_before")), accuracy_after=_nan(r.get("accuracy_after")),
                           metric=_nan(r.get("metric")), status=r["status"], reason=r.get("reason", ""),
                           seconds=r.get("seconds"))
            else:
                row.update(status="pending")
            if key in chosen_records:  # is the choice signal? (netadapt.selection.lead_and_noise)
                row.update(_selection_columns(chosen_records[key], pooled))
            rows.append(row)
    df = pd.DataFrame(rows).reindex(columns=HISTORY_COLUMNS)
    for column in ("from_channels", "to_channels"):  # integers with gaps (the seed, skipped proposals)
        df[column] = df[column].astype("Int64")
    return df


def write_history(records: list[dict], path: Path) -> pd.DataFrame:
    df = history(records)
    atomic_write_text(path, df.to_csv(index=False))
    return df


def trajectory_plot(records: list[dict], path: Path, *, target: str, budget_ms: float, select: str) -> None:
    """Proxy accuracy vs predicted latency: every evaluated proposal (faint), the chosen path, the
    budget, and the final network after the long-term fine-tune (a star)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = history(records)
    evaluated = df[df["status"] == "ok"]
    path_rows = df[df["chosen"] & df["accuracy_after"].notna()].sort_values("iteration")
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    if not evaluated.empty:
        ax.scatter(evaluated["predicted_latency_ms"], 100 * evaluated["accuracy_after"], s=10, color="0.7",
                   label="proposals (after short fine-tune)")
    ax.plot(path_rows["predicted_latency_ms"], 100 * path_rows["accuracy_after"], "-o", color="C0", ms=4,
            label="chosen (seed first)")
    for _, row in path_rows.iterrows():
        ax.annotate(str(int(row["iteration"])), (row["predicted_latency_ms"], 100 * row["accuracy_after"]),
                    fontsize=6, xytext=(2, 2), textcoords="offset points")
    final = next((r for r in records if r["type"] == "final"), None)
    if final is not None and final.get("accuracy") is not None:
        ax.scatter([final["latency_ms"]], [100 * final["accuracy"]], marker="*", s=160, color="gold",
                   edgecolors="k", zorder=3, label="final (long-term fine-tune)")
    ax.axvline(budget_ms, color="k", ls="--", lw=1, label=f"budget {budget_ms:.2f} ms")
    ax.invert_xaxis()
    ax.set(xlabel=f"predicted latency on {target} (ms)", ylabel="proxy accuracy (%)",
           title=f"NetAdapt trajectory (select by {select})")
    ax.legend(fontsize=7, loc="best")
    atomic_savefig(fig, path)


def pooled_from_histories(paths: list[str | Path]) -> dict:
    """The selection noise of a finished run pooled over its iterations, from ``history.csv``
    files alone (e.g. one per round): for each chosen row, ``noise_accuracy`` as recorded and the
    root mean square of those over the rows (an upper bound of the pooled noise: a history keeps
    no sign of (own score - re-score), so the winner's-curse lift cannot be taken out); then how
    often the lead and the margin exceed the noise, recorded and pooled."""
    frames = []
    for path in paths:
        df = pd.read_csv(path)
        frames.append(df[(df["chosen"] == True) & (df["iteration"] > 0)].dropna(  # noqa: E712 (a pandas mask)
            subset=["lead", "noise", "noise_accuracy", "latency_cut_ms"]))
    rows = pd.concat(frames) if frames else pd.DataFrame()
    if rows.empty:
        return {"iterations": 0}
    pooled = float((rows["noise_accuracy"] ** 2).mean() ** 0.5)
    noise = pooled / rows["latency_cut_ms"].abs()
    return {"iterations": len(rows), "pooled_noise_accuracy_rms": pooled, "dof": len(rows),
            "lead_exceeds_recorded_noise": int((rows["lead"] > rows["noise"]).sum()),
            "margin_exceeds_recorded_noise": int((rows["margin"] > rows["noise"]).sum()),
            "lead_exceeds_pooled_noise": int((rows["lead"] > noise).sum()),
            "margin_exceeds_pooled_noise": int((rows["margin"] > noise).sum())}
