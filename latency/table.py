"""Per-op latency lookup tables with provenance.

A measured table is two files side by side: ``NAME.csv`` (one row per op key: ``op_key``,
``median_ms``, ``min_ms``, ``mean_ms``, ``iqr_ms``, ``count``, ``overhead_ms`` and the key's
fields) and ``NAME.provenance.json`` (backend and runtime version, threads, CPU, OS, date,
protocol, ...). Rows are overhead-subtracted: ``min_ms`` / ``median_ms`` is the op's time minus
the runtime's per-call overhead measured on an empty graph of the same input, with the same
statistic; the predictor reads the column of the protocol's ``statistic``
(:class:`latency.backends.Protocol`). A network's prediction adds one
per-network overhead (``network_overhead_ms``) back.

Tables of different provenance never merge (:func:`merge_tables` refuses), so measurements
from two devices, runtimes or protocols cannot be mixed by accident.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from jobs.atomic import atomic_write_text
from jobs.jsonio import dumps
from search_spaces import OpKey

COLUMNS = ["op_key", "median_ms", "min_ms", "mean_ms", "iqr_ms", "count", "overhead_ms", "operator", "resolution",
           "in_channels", "expansion_channels", "out_channels", "kernel", "stride", "se_channels", "se_gate",
           "nonlinearity", "residual"]
# Provenance fields that must agree for two tables to be merged (dates and notes may differ).
IDENTITY_FIELDS = ("backend", "runtime", "threads", "device", "os", "protocol", "kind", "graph_optimization")


class MissingOpsError(KeyError):
    """Ops of a network are not in the table. ``missing`` lists their keys; ``command`` fills them."""

    def __init__(self, missing: Sequence[OpKey], table_name: str, command: str | None):
        self.missing = list(dict.fromkeys(missing))
        self.command = command
        shown = ", ".join(k.to_str() for k in self.missing[:5]) + (" ..." if len(self.missing) > 5 else "")
        fix = f"; fill them with: {command}" if command else ""
        self.message = f"{len(self.missing)} op(s) missing from latency table {table_name!r}: {shown}{fix}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class ProvenanceMismatch(ValueError):
    """Two tables were measured differently and must not be merged."""


class BadRowsError(ValueError):
    """Rows of a table file that no prediction may use; ``problems`` has one message per row."""

    def __init__(self, path: Path, problems: Sequence[str]):
        self.path, self.problems = path, list(problems)
        more = f" (and {len(self.problems) - 1} more bad row(s))" if len(self.problems) > 1 else ""
        super().__init__(f"latency table {str(path)!r}, {self.problems[0]}{more}; rerun the latency.profile command "
                         f"that wrote it (--out {path}): it re-measures refused rows")


def key_columns(key: OpKey) -> dict:
    return {"operator": key.operator, "resolution": key.resolution, "in_channels": key.in_channels,
            "expansion_channels": key.expansion_channels, "out_channels": key.out_channels, "kernel": key.kernel,
            "stride": key.stride, "se_channels": key.se_channels, "se_gate": key.se_gate,
            "nonlinearity": key.nonlinearity, "residual": key.residual}


class LatencyTable:
    """Op key -> latency (ms). Subclasses may compute rows (a calibrated cost model)."""

    name: str
    provenance: dict
    network_overhead_ms: float

    def lookup_ms(self, keys: Sequence[OpKey]) -> np.ndarray:
        raise NotImplementedError

    def missing(self, keys: Iterable[OpKey]) -> list[OpKey]:
        return []

    def fill_command(self, keys: Sequence[OpKey]) -> str | None:
        """The command that would add ``keys`` to this table, if it can be measured."""
        return None

    def extrapolations(self, keys: Sequence[OpKey]) -> list[tuple[str, tuple[int, ...]]]:
        """Where the ops of one network (``keys``, in order) leave what the table's figures can
        vouch for: (reason, op indices) pairs. A measured row is never an extrapolation."""
        return []


@dataclass
class MeasuredTable(LatencyTable):
    """A table measured by :mod:`latency.profile`."""

    name: str
    rows: pd.DataFrame  # indexed by op_key string
    provenance: dict = field(default_factory=dict)
    path: Path | None = None
    dropped: tuple[str, ...] = ()  # bad rows left out by load_table(repair=True)

    def __post_init__(self) -> None:
        self._ms: dict[str, float] = dict(zip(self.rows.index, self.rows[self.latency_column].astype(float)))
        self._key_ms: dict[OpKey, float] = {}
        self._overhead: dict[str, float] = (dict(zip(self.rows.index, self.rows["overhead_ms"].astype(float)))
                                            if "overhead_ms" in self.rows else {})

    @property
    def statistic(self) -> str:
        """``min`` or ``median`` (the protocol's; tables made before the choice existed: median)."""
        return protocol_statistic(self.provenance)

    @property
    def latency_column(self) -> str:
        """The column the predictor reads: ``min_ms`` or ``median_ms``, as the protocol says."""
        return "min_ms" if self.statistic == "min" else "median_ms"

    @property
    def correction(self) -> tuple[float, float]:
        """(scale, offset_ms) fitted by ``latency.validate``; (1, 0) before any validation.

        Raises ValueError for a scale that is not a finite number > 0 or an offset that is not
        finite (a hand-edited provenance): such a correction would turn latencies negative.
        """
        c = self.provenance.get("network_correction") or {}
        problem = correction_problem(c)
        if problem:
            raise ValueError(f"latency table {self.name!r}: {problem}")
        return float(c.get("scale", 1.0)), float(c.get("offset_ms", 0.0))

    def network_overhead_for(self, spec) -> float:
        """The runtime's per-call overhead for ``spec``'s input: the overhead measured with its stem op."""
        return self._overhead.get(spec.op_keys()[0].to_str(), self.network_overhead_ms)

    @property
    def network_overhead_ms(self) -> float:
        return float(self.provenance.get("network_overhead_ms", 0.0))

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: OpKey) -> bool:
        return key in self._key_ms or key.to_str() in self._ms

    def lookup_ms(self, keys: Sequence[OpKey]) -> np.ndarray:
        out = np.empty(len(keys))
        cache, by_str = self._key_ms, self._ms
        missing = []
        for i, key in enumerate(keys):
            value = cache.get(key)
            if value is None:
                value = by_str.get(key.to_str())
                if value is None:
                    missing.append(key)
                    continue
                cache[key] = value
            out[i] = value
        if missing:
            raise MissingOpsError(missing, self.name, self.fill_command(missing))
        return out

    def missing(self, keys: Iterable[OpKey]) -> list[OpKey]:
        return [k for k in dict.fromkeys(keys) if k not in self]

    def fill_command(self, keys: Sequence[OpKey]) -> str | None:
        p = self.provenance
        if not p.get("backend") or p.get("kind") == "model" or self.path is None:
            return None
        return (f"python -m latency.profile --backend {p['backend']} --threads {p.get('threads', 1)} "
                f"--specs SPEC.yaml --out {self.path}  (the network's spec; the profiler adds only missing ops)")

    # ----------------------------------------------------------------- files
    @staticmethod
    def provenance_path(path: Path) -> Path:
        return path.with_name(path.stem + ".provenance.json")

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path or self.path)
        atomic_write_text(self.provenance_path(path), dumps(self.provenance, indent=2, sort_keys=True) + "\n")
        atomic_write_text(path, self.rows.reset_index().reindex(columns=COLUMNS).to_csv(index=False))
        self.path = path
        return path


