"""Fixtures and hooks of the state sandbox: ``worker_env`` and the resets of the registry."""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from worker_utils import _settings, sandbox
from worker_utils._plugin import usage_error

RESETS = _settings.Setting[list[str]](
    name="reset",
    help="Resets called after every test (of an lru_cache function, its cache_clear)",
    accepted="module:attribute or dotted paths to functions, separated by spaces or commas",
    parse=_settings.words,
    default=[],
    default_text="none",
    metavar="RESETS",
    multiple=True,
)
SETTINGS: list[_settings.Setting[Any]] = [RESETS]
_resets_key = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_settings(parser, SETTINGS)


def pytest_sessionstart(session: pytest.Session) -> None:
    # Not at configure time: the application's modules become importable once
    # the conftest files (and the paths they add) are loaded.
    __tracebackhide__ = True
    found = _settings.resolve(session.config, RESETS)
    session.config.stash[_resets_key] = found.value
    for text in found.value:
        try:
            sandbox.register_reset(sandbox.resolve_reset(text, setting=RESETS.ini), name=text)
        except sandbox.ResetError as exc:
            usage_error(exc)


def pytest_unconfigure(config: pytest.Config) -> None:
    for text in config.stash.get(_resets_key, []):
        sandbox.unregister_reset(text)


def _scope_node(item: pytest.Item, scope: str) -> object:
    """The node whose last test ends ``scope``, as for pytest's own fixtures of that scope."""
    if scope == "class":
        return item.getparent(pytest.Class) or item.getparent(pytest.Module)
    if scope == "module":
        return item.getparent(pytest.Module)
    return item.getparent(pytest.Package)


def _ended_scopes(item: pytest.Item, nextitem: pytest.Item | None) -> set[str]:
    """The scopes that end with ``item``: the next test is outside them."""
    ended = {"function"}
    for scope in ("class", "module", "package"):
        if nextitem is None or _scope_node(item, scope) is not _scope_node(nextitem, scope):
            ended.add(scope)
    return ended


def _call_resets(scopes: set[str]) -> list[str]:
    """Call the resets of ``scopes``, every one even if some raise; return the failures."""
    failures = []
    for reset in sandbox.registered_resets():
        if reset.scope in scopes:
            try:
                reset.function()
            except Exception as exc:
                failures.append(f"worker_utils reset {reset.name!r} raised {exc!r}")
    return failures


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    __tracebackhide__ = True
    failed = True
    try:
        result = yield
        failed = False
        return result
    finally:
        # After the test's fixtures are torn down: they may still use the singletons.
        failures = _call_resets(_ended_scopes(item, nextitem))
        if failures and not failed:  # a teardown that already failed keeps its own error
            pytest.fail("; ".join(failures), pytrace=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    for failure in _call_resets({"session"}):
        sys.stderr.write(f"{failure}\n")


@pytest.fixture
def worker_env() -> Iterator[sandbox.EnvSandbox]:
    """A mapping of environment variables; after the test the process state is put back exactly.

    ``worker_env["MYAPP_MODE"] = "test"``, ``del worker_env["HOME"]``,
    ``worker_env.chdir(path)``, ``worker_env.syspath_prepend(path)``. Unlike
    ``monkeypatch``, the restore covers every change to ``os.environ``, the
    working directory and ``sys.path`` made during the test, by the test or by
    the code under test, not only those that went through the fixture.
    """
    state = sandbox.EnvSandbox()
    yield state
    state.restore()
