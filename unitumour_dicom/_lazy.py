"""Package attributes imported on first use (PEP 562), so that importing a package for one
light module (a command's signature, a spec, a settings writer) does not import torch,
wsidicom or highdicom with it: ``unitumour --help`` stays fast.

A package lists its public names and the submodule of each::

    __getattr__, __dir__ = lazy_exports(__name__, {"train": ".trainer", ...})

and imports them under ``TYPE_CHECKING`` for type checkers.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` that imports ``exports[name]`` (relative to ``package``) on
    first access and caches the attribute on the package, and the matching ``__dir__``."""

    def getattr_(name: str) -> Any:
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return getattr_, dir_
