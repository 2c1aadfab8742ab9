"""PEP 562 lazy attributes: a package names what it exports and the module that holds it, and
the module is imported on first use (so importing the package does not load torch or Ray)."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_getattr(package: str, table: dict[str, tuple[str, str]], namespace: dict) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``package.module`` for ``table[name] = (module, attr)``
    and caches the value in ``namespace`` (the package's globals)."""

    def __getattr__(name: str):
        if name in table:
            module, attr = table[name]
            value = getattr(importlib.import_module(f".{module}", package), attr)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
