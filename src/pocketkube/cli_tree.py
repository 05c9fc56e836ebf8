"""The command tree of an argparse parser as plain data: what shell completion and the help texts
are generated from (pure; argparse only, so `pocketkube --help` stays light)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# A command whose arguments belong to another program: completion hands them to its completion.
PASSTHROUGH = {("kubectl",): "kubectl"}


@dataclass(frozen=True)
class Option:
    names: tuple[str, ...]  # every spelling: ("-v", "--verbose")
    help: str
    takes_value: bool
    optional_value: bool  # nargs="?": `--leader-elect` or `--leader-elect false`
    choices: tuple[str, ...]
    complete: str  # "file", "dir" or "" (nothing to offer)


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]  # () is the program itself
    help: str
    options: tuple[Option, ...]
    subcommands: tuple[tuple[str, str], ...]  # (name, one-line help)
    arg_choices: tuple[str, ...]  # what a positional argument may be
    arg_complete: str  # "file", "dir" or "" for positional arguments
    passthrough: str  # the program whose completion takes over ("" for none)


def subparsers_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of each subcommand in the order added; aliases left out."""
    action = subparsers_action(parser)
    if action is None:
        return []
    helps = {a.dest: a.help or "" for a in action._choices_actions}
    seen: set[int] = set()
    out = []
    for name, sub in action.choices.items():
        if id(sub) not in seen:
            seen.add(id(sub))
            out.append((name, helps.get(name, ""), sub))
    return out


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
         ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree with its command path, parents first."""
    yield path, parser
    for name, _, sub in subcommands(parser):
        yield from walk(sub, (*path, name))


def _complete_kind(action: argparse.Action) -> str:
    """Paths complete as files, or as directories when the flag names one (--data-dir)."""
    name = action.dest.lower()
    is_path = action.type is Path or name.endswith(("file", "dir", "conf"))
    if not is_path:
        return ""
    return "dir" if name.endswith("dir") else "file"


def _choices(action: argparse.Action) -> tuple[str, ...]:
    if action.choices is not None:
        return tuple(str(c) for c in action.choices)
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    return tuple(metavar.split("|")) if "|" in metavar else ()  # `true|false`


def _help(action: argparse.Action) -> str:
    """The help as --help shows it (`%(default)s` filled in)."""
    try:
        return argparse.HelpFormatter("pocketkube")._expand_help(action)
    except (KeyError, TypeError, ValueError):
        return action.help or ""


def command(parser: argparse.ArgumentParser, path: tuple[str, ...], help: str = "") -> Command:
    options = []
    arg_choices: tuple[str, ...] = ()
    arg_complete = ""
    for action in parser._actions:
        if action.help == argparse.SUPPRESS and not isinstance(action, argparse._SubParsersAction):
            continue  # internal flags are not offered
        if action.option_strings:
            options.append(Option(tuple(action.option_strings), _help(action), action.nargs != 0,
                                  action.nargs == "?", _choices(action), _complete_kind(action)))
        elif not isinstance(action, argparse._SubParsersAction) and action.nargs != argparse.REMAINDER:
            arg_choices += _choices(action)
            arg_complete = arg_complete or _complete_kind(action)
    return Command(path, help or parser.description or "", tuple(options),
                   tuple((name, h) for name, h, _ in subcommands(parser)), arg_choices, arg_complete,
                   PASSTHROUGH.get(path, ""))


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """Every command of the tree, parents first."""
    helps = {(): ""}
    out = []
    for path, p in walk(parser):
        for name, h, _ in subcommands(p):
            helps[(*path, name)] = h
        out.append(command(p, path, helps.get(path, "")))
    return out
