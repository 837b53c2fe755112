"""The isolated process: one pytest session that runs the tests its parent names.

Its pytest starts with the parent's command line and waits, where it would
import the first conftest, for one request on its channel (the parent's
environment, directory, ``sys.path``, the worker and its resources, the node
ids); a fork of the zygote is already there. It then collects only the named
tests, runs each on command and sends back every report, warning and the phase
it is in, so that a crash is reported against the right phase; it asks the
parent for the worker's resources on the same channel. It acts as an xdist
worker of the parent's run (``config.workerinput``): plugins that write
run-wide files (JUnit XML, HTML) leave them to the parent.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import importlib
import itertools
import os
import socket
import sys
import warnings
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import pytest

from worker_utils._handover import HandoverError
from worker_utils.isolate import Channel, ChildGone

# The modules the zygote imported before pytest marked them for rewriting.
_ALREADY_IMPORTED = (
    "ignore:Module already imported so cannot be rewritten; worker_utils"
    ":pytest.PytestAssertRewriteWarning"
)
PLUGIN_NAME = "worker_utils.isolate.child"


def pytest_args(args: list[str]) -> list[str]:
    """The command line of a child's pytest, from the test process's."""
    return [*args, "-W", _ALREADY_IMPORTED]


def wanted_names(nodeids: list[str]) -> dict[str, set[str]]:
    """For each module or class on the way to ``nodeids``, the names in it to collect.

    ``a.py::TestX::test_y[1]`` wants ``TestX`` in ``a.py`` and ``test_y`` in
    ``a.py::TestX``: the child makes no item for the module's other tests.
    """
    wanted: dict[str, set[str]] = {}
    for nodeid in nodeids:
        parts = nodeid.partition("[")[0].split("::")
        for depth in range(1, len(parts)):
            wanted.setdefault("::".join(parts[:depth]), set()).add(parts[depth])
    return wanted


def serialize_warning(message: warnings.WarningMessage) -> dict[str, Any]:
    """What :func:`unserialize_warning` needs to recreate a recorded warning."""
    category = message.category
    return {
        "message": str(message.message),
        "category": [category.__module__, category.__qualname__],
        "filename": message.filename,
        "lineno": message.lineno,
    }


def unserialize_warning(data: dict[str, Any]) -> warnings.WarningMessage:
    """Recreate a warning :func:`serialize_warning` described, as the same category if it can."""
    module, name = data["category"]
    category: type[Warning] = UserWarning
    with contextlib.suppress(Exception):
        found = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
        if isinstance(found, type) and issubclass(found, Warning):
            category = found
    try:
        instance = category(data["message"])
    except Exception:
        instance = UserWarning(data["message"])
    return warnings.WarningMessage(instance, category, data["filename"], data["lineno"])


class ChildPlugin:
    """Makes this session a worker of the parent's run that runs tests on command."""

    def __init__(self, channel: Channel, request: dict[str, Any]) -> None:
        self.channel = channel
        self.nodeids: list[str] = request["nodeids"]
        self.args: list[str] = request["args"]
        #: What the worker held when this process started, by resource.
        self.held: dict[str, Any] = request.get("held") or {}
        self.workerinput: dict[str, Any] = request["workerinput"]
        self.basetemp: str | None = request["basetemp"]
        self.collect_errors: list[str] = []
        self.config: pytest.Config | None = None
        self.wanted = wanted_names(self.nodeids)

    @pytest.hookimpl(wrapper=True)
    def pytest_load_initial_conftests(self, early_config: pytest.Config) -> Generator[None]:
        # Before worker_utils' own hook, which starts a new run unless it sees a worker.
        early_config.workerinput = self.workerinput  # type: ignore[attr-defined]
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> Generator[None, object, object]:
        # What xdist does on a worker: no distribution, no debugger, the parent's tests only.
        option = config.option
        for name, value in (
            ("dist", "no"),
            ("numprocesses", None),
            ("maxprocesses", None),
            ("looponfail", False),
            ("usepdb", False),
        ):
            setattr(option, name, value)
        if self.basetemp is not None:
            option.basetemp = self.basetemp
        root = str(config.rootpath)
        config.args = [f"{root}{os.sep}{nodeid}" for nodeid in self.nodeids]
        self.config = config
        return (yield)

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        # The parent reports; this process's terminal would only bury a crash's last output.
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makeitem(
        self, collector: pytest.Module | pytest.Class, name: str
    ) -> list[pytest.Item] | None:
        # Collecting a module makes an item of each of its tests: in a child
        # that runs one of them, most of its collection.
        wanted = self.wanted.get(collector.nodeid)
        if wanted is not None and name not in wanted:
            return []  # not None: no later implementation makes it either
        return None

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(str(report.longrepr))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        items = {item.nodeid: item for item in session.items}
        self.channel.send({"ready": True, "errors": self.collect_errors})
        while True:
            try:
                command = self.channel.receive()
            except ChildGone:
                return True
            nodeid = command.get("run")
            if nodeid is None:
                return True
            item = items.get(nodeid)
            if item is None:
                self.channel.send({"missing": nodeid, "errors": self.collect_errors})
                continue
            nextitem = items.get(command.get("next") or "")
            hook = item.config.hook
            hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            back: dict[str, Any] = {}
            for found in hook.pytest_worker_utils_give_back(config=item.config):
                back.update(found or {})
            self.channel.send({"done": nodeid, "back": back})

    def pytest_worker_utils_ask(
        self, name: str, request: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        if request is None:
            found: dict[str, Any] | None = self.held.get(name)
            return found
        self.channel.send({"ask": name, "request": request})
        answer = self.channel.receive()  # the worker answers before it says anything else
        if "refused" in answer:
            raise HandoverError(answer["refused"])
        found = answer["answer"]
        return found

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self) -> None:
        self.channel.send({"phase": "setup"})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self) -> None:
        self.channel.send({"phase": "call"})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self) -> None:
        self.channel.send({"phase": "teardown"})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        assert self.config is not None
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        self.channel.send({"report": data})

    def pytest_warning_recorded(
        self,
        warning_message: warnings.WarningMessage,
        when: str,
        nodeid: str,
        location: tuple[str, int, str] | None,
    ) -> None:
        self.channel.send(
            {
                "warning": serialize_warning(warning_message),
                "when": when,
                "nodeid": nodeid,
                "location": location,
            }
        )


