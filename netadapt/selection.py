"""Choosing among an iteration's proposals: ``ratio`` (MobileNetV3: maximise dAccuracy / |dLatency|)
or ``accuracy`` (the original NetAdapt: maximise the accuracy after the short-term fine-tune)."""

from __future__ import annotations

import math

from jobs.stats import finite_values

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


def seed_sd(first: list[float], second: list[float], per_pair: int = 1) -> float | None:
    """The standard deviation of one score, from pairs of scores that differ only in the seed:
    the sample standard deviation of the differences ``first - second`` (their mean removed),
    divided by ``sqrt(1 + 1 / per_pair)`` (``second`` being a mean of ``per_pair`` scores; 1: by
    sqrt 2). A common offset of the differences moves every pair alike and is not counted: one
    seed's offset when the pairs are proposals of one iteration, the winner's-curse lift of a
    maximum when the pairs are iterations' chosen proposals. None with fewer than two pairs."""
    import statistics

    diffs = [a - b for a, b in zip(first, second)]
    return statistics.stdev(diffs) / math.sqrt(1 + 1 / per_pair) if len(diffs) >= 2 else None


def pooled_noise_accuracy(chosen: list[tuple[float, list[float]]]) -> tuple[float | None, int]:
    """The seed noise of one proposal's accuracy, pooled over a run's iterations, and its degrees
    of freedom. ``chosen``: per iteration, the chosen proposal's own score (the maximum over the
    iteration's proposals: lifted by the winner's curse) and its scores from fine-tunes with other
    seeds (``noise_seeds`` of them; fresh, not selected).

    With two or more re-scores in some iteration: the pooled within-iteration standard deviation of
    the re-scores alone (the selected score left out, so no winner's curse), sum (m_k - 1) degrees
    of freedom. Otherwise (one re-score each, the default): :func:`seed_sd` of (own score, re-score)
    over iterations, which removes the mean winner's-curse lift, K - 1 degrees of freedom. (None,
    0) when neither is possible (fewer than two iterations with one re-score)."""
    groups = [(own, finite_values(rescores)) for own, rescores in chosen if finite_values([own])]
    groups = [(own, rescores) for own, rescores in groups if rescores]
    within = [r for _, r in groups if len(r) >= 2]
    if within:
        dof = sum(len(r) - 1 for r in within)
        squares = sum(sum((x - sum(r) / len(r)) ** 2 for x in r) for r in within)
        return math.sqrt(squares / dof), dof
    if len(groups) >= 2:
        return seed_sd([own for own, _ in groups], [r[0] for _, r in groups]), len(groups) - 1
    return None, 0


def noise_groups(records: list[dict], current: tuple[int, float] | None = None) -> list[tuple[float, list[float]]]:
    """The (own score, re-scores) of every iteration's chosen proposal in a run's journal
    ``records`` (``chosen`` and ``noise`` records), for :func:`pooled_noise_accuracy`; ``current``:
    (iteration, own score) of an iteration whose choice is not journaled yet."""
    own = {r["iteration"]: r.get("score") for r in records if r.get("type") == "chosen"}
    chosen_index = {r["iteration"]: r.get("index") for r in records if r.get("type") == "chosen"}
    if current is not None:
        own[current[0]] = current[1]
    rescores: dict[int, list] = {}
    for r in records:
        if r.get("type") == "noise" and r.get("status") == "ok" and chosen_index.get(r["iteration"], r.get("index")) \
                == r.get("index"):
            rescores.setdefault(r["iteration"], []).append(r.get("accuracy_after"))
    return [(own[k], rescores.get(k, [])) for k in sorted(own)]


def metric_per_accuracy(cut_ms: float, select: str) -> float:
    """How much the selection metric moves per unit of accuracy: 1 / |cut| (``ratio``), 1 (``accuracy``)."""
    return 1.0 / abs(cut_ms) if select == "ratio" else 1.0


