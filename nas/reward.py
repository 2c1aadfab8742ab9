"""MnasNet's multi-objective reward: ACC(m) x [LAT(m) / T]^w. A pure function.

Soft constraint (the paper's): alpha = beta = w, with w = -0.07 for Large-style searches and
w = -0.15 for MobileNetV3-Small's search. Hard constraint: alpha = 0, beta = -1 (no bonus
below the target, a steep penalty above it).
"""

from __future__ import annotations

import math

INVALID_REWARD = 0.0  # a child that crashed or diverged
W_LARGE = -0.07
W_SMALL = -0.15


def reward(accuracy: float, latency_ms: float, target_ms: float, w: float = W_LARGE,
           alpha: float | None = None, beta: float | None = None) -> float:
    """ACC x (LAT / T)^e with e = alpha if LAT <= T else beta (both default to ``w``)."""
    if not (target_ms > 0):
        raise ValueError(f"target_ms: {target_ms!r} must be positive")
    if not (latency_ms > 0) or not math.isfinite(latency_ms):
        raise ValueError(f"latency_ms: {latency_ms!r} must be a positive finite number")
    if accuracy is None or not math.isfinite(accuracy):
        return INVALID_REWARD
    exponent = (w if alpha is None else alpha) if latency_ms <= target_ms else (w if beta is None else beta)
    return float(accuracy) * (latency_ms / target_ms) ** exponent
