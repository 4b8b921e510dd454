"""Public names of a package, imported when first used (PEP 562), so that importing the package stays light.

A package's `__init__.py` names where each public name lives instead of importing it:

    __all__ = ["ActivationCLI", "build_cli", "main"]
    __getattr__, __dir__ = lazy_exports(__name__, {"ActivationCLI": "lit_activation.cli.app", "build_cli": "lit_activation.cli.app"})

`from lit_activation.cli import build_cli` then imports app.py (and Lightning) while `import
lit_activation.cli` does not. Names that moved keep their old path with a warning the same way
(deprecated.moved_attributes, given as `fallback`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(
    module: str, homes: Mapping[str, str], fallback: Callable[[str], object] | None = None,
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A module's `__getattr__` and `__dir__`: each name of `homes` is imported from the module named
    there on first use and kept on `module`; another name goes to `fallback` (e.g. an old path)."""

    def attribute(name: str) -> object:
        if name in homes:
            value = getattr(importlib.import_module(homes[name]), name)
            setattr(sys.modules[module], name, value)  # found as a plain attribute from now on
            return value
        if fallback is not None:
            return fallback(name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def names() -> list[str]:
        return sorted({*vars(sys.modules[module]), *homes})

    return attribute, names