TABLE_STATISTICS = ("min", "median")  # the statistics a table's rows can hold (latency.backends.STATISTICS)


def protocol_statistic(provenance: Mapping) -> str:
    """The statistic a table's rows report: its protocol's, or ``median`` (tables from before the
    choice existed, and model tables whose ``protocol`` is a description). Any other value is a
    ``ValueError`` (a hand-edited or foreign provenance), never silently the median."""
    protocol = provenance.get("protocol") if isinstance(provenance, Mapping) else None
    if not isinstance(protocol, Mapping):
        return "median"
    statistic = protocol.get("statistic", "median")
    if statistic not in TABLE_STATISTICS:
        raise ValueError(f"provenance protocol.statistic: {str(statistic)[:40]!r} is not one of "
                         f"{', '.join(TABLE_STATISTICS)}; measure the table again with python -m latency.profile")
    return statistic


def empty_rows() -> pd.DataFrame:
    return pd.DataFrame(columns=COLUMNS).set_index("op_key")


def _finite_number(value) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError, OverflowError):  # 2**2000 is no float
        return False


def _shown(value, limit: int = 40) -> str:
    huge = isinstance(value, int) and value.bit_length() >= 128
    text = f"<an integer of {value.bit_length()} bits>" if huge else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def correction_problem(correction: Mapping) -> str | None:
    """Why a stored ``network_correction`` cannot be used (None if it can)."""
    if not isinstance(correction, Mapping):
        return (f"provenance network_correction: {str(correction)[:40]!r} is not a mapping of scale and offset_ms; "
                "refit it with python -m latency.validate")
    scale, offset = correction.get("scale", 1.0), correction.get("offset_ms", 0.0)
    if not _finite_number(scale) or float(scale) <= 0:
        return (f"provenance network_correction.scale: {_shown(scale)} is not a finite number > 0; "
                "refit it with python -m latency.validate")
    if not _finite_number(offset):
        return (f"provenance network_correction.offset_ms: {_shown(offset)} is not a finite number; "
                "refit it with python -m latency.validate")
    return None


