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
