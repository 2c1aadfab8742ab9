"""What every command line shares: one-line argument errors, checked before any work starts.

Every flag is checked while parsing (numbers finite and in range, through the ``type=``
functions below) or right after (output paths writable: :func:`output_file_problem`,
:func:`output_dir_problem`), so a bad argument costs nothing: the command prints one line,
``error: argument --flag: what is wrong; the fix``, and exits with status 2 -- never a
traceback, and never after minutes of work.

The same goes for what the search and NetAdapt command lines share: a ``KIND[:FOLDER]`` data
source (:func:`source_problem`), ``--proxy KEY=VALUE`` settings read safely
(:func:`parse_overrides`, guarded by :func:`checked_overrides`; a value is at most
:data:`MAX_VALUE_CHARS` characters) and checked against the settings dataclass they will build
(:func:`check_settings`), and one line for a user's file that fails to load (:func:`file_problem`).
It lives in ``jobs`` (which imports nothing of ours) so that every package's command line
(``search_spaces``, ``latency``, ``nas``, ``netadapt``, ``experiments``) uses the same rules.
"""


from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, NoReturn

import yaml

from .safe_io import echo, shorten

USAGE_ERROR = 2
NAME_MAX = 255  # bytes in one path component on the usual file systems
# Numbers as people type them, in ASCII: no "1_000", no full-width or Arabic-Indic digits, no "nan".
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?")


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one bounded line (no usage block), status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"error: {shorten(message, 400)} (see {self.prog} --help)\n")


def fail(flag: str, message: str) -> NoReturn:
    """Print ``error: argument FLAG: MESSAGE`` (one line) and exit with status 2."""
    print(f"error: argument {flag}: {shorten(message, 400)}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def integer(minimum: int, what: str, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in [``minimum``, ``maximum``] (``what`` says what it counts)."""
    bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"

    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text):
            raise argparse.ArgumentTypeError(f"{echo(text)} is not a whole number; give {what} {bounds}")
        value = int(text) if len(text) <= 30 else None  # int() of 5,000 digits raises; 30 is out of range anyway
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{echo(text, 40)} is out of range; give {what} {bounds}")
        return value

    parse.__name__ = "integer"
    return parse


def number(what: str, minimum: float | None = None, maximum: float | None = None, *,
           above: float | None = None) -> Callable[[str], float]:
    """An argparse ``type``: a finite number >= ``minimum`` (or > ``above``) and <= ``maximum``."""
    parts = ([f">= {minimum:g}"] if minimum is not None else []) + ([f"> {above:g}"] if above is not None else []) \
        + ([f"<= {maximum:g}"] if maximum is not None else [])
    bounds = " and ".join(parts) or "finite"

    def parse(text: str) -> float:
        value = float(text) if _DECIMAL.fullmatch(text) else None
        if value is None:
            raise argparse.ArgumentTypeError(f"{echo(text)} is not a number; give {what} {bounds}")
        if (not math.isfinite(value) or (minimum is not None and value < minimum)
                or (above is not None and value <= above) or (maximum is not None and value > maximum)):
            raise argparse.ArgumentTypeError(f"{echo(text)} is out of range; give {what} {bounds}")
        return value

    parse.__name__ = "number"
    return parse


def positive_float(what: str) -> Callable[[str], float]:
    """An argparse ``type``: a finite number > 0."""
    return number(what, above=0)


def _path_problem(path: Path) -> str | None:
    text = str(path)
    if not text or "\0" in text:
        return f"{echo(text)} is not a path; give a file name"
    if any(len(part.encode("utf-8", "surrogateescape")) > NAME_MAX for part in path.parts):
        return f"{echo(text)} has a name longer than {NAME_MAX} bytes; choose a shorter path"
    return None


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (None if one can): a real try, so read-only file
    systems and permissions count as they will when the command writes."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".write-check-")
    except OSError as err:
        return err.strerror or str(err)
    os.close(fd)
    os.unlink(name)
    return None


