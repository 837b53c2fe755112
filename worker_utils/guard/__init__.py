"""Runtime guard: tests that leak process state, autouse fixtures in the wrong place.

Under ``pytest -n`` a worker runs an arbitrary slice of the suite in an arbitrary
order, so a test that leaves ``os.environ``, the working directory or
``sys.path`` changed breaks whichever test the scheduler puts after it, on one
worker, some of the time. The guard snapshots that state around each test,
names the test that changed it, and restores it.

The snapshot, diff, format and restore helpers and the autouse analysis work on
plain data. :class:`Guard` is the pytest plugin object that applies them; the
worker_utils plugin registers it only when ``--worker-utils-guard`` or the
``worker_utils_guard`` ini setting enables it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import linecache
import os
import sys
import warnings
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "MODES",
    "AutouseFinding",
    "FixtureSite",
    "Guard",
    "Leak",
    "Snapshot",
    "WorkerUtilsAutouseWarning",
    "WorkerUtilsGuardWarning",
    "WorkerUtilsLeakWarning",
    "autouse_findings",
    "describe_leak",
    "find_leak",
    "parse_mode",
    "restore",
    "take_snapshot",
]

MODES = ("off", "warn", "strict")
# pytest sets it around every phase of every test; it is never the test's doing.
ALWAYS_IGNORED_ENV = ("PYTEST_CURRENT_TEST",)
_BROAD_SCOPES = frozenset({"module", "package", "session"})


class WorkerUtilsGuardWarning(pytest.PytestWarning):
    """Base class of the guard's warnings: filter this to silence them all."""


class WorkerUtilsLeakWarning(WorkerUtilsGuardWarning):
    """A test left ``os.environ``, the working directory or ``sys.path`` changed."""


class WorkerUtilsAutouseWarning(WorkerUtilsGuardWarning):
    """An autouse fixture is defined twice, or broad-scoped in a test module."""


def parse_mode(text: str) -> str:
    """Return the guard mode named by ``text``, in any case.

    Raises:
        ValueError: ``text`` is not one of :data:`MODES`; when it looks like a
            test path, the message says how to write the option before one.
    """
    mode = text.strip().lower()
    if mode not in MODES:
        if "/" in text or text.endswith(".py") or os.path.exists(text):
            raise ValueError(
                "a test path? write --worker-utils-guard=MODE, or put the option after the paths"
            )
        raise ValueError
    return mode


# --- Process state ---------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The process state the guard watches, at one moment."""

    environ: Mapping[str, str]
    cwd: str | None  # None: the working directory no longer exists
    sys_path: tuple[str, ...]


def take_snapshot() -> Snapshot:
    """Return the current ``os.environ``, working directory and ``sys.path``."""
    try:
        cwd: str | None = os.getcwd()
    except OSError:
        cwd = None
    return Snapshot(dict(os.environ), cwd, tuple(sys.path))


def absorb(baseline: Snapshot, before: Snapshot, after: Snapshot) -> Snapshot:
    """Return ``baseline`` with the changes between ``before`` and ``after`` applied.

    The guard absorbs what broad-scoped fixtures do while a test runs: those
    changes belong to the fixture, not to the test.
    """
    environ = dict(baseline.environ)
    for name in before.environ.keys() | after.environ.keys():
        value = after.environ.get(name)
        if value == before.environ.get(name):
            continue
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    cwd = after.cwd if after.cwd != before.cwd else baseline.cwd
    if before.sys_path == after.sys_path:
        sys_path = baseline.sys_path
    elif baseline.sys_path == before.sys_path:
        sys_path = after.sys_path
    else:
        removed = set(before.sys_path) - set(after.sys_path)
        kept = [entry for entry in baseline.sys_path if entry not in removed]
        sys_path = tuple(
            [entry for entry in after.sys_path if entry not in kept]
            + [entry for entry in kept if entry in after.sys_path or entry not in before.sys_path]
        )
    return Snapshot(environ, cwd, sys_path)


@dataclass(frozen=True)
class Leak:
    """What changed between two snapshots, leaving out ignored variables."""

    env_set: Mapping[str, str] = field(default_factory=dict)
    env_changed: Mapping[str, str] = field(default_factory=dict)
    env_removed: tuple[str, ...] = ()
    cwd: tuple[str | None, str | None] | None = None
    path_added: tuple[str, ...] = ()
    path_removed: tuple[str, ...] = ()
    path_reordered: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.env_set
            or self.env_changed
            or self.env_removed
            or self.cwd
            or self.path_added
            or self.path_removed
            or self.path_reordered
        )


