"""Reading what users hand us, within bounds: spec and space YAML, state dicts, echoed values.

A hostile or broken input must cost one line of error, never a traceback, a hang, gigabytes of
memory or a megabyte-long message. This module is where those bounds live:

* :func:`echo`: a value as it appears in a message, at most ``limit`` characters however large
  or deeply nested the value is (the repr is built bounded, not built and then cut).
* :func:`read_text`: a text file of at most :data:`MAX_FILE_BYTES`, decoded as UTF-8; a binary
  or oversized file is an :class:`InputError` naming the file.
* :func:`load_yaml`: ``yaml.safe_load`` with a composer that refuses documents nested deeper
  than :data:`MAX_YAML_DEPTH` and documents whose aliases expand to more than
  :data:`MAX_YAML_NODES` nodes (the "billion laughs"), and integers longer than
  :data:`MAX_YAML_NUMBER_CHARS` characters.
* :func:`load_state_dict`: ``torch.load(..., weights_only=True)`` whose every failure (missing,
  truncated, not a torch file, pickled code, not a dict of tensors) is one named error.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a spec of the largest allowed size is under 20 kB
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000
MAX_YAML_NUMBER_CHARS = 40
ECHO_CHARS = 80

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = ECHO_CHARS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


class InputError(ValueError):
    """A file that cannot be read as asked; the message names it and says why."""


def echo(value: Any, limit: int = ECHO_CHARS) -> str:
    """``repr(value)`` for a message, at most ``limit`` characters (``...`` marks a cut)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that raises: say what it is instead
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shorten(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters, on one line."""
    text = " ".join(str(text).split("\n"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_text(path: str | Path, *, what: str = "file", max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of ``path``; :class:`InputError` for a missing, oversized or binary file."""
    from .files import FileKindError, open_regular

    path = Path(path)
    try:
        with open_regular(path, what=what) as f:  # a FIFO, a device or a folder: one line, never a hang
            data = f.read(max_bytes + 1)
    except FileKindError as err:
        raise InputError(shorten(err, 300)) from None
    except (OSError, ValueError) as err:  # missing, unreadable, a NUL byte in the name
        raise InputError(f"{what} {echo(str(path))} cannot be read ({getattr(err, 'strerror', None) or err})") from None
    if len(data) > max_bytes:
        raise InputError(f"{what} {echo(str(path))} is larger than {max_bytes:,} bytes; "
                         f"a {what} is a small text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{what} {echo(str(path))} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                         f"{err.start}); save it as UTF-8") from None


class YAMLLimitError(yaml.YAMLError):
    """A YAML document beyond :data:`MAX_YAML_DEPTH` or :data:`MAX_YAML_NODES`."""


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that counts nodes as aliases expand them and bounds the nesting depth."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}  # id(anchored node) -> nodes it expands to

    def _count(self, nodes: int) -> None:
        self._nodes += nodes
        if self._nodes > MAX_YAML_NODES:
            raise YAMLLimitError(f"the document expands to more than {MAX_YAML_NODES:,} nodes "
                                 "(aliases repeating aliases?); write the values out")

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            node = self.anchors.get(self.peek_event().anchor)
            self._count(self._sizes.get(id(node), 1))
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise YAMLLimitError(f"nested deeper than {MAX_YAML_DEPTH} levels")
        start = self._nodes
        self._count(1)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._nodes - start
        return node

    def fetch_flow_collection_start(self, token_class):
        # Refuse deep '[[[[' while scanning: the scanner's simple-key bookkeeping is quadratic in it.
        if self.flow_level >= MAX_YAML_DEPTH:
            raise YAMLLimitError(f"nested deeper than {MAX_YAML_DEPTH} levels")
        super().fetch_flow_collection_start(token_class)

    def construct_yaml_int(self, node):
        if len(node.value) > MAX_YAML_NUMBER_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(node.value):,} characters; at most {MAX_YAML_NUMBER_CHARS}",
                node.start_mark)
        return super().construct_yaml_int(node)


    def construct_mapping(self, node, deep=False):
        # YAML says a mapping's keys are unique; PyYAML keeps the last silently. Refuse a repeat,
        # naming the key and both lines (a merge key's entries may still be overridden).
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {echo(key_node.value, 60)} on lines {seen[key] + 1} and "
                                    f"{key_node.start_mark.line + 1}; keep one of them", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)`` within the bounds above. Every failure is a ``yaml.YAMLError``
    with a one-line message (:func:`yaml_problem` phrases it)."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError:
        raise
    except (ValueError, OverflowError, TypeError, RecursionError) as err:  # a scalar the constructors refuse
        raise yaml.YAMLError(shorten(f"{type(err).__name__}: {err}", 200)) from None


def yaml_problem(err: yaml.YAMLError) -> str:
    """One line for a YAML error: its first line and where it happened."""
    lines = str(err).splitlines()
    first = lines[0] if lines else type(err).__name__
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(err, "problem", None)
    if problem and problem not in first:
        first = f"{first} {problem}"
    return shorten(first + where, 240)


def load_state_dict(path: str | Path, *, what: str = "weights") -> dict:
    """A ``torch.save(model.state_dict())`` file, read with ``weights_only=True`` (no pickled code).

    :class:`InputError` names the file and the problem: missing, a folder, not a torch file,
    truncated, objects other than tensors.
    """
    import torch

    path = Path(path)
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except (OSError, ValueError) as err:  # a name the file system refuses (too long, NUL byte)
        raise InputError(f"{what} {echo(str(path))} cannot be looked up ({shorten(err, 80)}); give a "
                         "torch.save(model.state_dict()) file") from None
    if not is_file:
        problem = "is a folder" if is_dir else "does not exist"
        raise InputError(f"{what} {echo(str(path))} {problem}; give a torch.save(model.state_dict()) file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, a pickle with code: all one answer
        raise InputError(f"{what} {echo(str(path))} is not a torch.save(state_dict) file readable with "
                         f"weights_only=True ({type(err).__name__}: {shorten(err, 160)})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise InputError(f"{what} {echo(str(path))} does not hold a state dict of tensors "
                         "(save model.state_dict())")
    return state