def lead_and_noise(metrics: list[float], noise_accuracy: float | None, scale: float = 1.0, dof: int = 0) -> dict:
    """Is the choice signal or noise? ``metrics``: every scored proposal's selection metric (the
    chosen one's among them); ``noise_accuracy``: the seed noise of one score in accuracy
    (:func:`pooled_noise_accuracy`, over the run's iterations); ``scale``: metric per accuracy
    (:func:`metric_per_accuracy`); ``dof``: the noise estimate's degrees of freedom.

    ``lead``: the chosen metric minus the runner-up's (None with one proposal). ``noise``: the
    noise in metric units. ``lead_exceeds_noise``: lead > noise (None when either is missing).
    ``margin``: the chosen metric minus the median of all proposals' (is the choice better than a
    typical proposal, even where the runner-up ties with it?), ``margin_exceeds_noise`` likewise.
    """
    import statistics

    finite = sorted(finite_values(metrics), reverse=True)
    lead = finite[0] - finite[1] if len(finite) >= 2 else None
    noise = None if noise_accuracy is None else noise_accuracy * scale
    exceeds = None if lead is None or noise is None else bool(lead > noise)
    margin = finite[0] - statistics.median(finite) if len(finite) >= 2 else None
    margin_exceeds = None if margin is None or noise is None else bool(margin > noise)
    return {"lead": lead, "noise": noise, "noise_accuracy": noise_accuracy, "lead_exceeds_noise": exceeds,
            "margin": margin, "margin_exceeds_noise": margin_exceeds, "noise_dof": dof}


def noise_statistics(metric_a: dict, metric_b: dict, accuracy_a: dict | None = None,
                     accuracy_b: dict | None = None) -> dict:
    """The all-proposals estimate (``python -m experiments.benchmarks.bench_netadapt --part noise``):
    how much the selection metric moves with the seed, against the lead of the winner.

    ``metric_a`` / ``metric_b``: {proposal index: selection metric} from two fine-tunes of every
    proposal that differ only in the seed (failed ones missing or non-finite: left out);
    ``accuracy_a`` / ``accuracy_b``: the same proposals' accuracies, for the noise in accuracy.

    ``noise``: :func:`seed_sd` over proposals of (m_A, m_B): the standard deviation of one score
    (a common offset of one seed moves every proposal alike and cannot change the choice, so it
    is not counted). ``noise_accuracy``: the same for accuracies. ``lead``: best minus runner-up
    of the per-proposal mean (m_A + m_B) / 2; ``lead_over_noise``; ``winner_a`` / ``winner_b`` /
    ``winner_mean``: the proposal each picks (ties to the lower index, as
    :func:`select_proposal`); ``winner_agrees``: A and B pick the same; ``spread``: the standard
    deviation of the mean metric across proposals.
    """
    import statistics

    def usable(d: dict | None, keys) -> dict:
        return {k: float(d[k]) for k in keys if d is not None and d.get(k) is not None and math.isfinite(d[k])}

    both = sorted(k for k in metric_a if k in metric_b)
    a, b = usable(metric_a, both), usable(metric_b, both)
    keys = [k for k in both if k in a and k in b]
    mean = {k: (a[k] + b[k]) / 2 for k in keys}

    def winner(scores: dict):
        return max(sorted(scores), key=lambda k: scores[k]) if scores else None  # ties: the first (lowest) key

    ranked = sorted(mean.values(), reverse=True)
    lead = ranked[0] - ranked[1] if len(ranked) >= 2 else None
    noise = seed_sd([a[k] for k in keys], [b[k] for k in keys])
    if lead is None or noise is None:
        ratio = None
    elif noise > 0:
        ratio = lead / noise
    else:
        ratio = math.inf if lead > 0 else None
    noise_accuracy = None
    if accuracy_a is not None and accuracy_b is not None:
        acc_a, acc_b = usable(accuracy_a, keys), usable(accuracy_b, keys)
        acc_keys = [k for k in keys if k in acc_a and k in acc_b]
        noise_accuracy = seed_sd([acc_a[k] for k in acc_keys], [acc_b[k] for k in acc_keys])
    win_a, win_b, win_mean = winner({k: a[k] for k in keys}), winner({k: b[k] for k in keys}), winner(mean)
    return {"proposals": len(keys), "noise": noise, "noise_accuracy": noise_accuracy, "lead": lead,
            "lead_over_noise": ratio, "lead_exceeds_noise": None if ratio is None else bool(ratio > 1),
            "winner_a": win_a, "winner_b": win_b, "winner_mean": win_mean,
            "winner_agrees": None if win_a is None else win_a == win_b,
            "spread": statistics.stdev(mean.values()) if len(mean) >= 2 else None}
