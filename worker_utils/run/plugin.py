"""Fixtures of the run: temp directories and ``run_once``; the setting of the run's summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from worker_utils import _settings
from worker_utils._plugin import fail, get_run, summary_key
from worker_utils.run import coordination, paths

T = TypeVar("T")

SUMMARY_CHOICES = ("auto", "off", "short", "table")
SUMMARY = _settings.Setting[str](
    name="summary",
    help="What the run prints at the end about each worker's resources and the servers "
    "(auto: short with -v, nothing otherwise; table: a row per worker, a column per kind "
    "of resource the run used)",
    accepted=_settings.one_of(SUMMARY_CHOICES),
    parse=_settings.choice(SUMMARY_CHOICES),
    default="auto",
    metavar="FORM",
)
SETTINGS: list[_settings.Setting[Any]] = [SUMMARY]


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_settings(parser, SETTINGS)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[summary_key] = _settings.resolve(config, SUMMARY).value


def pytest_sessionfinish(session: pytest.Session) -> None:
    get_run(session.config).report.plan("tmp", str(paths.worker_dir()))


@pytest.fixture(scope="session")
def worker_tmp_path(request: pytest.FixtureRequest) -> Path:
    """A directory private to this worker in this run, removed when the run ends.

    A worker that replaces a crashed one gets a new directory.
    """
    path = paths.worker_tmp_path()
    get_run(request.config).report.note("tmp", str(path))
    return path


@pytest.fixture(scope="session")
def run_tmp_path() -> Path:
    """A directory shared by every worker of this run, and only this run.

    Removed when the run ends; two concurrent runs never share it.
    """
    return paths.run_tmp_path()


class RunOnce:
    """Callable behind the ``run_once`` fixture."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def __call__(
        self,
        key: str,
        compute: Callable[[], T],
        *,
        teardown: Callable[[Any], object] | None = None,
        timeout: float = 600.0,
    ) -> T:
        """Compute ``compute()`` once per run and share it; see :func:`worker_utils.run_once`."""
        __tracebackhide__ = True
        try:
            return coordination.run_once(
                key, compute, teardown=teardown, run_dir=self._directory, timeout=timeout
            )
        except coordination.RunOnceError as exc:
            fail(exc)


@pytest.fixture(scope="session")
def run_once(request: pytest.FixtureRequest) -> RunOnce:
    """Run expensive setup once per run and share its JSON-serialisable result.

    ``run_once("schema", build, teardown=drop)``: the first worker to arrive
    calls ``build()`` under a file lock; every other worker of the run gets the
    stored value. ``drop(value)`` runs once, after the last worker ends. Works the
    same with ``-n 0``, ``-n 2`` and ``-p no:xdist``.
    """
    return RunOnce(get_run(request.config).directory)
