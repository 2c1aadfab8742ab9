"""Choosing among an iteration's proposals: ``ratio`` (MobileNetV3: maximise dAccuracy / |dLatency|)
or ``accuracy`` (the original NetAdapt: maximise the accuracy after the short-term fine-tune)."""

from __future__ import annotations

import math

SELECTIONS = ("ratio", "accuracy")


def selection_metric(accuracy: float, parent_accuracy: float, cut_ms: float, select: str) -> float:
    """``ratio``: (accuracy - parent accuracy) / |latency cut| (MobileNetV3); ``accuracy``: accuracy."""
    if select == "ratio":
        return (accuracy - parent_accuracy) / abs(cut_ms)
    if select == "accuracy":
        return accuracy
    raise ValueError(f"select: {select!r} is not one of {', '.join(SELECTIONS)}")


def select_proposal(results: list[dict], parent_accuracy: float, select: str) -> dict | None:
    """The best of ``results`` (dicts with ``index``, ``status``, ``accuracy_after``, ``cut_ms``) by
    ``select``; ties go to the lower index; failed proposals never win; None when all failed."""
    ok = [r for r in results if r["status"] == "ok" and r.get("accuracy_after") is not None
          and math.isfinite(r["accuracy_after"])]
    if not ok:
        return None
    return max(sorted(ok, key=lambda r: r["index"]),
               key=lambda r: selection_metric(r["accuracy_after"], parent_accuracy, r["cut_ms"], select))


def lead_and_noise(metrics: list[float], chosen_scores: list[float], chosen_accuracies: list[float]) -> dict:
    """Is the choice signal or noise? ``metrics``: every scored proposal's selection metric (the
    chosen one's among them); ``chosen_scores`` / ``chosen_accuracies``: the chosen proposal's
    metric and accuracy from its own fine-tune first, then from fine-tunes with other seeds.

    ``lead``: the chosen metric minus the runner-up's (None with one proposal). ``noise``: the
    sample standard deviation of the chosen proposal's metric over its seeds (None with one
    seed), i.e. how much one score moves when only the seed changes; ``noise_accuracy`` the same
    in accuracy. ``lead_exceeds_noise``: lead > noise (None when either is missing). ``margin``:
    the chosen metric minus the median of all proposals' (is the choice better than a typical
    proposal, even where the runner-up ties with it?), ``margin_exceeds_noise`` likewise.
    """
    import statistics

    finite = sorted((m for m in metrics if m is not None and math.isfinite(m)), reverse=True)
    lead = finite[0] - finite[1] if len(finite) >= 2 else None
    scores = [s for s in chosen_scores if s is not None and math.isfinite(s)]
    accuracies = [a for a in chosen_accuracies if a is not None and math.isfinite(a)]
    noise = statistics.stdev(scores) if len(scores) >= 2 else None
    noise_accuracy = statistics.stdev(accuracies) if len(accuracies) >= 2 else None
    exceeds = None if lead is None or noise is None else bool(lead > noise)
    margin = finite[0] - statistics.median(finite) if len(finite) >= 2 else None
    margin_exceeds = None if margin is None or noise is None else bool(margin > noise)
    return {"lead": lead, "noise": noise, "noise_accuracy": noise_accuracy, "lead_exceeds_noise": exceeds,
            "margin": margin, "margin_exceeds_noise": margin_exceeds, "noise_seeds": len(scores) - 1}
