"""Predict a network's latency as the sum of its ops' table latencies.

``predict(spec, table_or_target)`` looks up every op of ``spec.op_keys()`` and adds the
table's per-network overhead (the runtime's per-call cost, which op rows have subtracted).
Where ``latency.validate`` has fitted a per-network correction (``scale * sum + offset``, stored
in the table's provenance), it is applied: per-op rows are scaled and the offset joins the
overhead, so the breakdown still sums to the total.
A missing op raises :class:`~latency.table.MissingOpsError` listing the missing keys and the
command that fills them; ``fill="madds"`` instead estimates missing ops from the table's rows
of the same operator (least squares on MAdds and output size) and reports them in
``Prediction.filled``. Ops outside what the table's figures can vouch for (the ``pixel1``
model's calibration domain: 7x7 kernels, regular convolutions after the stem, inputs outside
128-256) are reported in ``Prediction.extrapolations`` (why) and ``Prediction.extrapolated``
(which ops). Fast: one prediction from a loaded table is a few microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from search_spaces import ArchSpec, OpKey
from search_spaces.cost import op_cost

from .table import LatencyTable, MissingOpsError, key_columns
from .targets import Target, load_target

FILL_METHODS = (None, "madds")


@dataclass(frozen=True)
class Prediction:
    spec_name: str
    spec_hash: str
    target: str
    latency_ms: float
    op_keys: tuple[OpKey, ...]
    per_op_ms: tuple[float, ...]
    network_overhead_ms: float
    filled: tuple[OpKey, ...] = ()
    extrapolations: tuple[str, ...] = ()  # why the prediction leaves the table's domain, one line each
    extrapolated: tuple[int, ...] = ()  # indices of the ops concerned

    @property
    def breakdown(self) -> pd.DataFrame:
        """One row per op: index, key, operator, latency, share of the total, filled or not,
        extrapolated or not."""
        filled, extrapolated = set(self.filled), set(self.extrapolated)
        rows = [{"op": i, "op_key": k.to_str(), "operator": k.operator, "latency_ms": ms,
                 "share_pct": 100 * ms / self.latency_ms if self.latency_ms else 0.0, "filled": k in filled,
                 "extrapolated": i in extrapolated}
                for i, (k, ms) in enumerate(zip(self.op_keys, self.per_op_ms))]
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        extrapolated = set(self.extrapolated)
        return {"name": self.spec_name, "hash": self.spec_hash, "target": self.target,
                "latency_ms": self.latency_ms, "network_overhead_ms": self.network_overhead_ms,
                "ops": [{"op_key": k.to_str(), "latency_ms": ms, "extrapolated": i in extrapolated}
                        for i, (k, ms) in enumerate(zip(self.op_keys, self.per_op_ms))],
                "filled": [k.to_str() for k in self.filled], "extrapolations": list(self.extrapolations)}


@lru_cache(maxsize=32)
def _target_table(name: str) -> LatencyTable:
    return load_target(name).load_table()


def resolve_table(table_or_target: LatencyTable | Target | str) -> LatencyTable:
    """A LatencyTable from a table, a Target, or a target name (loaded once per process)."""
    if isinstance(table_or_target, LatencyTable):
        return table_or_target
    if isinstance(table_or_target, Target):
        return table_or_target.load_table()
    return _target_table(str(table_or_target))


def _fill_madds(table, keys: list[OpKey]) -> dict[OpKey, float]:
    """Least-squares estimate of missing ops from measured rows of the same operator."""
    rows = getattr(table, "rows", None)
    if rows is None or rows.empty:
        raise MissingOpsError(keys, table.name, table.fill_command(keys))
    known = [OpKey.from_str(k) for k in rows.index]
    out = {}

    def features(k: OpKey) -> list[float]:
        return [1.0, op_cost(k)[0] / 1e6, k.out_channels * k.out_resolution * k.out_width / 1e5]

    for op in keys:
        same = [(k, ms) for k, ms in zip(known, rows[getattr(table, "latency_column", "median_ms")]) if k.operator == op.operator]
        if not same:
            raise MissingOpsError([op], table.name, table.fill_command([op]))
        if len(same) >= 3:
            x = np.array([features(k) for k, _ in same])
            coef, *_ = np.linalg.lstsq(x, np.array([ms for _, ms in same]), rcond=None)
            out[op] = max(0.0, float(coef @ features(op)))
        else:  # too few rows for a fit: scale the closest row by work (MAdds + output size)
            work = lambda k: sum(features(k)[1:]) or 1e-9  # noqa: E731
            ref, ms = min(same, key=lambda item: abs(work(item[0]) - work(op)))
            out[op] = float(ms * work(op) / work(ref))
    return out


def predict(spec: ArchSpec, table: LatencyTable | Target | str, *, fill: str | None = None) -> Prediction:
    """Predicted latency (ms) of ``spec`` on ``table`` (a LatencyTable, Target or target name)."""
    if fill not in FILL_METHODS:
        raise ValueError(f"fill: {fill!r} is not one of {', '.join(map(str, FILL_METHODS))}")
    lut = resolve_table(table)
    keys = spec.op_keys()
    filled: tuple[OpKey, ...] = ()
    try:
        per_op = lut.lookup_ms(keys)
    except MissingOpsError as err:
        if fill is None:
            raise
        estimates = _fill_madds(lut, err.missing)
        filled = tuple(estimates)
        present = [k for k in keys if k not in estimates]
        known = dict(zip(present, lut.lookup_ms(present))) if present else {}
        per_op = np.array([known[k] if k in known else estimates[k] for k in keys])
    overhead = lut.network_overhead_for(spec) if hasattr(lut, "network_overhead_for") else lut.network_overhead_ms
    scale, offset = getattr(lut, "correction", (1.0, 0.0))
    if (scale, offset) != (1.0, 0.0):
        per_op, overhead = per_op * scale, overhead * scale + offset
    total = float(per_op.sum()) + overhead
    if not np.isfinite(total) or total < 0:
        raise ValueError(f"latency table {lut.name!r} gives {spec.name} a latency of {total} ms (correction "
                         f"{scale:g} x sum + {offset:g} ms); refit the correction with python -m latency.validate")
    domain = lut.extrapolations(keys)
    extrapolated = tuple(sorted({i for _, ops in domain for i in ops}))
    return Prediction(spec.name, spec.hash, lut.name, total, keys, tuple(per_op.tolist()), overhead, filled,
                      tuple(reason for reason, _ in domain), extrapolated)


def predict_ms(spec: ArchSpec, table: LatencyTable | Target | str) -> float:
    """Just the number (the search's hot path)."""
    lut = resolve_table(table)
    overhead = lut.network_overhead_for(spec) if hasattr(lut, "network_overhead_for") else lut.network_overhead_ms
    scale, offset = getattr(lut, "correction", (1.0, 0.0))
    return scale * (float(lut.lookup_ms(spec.op_keys()).sum()) + overhead) + offset


__all__ = ["Prediction", "predict", "predict_ms", "resolve_table", "key_columns"]
