"""The ``worker-utils`` command line.

Each subcommand lives in its own module, listed in ``_SUBCOMMANDS``; the module
exposes ``add_parser(subparsers)``, which adds its parser and sets
``handler``: a function from the parsed arguments to an exit status.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Protocol, cast

__all__ = ["main"]

_SUBCOMMANDS = ("worker_utils.check._cli", "worker_utils.postgres._cli")


class _Subcommand(Protocol):
    def add_parser(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add the subcommand's parser, with ``handler`` set as a default."""


def main(argv: list[str] | None = None) -> int:
    """Run ``worker-utils`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    parser = argparse.ArgumentParser(
        prog="worker-utils", description="Tools for per-worker test resources under pytest-xdist."
    )
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
