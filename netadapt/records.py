"""The shape of NetAdapt's journal records, checked as the journal is read.

:func:`record_problem` is the ``check`` of NetAdapt's :class:`jobs.Journal`: a JSON object that
is not one of the records the run writes (an unknown ``type``, a missing or mistyped field, a
non-finite number, a weights path outside the run folder) is a damaged line, skipped with the
journal's warning, never a traceback later.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath

INT, NUMBER, STR, DICT, LIST = "int", "number", "str", "dict", "list"

# type -> field -> kind; a kind ending in "?" may also be null.
FIELDS: dict[str, dict[str, str]] = {
    "seed": {"spec": DICT, "hash": STR, "latency_ms": NUMBER, "budget_ms": NUMBER, "accuracy": NUMBER + "?"},
    "iteration": {"iteration": INT, "step_ms": NUMBER, "step_target_ms": NUMBER, "proposals": LIST},
    "proposal": {"iteration": INT, "index": INT, "name": STR, "hash": STR, "latency_ms": NUMBER, "cut_ms": NUMBER,
                 "status": STR, "accuracy_before": NUMBER + "?", "accuracy_after": NUMBER + "?",
                 "metric": NUMBER + "?", "weights": STR + "?"},
    "noise": {"iteration": INT, "index": INT, "repeat": INT, "status": STR, "accuracy_after": NUMBER + "?",
              "metric": NUMBER + "?"},
    "chosen": {"iteration": INT, "index": INT, "name": STR, "spec": DICT, "hash": STR, "latency_ms": NUMBER,
               "cut_ms": NUMBER, "score": NUMBER + "?", "accuracy": NUMBER + "?", "metric": NUMBER + "?"},
    "final": {"status": STR, "spec": DICT, "hash": STR, "iterations": INT, "latency_ms": NUMBER,
              "accuracy": NUMBER + "?"},
}
PROPOSAL_FIELDS = {"index": INT, "name": STR, "kind": STR, "hash": STR + "?"}  # None: a skipped proposal


def _is(value, kind: str) -> bool:
    if kind.endswith("?"):
        return value is None or _is(value, kind[:-1])
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, {STR: str, DICT: dict, LIST: list}[kind])


def _fields_problem(record: dict, fields: dict[str, str], where: str = "") -> str | None:
    for key, kind in fields.items():
        if key not in record:
            return f"{where}{key} is missing"
        if not _is(record[key], kind):
            return f"{where}{key} {str(record[key])[:40]!r} is not a{'n' if kind[0] == 'i' else ''} {kind.rstrip('?')}"
    return None


def record_problem(record: dict) -> str | None:
    """Why ``record`` is not a record of a NetAdapt journal (None if it is)."""
    kind = record.get("type")
    if not isinstance(kind, str) or kind not in FIELDS:
        return f"type {str(kind)[:40]!r} is not one of {', '.join(FIELDS)}"
    problem = _fields_problem(record, FIELDS[kind])
    if problem:
        return f"a {kind} record whose {problem}"
    if kind == "iteration":
        for i, proposal in enumerate(record["proposals"]):
            problem = (_fields_problem(proposal, PROPOSAL_FIELDS, f"proposals[{i}].") if isinstance(proposal, dict)
                       else f"proposals[{i}] is not an object")
            if problem:
                return f"an iteration record whose {problem}"
    weights = record.get("weights")
    if kind == "proposal" and weights is not None:
        parts = PurePosixPath(weights).parts
        if not parts or PurePosixPath(weights).is_absolute() or ".." in parts or "\\" in weights:
            return f"weights {weights[:60]!r} is not a path inside the run folder"
    return None
