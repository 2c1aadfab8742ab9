"""The fidelity benchmark's statistics: rank agreement of a signal with ImageNet top-1, with
bootstrap intervals over networks and permutation p-values.

* ``spearman``: the Spearman of the seed-mean score against top-1.
* ``latency_matched_spearman``: score and top-1 are each fitted by least squares on
  (1, log L, (log L)^2), L the pixel1 prediction, and the Spearman of the two residuals is taken:
  at equal latency, does the signal prefer the network ImageNet prefers?
* ``seed_spearman``: the mean over seed pairs of the Spearman between two seeds' scores.
* ``*_ci95``: the 2.5 and 97.5 percentiles of the statistic over bootstrap resamples of the
  networks (drawn with replacement; the latency fit is redone on each resample; resamples where
  the statistic is undefined, e.g. all one network, are left out).
* ``*_permutation_p``: the share of random pairings of score and top-1 (top-1 permuted across
  networks; for the latency-matched figure its residuals are permuted) whose statistic is at least
  the observed one: a one-sided p-value for "the signal ranks better than chance".
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
PERMUTATIONS = 5000


def spearman(a, b) -> float:
    """Spearman's rho, NaN where undefined (a constant input)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    value = spearmanr(a, b)[0]
    return float(value) if np.isfinite(value) else float("nan")


def quadratic_residuals(values, latency_ms) -> np.ndarray:
    """Residuals of ``values`` after a least-squares fit on (1, log L, (log L)^2)."""
    log_l = np.log(np.asarray(latency_ms, dtype=float))
    design = np.stack([np.ones_like(log_l), log_l, log_l ** 2], axis=1)
    values = np.asarray(values, dtype=float)
    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
    return values - design @ coefficients


def latency_matched_spearman(proxy_score, top1, latency_ms) -> float:
    """Spearman of the residuals of the proxy score and of top-1, each fitted on log latency."""
    return spearman(quadratic_residuals(proxy_score, latency_ms), quadratic_residuals(top1, latency_ms))


def _interval(values: list[float]) -> list[float] | None:
    finite = np.asarray([v for v in values if np.isfinite(v)])
    if len(finite) < 0.5 * len(values) or len(finite) == 0:
        return None
    return [round(float(np.percentile(finite, 2.5)), 4), round(float(np.percentile(finite, 97.5)), 4)]


def bootstrap_intervals(mean, top1, latency_ms, *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """95 % percentile intervals of ``spearman`` and ``latency_matched_spearman`` over networks."""
    mean, top1, latency = (np.asarray(x, dtype=float) for x in (mean, top1, latency_ms))
    rng = np.random.default_rng(seed)
    plain, matched = [], []
    for _ in range(resamples):
        rows = rng.integers(0, len(mean), len(mean))
        if len(set(rows.tolist())) < 4:
            plain.append(float("nan"))
            matched.append(float("nan"))
            continue
        plain.append(spearman(mean[rows], top1[rows]))
        matched.append(latency_matched_spearman(mean[rows], top1[rows], latency[rows]))
    return {"spearman_ci95": _interval(plain), "latency_matched_spearman_ci95": _interval(matched),
            "bootstrap_resamples": resamples}


def permutation_p(mean, top1, latency_ms, *, seed: int = 0, permutations: int = PERMUTATIONS) -> dict:
    """One-sided permutation p-values of ``spearman`` and ``latency_matched_spearman``."""
    mean, top1 = np.asarray(mean, dtype=float), np.asarray(top1, dtype=float)
    rng = np.random.default_rng(seed)
    observed = spearman(mean, top1)
    r_score, r_top1 = quadratic_residuals(mean, latency_ms), quadratic_residuals(top1, latency_ms)
    observed_matched = spearman(r_score, r_top1)
    at_least = at_least_matched = 0
    for _ in range(permutations):
        order = rng.permutation(len(mean))
        at_least += spearman(mean, top1[order]) >= observed - 1e-12
        at_least_matched += spearman(r_score, r_top1[order]) >= observed_matched - 1e-12
    # (count + 1) / (n + 1): the observed pairing is one of the pairings (never p = 0)
    return {"spearman_permutation_p": (at_least + 1) / (permutations + 1) if np.isfinite(observed) else None,
            "latency_matched_permutation_p": ((at_least_matched + 1) / (permutations + 1)
                                              if np.isfinite(observed_matched) else None),
            "permutations": permutations}


def fidelity_statistics(scores: np.ndarray, top1, latency_ms, madds, *, intervals: bool = False,
                        seed: int = 0, params=None) -> dict:
    """``scores``: (networks, seeds), higher is better. The summary's statistics; ``intervals``
    adds the bootstrap intervals and permutation p-values; ``params`` (parameter counts) adds the
    parameter-count baseline (``params_spearman``, ``params_latency_matched_spearman``): a signal
    that only measures capacity scores what these score."""
    from scipy.stats import kendalltau

    mean = scores.mean(axis=1)
    seeds = scores.shape[1]
    pairs = [spearman(scores[:, i], scores[:, j]) for i in range(seeds) for j in range(i + 1, seeds)]
    pairs = [p for p in pairs if np.isfinite(p)]
    out = {
        "n": int(len(mean)),
        "spearman": spearman(mean, top1),
        "kendall": float(kendalltau(mean, top1)[0]),
        "latency_matched_spearman": latency_matched_spearman(mean, top1, latency_ms),
        "madds_latency_matched_spearman": latency_matched_spearman(np.log(madds), top1, latency_ms),
        "madds_spearman": spearman(madds, top1),
        "seed_spearman": float(np.mean(pairs)) if pairs else float("nan"),
        "seed_spearman_min": float(np.min(pairs)) if pairs else float("nan"),
        "seed_sd": float(np.mean(scores.std(axis=1, ddof=1))) if seeds > 1 else float("nan"),
    }
    if params is not None:
        out["params_spearman"] = spearman(params, top1)
        out["params_latency_matched_spearman"] = latency_matched_spearman(np.log(params), top1, latency_ms)
    if intervals:
        out.update(bootstrap_intervals(mean, top1, latency_ms, seed=seed))
        out.update(permutation_p(mean, top1, latency_ms, seed=seed))
        madds_ci = bootstrap_intervals(np.log(madds), top1, latency_ms, seed=seed)
        out["madds_spearman_ci95"] = madds_ci["spearman_ci95"]
        out["madds_latency_matched_spearman_ci95"] = madds_ci["latency_matched_spearman_ci95"]
    return out


__all__ = ["spearman", "quadratic_residuals", "latency_matched_spearman", "bootstrap_intervals", "permutation_p",
           "fidelity_statistics"]