def _folder_problem(folder: Path, shown: str) -> str | None:
    try:
        ancestor = _existing_ancestor(folder)
        if not ancestor.is_dir():
            return f"{shown} is under {echo(str(ancestor))}, which is a file, not a folder; choose another path"
    except OSError as err:
        return f"{shown} cannot be checked ({err.strerror or err}); choose another path"
    why = _probe(ancestor)
    if why:
        return f"cannot write in {echo(str(ancestor))} ({why}); choose a writable folder"
    return None


def output_file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be written as a file (None if it can). Creates nothing."""
    if not str(path).strip():
        return "an empty path; give a file name"
    path = Path(path)
    problem = _path_problem(path)
    if problem:
        return problem
    try:
        if path.is_dir():
            return f"{echo(str(path))} is a folder; give a file path inside it"
        if path.exists() and not os.access(path, os.W_OK):
            return f"{echo(str(path))} exists and is read-only; choose another path"
    except OSError as err:
        return f"{echo(str(path))} cannot be checked ({err.strerror or err}); choose another path"
    return _folder_problem(path.parent, echo(str(path)))


def output_dir_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as an output folder (None if it can). Creates nothing."""
    if not str(path).strip():
        return "an empty path; give a folder name"
    path = Path(path)
    problem = _path_problem(path)
    if problem:
        return problem
    try:
        if path.exists() and not path.is_dir():
            return f"{echo(str(path))} is a file, not a folder; give a folder path"
    except OSError as err:
        return f"{echo(str(path))} cannot be checked ({err.strerror or err}); choose another path"
    return _folder_problem(path, echo(str(path)))


def check_output_file(flag: str, path: str | Path) -> None:
    """Exit with a one-line error if ``path`` cannot be written as a file."""
    problem = output_file_problem(path)
    if problem:
        fail(flag, problem)


def check_output_dir(flag: str, path: str | Path) -> None:
    """Exit with a one-line error if ``path`` cannot be used as an output folder."""
    problem = output_dir_problem(path)
    if problem:
        fail(flag, problem)


def source_problem(source: str, kinds: dict[str, bool]) -> str | None:
    """Why ``source`` is not ``KIND`` or ``KIND:FOLDER`` (None if it is). ``kinds`` maps each kind
    to whether it takes an existing folder after the colon. Reads nothing."""
    kind, sep, path = source.partition(":")
    forms = " | ".join(f"{k}:PATH" if takes else k for k, takes in kinds.items())
    if kind not in kinds or kinds[kind] != bool(sep) or (sep and not path):
        return f"{echo(source)} is not a known source; write {forms}"
    if path:
        folder = Path(path.rsplit("?", 1)[0] if "?" in path else path).expanduser()  # ?subset options
        try:
            is_dir = folder.is_dir()
        except (OSError, ValueError):
            is_dir = False
        if not is_dir:
            return f"{echo(path)} is not a folder; {kind}:PATH takes the folder that holds the data"
    return None