def _ignored(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def find_leak(before: Snapshot, after: Snapshot, ignore_env: Sequence[str] = ()) -> Leak:
    """Return what changed from ``before`` to ``after``.

    Args:
        ignore_env: ``fnmatch`` patterns of variable names to leave out, on top
            of ``PYTEST_CURRENT_TEST``.
    """
    patterns = (*ALWAYS_IGNORED_ENV, *ignore_env)
    env_set: dict[str, str] = {}
    env_changed: dict[str, str] = {}
    env_removed: list[str] = []
    for name in sorted(before.environ.keys() | after.environ.keys()):
        old, new = before.environ.get(name), after.environ.get(name)
        if old == new or _ignored(name, patterns):
            continue
        if new is None:
            env_removed.append(name)
        elif old is None:
            env_set[name] = new
        else:
            env_changed[name] = new
    cwd = (before.cwd, after.cwd) if before.cwd != after.cwd else None
    added = tuple(entry for entry in after.sys_path if entry not in before.sys_path)
    removed = tuple(entry for entry in before.sys_path if entry not in after.sys_path)
    reordered = not added and not removed and before.sys_path != after.sys_path
    return Leak(env_set, env_changed, tuple(env_removed), cwd, added, removed, reordered)


def describe_leak(nodeid: str, leak: Leak) -> str:
    """Return the one-line report of ``leak``, blaming the test ``nodeid``.

    Values of variables that existed before the test are not shown: they may be
    secrets from the environment the suite runs in.
    """
    parts = []
    env = [f"set {name}={value!r}" for name, value in leak.env_set.items()]
    env += [f"changed {name}={value!r}" for name, value in leak.env_changed.items()]
    env += [f"removed {name}" for name in leak.env_removed]
    if env:
        parts.append(f"os.environ ({', '.join(env)})")
    if leak.cwd is not None:
        old, new = (repr(path) if path is not None else "a deleted directory" for path in leak.cwd)
        parts.append(f"cwd (changed from {old} to {new})")
    path = [f"added {entry!r}" for entry in leak.path_added]
    path += [f"removed {entry!r}" for entry in leak.path_removed]
    if leak.path_reordered:
        path.append("reordered")
    if path:
        parts.append(f"sys.path ({', '.join(path)})")
    return (
        f"{nodeid}: leaked {', '.join(parts)}; "
        f"use the worker_env fixture or undo the change in the test (the guard restored it)"
    )


def restore(before: Snapshot, leak: Leak) -> None:
    """Undo ``leak``: put back what ``before`` held for everything it lists."""
    for name in (*leak.env_set, *leak.env_changed, *leak.env_removed):
        value = before.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if leak.cwd is not None and before.cwd is not None:
        # If the directory is gone there is nothing better to return to.
        with contextlib.suppress(OSError):
            os.chdir(before.cwd)
    if leak.path_added or leak.path_removed or leak.path_reordered:
        sys.path[:] = before.sys_path


# --- Autouse fixtures ------------------------------------------------------


@dataclass(frozen=True)
class FixtureSite:
    """One definition of a fixture, as the guard needs to know it."""

    name: str
    scope: str
    autouse: bool
    path: str
    line: int
    in_test_module: bool

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, order=True)
class AutouseFinding:
    """A problem with an autouse fixture, at the definition to change."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def autouse_findings(definitions: Iterable[Sequence[FixtureSite]]) -> list[AutouseFinding]:
    """Return the autouse problems among fixture definitions, sorted and without repeats.

    Args:
        definitions: For each fixture name a test sees, the definitions of that
            name visible to it, outermost first (the last one is used).
    """
    found: set[AutouseFinding] = set()
    for sites in definitions:
        autouse = [site for site in sites if site.autouse]
        for site in autouse:
            if site.in_test_module and site.scope in _BROAD_SCOPES:
                found.add(
                    AutouseFinding(
                        site.path,
                        site.line,
                        f"{site.scope}-scoped autouse fixture {site.name!r} in a test module; "
                        f"move it to conftest.py or make it function-scoped",
                    )
                )
        for site in autouse[1:]:
            found.add(
                AutouseFinding(
                    site.path,
                    site.line,
                    f"autouse fixture {site.name!r} already defined at {autouse[0].location}; "
                    f"keep one definition in the conftest.py shared by both, or declare a "
                    f"reset once with worker_utils.register_reset",
                )
            )
    return sorted(found)


def _definition_line(func: Any) -> int:
    """The line of ``def``, past any decorators, as the static checker reports it."""
    code = func.__code__
    line = int(code.co_firstlineno)
    for offset in range(50):
        text = linecache.getline(code.co_filename, line + offset).lstrip()
        if text.startswith(("def ", "async def ")):
            return line + offset
    return line


def _sites(
    item: pytest.Item, module_ids: set[str], rootpath: Path
) -> list[list[FixtureSite]] | None:
    """The fixture definitions visible to ``item``, or None if pytest hides them.

    pytest has no public API for the definitions behind a test's fixtures or for
    whether one is autouse: this reads ``item._fixtureinfo`` and
    ``FixtureDef._autouse`` and gives up cleanly when a pytest version lacks them.
    """
    info = getattr(item, "_fixtureinfo", None)
    name2fixturedefs = getattr(info, "name2fixturedefs", None)
    if not isinstance(name2fixturedefs, Mapping):
        return None
    result = []
    for name, fixturedefs in name2fixturedefs.items():
        sites = []
        for fixturedef in fixturedefs:
            autouse = getattr(fixturedef, "_autouse", None)
            func = getattr(fixturedef.func, "__func__", fixturedef.func)
            code = getattr(func, "__code__", None)
            if not isinstance(autouse, bool):
                return None
            if code is None:
                continue  # not Python source: nothing to point at
            path = Path(code.co_filename)
            shown = str(path.relative_to(rootpath)) if path.is_relative_to(rootpath) else str(path)
            sites.append(
                FixtureSite(
                    name=name,
                    scope=fixturedef.scope,
                    autouse=autouse,
                    path=shown,
                    line=_definition_line(func),
                    in_test_module=fixturedef.baseid.split("::")[0] in module_ids,
                )
            )
        result.append(sites)
    return result


def _collection_sites(
    items: Sequence[pytest.Item], rootpath: Path
) -> list[list[FixtureSite]] | None:
    module_ids = set()
    for item in items:
        module = item.getparent(pytest.Module)
        if module is not None:
            module_ids.add(module.nodeid)
    definitions = []
    for item in items:
        sites = _sites(item, module_ids, rootpath)
        if sites is None:
            return None
        definitions.extend(sites)
    return definitions


def _count(things: Sequence[object], noun: str) -> str:
    return f"{len(things)} {noun}{'' if len(things) == 1 else 's'}"


# --- The plugin object -----------------------------------------------------


class Guard:
    """Hooks that apply the guard; registered only when it is enabled.

    Attribution: a test is blamed for what differs after its teardown from what
    held before its setup. Changes made by the setup or teardown of class-,
    module-, package- or session-scoped fixtures during that window belong to
    those fixtures and are not blamed or restored.
    """

    def __init__(self, mode: str, ignore_env: Sequence[str], *, first_worker: bool = True) -> None:
        """Args:
        mode: ``"warn"`` or ``"strict"``.
        ignore_env: ``fnmatch`` patterns of variables never reported.
        first_worker: False on every xdist worker but the first, which alone
            warns about autouse fixtures: each worker collects the whole suite.
        """
        self.strict = mode == "strict"
        self.ignore_env = tuple(ignore_env)
        self.first_worker = first_worker
        self._baseline: Snapshot | None = None
        self._before_teardown: dict[int, Snapshot] = {}

    # Collection ---------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if not (self.strict or self.first_worker):
            return
        definitions = _collection_sites(items, config.rootpath)
        if definitions is None:
            warning = WorkerUtilsGuardWarning(
                "worker_utils guard: this pytest version does not expose fixture "
                "definitions; the autouse check is off"
            )
            config.issue_config_time_warning(warning, stacklevel=2)
            return
        findings = autouse_findings(definitions)
        if not findings:
            return
        if not self.strict:
            try:
                for finding in findings:
                    warnings.warn_explicit(
                        WorkerUtilsAutouseWarning(finding.message),
                        category=None,
                        filename=finding.path,
                        lineno=finding.line,
                    )
                return
            except WorkerUtilsGuardWarning:
                pass  # warnings are errors here (-W error): fail as strict does
        text = "\n".join(
            [f"worker_utils guard: {_count(findings, 'autouse fixture problem')}:"]
            + [str(finding) for finding in findings]
        )
        report = pytest.CollectReport("", "failed", text, [])
        session.ihook.pytest_collectreport(report=report)
        if not config.option.continue_on_collection_errors:
            items.clear()

    # Tests --------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        self._baseline = take_snapshot()
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        if self._baseline is None or fixturedef.scope == "function":
            return (yield)
        before = take_snapshot()
        try:
            return (yield)
        finally:
            self._absorb(before)
            # Finalizers run last-in first-out: this one runs just before the
            # fixture's own teardown, pytest_fixture_post_finalizer just after.
            request.addfinalizer(partial(self._note_teardown, fixturedef))

    def _note_teardown(self, fixturedef: pytest.FixtureDef[Any]) -> None:
        if self._baseline is not None:
            self._before_teardown[id(fixturedef)] = take_snapshot()

    def pytest_fixture_post_finalizer(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> None:
        before = self._before_teardown.pop(id(fixturedef), None)
        if before is not None:
            self._absorb(before)

    def _absorb(self, before: Snapshot) -> None:
        if self._baseline is not None:
            self._baseline = absorb(self._baseline, before, take_snapshot())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        failed = True
        try:
            result = yield
            failed = False
            return result
        finally:
            baseline, self._baseline = self._baseline, None
            if baseline is not None:
                leak = find_leak(baseline, take_snapshot(), self.ignore_env)
                if leak:
                    restore(baseline, leak)
                    message = describe_leak(item.nodeid, leak)
                    # A teardown that already failed keeps its own error.
                    if self.strict and not failed:
                        pytest.fail(message, pytrace=False)
                    item.warn(WorkerUtilsLeakWarning(message))
