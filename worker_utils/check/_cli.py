"""``worker-utils check``: the checker's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check`` subcommand."""
    parser = subparsers.add_parser(
        "check",
        help="Find test code that breaks under pytest -n auto",
        description=(
            "Find test code that breaks under pytest -n auto: environment writes outside "
            "monkeypatch, hard-coded ports, worker arithmetic, fixed temporary paths, "
            "misplaced autouse fixtures and hard-coded Redis databases. Exit status: "
            "0 clean, 1 findings (0 with --exit-zero), 2 usage or syntax errors."
        ),
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="Files or directories to check (default: .)"
    )
    parser.add_argument(
        "--select", metavar="CODES", help="Comma-separated rule codes or prefixes to report"
    )
    parser.add_argument(
        "--ignore", metavar="CODES", help="Comma-separated rule codes or prefixes not to report"
    )
    config = parser.add_mutually_exclusive_group()
    config.add_argument(
        "--config", metavar="PYPROJECT", type=Path, help="Read [tool.worker_utils] from this file"
    )
    config.add_argument("--isolated", action="store_true", help="Ignore every pyproject.toml")
    parser.add_argument(
        "--output-format",
        default="text",
        metavar="FORMAT",
        help="How to print the findings: text (default), github (workflow annotations), "
        "json or sarif (code scanning)",
    )
    parser.add_argument(
        "--statistics",
        action="store_true",
        help="Print the number of findings per rule instead of the findings",
    )
    parser.add_argument(
        "--exit-zero", action="store_true", help="Exit with status 0 even when there are findings"
    )
    parser.add_argument("--list-rules", action="store_true", help="Print every rule and exit")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the paths in ``args``, print the findings and return the exit status."""
    # Imported here so that `worker-utils --help` and other commands stay fast.
    from worker_utils.check import RULES, CheckError, _check_paths
    from worker_utils.check._config import (
        find_pyproject,
        load_settings,
        validate_codes,
        with_options,
    )
    from worker_utils.check._output import (
        FORMATS,
        STATISTICS_FORMATS,
        render,
        render_statistics,
    )

    if args.list_rules:
        for found in sorted(RULES.values(), key=lambda found: found.code):
            print(f"{found.code} {found.message} ({found.hint})")
        return 0
    try:
        if args.output_format not in FORMATS:
            raise CheckError(
                f"--output-format: unknown format {args.output_format!r}; "
                f"use one of {', '.join(FORMATS)}"
            )
        if args.statistics and args.output_format not in STATISTICS_FORMATS:
            raise CheckError(
                f"--statistics: not available with --output-format {args.output_format}; "
                f"use {' or '.join(STATISTICS_FORMATS)}"
            )
        pyproject = None if args.isolated else args.config or find_pyproject(Path.cwd())
        if args.config and not args.config.is_file():
            raise CheckError(f"--config: {args.config} is not a file; give a pyproject.toml")
        select = None if args.select is None else validate_codes("--select", _split(args.select))
        ignore = validate_codes("--ignore", _split(args.ignore or ""))
        settings = with_options(load_settings(pyproject), select, ignore)
        findings, checked = _check_paths(args.paths or ["."], settings)
    except CheckError as error:
        print(f"worker-utils check: error: {error}", file=sys.stderr)
        return 2
    if args.statistics:
        sys.stdout.write(render_statistics(findings, args.output_format))
    else:
        sys.stdout.write(render(findings, args.output_format, _version()))
    if args.output_format == "text":
        print(_summary(len(findings), len({finding.path for finding in findings}), checked))
    if args.exit_zero:
        return 0
    if any(finding.code in ("WU000", "WU001") for finding in findings):
        return 2
    return 1 if findings else 0


def _summary(problems: int, files: int, checked: int) -> str:
    """The closing line: what was found, in how many of how many files checked."""
    checked_text = f"{_count(checked, 'file')} checked"
    if problems:
        return f"Found {_count(problems, 'problem')} in {_count(files, 'file')} ({checked_text})"
    if checked:
        return f"All checks passed: {checked_text}"
    # pre-commit passes every changed Python file; helpers are skipped by design.
    return "All checks passed: 0 files checked (no file matches test-patterns)"


def _version() -> str:
    from worker_utils.cli import version

    return version()


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _split(codes: str) -> list[str]:
    return codes.split(",")