def _keep_captured_output(scratch: Path) -> None:
    """Make pytest's capture write to named files, which the parent reads if this process dies.

    pytest captures into anonymous temporary files that vanish with a crashed
    process; named ones keep the crashing test's output.
    """
    from _pytest import capture

    if not hasattr(capture, "TemporaryFile"):
        return  # another pytest: a crash report then shows no captured output
    counter = itertools.count(1)

    def named_file(buffering: int = -1) -> BinaryIO:
        path = scratch / f"capture-{next(counter)}"
        return open(path, "w+b", buffering=buffering)

    capture.TemporaryFile = named_file


def adopt(request: dict[str, Any]) -> None:
    """Take the test process's environment, working directory and ``sys.path``."""
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.path[:] = request["path"]


_running: list[ChildPlugin] = []


def running() -> bool:
    """Whether this process is a child that received its request."""
    return bool(_running)


def _receive(channel: Channel) -> ChildPlugin:
    """Read this child's request and set the process up for it; exit if none comes."""
    try:
        request = channel.receive()
    except ChildGone:
        exit(0)  # a spare nobody needed
    adopt(request)
    faulthandler.enable(all_threads=True)  # to fd 2: the output the parent reads
    _keep_captured_output(Path(request["scratch"]))
    if sys.dont_write_bytecode and request.get("pycache"):
        # Every child imports the same conftests and test modules: let the
        # first one cache their compiled (and assertion-rewritten) code for the
        # others, in the run's directory rather than next to the sources.
        sys.pycache_prefix = request["pycache"]
        sys.dont_write_bytecode = False
    plugin = ChildPlugin(channel, request)
    _running.append(plugin)
    return plugin


class Pause:
    """Holds pytest where it would import the first conftest until ``wait(config)`` gives a channel.

    Everything pytest did until then (plugins loaded, options and ini files
    read) is the same for every child of the test process, and none of it is
    the project's code; the rest happens once the child has its request.
    """

    def __init__(self, wait: Callable[[pytest.Config], Channel]) -> None:
        self.wait = wait

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: before capture starts
    def pytest_load_initial_conftests(self, early_config: pytest.Config) -> Generator[None]:
        plugin = _receive(self.wait(early_config))
        # The hook is under way: the child plugin's own wrapper of it will not run.
        early_config.workerinput = plugin.workerinput  # type: ignore[attr-defined]
        early_config.pluginmanager.register(plugin, PLUGIN_NAME)
        return (yield)


def serve(fd: int) -> int:
    """Read the request on channel ``fd``, run its pytest session, return the exit code."""
    channel = Channel(socket.socket(fileno=fd))
    plugin = _receive(channel)
    try:
        return int(pytest.main(pytest_args(plugin.args), plugins=[plugin]))
    finally:
        channel.close()


def main(fd: int) -> int:
    """A new interpreter's child: start pytest as the test process did, then read the request.

    The first message on channel ``fd`` names the command line, so that pytest
    gets as far as the first conftest while the test process still works on
    the test before; the request comes second.
    """
    channel = Channel(socket.socket(fileno=fd))
    try:
        spec = channel.receive()
    except ChildGone:
        return 0
    adopt(spec)
    return int(pytest.main(pytest_args(spec["args"]), plugins=[Pause(lambda config: channel)]))


def exit(code: int) -> NoReturn:
    """End a forked child as an interpreter would end, without unwinding into the zygote."""
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
