"""One line per mistake: the reason inside a parser error, and the closest option, class or name to a mistyped one."""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
from collections.abc import Sequence

from jsonargparse import ArgumentError

from lit_activation.outputs import NoSpaceLeft

# Raised for bad input (values, files, a plan that cannot fit, NaN scores, a full disk): one line, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, NoSpaceLeft, MemoryError, FloatingPointError, ArgumentError)


# jsonargparse reports a class that refused its arguments inside a list of the types it tried;
# these lines of that list are its own bookkeeping, not the reason.
_GENERIC = (
    "Expected a <class 'NoneType'>", "Not a valid subclass", "Problem with given class_path", "Subclass types expect",
    "a class path", "a dict", "Does not validate", "Given value", "Subtypes:", "Errors:",
)


# A class option given a name that is no class: jsonargparse tried it as a config file, then as an import path.
_NOT_A_CLASS = re.compile(r"^- Expected a dot import path string: (.+)$")


_SEE_HELP = "; --help lists the accepted classes"  # said when the accepted classes are not known here


# A class option (`data`, a callback) that refused one of its own options: jsonargparse reports it
# inside the union of types it tried, and only the chain of causes still holds the option and reason.
_CLASS_REFUSED = re.compile(r"^Problem with given class_path '([\w.]+)':")


_KEY = re.compile(r'^Parser key "([^"]+)":')


_REFUSED_OPTION = re.compile(r"^Option '([^']+)' is not accepted$")


_UNRECOGNIZED = re.compile(r"^unrecognized arguments: (.*)$")


# A value outside a list of names, as this project says it: "Unknown zero-shot tasks ['boolqq']; accepted: [...]".
_UNKNOWN_NAME = re.compile(r"^Unknown [^;]*?'([^']+)'[^;]*; (?:accepted|known): \[([^\]]*)\]")


# A value outside a Literal option's names, as jsonargparse says it (`--model.engine.target maxlogit`).
_NOT_A_LITERAL = re.compile(r"Expected a typing\.Literal\[([^\]]*)\]\. Got value: (.+)$")


def _refusal(err: BaseException) -> tuple[list[str], str, str] | None:
    """(the option's keys, the innermost class that refused, its reason) from the causes of `err`, or
    None when no class refused its options."""
    chain: list[str] = []
    cause: BaseException | None = err
    while cause is not None and len(chain) < 32:
        chain.append(str(cause).strip())
        cause = cause.__cause__
    refused = next((m.group(1) for m in map(_CLASS_REFUSED.match, reversed(chain)) if m), None)  # the innermost class
    keys = list(dict.fromkeys(m.group(1) for m in map(_KEY.match, chain) if m))
    if refused is None or not keys or not chain[-1]:
        return None
    return keys, refused, chain[-1].splitlines()[-1].strip()


def _class_option_error(err: BaseException) -> str | None:
    """'Parser key "data.init_args.num_samples" (ActivationDataModule): <reason>' from the causes of
    `err`, or None when no class refused its options."""
    refusal = _refusal(err)
    if refusal is None:
        return None
    keys, refused, reason = refusal
    return f'Parser key "{".init_args.".join(keys)}" ({refused.rsplit(".", 1)[-1]}): {reason}'