def row_problems(rows: pd.DataFrame, latency_column: str) -> dict[int, str]:
    """Bad rows of a table as read from CSV (before indexing): position -> what is wrong, naming
    the file's line (the header is line 1) and the op key.

    A row is bad when its op key is empty, when its latency (``latency_column``) or its
    ``overhead_ms`` is empty, not a number, infinite or negative, or when its op key is on more
    than one row (every copy is bad: the file cannot say which one is right).
    """
    problems: dict[int, str] = {}
    keys = rows["op_key"]
    lines: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if isinstance(key, str):
            lines.setdefault(key, []).append(i + 2)
    columns = [c for c in (latency_column, "overhead_ms") if c in rows.columns]
    numbers = {c: pd.to_numeric(rows[c], errors="coerce") for c in columns}
    for i, key in enumerate(keys):
        if not isinstance(key, str) or not key.strip():
            problems[i] = f"line {i + 2}: the op_key is empty"
            continue
        where = f"line {i + 2} (op_key {key})"
        for column in columns:
            raw, value = rows[column].iat[i], numbers[column].iat[i]
            if pd.isna(value):
                problems[i] = f"{where}: {column} is {'empty' if pd.isna(raw) else repr(raw)}, not a number"
                break
            if not np.isfinite(value) or value < 0:
                problems[i] = f"{where}: {column} is {value:g}, not a finite number >= 0"
                break
        else:
            if len(lines[key]) > 1:
                others = ", ".join(str(line) for line in lines[key] if line != i + 2)
                problems[i] = f"{where}: the op_key is duplicated (also on line {others})"
    return problems


MAX_TABLE_BYTES = 64 << 20  # a table of every op of every space is a few MB


def _read_provenance(prov_path: Path) -> dict:
    """The provenance sidecar: a JSON object of finite numbers, in a regular file (ValueError naming it)."""
    from jobs.jsonio import JSONShapeError, read_json

    try:
        # NaN is read: a non-finite correction is refused (or dropped by a repair) by name below
        return read_json(prov_path, what="latency table provenance", max_bytes=MAX_TABLE_BYTES, finite_only=False)
    except JSONShapeError as err:
        raise ValueError(f"{err}; measure the table again with python -m latency.profile") from None


