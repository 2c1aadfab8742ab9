"""Profile ops into a latency table: careful protocol, atomic progress, resume after a kill.

Protocol (per chunk of ops, all compiled up front):
  1. warm up every op (``protocol.warmup`` runs);
  2. ``protocol.rounds`` interleaved rounds: in each round every op of the chunk (in a fresh
     random order) runs ``protocol.repeats`` times; the round's median is kept;
  3. the op's latency is the median of its round medians (robust to a noisy round), minus the
     runtime's per-call overhead, measured the same way on an empty graph (Identity) with the
     op's input shape, interleaved with the ops.
The table is rewritten atomically after every chunk, so a kill loses at most one chunk and a
rerun measures only the ops still missing (after checking that the provenance matches).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from search_spaces import ArchSpec, OpKey

from .backends import Backend, Protocol
from .table import COLUMNS, MeasuredTable, ProvenanceMismatch, empty_rows, key_columns, load_table, now_iso, \
    same_provenance

TOOL_VERSION = 1


@dataclass
class OpStats:
    median_ms: float
    mean_ms: float
    iqr_ms: float
    count: int
    round_medians: list[float]
    min_ms: float = float("nan")

    def value(self, statistic: str) -> float:
        """The figure ``Protocol.statistic`` names."""
        return self.min_ms if statistic == "min" else self.median_ms


def _stats(samples: list[np.ndarray]) -> OpStats:
    rounds = [float(np.median(s)) for s in samples]
    all_samples = np.concatenate(samples)
    q1, q3 = np.percentile(all_samples, [25, 75])
    return OpStats(float(np.median(rounds)), float(all_samples.mean()), float(q3 - q1), int(all_samples.size), rounds,
                   float(all_samples.min()))


def ops_for_specs(specs: Iterable[ArchSpec]) -> list[OpKey]:
    """Distinct op keys of ``specs`` in first-seen order."""
    return list(dict.fromkeys(k for spec in specs for k in spec.op_keys()))


def table_provenance(backend: Backend, protocol: Protocol) -> dict:
    import torch

    return backend.provenance() | {"kind": "measured", "protocol": protocol.to_dict(), "torch": torch.__version__,
                                   "tool_version": TOOL_VERSION, "overhead": "empty graph (Identity) of the op's input"}


def open_table(path: Path, backend: Backend, protocol: Protocol, log=print) -> MeasuredTable:
    """The table at ``path`` to continue (provenance must match), or a new empty one.

    Bad rows of an existing table (empty, NaN or negative latencies, duplicated op keys; see
    :func:`latency.table.row_problems`) are left out with a warning naming file and line, so
    that they are measured again.
    """
    provenance = table_provenance(backend, protocol)
    if path.is_file():
        table = load_table(path, repair=True)
        for problem in table.dropped:
            if log:
                log(f"warning: {path}, {problem}: left out, to be measured again")
        diff = same_provenance(table.provenance, provenance)
        if diff:
            f = diff[0]
            raise ProvenanceMismatch(
                f"{path} was measured with {f}={table.provenance.get(f)!r}, this run has {provenance.get(f)!r}; "
                "write to a new --out (tables of different provenance are never merged)")
        return table
    provenance["created"] = now_iso()
    return MeasuredTable(name=path.stem, rows=empty_rows(), provenance=provenance, path=path)


def _measure_chunk(backend: Backend, ops: Sequence[OpKey], protocol: Protocol, rng: random.Random,
                   tick=None) -> dict[OpKey, tuple[OpStats, OpStats]]:
    import torch

    from search_spaces import build_op

    if backend.remote:
        return _measure_remote(backend, ops, protocol, tick)
    shapes = sorted({op.input_shape for op in ops})
    compiled = {op: backend.compile(build_op(op), op.input_shape) for op in ops}
    empty = {shape: backend.compile(torch.nn.Identity(), shape) for shape in shapes}
    units = [("op", op) for op in ops] + [("empty", s) for s in shapes]
    try:
        for kind, unit in units:
            runner = compiled[unit] if kind == "op" else empty[unit]
            for _ in range(protocol.warmup):
                runner.run()
        samples: dict = {u: [] for u in units}
        for _ in range(protocol.rounds):
            order = list(units)
            rng.shuffle(order)
            for kind, unit in order:
                runner = compiled[unit] if kind == "op" else empty[unit]
                samples[(kind, unit)].append(backend.time_runs(runner, protocol.repeats))
            if tick:
                tick(len(ops) / protocol.rounds)
        return {op: (_stats(samples[("op", op)]), _stats(samples[("empty", op.input_shape)])) for op in ops}
    finally:
        for runner in list(compiled.values()) + list(empty.values()):
            runner.close()


def _measure_remote(backend: Backend, ops: Sequence[OpKey], protocol: Protocol, tick=None):
    """Ops timed on another device, one after the other (its tool does warm-up and repeats)."""
    import torch

    from search_spaces import build_op

    empty = {shape: _stats(np.split(backend.measure(torch.nn.Identity(), shape, protocol), protocol.rounds))
             for shape in sorted({op.input_shape for op in ops})}
    out = {}
    for op in ops:
        samples = backend.measure(build_op(op), op.input_shape, protocol)
        out[op] = (_stats(np.array_split(samples, protocol.rounds)), empty[op.input_shape])
        if tick:
            tick(1)
    return out


def profile_ops(keys: Sequence[OpKey], backend: Backend, out: str | Path, protocol: Protocol = Protocol(), *,
                chunk: int = 64, seed: int = 0, progress: bool = True, log=print) -> MeasuredTable:
    """Measure every op of ``keys`` missing from the table at ``out``; return the complete table."""
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: {chunk!r} is not a whole number >= 1")
    path = Path(out)
    table = open_table(path, backend, protocol, log)
    if table.dropped:  # the file on disk keeps no bad row, even if nothing below needs measuring
        table.save(path)
    todo = [k for k in dict.fromkeys(keys) if k.to_str() not in table.rows.index]
    done = len(dict.fromkeys(keys)) - len(todo)
    if done and log:
        log(f"{path}: {done} op(s) already measured, {len(todo)} to go")
    rng = random.Random(seed)
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="op", desc=f"profiling {backend.name} {backend.threads}t", smoothing=0.1,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total} ops [{elapsed}<{remaining}]")
    rows = [table.rows]
    try:
        for start in range(0, len(todo), chunk):
            ops = todo[start:start + chunk]
            results = _measure_chunk(backend, ops, protocol, rng, tick=bar.update if bar else None)
            new = pd.DataFrame([{
                "op_key": op.to_str(), "median_ms": max(0.0, s.median_ms - e.median_ms),
                "min_ms": max(0.0, s.min_ms - e.min_ms), "mean_ms": max(0.0, s.mean_ms - e.mean_ms),
                "iqr_ms": s.iqr_ms, "count": s.count, "overhead_ms": e.value(protocol.statistic),
                **key_columns(op)} for op, (s, e) in results.items()],
                columns=COLUMNS).set_index("op_key")
            rows.append(new)
            table = MeasuredTable(table.name, pd.concat([r for r in rows if not r.empty]), table.provenance, path)
            table.provenance["updated"] = now_iso()
            table.save(path)
    finally:
        if bar:
            bar.close()
    return table


def measure_network(spec: ArchSpec, backend: Backend, protocol: Protocol = Protocol()) -> OpStats:
    """End-to-end latency of the whole network with the same protocol (rounds of repeats)."""
    from search_spaces import build

    shape = (1, spec.in_channels, spec.resolution, spec.resolution)
    runner = backend.compile(build(spec), shape)
    try:
        for _ in range(protocol.warmup):
            runner.run()
        samples = [backend.time_runs(runner, protocol.repeats) for _ in range(protocol.rounds)]
    finally:
        runner.close()
    return _stats(samples)


def elapsed(start: float) -> str:
    seconds = time.monotonic() - start
    return f"{seconds / 60:.1f} min" if seconds > 90 else f"{seconds:.1f} s"
