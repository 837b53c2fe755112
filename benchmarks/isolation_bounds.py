"""Lower bounds for benchmarks/isolation.py: what a child forked later than the zygote's costs.

Loaded as a pytest plugin (``-p isolation_bounds``) by the benchmark, never by
worker_utils. ``WU_BENCH_BOUND`` picks the bound:

- ``exit``: the tests run in process; for each, the session (configured,
  started, its tests collected) also forks a child that exits at once, its
  heap frozen first as the zygote's is. The price of a fork of a pytest
  process and its end, with no work in it.
- ``collect``: the process never imports the test module. For each test it
  forks a child of the started session (heap frozen) that collects that one
  test, runs it, sends back its reports and ends its session. The cheapest design in which
  the child still loads the test module itself. It is not a faithful one:
  conftests would be loaded after every plugin was configured, and a
  conftest's ``pytest_addoption``, ``pytest_configure`` and
  ``pytest_sessionstart`` would come too late or never.
"""

from __future__ import annotations

import gc
import json
import os
from typing import IO

import pytest


class Bound:
    """Forks one child per test from the started session (see the module's docstring)."""

    def __init__(self, kind: str, count: int) -> None:
        self.kind = kind
        self.count = count
        self.out: IO[str] | None = None
        self.wanted = ""
        self.config: pytest.Config | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self) -> bool | None:
        if self.kind == "exit" or self.out is not None:
            return None  # the tests are collected here, or in a child
        return True  # never in the parent

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        config = session.config
        gc.freeze()  # as the zygote does: no child's collector walks, and copies, this heap
        for index in range(self.count):
            nodeid = f"test_trivial.py::test_{index}"
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                if self.kind == "exit":
                    os._exit(0)
                self._become_child(session, nodeid, write)
                config.hook.pytest_collection(session=session)
                return None  # pytest's loop runs the one test
            os.close(write)
            with os.fdopen(read) as reports:
                for line in reports:
                    data = json.loads(line)
                    report = config.hook.pytest_report_from_serializable(config=config, data=data)
                    config.hook.pytest_runtest_logreport(report=report)
            os.waitpid(pid, 0)
        if self.kind == "exit":
            return None  # run the tests here
        session.testscollected = self.count
        return True

    def _become_child(self, session: pytest.Session, nodeid: str, write: int) -> None:
        config = session.config
        self.out = os.fdopen(write, "w")
        self.wanted = nodeid.rpartition("::")[2]
        capture = config.pluginmanager.get_plugin("capturemanager")
        if capture is not None:  # the parent's capture files are not the child's
            capture.stop_global_capturing()
            capture.start_global_capturing()
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)
        config.args = [nodeid]
        session.testsfailed = 0  # the parent's count of the tests before

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makeitem(self, name: str) -> list[pytest.Item] | None:
        # As worker_utils' child does: no item for the module's other tests.
        if self.out is not None and name.startswith("test_") and name != self.wanted:
            return []
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.out is not None and self.config is not None:
            config = self.config
            data = config.hook.pytest_report_to_serializable(config=config, report=report)
            self.out.write(json.dumps(data) + "\n")

    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self) -> None:
        if self.out is not None:
            self.out.close()
            os._exit(0)


def pytest_configure(config: pytest.Config) -> None:
    kind = os.environ.get("WU_BENCH_BOUND")
    if kind:
        count = int(os.environ["WU_BENCH_TESTS"])
        config.pluginmanager.register(Bound(kind, count), "isolation-bound")
