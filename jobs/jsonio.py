"""Strict JSON, the one way: no ``NaN`` or ``Infinity`` is ever written, and none is read back.

JSON has no non-finite numbers; Python's ``json`` writes them as bare ``NaN`` / ``Infinity``
(which other readers refuse) and reads them, and ``1e400``, back as floats no computation should
meet. So every JSON the project writes goes through :func:`dumps` (non-finite numbers become
``null``, and ``allow_nan=False`` guarantees nothing slips through), and every JSON it reads back
through :func:`loads` (a non-finite number, or a document nested too deep for Python, is a
``ValueError``), or :func:`read_json` (a file, checked to be a regular file of the right type).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .files import FileKindError, read_text

__all__ = ["finite", "dumps", "loads", "read_json", "JSONShapeError"]


class JSONShapeError(ValueError):
    """A JSON file that cannot be read as what it should hold; the message names it."""


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf) replaced by None, in dicts, lists and
    tuples at any depth (tuples become lists, as JSON has them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs) -> str:
    """``json.dumps`` of :func:`finite` ``(value)`` with ``allow_nan=False``."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is not a finite number")
    return value


def loads(text: str | bytes, *, finite_only: bool = True) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and numbers too large for a float
    (``1e400``) (unless ``finite_only`` is False: then the caller checks its numbers), and
    documents nested too deep (``ValueError`` for each, one line)."""
    strict = {"parse_constant": _refuse_constant, "parse_float": _finite_float} if finite_only else {}
    try:
        return json.loads(text, **strict)
    except RecursionError:
        raise ValueError("nested too deep") from None


def read_json(path: str | Path, *, what: str = "file", expect: type = dict, max_bytes: int = 64 << 20,
              finite_only: bool = True) -> Any:
    """The JSON document in the regular file ``path``, which must be an ``expect`` (a dict by
    default). Every failure (not a file, not JSON, non-finite numbers, another type) is a
    :class:`JSONShapeError` naming the file, on one line."""
    try:
        value = loads(read_text(path, what=what, max_bytes=max_bytes), finite_only=finite_only)
    except FileKindError as err:
        raise JSONShapeError(str(err)) from None
    except ValueError as err:  # JSONDecodeError included
        raise JSONShapeError(f"{what} {path} is not readable JSON ({' '.join(str(err).split())[:160]})") from None
    if not isinstance(value, expect):
        raise JSONShapeError(f"{what} {path} holds a JSON {type(value).__name__}, not a JSON "
                             f"{'object' if expect is dict else expect.__name__}")
    return value
