"""The small statistics every report shares, once: finite values, mean and sample standard
deviation, and linear interpolation on a curve of (x, y) points."""

from __future__ import annotations

import math
import statistics


def finite_or_none(value) -> float | None:
    """``value`` as a float when it is a finite number, else None (NaN, +-inf, None, a bool, text)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def finite_values(values) -> list[float]:
    """The finite numbers of ``values`` as floats (None, NaN, +-inf and non-numbers left out)."""
    return [v for v in map(finite_or_none, values) if v is not None]


def mean_sd(values) -> tuple[float | None, float | None]:
    """(mean, sample standard deviation) of the finite ``values``: (None, None) when there are
    none, sd 0.0 for one value."""
    ok = finite_values(values)
    if not ok:
        return None, None
    return statistics.fmean(ok), (statistics.stdev(ok) if len(ok) > 1 else 0.0)


def interpolate(curve, x: float, *, tolerance: float = 0.0) -> float | None:
    """The straight-line interpolation of the (x, y) points of ``curve`` at ``x``; None outside
    their range (never extrapolated; ``tolerance``: how far outside an end still counts as the end).
    Points at the same x as ``x`` give the mean of their y."""
    points = sorted((float(a), float(b)) for a, b in curve)
    if not points or not points[0][0] - tolerance <= x <= points[-1][0] + tolerance:
        return None
    x = min(max(x, points[0][0]), points[-1][0])
    same = [b for a, b in points if abs(a - x) <= tolerance]
    if same:
        return statistics.fmean(same)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 < x < x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None
