"""Latency targets: ``--target NAME`` everywhere means ``latency/targets/NAME.yaml``.

A target says where latencies come from: a measured table (``kind: measured``: backend,
threads, table path) or a calibrated cost model (``kind: model``: the ``pixel1`` stand-in for
the paper's phone). Relative table paths are resolved against ``$MNV3_TABLES`` if set, else
the current directory. A user adds a target by dropping a YAML file in that folder or by
passing a path to one.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

TARGET_DIR = Path(__file__).parent / "targets"
KINDS = ("measured", "model")


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
    model: str | None = None  # model: "module:callable" returning a LatencyTable
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
        from .table import load_table

        if self.kind == "model":
            module, func = self.model.split(":")
            return getattr(importlib.import_module(module), func)()
        path = self.table_path
        if not path.is_file():
            raise FileNotFoundError(f"target {self.name!r}: latency table {str(path)!r} does not exist yet; "
                                    f"build it with: {self.profile_command('--space mobilenetv3')}")
        return load_table(path, name=self.name)

    def profile_command(self, what: str) -> str:
        return (f"python -m latency.profile --backend {self.backend} --threads {self.threads} {what} "
                f"--out {self.table_path}")

    @property
    def measurable(self) -> bool:
        return self.kind == "measured"


def target_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in TARGET_DIR.glob("*.yaml")))


def load_target(name_or_path: str | Path) -> Target:
    if isinstance(name_or_path, Target):
        return name_or_path
    text = str(name_or_path)
    path = Path(text) if text.endswith((".yaml", ".yml")) else TARGET_DIR / f"{text}.yaml"
    if not path.is_file():
        raise TargetError(f"target: {text!r} is not one of {', '.join(target_names())} "
                          "nor a target YAML file")
    data = yaml.safe_load(path.read_text()) or {}
    fields = set(Target.__dataclass_fields__)
    unknown = sorted(set(data) - fields)
    if unknown:
        raise TargetError(f"target {path.name}: {unknown[0]}: unknown field; expected one of {', '.join(sorted(fields))}")
    data.setdefault("name", path.stem)
    if data.get("kind") not in KINDS:
        raise TargetError(f"target {path.name}: kind: {data.get('kind')!r} is not one of {', '.join(KINDS)}")
    if data["kind"] == "measured" and not (data.get("backend") and data.get("table")):
        raise TargetError(f"target {path.name}: a measured target needs 'backend' and 'table'")
    if data["kind"] == "model" and not data.get("model"):
        raise TargetError(f"target {path.name}: a model target needs 'model: module:function'")
    return Target(**data)
