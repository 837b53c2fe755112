"""The ``worker-utils`` command line.

Each subcommand lives in its own module, listed in ``_SUBCOMMANDS``; the module
exposes ``add_parser(subparsers)``, which adds its parser and sets
``handler``: a function from the parsed arguments to an exit status.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, Protocol, cast

__all__ = ["main", "version"]

_SUBCOMMANDS = ("worker_utils.check._cli", "worker_utils.postgres._cli")
_DISTRIBUTION = "pytest-worker-utils"


class _Subcommand(Protocol):
    def add_parser(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add the subcommand's parser, with ``handler`` set as a default."""


class _Version(argparse.Action):
    """``--version``: print the installed distribution's version and exit.

    Looked up only when asked: importlib.metadata costs more than the rest of
    the command line's start-up.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "Print the version and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        print(f"{parser.prog} {version()}")
        parser.exit()


def version() -> str:
    """The installed distribution's version, read from its metadata (pyproject.toml sets it)."""
    from importlib import metadata

    try:
        return metadata.version(_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return f"unknown ({_DISTRIBUTION} is not installed)"


def main(argv: list[str] | None = None) -> int:
    """Run ``worker-utils`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    parser = argparse.ArgumentParser(
        prog="worker-utils", description="Tools for per-worker test resources under pytest-xdist."
    )
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in _SUBCOMMANDS:
        cast(_Subcommand, importlib.import_module(name)).add_parser(subparsers)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # argparse exits on --help and on usage errors; callers of main() get a status.
        return exit_.code if isinstance(exit_.code, int) else 2
    handler = cast(Callable[[argparse.Namespace], int], args.handler)
    return handler(args)
