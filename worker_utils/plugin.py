"""The pytest plugin: the run's lifecycle, and the resource plugins it registers.

Registered by the ``pytest11`` entry point (:mod:`worker_utils._entry`, named
``worker_utils``) under this module's name. The run (its id, directory and
liveness lock) is started here in the process that owns it and handed to xdist
workers through ``workerinput``. Each resource lives in its own package, whose
``plugin`` module holds its options, settings, hooks and fixtures; they are
registered from :data:`pytest_plugins`, and ``-p no:worker_utils.redis.plugin``
(and so on) switches one off.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import uuid
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import pytest

from worker_utils import _export, _handover, _settings, _worker
from worker_utils._plugin import Run, fail, run_key, summary_key, usage_error
from worker_utils._report import WorkerReport, summary_lines
from worker_utils.errors import WorkerUtilsError
from worker_utils.run import _run_fixtures, _signals, coordination

#: The resource plugins, in the order their options appear in ``pytest --help``.
pytest_plugins = [
    "worker_utils.run.plugin",
    "worker_utils.ports.plugin",
    "worker_utils.servers.plugin",
    "worker_utils.postgres.plugin",
    "worker_utils.redis.plugin",
    "worker_utils.sqlite.plugin",
    "worker_utils.sandbox.plugin",
    "worker_utils.guard.plugin",
    "worker_utils.isolate.plugin",
]

_RUN_DIR_INPUT = "worker_utils_run_dir"
_REPORT_OUTPUT = "worker_utils_report"
_sigterm_key = pytest.StashKey[_signals.SigtermAsInterrupt]()
_session_key = pytest.StashKey[pytest.Session]()
#: A teardown of the run failed: the run fails, as with a failing fixture teardown.
_teardown_failed_key = pytest.StashKey[bool]()


def resource_plugins() -> list[ModuleType]:
    """Return the resource plugin modules, each followed by the modules it registers."""
    found: list[ModuleType] = []
    for name in pytest_plugins:
        module = importlib.import_module(name)
        found.append(module)
        found.extend(importlib.import_module(sub) for sub in getattr(module, "pytest_plugins", ()))
    return found


def _register(manager: pytest.PytestPluginManager, names: list[str]) -> None:
    """Register the plugin modules ``names`` under their names, as ``pytest_plugins`` would.

    pytest resolves each name of a ``pytest_plugins`` list by first reading the
    entry points of every installed distribution: a few milliseconds a name, in
    every process of a run, xdist workers included. A module registered here
    first is found registered when pytest reads the list. A blocked name
    (``-p no:NAME``) is left out, as pytest leaves it out.
    """
    for name in names:
        if not (manager.is_blocked(name) or manager.get_plugin(name) is not None):
            manager.register(importlib.import_module(name), name)


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    # Called before pytest reads the module's pytest_plugins: see _register().
    if isinstance(plugin, ModuleType) and plugin.__name__.startswith(f"{__package__}."):
        _register(manager, getattr(plugin, "pytest_plugins", []))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("worker_utils", f"worker_utils: per-worker resources ({_settings.ORDER})")


def _check_contract() -> None:
    __tracebackhide__ = True
    try:
        _worker.get_worker_id()
        _worker.get_worker_count()
        _worker.get_testrun_uid()
    except _worker.WorkerContractError as exc:
        usage_error(exc)


def _start_run(config: pytest.Config, given_uid: str | None) -> Run:
    """Start the run in the process that owns it: id, directory, liveness lock, environment."""
    __tracebackhide__ = True
    uid = given_uid or uuid.uuid4().hex
    try:
        _worker.get_testrun_uid({_worker.RUN_VAR: uid})
    except _worker.WorkerContractError as exc:
        usage_error(f"--testrunuid: {exc}")
    coordination.reap_dead_runs()
    lock = coordination.RunLock(uid)
    try:
        run = Run(uid, lock.acquire(), lock)
    except WorkerUtilsError as exc:
        usage_error(exc)
    sigterm = _signals.SigtermAsInterrupt(
        lambda: _signals.signal_workers(run.directory, signal.SIGTERM), sigint="repeat"
    )
    sigterm.install()
    config.stash[_sigterm_key] = sigterm
    # Variables inherited from an outer pytest (this run started inside a
    # worker of another) would make the helpers report that outer worker.
    for name in (_worker.WORKER_VAR, _worker.COUNT_VAR, _worker.XDIST_RUN_VAR):
        run.set_env(name, None)
    run.set_env(_worker.RUN_VAR, uid)
    run.set_env(coordination.RUN_DIR_VAR, str(run.directory))
    return run


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(_export)
    pluginmanager.add_hookspecs(_handover)


def _starting_xdist_worker() -> bool:
    """Whether this process is an xdist worker parsing its config: xdist's bootstrap calls us.

    The ``PYTEST_XDIST_*`` variables alone cannot tell: a pytest started by a
    test of a worker inherits them. xdist runs its worker code through execnet
    as the module ``__channelexec__``, which is on the stack while the worker's
    config is parsed, before ``config.workerinput`` exists; it holds the
    ``workerinput`` it received and no ``config`` yet (a pytest run in-process
    by a test of a worker finds one that has both).
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        found = frame.f_globals
        if found.get("__name__") == "__channelexec__":
            workerinput = found.get("workerinput")
            return (
                isinstance(workerinput, dict)
                and "config" not in found
                and workerinput.get("testrunuid") == os.environ.get(_worker.XDIST_RUN_VAR)
            )
        frame = frame.f_back
    return False


