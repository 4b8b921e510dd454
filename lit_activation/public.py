"""How a package serves its public API (`__all__`) without importing it up front (PEP 562).

A package's `__init__` names each public name's home module; the name is imported the first time it is
read, so `import lit_activation` (and `lit-activation --version`) loads neither torch nor Lightning.
A name that moved keeps working with a one-line warning (lit_activation/deprecated.py).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

from lit_activation.deprecated import moved_attributes


def lazy_exports(package: str, exports: Mapping[str, str], moved: Mapping[str, str] | None = None) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for `package`: each name of `exports` (name -> the module that defines it)
    imported on first use and kept; each of `moved` (old name -> its new 'module.Name') found there,
    with a DeprecatedPath warning."""
    old_name = moved_attributes(package, moved) if moved else None

    def __getattr__(name: str) -> object:  # noqa: N807 - the module hook's own name
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)  # read once: later reads find it without this hook
            return value
        if old_name is not None:
            return old_name(name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
