"""A static checker for test code that breaks under ``pytest -n auto``.

It parses test files and conftest.py files with :mod:`ast` (nothing is
imported or run) and reports environment writes outside monkeypatch,
hard-coded ports, hand-rolled worker arithmetic, fixed temporary paths,
misplaced autouse fixtures and hard-coded Redis databases.
``worker-utils check`` is its command line::

    from worker_utils.check import check_paths

    for finding in check_paths(["tests"]):
        print(finding.format())
"""

from __future__ import annotations

import ast
import gc
import os
import re
import stat
import tokenize
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from worker_utils.check import autouse, env, ports, redis_db, tmp, worker
from worker_utils.check._base import (
    RULES,
    SYNTAX_ERROR,
    UNREADABLE,
    Autouse,
    Context,
    Finding,
    Rule,
)
from worker_utils.check._base import noqa_lines as _noqa_lines
from worker_utils.check._config import CheckError, Settings, iter_files

__all__ = ["RULES", "CheckError", "Finding", "Rule", "Settings", "check_paths", "check_source"]

_FAMILIES = (env, ports, worker, tmp, autouse, redis_db)
# Names bound by "import x as y" / "from x import y as z": aliases hide the markers.
_ALIASES = re.compile(r"^[ \t]*(?:from[ \t]+\S+[ \t]+)?import[ \t].*?\bas[ \t]+(\w+)", re.M)


@dataclass(frozen=True)
class _Plan:
    """The families to run under some settings, and the markers that tell where to look."""

    checks: tuple[Callable[[Context], None], ...]
    line_markers: tuple[str, ...]
    file_markers: tuple[str, ...]
    line_patterns: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def of(cls, settings: Settings) -> _Plan:
        families: list[ModuleType] = [
            family
            for family in _FAMILIES
            if any(settings.enabled(found.code) for found in family.RULES)
        ]
        return cls(
            tuple(family.check for family in families),
            tuple(
                marker for family in families if not family.WHOLE_FILE for marker in family.MARKERS
            ),
            tuple(marker for family in families if family.WHOLE_FILE for marker in family.MARKERS),
            tuple(family.LINE_PATTERN for family in families if hasattr(family, "LINE_PATTERN")),
        )

    def lines(self, text: str) -> list[int] | None:
        """The lines worth walking, those holding a marker; None for every line.

        Plain substring search: a regular expression over every line costs more
        than the parse itself.
        """
        if "\r" in text:
            # ast ends a line at a lone \r too; counting only \n would put every marker on line 1.
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if any(marker in text for marker in self.file_markers):
            return None
        positions = []
        for marker in (*self.line_markers, *_ALIASES.findall(text)):
            position = text.find(marker)
            while position != -1:
                positions.append(position)
                position = text.find(marker, position + 1)
        for pattern in self.line_patterns:
            positions += [match.start() for match in pattern.finditer(text)]
        positions.sort()
        lines: list[int] = []
        line, last = 1, 0
        for position in positions:
            line += text.count("\n", last, position)
            last = position
            if not lines or lines[-1] != line:
                lines.append(line)
        return lines


@dataclass
class _FileResult:
    path: str
    findings: list[Finding]
    autouse: list[Autouse] = field(default_factory=list)
    text: str = ""


def check_source(
    source: str | bytes, path: str = "<string>", settings: Settings | None = None
) -> list[Finding]:
    """Check one file's source as a test module (as conftest.py when ``path`` names one).

    Returns:
        The findings, sorted by line and column, after selection and noqa comments.
    """
    settings = settings or Settings()
    return _finish([_check_file(source, path, _Plan.of(settings))], settings)


def check_paths(
    paths: Iterable[str | os.PathLike[str]], settings: Settings | None = None
) -> list[Finding]:
    """Check every test file among ``paths`` (directories are walked).

    Duplicate autouse fixtures are found across all the files checked together.

    Raises:
        CheckError: A path does not exist.
    """
    return _check_paths(paths, settings)[0]


def _check_paths(
    paths: Iterable[str | os.PathLike[str]], settings: Settings | None = None
) -> tuple[list[Finding], int]:
    """:func:`check_paths`, also returning how many files were checked."""
    settings = settings or Settings()
    plan = _Plan.of(settings)
    results = []
    with _quiet_and_fast():
        for path in iter_files(paths, settings):
            try:
                source = _read(path)
            except OSError as error:
                results.append(_unreadable(str(path), error))
                continue
            results.append(_check_file(source, str(path), plan))
    return _finish(results, settings), len(results)


