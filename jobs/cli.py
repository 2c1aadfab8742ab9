"""Helpers the command-line modules share (``python -m nas.search``, ``python -m netadapt.run``).

``jobs`` imports nothing of ours, so the bounds on a ``KEY=VALUE`` flag live here: a value is at
most :data:`MAX_VALUE_CHARS` characters (a setting is a number, a word, true/false or null; no
YAML document that short can nest or expand far), and a value YAML cannot read is one usage
error line, never a traceback.
"""

from __future__ import annotations

import argparse

import yaml

MAX_VALUE_CHARS = 200


def _shown(text: str, limit: int = 60) -> str:
    text = repr(text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _yaml_problem(err: Exception) -> str:
    """One line for why YAML refused a value: the problem and its column."""
    problem = getattr(err, "problem", None) or (str(err).splitlines() or [type(err).__name__])[0]
    mark = getattr(err, "problem_mark", None)
    where = f" at character {mark.column + 1} of the value" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())[:120]


def parse_overrides(items: list[str], parser: argparse.ArgumentParser, example: str, flag: str = "--proxy") -> dict:
    """``--proxy KEY=VALUE`` flags as a dict, each value read as YAML (``0.05`` a float, ``null``
    None); a flag without ``=`` or without a key, a value over :data:`MAX_VALUE_CHARS`
    characters and a value YAML cannot read are each a usage error (``parser.error``, one line)
    that shows ``example``."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            parser.error(f"{flag} {_shown(item)}: write KEY=VALUE, e.g. {flag} {example}")
        if len(value) > MAX_VALUE_CHARS:
            parser.error(f"{flag} {_shown(item)}: the value is {len(value)} characters long; a setting is at most "
                         f"{MAX_VALUE_CHARS}, e.g. {flag} {example}")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except (yaml.YAMLError, ValueError, OverflowError, TypeError, RecursionError) as err:
            parser.error(f"{flag} {_shown(item)}: not a YAML value ({_yaml_problem(err)}); write KEY=VALUE, "
                         f"e.g. {flag} {example}")
    return overrides
