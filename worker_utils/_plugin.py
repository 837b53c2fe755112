"""What every resource plugin shares: the run's state and failures.

The entry point (:mod:`worker_utils.plugin`) creates the :class:`Run` in the
process that owns the run, or from ``workerinput`` in an xdist worker, and puts
it in the config's stash; resource plugins read it with :func:`get_run`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from worker_utils import _worker
from worker_utils._report import WorkerReport
from worker_utils.run import coordination


class Run:
    """What this process knows about the run it belongs to."""

    def __init__(self, uid: str, directory: Path, lock: coordination.RunLock | None) -> None:
        self.uid = uid
        self.directory = directory
        self.lock = lock  # held only by the process that owns the run
        self.saved_env: dict[str, str | None] = {}
        self.report = WorkerReport(_worker.get_worker_id())
        self.worker_reports: dict[str, dict[str, Any]] = {}

    def set_env(self, name: str, value: str | None) -> None:
        """Set (or with None, remove) ``os.environ[name]`` until the run ends."""
        self.saved_env.setdefault(name, os.environ.get(name))
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def restore_env(self) -> None:
        """Put back every variable :meth:`set_env` changed."""
        for name, value in self.saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self.saved_env.clear()


run_key = pytest.StashKey[Run]()
#: The form of the run's summary (the ``worker_utils_summary`` setting).
summary_key = pytest.StashKey[str]()


def get_run(config: pytest.Config) -> Run:
    """Return the run this process belongs to."""
    return config.stash[run_key]


_T = TypeVar("_T")


def pop_stash(config: pytest.Config, key: pytest.StashKey[_T]) -> _T | None:
    """Remove and return what ``key`` holds in the config's stash; None if it holds nothing.

    For what must be closed once, by a fixture's teardown or, when only an
    isolated process asked for it, at the end of the session.
    """
    value = config.stash.get(key, None)
    if value is not None:
        del config.stash[key]
    return value


def fail(error: BaseException | str) -> NoReturn:
    """Fail the current test with ``error`` on one line, without a traceback."""
    __tracebackhide__ = True
    # `from None`: called in an except block, the failure would print that context too.
    raise pytest.fail.Exception(str(error), pytrace=False) from None


def usage_error(error: BaseException | str) -> NoReturn:
    """Stop pytest before any test runs with ``error`` as a usage error."""
    __tracebackhide__ = True
    raise pytest.UsageError(str(error)) from None
