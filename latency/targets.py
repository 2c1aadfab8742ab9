"""Latency targets: ``--target NAME`` everywhere means ``latency/targets/NAME.yaml``.

A target says where latencies come from: a measured table (``kind: measured``: backend,
threads, table path) or a calibrated cost model (``kind: model``: the ``pixel1`` stand-in for
the paper's phone). Relative table paths are resolved against ``$MNV3_TABLES`` if set, else
the current directory. A user adds a target by dropping a YAML file in that folder or by
passing a path to one.

A model target's ``model:`` is a *name* in :data:`COST_MODELS`, this project's cost models,
never a ``module:function`` to import: a target YAML is data, and reading one must not run
code from wherever it points. Python code can add a model with :func:`register_cost_model`.
A measured target's table must have been measured with the target's backend and threads
(checked on load, as ``latency.profile`` checks before adding rows).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from jobs.safe_io import InputError, echo, load_yaml, read_text, shorten, yaml_problem

TARGET_DIR = Path(__file__).parent / "targets"
KINDS = ("measured", "model")
# Cost models a ``kind: model`` target may name: name -> (module of this project, factory).
# The factory returns a LatencyTable; the module is imported on first use.
COST_MODELS: dict[str, tuple[str, str] | Callable] = {"pixel1": ("latency.pixel1", "pixel1_table")}
# Identity fields a measured target and its table must agree on.
TARGET_FIELDS = ("backend", "threads")


class TargetError(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    name: str
    kind: str
    description: str = ""
    backend: str | None = None
    threads: int = 1
    table: str | None = None  # measured: CSV path
    model: str | None = None  # model: a name in COST_MODELS
    units: str = "ms"

    @property
    def table_path(self) -> Path | None:
        if self.table is None:
            return None
        path = Path(self.table)
        if not path.is_absolute():
            path = Path(os.environ.get("MNV3_TABLES", ".")) / path
        return path

    def load_table(self):
        """The target's LatencyTable (measured tables must exist; see ``profile_command``)."""
        from .table import ProvenanceMismatch, load_table

        if self.kind == "model":
            return cost_model(self.model)()
        path = self.table_path
        if not path.is_file():
            raise FileNotFoundError(f"target {self.name!r}: latency table {str(path)!r} does not exist yet; "
                                    f"build it with: {self.profile_command('--space mobilenetv3')}")
        table = load_table(path, name=self.name)
        for field in TARGET_FIELDS:
            if table.provenance.get(field) != getattr(self, field):
                raise ProvenanceMismatch(
                    f"target {self.name!r}: latency table {str(path)!r} was measured with {field}="
                    f"{table.provenance.get(field)!r}, the target asks for {getattr(self, field)!r}; point the "
                    f"target at a table measured that way or build one with: "
                    f"{self.profile_command('--space mobilenetv3')}")
        return table

    def profile_command(self, what: str) -> str:
        return (f"python -m latency.profile --backend {self.backend} --threads {self.threads} {what} "
                f"--out {self.table_path}")

    @property
    def measurable(self) -> bool:
        return self.kind == "measured"


def cost_model_names() -> tuple[str, ...]:
    return tuple(sorted(COST_MODELS))


def cost_model(name: str) -> Callable:
    """The factory of the cost model registered as ``name`` (see :data:`COST_MODELS`)."""
    if name not in COST_MODELS:
        raise TargetError(f"model: {name!r} is not one of {', '.join(cost_model_names())} (a target names a "
                          "registered cost model; module:function paths are not imported)")
    entry = COST_MODELS[name]
    if callable(entry):
        return entry
    module, attr = entry
    return getattr(importlib.import_module(module), attr)


def register_cost_model(name: str, factory: Callable) -> None:
    """Let ``kind: model`` targets name ``factory`` (a callable returning a LatencyTable) as ``name``."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"name: {name!r} must be a non-empty string without ':'")
    if not callable(factory):
        raise ValueError(f"factory: {factory!r} is not callable")
    COST_MODELS[name] = factory


def target_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in TARGET_DIR.glob("*.yaml")))


def load_target(name_or_path: str | Path) -> Target:
    """The target named ``name_or_path`` (a file in :data:`TARGET_DIR`) or read from a YAML path.

    Every problem with the file (missing, unreadable, not UTF-8, oversized, not YAML, nested too
    deep, unknown or mistyped fields) is one :class:`TargetError` line naming the file.
    """
    if isinstance(name_or_path, Target):
        return name_or_path
    text = str(name_or_path)
    path = Path(text) if text.endswith((".yaml", ".yml")) else TARGET_DIR / f"{text}.yaml"
    try:
        found = bool(text.strip()) and path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        found = False
    if not found:
        raise TargetError(f"target: {echo(text)} is not one of {', '.join(target_names())} "
                          "nor a target YAML file")
    try:
        data = load_yaml(read_text(path, what="target file"))
    except InputError as err:
        raise TargetError(str(err)) from None
    except yaml.YAMLError as err:
        raise TargetError(f"target {path.name}: not valid YAML: {yaml_problem(err)}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise TargetError(f"target {path.name}: a target is a mapping of fields (kind: ..., backend: ...), "
                          f"not a {type(data).__name__}")
    fields = set(Target.__dataclass_fields__)
    unknown = sorted(shorten(key, 40) if isinstance(key, str) else echo(key, 40) for key in data if key not in fields)
    if unknown:
        raise TargetError(f"target {path.name}: {unknown[0]}: unknown field; expected one of {', '.join(sorted(fields))}")
    for key in ("name", "kind", "description", "backend", "table", "model", "units"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise TargetError(f"target {path.name}: {key}: {echo(value, 40)} is not a string")
    if data.get("name") is None:
        data["name"] = path.stem
    if data.get("kind") not in KINDS:
        raise TargetError(f"target {path.name}: kind: {echo(data.get('kind'))} is not one of {', '.join(KINDS)}")
    if data["kind"] == "measured" and not (data.get("backend") and data.get("table")):
        raise TargetError(f"target {path.name}: a measured target needs 'backend' and 'table'")
    threads = data.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise TargetError(f"target {path.name}: threads: {echo(threads, 40)} is not a whole number >= 1")
    model = data.get("model")
    if data["kind"] == "model" and not (isinstance(model, str) and model in COST_MODELS):
        raise TargetError(f"target {path.name}: model: {echo(model, 60)} is not one of "
                          f"{', '.join(cost_model_names())} (a target names a registered cost model; "
                          "module:function paths are not imported)")
    return Target(**data)