def _is_controller(early_config: pytest.Config) -> bool:
    """Whether this process is an xdist controller, which runs no tests itself."""
    known = early_config.known_args_namespace
    if early_config.stash[run_key].lock is None:
        return False  # an xdist worker
    xdist = early_config.pluginmanager.hasplugin("xdist")
    return bool(xdist and (getattr(known, "numprocesses", None) or getattr(known, "tx", None)))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # pytest imports the first conftest.py files before pytest_configure: start
    # (or, in an xdist worker, join) the run now, so that helpers called at their
    # import time see this run, and export the worker's variables before them.
    if hasattr(early_config, "workerinput"):
        return  # an isolated process, which learns its run from workerinput
    _check_contract()
    uid = os.environ.get(_worker.XDIST_RUN_VAR)
    if uid and _starting_xdist_worker():
        run = Run(uid, coordination.run_dir_for(uid), lock=None)
    else:  # a run of its own, even if it inherited a worker's variables
        given = getattr(early_config.known_args_namespace, "testrunuid", None)
        run = _start_run(early_config, given)
    early_config.stash[run_key] = run
    # pytest_unconfigure never runs if pytest stops before pytest_configure (a usage
    # error in an early hook); the cleanups do, after it.
    early_config.add_cleanup(functools.partial(_end_run, early_config))
    known = early_config.known_args_namespace
    if not (getattr(known, "help", False) or getattr(known, "version", False)):
        early_config.hook.pytest_worker_utils_export(
            config=early_config, run=run, controller=_is_controller(early_config)
        )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    _check_contract()
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    run = config.stash.get(run_key, None)
    if workerinput is not None:
        uid = workerinput["testrunuid"]
        if run is None or run.uid != uid:
            run = Run(uid, Path(workerinput[_RUN_DIR_INPUT]), lock=None)
        run.set_env(_worker.RUN_VAR, uid)
        run.set_env(coordination.RUN_DIR_VAR, str(run.directory))
        _signals.register_worker(run.directory)
        config.stash[_sigterm_key] = _signals.SigtermAsInterrupt(sigint="once")
        config.stash[_sigterm_key].install()
    elif run is None:
        run = _start_run(config, getattr(config.option, "testrunuid", None))
    if workerinput is None and config.pluginmanager.hasplugin("xdist"):
        config.option.testrunuid = run.uid  # xdist hands this id to the workers
    if run.report.worker != _worker.get_worker_id():  # made before inherited variables went
        run.report = WorkerReport(_worker.get_worker_id())
    config.stash[run_key] = run
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(run), "worker_utils.xdist")
    # Registered after every installed plugin: its fixture is the one tests get.
    config.pluginmanager.register(_run_fixtures, "worker_utils.run_fixtures")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    _end_run(config)
    session = config.stash.get(_session_key, None)
    failed = config.stash.get(_teardown_failed_key, False)
    if failed and session is not None and session.exitstatus == pytest.ExitCode.OK:
        # As a failing fixture teardown does: pytest returns the status after this hook.
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _end_run(config: pytest.Config) -> None:
    """Run the teardowns, release the lock, put the environment back: once, however pytest ends."""
    run = config.stash.get(run_key, None)
    if run is None:
        return
    if run.lock is not None:
        for failure in coordination.run_teardowns(run.directory):
            sys.stderr.write(f"worker_utils: {failure}\n")
            config.stash[_teardown_failed_key] = True
        run.lock.release()
    sigterm = config.stash.get(_sigterm_key, None)
    if sigterm is not None:
        sigterm.restore()
    run.restore_env()
    del config.stash[run_key]


class _XdistHooks:
    """Hooks that exist only when pytest-xdist is installed and active."""

    def __init__(self, run: Run) -> None:
        self.run = run

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_RUN_DIR_INPUT] = str(self.run.directory)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", None) or {}
        report = output.get(_REPORT_OUTPUT)
        if report is not None:
            self.run.worker_reports[report["worker"]] = report


@pytest.hookimpl(trylast=True)  # after the resource plugins planned what this worker gets
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # The application reads the exported variables whether a test asks for a fixture or not.
    __tracebackhide__ = True
    failure = _export.failures(item.config)
    if failure is not None:
        fail(failure)


@pytest.hookimpl
def pytest_worker_utils_before_isolated(item: pytest.Item) -> str | None:
    # The exported variables name nothing: the isolated test fails as one here would.
    return _export.failures(item.config)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_session_key] = session


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(run_key, None)
    workeroutput = getattr(session.config, "workeroutput", None)
    if run is not None and workeroutput is not None:
        workeroutput[_REPORT_OUTPUT] = run.report.as_dict()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    run = config.stash.get(run_key, None)
    if run is None:
        return
    form = config.stash.get(summary_key, "auto")
    if form == "auto":
        form = "short" if config.get_verbosity() > 0 else "off"
    if form == "off":
        return
    reports = run.worker_reports or {run.report.worker: run.report.as_dict()}
    for line in summary_lines(reports, table=form == "table"):
        terminalreporter.write_line(line)
