"""Every option path the command line accepts, as the doc tests check a page's options against it."""

from __future__ import annotations

import argparse
import functools

from jsonargparse import ArgumentParser

from lit_activation.cli.errors import _import, known_classes


def _classes(action: argparse.Action) -> list[str]:
    """The classes a class option accepts ([] for any other option)."""
    try:
        return known_classes(action)
    except Exception:  # noqa: BLE001 - jsonargparse cannot list the subclasses of some typing forms: not a class option
        return []


@functools.cache
def _class_parser(class_path: str) -> ArgumentParser | None:
    """A parser of a class's own options, as a class option's `init_args` takes them."""
    cls = _import(class_path)
    if not isinstance(cls, type):
        return None
    parser = ArgumentParser(exit_on_error=False)
    try:
        parser.add_class_arguments(cls, fail_untyped=False)
    except Exception:  # noqa: BLE001 - a library class jsonargparse cannot read is no option a page shows
        return None
    return parser


def option_paths(parser: ArgumentParser, prefix: str = "", own_only: bool = False) -> set[str]:
    """Every dotted option `parser` accepts, through the `init_args` of each class a class option
    takes: Lightning's classes one level down (a callback's options), this project's at any depth
    (`pruning.allocation.init_args.counts.init_args.path`)."""
    out = set()
    for action in parser._actions:  # argparse lists a parser's actions in `_actions` only
        if not action.option_strings or action.dest == "help" or action.dest.endswith(".help"):
            continue
        path = prefix + action.dest
        out.add(path)
        classes = _classes(action)
        if classes:
            out |= {f"{path}.class_path", f"{path}.init_args"}
        for class_path in classes:
            if own_only and not class_path.startswith("lit_activation."):
                continue
            nested = _class_parser(class_path)
            if nested is not None:
                out |= option_paths(nested, f"{path}.init_args.", own_only=True)
    return out


def resolves(path: str, paths: frozenset[str] | set[str], relative: bool = False) -> bool:
    """Whether `path` names an option: exactly, or (relative) as the end of one (`engine.tile_mb`,
    `counts.init_args.model`); `group.*` names a group with options."""
    if path.endswith(".*"):
        group = path[:-1]
        return any(p.startswith(group) or (relative and f".{group}" in p) for p in paths)
    return path in paths or (relative and any(p.endswith(f".{path}") for p in paths))
