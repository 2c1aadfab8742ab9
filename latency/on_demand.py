"""A measured target's table that measures the ops it lacks when a prediction needs them.

The search and NetAdapt predict many networks on one target. On a measured target
(``host-ort-1t``, ...) the table need not hold every op they ask for (a child the search samples,
a width NetAdapt tries): :func:`table_for` gives a :class:`ProfilingTable`, which answers like the
target's table and, asked for ops it lacks, first profiles them on the target's backend with the
table's own protocol (:func:`latency.profiler.profile_ops` adds them to the table file
atomically, so later runs find them measured). A model target (``pixel1``) measures nothing: its
table is returned as it is, and a missing op raises :class:`~latency.table.MissingOpsError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Sequence

import numpy as np

from search_spaces import OpKey

from .table import LatencyTable, MissingOpsError, protocol_statistic
from .targets import Target, load_target


class ProfilingTable(LatencyTable):
    """The table of the measured ``target`` (which must exist), profiling missing ops on lookup.

    ``profiled`` counts the ops it has measured; ``log`` (if given) hears one line per profiling."""

    def __init__(self, target: Target | str, log: Callable[[str], None] | None = None):
        self.target = load_target(target)
        if not self.target.measurable:
            raise ValueError(f"target {self.target.name!r} is a {self.target.kind} target: nothing to profile")
        self.table = self.target.load_table()
        self.log = log
        self.profiled = 0
        self._backend = None

    def __getattr__(self, name: str):  # name, provenance, rows, correction, network_overhead_for, ...
        if name == "table":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.table, name)

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, key: OpKey) -> bool:
        return key in self.table

    def missing(self, keys) -> list[OpKey]:
        return self.table.missing(keys)

    def fill_command(self, keys: Sequence[OpKey]) -> str | None:
        return self.table.fill_command(keys)

    def lookup_ms(self, keys: Sequence[OpKey]) -> np.ndarray:
        try:
            return self.table.lookup_ms(keys)
        except MissingOpsError as err:
            self.measure(err.missing)
        return self.table.lookup_ms(keys)

    def measure(self, keys: Sequence[OpKey]) -> None:
        """Profile ``keys`` into the target's table file and reload it."""
        from .backends import Protocol, get_backend
        from .predictor import _target_table
        from .profiler import profile_ops

        keys = self.table.missing(keys)
        if not keys:
            return
        protocol = self.table.provenance.get("protocol")
        if isinstance(protocol, Mapping):  # measure as the table's rows were measured
            counts = {k: protocol[k] for k in ("warmup", "repeats", "rounds") if k in protocol}
            protocol = Protocol(**counts, statistic=protocol_statistic(self.table.provenance))
        else:
            protocol = Protocol()
        if self._backend is None:
            self._backend = get_backend(self.target.backend, self.target.threads)
        if self.log:
            self.log(f"profiling {len(keys)} op(s) missing from {self.target.name}'s table {self.target.table_path}")
        profile_ops(keys, self._backend, self.target.table_path, protocol, progress=False, log=None)
        self.profiled += len(keys)
        _target_table.cache_clear()  # predictions by target name see the new rows too
        self.table = self.target.load_table()


def table_for(target: Target | str, log: Callable[[str], None] | None = None) -> LatencyTable:
    """The table predictions on ``target`` should use: a :class:`ProfilingTable` for a measured
    target, the model's table for a model target."""
    from .predictor import resolve_table

    if load_target(target).measurable:
        return ProfilingTable(target, log=log)
    return resolve_table(target)  # a name or YAML path: loaded once per process
