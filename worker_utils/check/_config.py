"""Settings of the checker: rule selection, which files are tests, what to skip."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from worker_utils.check._base import RULES
from worker_utils.errors import WorkerUtilsError

__all__ = [
    "DEFAULT_TEST_PATTERNS",
    "CheckError",
    "Settings",
    "find_pyproject",
    "iter_files",
    "load_settings",
    "validate_codes",
]

DEFAULT_TEST_PATTERNS = ("test_*.py", "*_test.py", "conftest.py")
_ALWAYS_SKIPPED = frozenset(
    {".venv", "venv", ".git", "__pycache__", "node_modules", ".tox", ".nox"}
)
_TABLE = "[tool.worker_utils]"
# [tool.worker_utils] or one of its subtables, such as [tool.worker_utils.per-file-ignores].
_TABLE_HEADER = re.compile(rb"^[ \t]*\[[ \t]*tool[ \t]*\.[ \t]*worker_utils[ \t]*[.\]]", re.M)
_KEYS = ("select", "ignore", "per-file-ignores", "test-patterns", "exclude")
# A syntax error cannot be deselected: the file was not checked at all.
_ALWAYS_ENABLED = frozenset({"WU000", "WU001"})


class CheckError(WorkerUtilsError):
    """A usage or configuration problem; the message says what was found and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """What to check and how.

    Args:
        select: Rule codes or prefixes to report; the longest matching prefix of
            ``select`` and ``ignore`` decides, as in ruff.
        ignore: Rule codes or prefixes not to report.
        test_patterns: Glob patterns for test files; a pattern with a ``/``
            matches the path relative to ``root``, any other the file name.
        exclude: Glob patterns of files and directories to skip, matched the
            same way against each path and each of its parts.
        per_file_ignores: Pairs of a glob pattern, matched like ``exclude``,
            and the codes or prefixes not to report in the files it matches.
        root: The directory relative paths are matched from (the one holding
            pyproject.toml, else the current directory).
    """

    select: tuple[str, ...] = ("WU",)
    ignore: tuple[str, ...] = ()
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    test_patterns: tuple[str, ...] = DEFAULT_TEST_PATTERNS
    exclude: tuple[str, ...] = ()
    root: Path = field(default_factory=Path.cwd)

    def enabled(self, code: str, path: Path | None = None) -> bool:
        """Whether findings of ``code`` are reported (in ``path``, after ``per_file_ignores``)."""
        if code in _ALWAYS_ENABLED:
            return True
        ignore = self.ignore
        if path is not None:
            for pattern, codes in self.per_file_ignores:
                if self._matches(path, (pattern,), parts=True):
                    ignore += codes
        selected = max((len(p) for p in self.select if code.startswith(p)), default=-1)
        ignored = max((len(p) for p in ignore if code.startswith(p)), default=-1)
        return selected > ignored

    def is_test_file(self, path: Path) -> bool:
        """Whether ``path`` is a test module or conftest.py under ``test_patterns``."""
        return self._matches(path, self.test_patterns, parts=False)

    def is_excluded(self, path: Path) -> bool:
        """Whether ``path`` or one of its directories matches ``exclude``."""
        return bool(self.exclude) and self._matches(path, self.exclude, parts=True)

    def _matches(self, path: Path, patterns: Iterable[str], *, parts: bool) -> bool:
        names = path.parts if parts else (path.name,)
        relative = ""
        for pattern in patterns:
            if "/" in pattern:
                relative = relative or _relative(path, self.root)
                pattern = pattern.strip("/")
                if fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, pattern + "/*"):
                    return True
            elif any(fnmatch.fnmatch(name, pattern) for name in names):
                return True
        return False


