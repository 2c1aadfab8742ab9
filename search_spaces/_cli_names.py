"""Keep a package's function when its same-named command-line module is imported.

``python -m search_spaces.describe`` and ``python -m latency.predict`` are a contract, so those
modules keep their names, and the packages export functions of the same names
(``search_spaces.describe(spec)``, ``latency.predict(spec, target)``). Python's import system
binds every imported submodule as an attribute of its package: after ``import
search_spaces.describe`` (or ``from search_spaces.describe import main``) the package attribute
would be the CLI module and ``search_spaces.describe(spec)`` would fail.

Renaming the CLI modules would break the commands; moving the functions would break every
caller. Instead :func:`keep_functions` gives the package a module type whose ``__setattr__``
ignores exactly that binding: the import system setting ``pkg.NAME`` to the submodule
``pkg.NAME``. Everything else assigns as usual, and the CLI module itself stays importable
(``from search_spaces.describe import main``, ``importlib.import_module`` and ``sys.modules``
return it). One consequence: ``import search_spaces.describe as m`` binds ``m`` to the function
(that statement reads the package attribute); use ``from search_spaces.describe import main``.
"""

from __future__ import annotations

import sys
import types


class _KeepFunctions(types.ModuleType):
    _keep_functions: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value) -> None:
        if (name in self._keep_functions and isinstance(value, types.ModuleType)
                and value.__name__ == f"{self.__name__}.{name}"):
            return  # the import system binding the CLI submodule: the function stays
        super().__setattr__(name, value)


def keep_functions(package: str, *names: str) -> None:
    """Make ``package``'s attributes ``names`` (functions) survive the import of the same-named
    CLI submodules ``package.NAME`` (see the module docstring). Call it in the package's
    ``__init__`` after binding the functions."""
    module = sys.modules[package]
    for name in names:
        value = getattr(module, name, None)
        if not callable(value) or isinstance(value, types.ModuleType):
            raise ValueError(f"names: {package}.{name} is not a function to keep")
    kept = frozenset(names) | module._keep_functions if isinstance(module, _KeepFunctions) else frozenset(names)
    module.__class__ = type("Package", (_KeepFunctions,), {"_keep_functions": kept, "__module__": __name__})
