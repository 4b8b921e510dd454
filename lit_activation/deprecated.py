"""Old import paths that saved configs name, kept working with a one-line warning naming the new one.

Every run saves its `config.yaml`, and re-running it is how a run is reproduced, so a class that
moves keeps its old path: a module that moved is aliased (MOVED), and a class or function that
was renamed or moved out of a module that still exists is found under its old name there
(`moved_attributes`, as that module's `__getattr__`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable, Mapping

# old module -> new module (or the modules its names went to): each moved module a saved config or a script may name
MOVED: dict[str, str | tuple[str, ...]] = {
    "lit_activation.allocations": "lit_activation.pruning.allocations",  # before the pruning package
    **{f"lit_activation.{old}": f"lit_activation.{new}" for old, new in {
        "counts": "analyses.counts", "similarity": "analyses.similarity", "sts": "analyses.sts", "baselines": "analyses.baselines",
        "zeroshot": "analyses.zeroshot", "architectures": "models.architectures", "tiny": "models.tiny",
        "sharding": "distributed.sharding", "shard_load": "distributed.sharded_loading", "plan": "planning.plan",
        "simulate": "planning.simulate", "memory": "planning.memory", "findings": "report.findings", "io": "outputs",
    }.items()},  # before the packages (analyses, models, distributed, planning)
    "lit_activation.pruning.wanda": ("lit_activation.pruning.masks", "lit_activation.pruning.sequential", "lit_activation.pruning.prune"),
}
# old module.name -> new module.name, for what was renamed as it moved
RENAMED = {"lit_activation.pruning.wanda.prune_wanda": "lit_activation.pruning.prune.prune_sequential"}


class DeprecatedPath(FutureWarning):
    """A saved config or a script names a class by a path that has moved (shown by default)."""


def warn_moved(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated; use {new} (the old path will be removed)", DeprecatedPath, stacklevel=3)


def moved_attributes(module: str, targets: Mapping[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` that finds each old name of `targets` at its new path ('package.module.Name')."""

    def moved_name(name: str) -> object:
        if name not in targets:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        home, _, new_name = targets[name].rpartition(".")
        warn_moved(f"{module}.{name}", targets[name])
        return getattr(importlib.import_module(home), new_name)

    return moved_name


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path (MOVED) as a module whose every attribute comes from the new one."""

    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        target = MOVED[spec.name]
        homes = target if isinstance(target, tuple) else (target,)
        module = types.ModuleType(spec.name, f"Moved to {', '.join(homes)}.")

        def moved_name(name: str) -> object:
            if name.startswith("__"):  # the import system's own questions (__path__, __file__): not a moved name
                raise AttributeError(name)
            renamed = RENAMED.get(f"{spec.name}.{name}")
            if renamed is not None:
                renamed_home, _, new_name = renamed.rpartition(".")
                warn_moved(f"{spec.name}.{name}", renamed)
                return getattr(importlib.import_module(renamed_home), new_name)
            for home in homes:
                new = importlib.import_module(home)
                if hasattr(new, name):
                    warn_moved(f"{spec.name}.{name}", f"{home}.{name}")
                    return getattr(new, name)
            raise AttributeError(f"module {spec.name!r} (moved to {', '.join(homes)}) has no attribute {name!r}")

        module.__dict__["__getattr__"] = moved_name  # PEP 562's hook
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: every attribute is looked up in the new module."""


def install() -> None:
    """Make the old module paths importable (once per process; lit_activation/__init__ calls it)."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
