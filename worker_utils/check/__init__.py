"""A static checker for test code that breaks under ``pytest -n auto``.

It parses test files and conftest.py files with :mod:`ast` (nothing is
imported or run) and reports environment writes outside monkeypatch,
hard-coded ports, hand-rolled worker arithmetic, fixed temporary paths and
misplaced autouse fixtures. ``worker-utils check`` is its command line::

    from worker_utils.check import check_paths

    for finding in check_paths(["tests"]):
        print(finding.format())
"""

from __future__ import annotations

import ast
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from worker_utils.check import autouse, env, ports, tmp, worker
from worker_utils.check._base import RULES, SYNTAX_ERROR, UNREADABLE, Context, Finding, Rule
from worker_utils.check._base import noqa_lines as _noqa_lines
from worker_utils.check._config import CheckError, Settings, iter_files

__all__ = ["RULES", "CheckError", "Finding", "Rule", "Settings", "check_paths", "check_source"]

_FAMILIES: tuple[tuple[tuple[Rule, ...], Callable[[Context], None]], ...] = (
    (env.RULES, env.check),
    (ports.RULES, ports.check),
    (worker.RULES, worker.check),
    (tmp.RULES, tmp.check),
    (autouse.RULES, autouse.check),
)


@dataclass
class _FileResult:
    path: str
    findings: list[Finding]
    autouse: list[tuple[str, int, int]] = field(default_factory=list)
    noqa: dict[int, frozenset[str] | None] = field(default_factory=dict)


def check_source(
    source: str | bytes, path: str = "<string>", settings: Settings | None = None
) -> list[Finding]:
    """Check one file's source as a test module (as conftest.py when ``path`` names one).

    Returns:
        The findings, sorted by line and column, after selection and noqa comments.
    """
    settings = settings or Settings()
    return _finish([_check_file(source, path, settings)], settings)


def check_paths(
    paths: Iterable[str | os.PathLike[str]], settings: Settings | None = None
) -> list[Finding]:
    """Check every test file among ``paths`` (directories are walked).

    Duplicate autouse fixtures are found across all the files checked together.

    Raises:
        CheckError: A path does not exist.
    """
    settings = settings or Settings()
    results = []
    for path in iter_files(paths, settings):
        try:
            source = path.read_bytes()
        except OSError as error:
            results.append(_unreadable(str(path), error))
            continue
        results.append(_check_file(source, str(path), settings))
    return _finish(results, settings)


def _check_file(source: str | bytes, path: str, settings: Settings) -> _FileResult:
    with warnings.catch_warnings():
        # Invalid escapes and the like warn at parse time; they are not our findings.
        warnings.simplefilter("ignore")
        try:
            tree = ast.parse(source, filename=path)
        except (SyntaxError, ValueError) as error:
            # Python 3.11 calls a NUL byte a SyntaxError, 3.12 a ValueError.
            line = getattr(error, "lineno", None) or 1
            col = getattr(error, "offset", None) or 1
            message = SYNTAX_ERROR.message.format(error=getattr(error, "msg", str(error)))
            return _FileResult(
                path, [Finding(path, line, col, "WU000", message, SYNTAX_ERROR.hint)]
            )
    text = source if isinstance(source, str) else source.decode("utf-8", errors="replace")
    ctx = Context(path, text, tree, is_conftest=Path(path).name == "conftest.py")
    for rules, check in _FAMILIES:
        if any(settings.enabled(found.code) for found in rules):
            check(ctx)
    return _FileResult(path, ctx.findings, ctx.autouse, _noqa_lines(text))


def _definition_order(result: _FileResult) -> tuple[int, bool, str]:
    """Shallow files first and conftest.py first among its neighbours: the outer definition wins."""
    path = Path(result.path)
    return len(path.parts), path.name != "conftest.py", result.path


def _unreadable(path: str, error: Exception) -> _FileResult:
    message = UNREADABLE.message.format(error=error)
    return _FileResult(path, [Finding(path, 1, 1, "WU001", message, UNREADABLE.hint)])


def _finish(results: list[_FileResult], settings: Settings) -> list[Finding]:
    """Add the cross-file duplicate autouse findings, then apply selection and noqa."""
    first_seen: dict[str, str] = {}
    for result in sorted(results, key=_definition_order):
        for name, line, col in result.autouse:
            if name in first_seen:
                message = autouse.DUPLICATE.message.format(name=name, first=first_seen[name])
                result.findings.append(
                    Finding(result.path, line, col, "WU502", message, autouse.DUPLICATE.hint)
                )
            else:
                first_seen[name] = f"{result.path}:{line}"
    kept = []
    for result in results:
        for finding in result.findings:
            codes = result.noqa.get(finding.line, frozenset())
            silenced = codes is None or finding.code in codes
            if settings.enabled(finding.code) and not (silenced and finding.code != "WU000"):
                kept.append(finding)
    return sorted(kept)