def _not_a_class(message: str) -> tuple[str, str] | None:
    """(option, name) when a class option was given a name that is no class it knows."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    key = _KEY.match(lines[0]) if lines else None
    unknown = [m.group(1) for m in map(_NOT_A_CLASS.match, lines) if m]
    if key and unknown and any(line.startswith("- Expected a path but ") for line in lines):
        return key.group(1), unknown[0]
    return None


def _reason(message: str | BaseException) -> str:
    """The reason in a (possibly nested, multi-line) parser error: its first specific line, after the
    option it is about (`Parser key "...":`) when the error names one."""
    if isinstance(message, BaseException) and (refused := _class_option_error(message)):
        return refused
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else str(message)
    key = lines[0] if lines[0].startswith("Parser key ") and lines[0].endswith(":") else None
    if not_a_class := _not_a_class(str(message)):
        return f"{key} {not_a_class[1]!r} is neither a class name nor a class_path of this option{_SEE_HELP}"
    specific = [line.lstrip("- ").strip() for line in lines if line.startswith("- ") and not line.lstrip("- ").startswith(_GENERIC)]
    if specific:
        return f"{key} {specific[0]}" if key else specific[0]
    return " ".join(lines) if len(lines) <= 3 else lines[0]


def one_line(message: str | BaseException) -> str:
    """An error as the one line a user reads: its reason, and the closest option, class or name when
    one was mistyped (the `hint` ActivationCLI.parse_arguments gives a parser error, else from the line)."""
    line = _reason(message)
    hint = getattr(message, "hint", None)
    if hint:
        return f"{line.removesuffix(_SEE_HELP)}; {hint}"
    return _suggest_a_name(line)


def _suggest_a_name(line: str) -> str:
    """'Unknown X 'name'; accepted: [...]' (or jsonargparse's 'Expected a typing.Literal[...]. Got value: name')
    with 'did you mean ...?' when one accepted name is close."""
    if "did you mean" in line:
        return line
    if literal := _NOT_A_LITERAL.search(line):
        best = closest(literal.group(2).strip(), re.findall(r"'([^']+)'", literal.group(1)))
        return f"{line}; did you mean {best!r}?" if best else line
    match = _UNKNOWN_NAME.match(line)
    if match is None:
        return line
    best = closest(match.group(1), re.findall(r"'([^']+)'", match.group(2)))
    if best is None:
        return line
    cut = line.rindex("; ", 0, match.start(2))  # before "accepted: [" or "known: ["
    return f"{line[:cut]}; did you mean {best!r}? {line[cut + 2 :]}"


def closest(word: str, choices: Sequence[str], cutoff: float = 0.6) -> str | None:
    """The choice closest to a mistyped word, if any is close (case aside: `sparsegpt` is SparseGPT)."""
    by_lower = {choice.lower(): choice for choice in choices}
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[matches[0]] if matches else None


def closest_option(option: str, options: Sequence[str]) -> str | None:
    """The option closest to a mistyped one: among its siblings (`--trainer.devics` -> `--trainer.devices`)
    by the last name, else among all by the whole (`--modle.model` -> `--model.model`)."""
    head, _, leaf = option.rpartition(".")
    siblings = {o.rpartition(".")[2]: o for o in options if head and o.rpartition(".")[0] == head}
    best = closest(leaf, list(siblings)) if siblings else None
    return siblings[best] if best else closest(option, options, cutoff=0.8)


def class_options(class_path: str) -> list[str]:
    """A class's options as jsonargparse reads them (its signature, followed through **kwargs)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(_import(class_path), fail_untyped=False)
    # argparse lists a parser's actions in `_actions` only
    return list(dict.fromkeys(a.dest.split(".")[0] for a in parser._actions if a.option_strings and a.dest != "help"))


def known_classes(action: argparse.Action | None) -> list[str]:
    """The class paths a class option accepts, as its help lists them (jsonargparse's `extra_help`)."""
    extra = action.extra_help() if action is not None and hasattr(action, "extra_help") else ""
    _, _, paths = extra.partition("known subclasses: ")
    return [p.strip() for p in paths.split(",") if p.strip()]


def class_names(paths: Sequence[str]) -> str:
    """Class paths as the names an option accepts: without the bases that others listed extend (an
    option's own base type), this project's first, and in a long list only they are named."""
    classes = {path: _import(path) for path in paths}
    bases = {path for path, cls in classes.items() if isinstance(cls, type) and any(
        other is not cls and isinstance(other, type) and issubclass(other, cls) for other in classes.values())}
    named = [(path.rsplit(".", 1)[-1], path.startswith("lit_activation.")) for path in paths if path not in bases]
    own = [name for name, is_own in named if is_own]
    others = [name for name, is_own in named if not is_own]
    if own and len(named) > 8:
        return f"{', '.join(own)} and {len(others)} of Lightning's"
    return ", ".join(own + others)


def _import(path: str) -> object:
    """The object a dotted path names, or None."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def suggestion(parser: argparse.ArgumentParser, err: BaseException) -> str | None:
    """'did you mean ...?' for a mistyped option or class name in a parser error, from the parser's own
    options, a class's options, or the classes an option accepts (named too)."""
    message = str(err)
    # argparse lists a parser's actions in `_actions` only
    if unrecognized := _UNRECOGNIZED.match(message.strip()):
        options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
        words = [w.split("=")[0] for w in unrecognized.group(1).split() if w.startswith("--")]
        best = closest_option(words[0], options) if words else None
        return f"did you mean {best}?" if best else None
    if refusal := _refusal(err):
        keys, refused, reason = refusal
        option = _REFUSED_OPTION.match(reason)
        best = closest(option.group(1), class_options(refused)) if option else None
        return f"did you mean --{'.init_args.'.join(keys)}.init_args.{best}?" if best else None
    if not_a_class := _not_a_class(message):
        key, name = not_a_class
        paths = known_classes(next((a for a in parser._actions if a.dest == key), None))
        if not paths:
            return None
        best = closest(name, [p.rsplit(".", 1)[-1] for p in paths])
        return (f"did you mean {best}? " if best else "") + f"accepted: {class_names(paths)}"
    return None


def lost_connection(err: BaseException) -> bool:
    """Whether an error is a collective that could not complete: a peer gone (gloo, NCCL, the store)."""
    import torch.distributed as dist

    signs = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL", "timed out", "Timed out")
    return isinstance(err, dist.DistError) or any(sign in str(err) for sign in signs)