def validate_codes(setting: str, codes: Iterable[str]) -> tuple[str, ...]:
    """Return ``codes`` upper-cased, or raise :class:`CheckError` naming an unknown one."""
    result = tuple(code.strip().upper() for code in codes if code.strip())
    for code in result:
        if not any(known.startswith(code) for known in RULES):
            raise CheckError(
                f"{setting}: unknown rule code or prefix {code!r}; "
                "run 'worker-utils check --list-rules' to see them"
            )
    return result


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above ``start`` that has a ``[tool.worker_utils]`` table."""
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file() and _TABLE_HEADER.search(candidate.read_bytes()):
            return candidate
    return None


def load_settings(pyproject: Path | None) -> Settings:
    """Read ``[tool.worker_utils]`` from ``pyproject`` (defaults when None).

    Raises:
        CheckError: The file is not valid TOML, has an unknown key or a value of
            the wrong type, or cannot be read on this Python.
    """
    if pyproject is None:
        return Settings()
    where = f"{pyproject} [tool.worker_utils]"
    toml = _toml_module(where)
    try:
        document = toml.loads(pyproject.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CheckError(f"{pyproject}: not UTF-8 ({error.reason}); save it as UTF-8") from error
    except toml.TOMLDecodeError as error:
        raise CheckError(f"{pyproject}: invalid TOML: {error}; fix the file") from error
    table = document.get("tool", {}).get("worker_utils", {})
    if not isinstance(table, dict):
        raise CheckError(f"{where}: must be a table, found {table!r}; write [tool.worker_utils]")
    for key in table:
        if key not in _KEYS:
            raise CheckError(f"{where}: unknown key {key!r}; expected one of {', '.join(_KEYS)}")
    per_file = table.pop("per-file-ignores", {})
    values = {key.replace("-", "_"): _strings(where, key, table[key]) for key in table}
    for key in ("select", "ignore"):
        if key in values:
            values[key] = validate_codes(f"{where} {key}", values[key])
    return Settings(
        root=pyproject.parent, per_file_ignores=_per_file_ignores(where, per_file), **values
    )


def _per_file_ignores(where: str, table: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    key = "per-file-ignores"
    if not isinstance(table, dict):
        raise CheckError(
            f"{where}: {key} must be a table of patterns and code lists, found {table!r}; "
            f'write {key} = {{"tests/legacy/*" = ["WU6"]}}'
        )
    return tuple(
        (
            pattern,
            validate_codes(
                f"{where} {key} {pattern!r}",
                _strings(where, f"{key} {pattern!r}", codes, f'"{pattern}"'),
            ),
        )
        for pattern, codes in table.items()
    )


def with_options(
    settings: Settings, select: tuple[str, ...] | None, ignore: tuple[str, ...]
) -> Settings:
    """Apply command-line options: ``select`` replaces the configured list, ``ignore`` adds."""
    if select is not None:
        settings = replace(settings, select=select)
    return replace(settings, ignore=settings.ignore + ignore)


def iter_files(paths: Iterable[str | os.PathLike[str]], settings: Settings) -> Iterator[Path]:
    """The test files among ``paths``, walking directories in sorted order.

    Raises:
        CheckError: A path does not exist.
    """
    seen: set[str] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found: Iterable[Path] = () if settings.is_excluded(path) else _walk(path, settings)
        elif path.exists():
            # A FIFO or device named here is reported as unreadable, not read.
            found = [path] if settings.is_test_file(path) and not settings.is_excluded(path) else []
        else:
            raise CheckError(f"{path}: no such file or directory; check the path")
        for file in found:
            # A file named twice, or inside a directory also named, is checked once.
            key = os.path.abspath(file)
            if key not in seen:
                seen.add(key)
                yield file


def _walk(top: Path, settings: Settings) -> Iterator[Path]:
    for directory, dirs, files in os.walk(top):
        here = Path(directory)
        dirs[:] = sorted(
            name
            for name in dirs
            if name not in _ALWAYS_SKIPPED
            and not name.startswith(".")
            and not settings.is_excluded(here / name)
        )
        for name in sorted(files):
            path = here / name
            if (
                name.endswith(".py")
                and settings.is_test_file(path)
                and not settings.is_excluded(path)
                and not _is_special(path)
            ):
                yield path


def _is_special(path: Path) -> bool:
    """Whether ``path`` is a FIFO, socket or device: reading one blocks or never ends."""
    try:
        return not stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False  # a broken link: reported as unreadable


def _relative(path: Path, root: Path) -> str:
    absolute = os.path.abspath(path)
    try:
        return Path(absolute).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return Path(absolute).as_posix()


def _strings(where: str, key: str, value: Any, toml_key: str | None = None) -> tuple[str, ...]:
    if isinstance(value, str):
        raise CheckError(
            f"{where}: {key} must be a list of strings, found {value!r}; "
            f"write {toml_key or key} = [{_quoted(value)}]"
        )
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CheckError(f"{where}: {key} must be a list of strings, found {value!r}")
    return tuple(value)


def _quoted(value: str) -> str:
    return ", ".join(f'"{item.strip()}"' for item in value.split(",") if item.strip())


def _toml_module(where: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli
        except ImportError:
            raise CheckError(
                f"{where}: reading it needs Python 3.11 or the tomli package; pip install tomli"
            ) from None
        return tomli