def settings_problem(cls, values: dict) -> str | None:
    """Why ``cls(**values)`` is not a valid settings dataclass (None if it is): an unknown field, a
    value that is not a scalar of the field's annotated type (``int``, ``float``, ``str``,
    ``bool``, ``None``), a float that is not finite, or what ``cls`` itself refuses."""
    import dataclasses

    def kinds_of(annotation) -> list[str]:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        return text.replace(" ", "").split("|")

    fields = {f.name: kinds_of(f.type) for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in fields:
            return f"{echo(key, 40)}: unknown setting; expected one of {', '.join(sorted(fields))}"
        kinds = fields[key]
        if value is None:
            if "None" in kinds:
                continue
            return f"{key}: null is not allowed; give a {' or '.join(kinds)}"
        ok = (isinstance(value, bool) and "bool" in kinds) or (
            not isinstance(value, bool) and (("int" in kinds and isinstance(value, int))
                                             or ("float" in kinds and isinstance(value, (int, float)))
                                             or ("str" in kinds and isinstance(value, str))))
        if not ok:
            return f"{key}: {echo(value, 40)} is not a {' or '.join(k for k in kinds if k != 'None')}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key}: {value} is not a finite number"
    try:
        cls(**values)
    except (TypeError, ValueError, OverflowError) as err:
        return shorten(err, 300)
    return None


def checked_overrides(items: list[str], parse: Callable[[list[str]], dict], *, flag: str = "--proxy",
                      example: str = "lr=0.05", max_chars: int = 200, owned: dict[str, str] | None = None) -> dict:
    """``KEY=VALUE`` flags read by ``parse`` (e.g. :func:`parse_overrides`), guarded: each
    flag at most ``max_chars`` characters, a value YAML cannot read is one line, every value a
    scalar (a number, a word, true/false or null), never a list or mapping, and no key in
    ``owned`` (setting -> the flag that sets it, which would override it silently), no key twice."""
    seen = set()
    for item in items:
        if len(item) > max_chars:
            fail(flag, f"{echo(item, 60)} is {len(item)} characters long; a setting is at most {max_chars}, "
                       f"e.g. {flag} {example}")
        key = item.partition("=")[0].strip()
        if key in seen:
            fail(flag, f"{echo(key, 40)} is given twice; give each setting once")
        seen.add(key)
    try:
        values = parse(items)
    except (yaml.YAMLError, ValueError, RecursionError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        fail(flag, f"not a YAML value ({shorten(first, 120)}); write KEY=VALUE, e.g. {flag} {example}")
    for key, value in values.items():
        if not (value is None or isinstance(value, (bool, int, float, str))):
            fail(flag, f"{echo(key, 40)}={echo(value, 40)}: a setting is a number, a word, true/false or null, "
                       f"not a {type(value).__name__}")
        if key in (owned or {}):
            fail(flag, f"{key} is set by {owned[key]} here; give it there, not as {flag} {key}=...")
    return values


def check_settings(cls, values: dict, *, flag: str = "--proxy", maxima: dict[str, float] | None = None) -> None:
    """Exit with a one-line error unless ``cls(**values)`` is valid (:func:`settings_problem`) and
    every numeric value named in ``maxima`` is at most its maximum."""
    problem = settings_problem(cls, values)
    if problem:
        fail(flag, f"{problem}; see {cls.__module__}.{cls.__name__} for the settings")
    for key, top in (maxima or {}).items():
        value = values.get(key)
        if isinstance(value, (int, float)) and value > top:
            fail(flag, f"{key}: {value:g} is above the maximum {top:g}")


def file_problem(err: Exception) -> str:
    """One line for why a user's file (a target, a space, a spec) failed to load."""
    from .safe_io import yaml_problem

    if isinstance(err, yaml.YAMLError):
        return f"not valid YAML: {yaml_problem(err)}"
    if isinstance(err, ValueError) and not isinstance(err, UnicodeError):
        return shorten(err, 400)  # the project's own errors (SpecError, TargetError) say what and how
    return shorten(f"{type(err).__name__}: {err}", 400)


def check_loads(checks) -> None:
    """Exit with one line naming the flag for the first ``(flag, load)`` whose ``load()`` raises:
    whatever stops a user's file (target, space, spec, weights) from loading is a bad argument."""
    for flag, load in checks:
        try:
            load()
        except Exception as err:  # noqa: BLE001 -- any failure to load is reported, never a traceback
            fail(flag, file_problem(err))


def check_data_and_out(data: str, out: str, kinds: dict[str, bool]) -> None:
    """Exit with one line unless ``data`` is a known source and ``out`` a writable folder."""
    for flag, problem in (("--data", source_problem(data, kinds)), ("--out", output_dir_problem(out))):
        if problem:
            fail(flag, problem)


# --proxy KEY=VALUE flags, each value read as YAML.
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