@contextmanager
def _quiet_and_fast() -> Iterator[None]:
    # Invalid escapes and the like warn at parse time; they are not our findings.
    # Syntax trees hold no reference cycles, so the cyclic collector, which the
    # many allocations of ast.parse keep waking, only costs time here.
    enabled = gc.isenabled()
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if enabled:
            gc.enable()


def _read(path: Path) -> bytes:
    """The bytes of ``path``; a FIFO or device would block or never end, so it is an error."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise OSError(f"not a regular file: {path}")
    return path.read_bytes()


def _check_file(source: str | bytes, path: str, plan: _Plan) -> _FileResult:
    with _quiet_and_fast():
        try:
            tree = ast.parse(source, filename=path)
        except (SyntaxError, ValueError, MemoryError, RecursionError) as error:
            # Python 3.11 calls a NUL byte a SyntaxError, 3.12 a ValueError; a deeply
            # nested expression exhausts the parser's stack (MemoryError, RecursionError).
            line = max(getattr(error, "lineno", None) or 1, 1)
            col = max(getattr(error, "offset", None) or 1, 1)
            detail = getattr(error, "msg", None) or str(error) or "too deeply nested to parse"
            message = SYNTAX_ERROR.message.format(error=detail)
            return _FileResult(
                path, [Finding(path, line, col, "WU000", message, SYNTAX_ERROR.hint)]
            )
    text = source if isinstance(source, str) else _decode(source)
    is_conftest = Path(path).name == "conftest.py"
    ctx = Context(path, text, tree, is_conftest, plan.lines(text))
    for check in plan.checks:
        check(ctx)
    return _FileResult(path, ctx.findings, ctx.autouse, text)


def _decode(source: bytes) -> str:
    """The text ast parsed: decoded by the file's coding cookie or BOM, UTF-8 by default."""
    encoding, _ = tokenize.detect_encoding(iter(source.splitlines(keepends=True)).__next__)
    return source.decode(encoding, errors="replace")


def _definition_order(result: _FileResult) -> tuple[int, bool, str]:
    """Shallow files first and conftest.py first among its neighbours: the outer definition wins."""
    path = Path(result.path)
    return len(path.parts), path.name != "conftest.py", result.path


def _overridden(outer: _FileResult, earlier: Autouse, inner: _FileResult, later: Autouse) -> bool:
    """Whether ``later`` overrides or doubles ``earlier`` for some test.

    In one file: a class's fixture overrides the one around the class, and a
    second definition in the same scope replaces the first. Across files: any
    definition overrides one in a conftest.py of its directory or above;
    fixtures of sibling modules, or of different classes, never meet.
    """
    if outer.path == inner.path:
        depth = len(earlier.classes)
        return later.classes[:depth] == earlier.classes and (
            depth < len(later.classes) or earlier.line < later.line
        )
    if Path(outer.path).name != "conftest.py":
        return False
    directory = Path(os.path.abspath(outer.path)).parent
    inside = Path(os.path.abspath(inner.path)).parent
    return inside == directory or directory in inside.parents


def _unreadable(path: str, error: Exception) -> _FileResult:
    message = UNREADABLE.message.format(error=error)
    return _FileResult(path, [Finding(path, 1, 1, "WU001", message, UNREADABLE.hint)])


def _finish(results: list[_FileResult], settings: Settings) -> list[Finding]:
    """Add the cross-file duplicate autouse findings, then apply selection and noqa."""
    definitions: dict[str, list[tuple[_FileResult, Autouse]]] = {}
    for result in sorted(results, key=_definition_order):
        for found in sorted(result.autouse, key=lambda found: found[1:]):
            definitions.setdefault(found.name, []).append((result, found))
    for same_name in definitions.values():
        for result, later in same_name:
            first = next(
                (
                    f"{outer.path}:{earlier.line}"
                    for outer, earlier in same_name
                    if _overridden(outer, earlier, result, later)
                ),
                None,
            )
            if first is not None:
                message = autouse.DUPLICATE.message.format(name=later.name, first=first)
                hint = autouse.METHOD_HINT if later.classes else autouse.DUPLICATE.hint
                result.findings.append(
                    Finding(result.path, later.line, later.col, "WU502", message, hint)
                )
    kept = []
    for result in results:
        # Tokenizing for comments costs as much as parsing: only where there is a finding.
        noqa = _noqa_lines(result.text) if result.findings else {}
        for finding in result.findings:
            codes = noqa.get(finding.line, frozenset())
            silenced = codes is None or finding.code in codes
            enabled = settings.enabled(finding.code, Path(finding.path))
            if enabled and not (silenced and finding.code != "WU000"):
                kept.append(finding)
    return sorted(kept)