def _read_rows(path: Path) -> pd.DataFrame:
    """The CSV rows of a table, read from a regular file; a parse error is a ValueError naming the file."""
    import io

    from jobs.files import FileKindError, read_bytes

    try:
        data = read_bytes(path, what="latency table", max_bytes=MAX_TABLE_BYTES)
        return pd.read_csv(io.BytesIO(data), encoding="utf-8")
    except FileKindError:
        raise
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:  # EmptyDataError is a ValueError
        raise ValueError(f"latency table {str(path)!r} is not a readable CSV table "
                         f"({' '.join(str(err).split())[:160]}); measure it again with python -m latency.profile") \
            from None


def load_table(path: str | Path, name: str | None = None, *, repair: bool = False) -> MeasuredTable:
    """Read ``path`` (CSV) and its provenance sidecar.

    Bad rows (:func:`row_problems`: a latency that is empty, not a number, infinite or
    negative; a duplicated op key) and an unusable stored correction are refused with
    :class:`BadRowsError` / ``ValueError`` naming the file and the line. With ``repair=True`` (what
    :mod:`latency.profile` does on a rerun) they are left out instead, listed in
    ``table.dropped``, so that the rerun measures those ops again.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"latency table {str(path)!r} does not exist; build it with python -m latency.profile")
    prov_path = MeasuredTable.provenance_path(path)
    if not prov_path.exists():
        raise ValueError(f"latency table {str(path)!r} has no provenance file {prov_path.name}; "
                         "tables without provenance are refused")
    provenance = _read_provenance(prov_path)
    rows = _read_rows(path)
    try:
        statistic = protocol_statistic(provenance)
    except ValueError as err:
        raise ValueError(f"latency table {str(path)!r}: {err} ({prov_path.name})") from None
    missing_cols = [c for c in ("op_key", "min_ms" if statistic == "min" else "median_ms") if c not in rows.columns]
    if missing_cols:
        raise ValueError(f"latency table {str(path)!r}: column {missing_cols[0]!r} missing")
    problems = row_problems(rows, "min_ms" if statistic == "min" else "median_ms")
    dropped = list(problems.values())
    correction = correction_problem(provenance["network_correction"] if provenance.get("network_correction")
                                    is not None else {})
    if problems and not repair:
        raise BadRowsError(path, dropped)
    if correction and not repair:
        raise ValueError(f"latency table {str(path)!r}: {correction}")
    if correction:
        provenance.pop("network_correction")
        dropped.append(correction.split(";")[0] + " (dropped)")
    rows = rows.drop(index=rows.index[list(problems)]).set_index("op_key")
    for column in ("median_ms", "min_ms", "overhead_ms"):
        if column in rows and rows[column].dtype == object:  # a bad cell made the column text
            rows[column] = pd.to_numeric(rows[column], errors="coerce")
    return MeasuredTable(name=name or path.stem, rows=rows, provenance=provenance, path=path, dropped=tuple(dropped))


def same_provenance(a: Mapping, b: Mapping) -> list[str]:
    """Identity fields on which ``a`` and ``b`` differ."""
    return [f for f in IDENTITY_FIELDS if a.get(f) != b.get(f)]


def merge_tables(tables: Sequence[MeasuredTable], name: str | None = None) -> MeasuredTable:
    """One table from several of identical provenance; refuses otherwise."""
    if not tables:
        raise ValueError("merge_tables: no tables given")
    first = tables[0]
    for other in tables[1:]:
        diff = same_provenance(first.provenance, other.provenance)
        if diff:
            f = diff[0]
            raise ProvenanceMismatch(
                f"refusing to merge latency tables {first.name!r} and {other.name!r}: {f} differs "
                f"({first.provenance.get(f)!r} vs {other.provenance.get(f)!r}); measure both with the same protocol")
    rows = pd.concat([t.rows for t in tables])
    rows = rows[~rows.index.duplicated(keep="first")]
    return MeasuredTable(name=name or first.name, rows=rows, provenance=dict(first.provenance))


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
