"""The ``isolated`` marker and settings: chosen tests run each in a fresh interpreter.

The test process (an xdist worker, or the only process under ``-n 0``) hands
an isolated test to a child started by :class:`worker_utils.isolate.Launcher`,
relays the reports the child sends as if it had run the test itself, and turns
a child that crashed or hung into a failure of that test.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

import pytest

from worker_utils import _handover, _settings, isolate
from worker_utils._plugin import get_run, usage_error
from worker_utils.errors import WorkerUtilsError
from worker_utils.isolate import Child, ChildGone, IsolateError, Launcher

_MARKER = "isolated"
_SCOPES = ("function", "class", "module")
_PLUGIN = "worker_utils.isolate"

PATTERNS = _settings.Setting[list[str]](
    name="isolate",
    help="Tests to run each in a fresh interpreter",
    accepted="node-id globs or paths separated by spaces or commas, such as tests/native/",
    parse=_settings.words,
    default=[],
    default_text="none",
    metavar="PATTERNS",
    multiple=True,
)
TIMEOUT = _settings.Setting[float](
    name="isolate_timeout",
    help="Seconds an isolated test may run before its process is ended",
    accepted="a number of seconds greater than 0, such as 300",
    parse=isolate.parse_timeout,
    default=300.0,
    default_text="300",
    metavar="SECONDS",
)
START = _settings.Setting[isolate.StartMethod](
    name="isolate_start",
    help="How isolated processes start",
    accepted="zygote, pool or spawn",
    parse=isolate.parse_start_method,
    default=isolate.default_start_method(),
    default_text="zygote on Linux, else pool",
    metavar="METHOD",
)
SETTINGS: list[_settings.Setting[Any]] = [PATTERNS, TIMEOUT, START]


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_settings(parser, SETTINGS)


class _IsolateSettings:
    """Which tests run isolated, for how long at most, and how their processes start."""

    def __init__(self, config: pytest.Config) -> None:
        __tracebackhide__ = True
        self.patterns: list[str] = _settings.resolve(config, PATTERNS).value
        found = _settings.resolve(config, TIMEOUT)
        self.timeout: float = found.value
        self.timeout_setting = found.where or f"{TIMEOUT.ini} (default 300)"
        self.start = _settings.resolve(config, START).value


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(scope='function', timeout=None): run this test in a fresh interpreter; "
        "scope='module' or 'class' shares one interpreter among the group's isolated tests",
    )
    settings = _IsolateSettings(config)
    if not _handover.isolated(config):
        config.pluginmanager.register(_Isolation(config, settings), _PLUGIN)


def _plan(item: pytest.Item, settings: _IsolateSettings) -> tuple[str, float, str] | None:
    """The scope, time limit and its setting of an isolated test; None for others."""
    marker = item.get_closest_marker(_MARKER)
    if marker is None:
        if isolate.selects(settings.patterns, item.nodeid):
            return "function", settings.timeout, settings.timeout_setting
        return None
    scope = marker.kwargs.get("scope", marker.args[0] if marker.args else "function")
    timeout = marker.kwargs.get("timeout")
    if timeout is None:
        return scope, settings.timeout, settings.timeout_setting
    return scope, timeout, f"@pytest.mark.isolated(timeout={timeout!r})"


def _check_marker(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker(_MARKER)
    if marker is None:
        return None
    unknown = sorted(set(marker.kwargs) - {"scope", "timeout"})
    if unknown or len(marker.args) > 1:
        return f"takes scope and timeout only; found {marker}"
    scope = marker.kwargs.get("scope", marker.args[0] if marker.args else "function")
    if scope not in _SCOPES:
        return f"found scope={scope!r}; expected function, class or module"
    timeout = marker.kwargs.get("timeout")
    if timeout is not None:
        try:
            isolate.parse_timeout(str(timeout))
        except ValueError:
            return f"found timeout={timeout!r}; expected a number of seconds greater than 0"
    return None


def _group_key(item: pytest.Item, scope: str) -> str:
    if scope == "module":
        node: Any = item.getparent(pytest.Module)
    elif scope == "class":
        node = item.getparent(pytest.Class) or item.getparent(pytest.Module)
    else:
        node = item
    return f"{scope}:{node.nodeid if node is not None else item.nodeid}"


def _jsonable(mapping: dict[str, Any]) -> dict[str, Any]:
    found = {}
    for key, value in mapping.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        found[key] = value
    return found


class _Isolation:
    """Runs the isolated tests of this process in children, one group at a time."""

    def __init__(self, config: pytest.Config, settings: _IsolateSettings) -> None:
        self.config = config
        self.settings = settings
        self.launcher: Launcher | None = None
        self.child: Child | None = None
        self.group = ""
        self.members: dict[str, list[str]] = {}
        self.count = 0
        self.finishing: list[Child] = []  # stopped children still ending their session

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        __tracebackhide__ = True
        for item in items:
            problem = _check_marker(item)
            if problem is not None:
                usage_error(f"{item.nodeid}: @pytest.mark.{_MARKER}: {problem}")
        self.members.clear()
        for item in items:
            plan = _plan(item, self.settings)
            if plan is not None:
                self.members.setdefault(_group_key(item, plan[0]), []).append(item.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> bool | None:
        plan = _plan(item, self.settings)
        if plan is None:
            return None  # not ours: pytest runs it in this process
        scope, timeout, timeout_setting = plan
        key = _group_key(item, scope)
        next_plan = None if nextitem is None else _plan(nextitem, self.settings)
        stays = next_plan is not None and _group_key(nextitem, next_plan[0]) == key  # type: ignore[arg-type]
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        try:
            self._run(item, key, nextitem.nodeid if stays else None, timeout, timeout_setting)  # type: ignore[union-attr]
        except BaseException:
            self._stop(kill=True)  # Ctrl-C, or a bug of ours: never leave a child behind
            raise
        if not stays:
            self._stop()
        self._teardown_here(item, nextitem)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def _request(self, nodeids: list[str]) -> dict[str, Any]:
        config = self.config
        run = get_run(config)
        workerinput = _jsonable(dict(getattr(config, "workerinput", None) or {}))
        workerinput.setdefault("workerid", "master")
        workerinput.setdefault("workercount", 1)
        workerinput.setdefault("mainargv", sys.argv)
        workerinput.update(
            {
                "testrunuid": run.uid,
                "worker_utils_run_dir": str(run.directory),
                _handover.ISOLATED_INPUT: True,
            }
        )
        basetemp = None
        factory = getattr(config, "_tmp_path_factory", None)  # as xdist hands it to workers
        if factory is not None:
            self.count += 1
            basetemp = str(factory.getbasetemp() / f"isolated-{self.count}")
        held: dict[str, Any] = {}
        for found in config.hook.pytest_worker_utils_held(config=config):
            held.update(found or {})
        return {
            "env": dict(os.environ),
            "cwd": str(config.invocation_params.dir),
            "path": list(sys.path),
            "args": [str(arg) for arg in config.invocation_params.args],
            "rootdir": str(config.rootpath),
            "pycache": str(run.directory / "isolate" / "pycache"),
            "nodeids": nodeids,
            "workerinput": workerinput,
            "basetemp": basetemp,
            "held": held,
        }

    def _start(self, key: str) -> Child:
        if self.launcher is None:
            scratch = get_run(self.config).directory / "isolate" / f"{os.getpid()}"
            self.launcher = Launcher(self.settings.start, scratch)
        child = self.launcher.start(self._request(self.members[key]))
        if self.launcher.plain_reason is not None:
            get_run(self.config).report.note(
                "isolate",
                f"each isolated process starts pytest itself: {self.launcher.plain_reason}",
            )
        self.child, self.group = child, key
        return child

    def _next(self, child: Child, deadline: float) -> dict[str, Any]:
        """The child's next message; a question for this worker is answered on the way."""
        while True:
            message = child.channel.receive(max(0.0, deadline - time.monotonic()))
            if "ask" not in message:
                return message
            child.channel.send(self._provide(message["ask"], message["request"]))

    def _provide(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self.config.hook.pytest_worker_utils_provide(
                config=self.config, name=name, request=request
            )
        except WorkerUtilsError as exc:
            return {"refused": str(exc)}
        except Exception as exc:  # a bug of ours: the isolated test fails with it, not the run
            return {"refused": f"worker_utils: providing {name} failed: {exc!r}"}
        return {"answer": answer}

    def _run(
        self, item: pytest.Item, key: str, nextid: str | None, timeout: float, setting: str
    ) -> None:
        if self.child is not None and self.group != key:
            self._stop()
        start = time.time()
        problems = [p for p in self.config.hook.pytest_worker_utils_before_isolated(item=item) if p]
        if problems:
            self._undo(item, {}, self._fail(item, "setup", start, "\n".join(problems)))
            return
        state: dict[str, Any] = {}
        teardown: list[pytest.TestReport] = []  # logged once the worker has undone the test
        try:
            state = self._exchange(item, key, nextid, timeout, setting, start, teardown)
        finally:
            self._undo(item, state, teardown)

    def _exchange(
        self,
        item: pytest.Item,
        key: str,
        nextid: str | None,
        timeout: float,
        setting: str,
        start: float,
        teardown: list[pytest.TestReport],
    ) -> dict[str, Any]:
        """Have the child run ``item``, relay its reports; return what it says of the resources."""
        phase = "setup"
        deadline = time.monotonic() + timeout
        child = self.child
        try:
            if child is None:
                child = self._start(key)
                self._next(child, deadline)  # collected: "ready"
            child.channel.send({"run": item.nodeid, "next": nextid})
            while True:
                message = self._next(child, deadline)
                if "report" in message:
                    report = self.config.hook.pytest_report_from_serializable(
                        config=self.config, data=message["report"]
                    )
                    # JSON has no tuples; pytest tells a skip by its tuple longrepr.
                    if isinstance(report.longrepr, list):
                        report.longrepr = tuple(report.longrepr)
                    report.sections = [tuple(section) for section in report.sections]
                    report.user_properties = [tuple(p) for p in report.user_properties]
                    if report.when == "teardown":
                        teardown.append(report)
                    else:
                        item.ihook.pytest_runtest_logreport(report=report)
                elif "phase" in message:
                    phase = message["phase"]
                elif "warning" in message:
                    self._warn(message)
                elif "missing" in message:
                    errors = "\n".join(message["errors"])
                    teardown += self._fail(
                        item,
                        "setup",
                        start,
                        f"worker_utils.isolate: the isolated process did not collect "
                        f"{item.nodeid}\n{errors}".rstrip(),
                    )
                    return {}
                elif "done" in message:
                    back: dict[str, Any] = message["back"]
                    return back
        except TimeoutError:
            assert child is not None
            self.child = None
            child.abort()
            teardown[:] = self._fail(
                item,
                phase,
                start,
                f"worker_utils.isolate: {item.nodeid} ran longer than {timeout:g} s, the limit "
                f"of {setting}; its process was ended. Stacks of its threads:\n"
                + _last_fatal_error(child),
                child,
            )
            child.close()
        except ChildGone:
            assert child is not None
            self.child = None
            returncode = child.wait(5.0)
            if returncode is None:
                child.kill()
                returncode = child.wait(5.0)
            teardown[:] = self._fail(
                item,
                phase,
                start,
                f"worker_utils.isolate: the isolated process running {item.nodeid} "
                f"{isolate.describe_exit(returncode)} during {phase}\n"
                "--- last output of the isolated process ---\n"
                + isolate.trim_stacks(child.output_tail()),
                child,
            )
            child.close()
        except IsolateError as exc:
            teardown[:] = self._fail(item, "setup", start, str(exc))
        return {}

    def _undo(
        self, item: pytest.Item, state: dict[str, Any], teardown: list[pytest.TestReport]
    ) -> None:
        """Undo the test's changes to this worker's resources, then log its teardown.

        As the autouse fixtures do in process: warnings are the test's, and an
        error fails its teardown.
        """
        with _catch_warnings(item):
            try:
                found = item.config.hook.pytest_worker_utils_after_isolated(item=item, state=state)
                problems = [problem for problem in found if problem]
            except Exception as exc:  # -W error made a warning of the reset an error
                problems = [f"{type(exc).__name__}: {exc}"]
        if problems:
            text = "\n".join(problems)
            if not teardown:
                teardown += self._fail(item, "teardown", time.time(), text)
            elif teardown[-1].passed:
                teardown[-1].outcome = "failed"
                teardown[-1].longrepr = text
            else:
                teardown[-1].sections.append(("worker_utils", text))
        for report in teardown:
            item.ihook.pytest_runtest_logreport(report=report)

    def _fail(
        self,
        item: pytest.Item,
        phase: str,
        start: float,
        text: str,
        child: Child | None = None,
    ) -> list[pytest.TestReport]:
        """Report ``item`` failed in ``phase``; return its teardown report, logged later."""
        sections = []
        if child is not None:
            names = ("stdout", "stderr")
            for index, captured in enumerate(child.captured()):
                name = names[index] if index < len(names) else "output"
                sections.append((f"Captured {name} {phase}", captured))
        stop = time.time()
        keywords: dict[str, Any] = {name: 1 for name in item.keywords}
        reports = []
        for when, outcome, longrepr in ((phase, "failed", text), ("teardown", "passed", None)):
            if when == "teardown" and outcome == "passed" and phase == "teardown":
                break
            reports.append(
                pytest.TestReport(
                    item.nodeid,
                    item.location,
                    keywords,
                    outcome,  # type: ignore[arg-type]
                    longrepr,
                    when,  # type: ignore[arg-type]
                    sections=sections if outcome == "failed" else (),
                    duration=stop - start if outcome == "failed" else 0.0,
                    start=start,
                    stop=stop,
                    user_properties=item.user_properties,
                )
            )
        if reports[0].when != "teardown":
            item.ihook.pytest_runtest_logreport(report=reports.pop(0))
        return reports

    def _warn(self, message: dict[str, Any]) -> None:
        from worker_utils.isolate._child import unserialize_warning

        location = message["location"]
        self.config.hook.pytest_warning_recorded.call_historic(
            kwargs={
                "warning_message": unserialize_warning(message["warning"]),
                "when": message["when"],
                "nodeid": message["nodeid"],
                "location": tuple(location) if location else None,
            }
        )

    def _teardown_here(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        # The last in-process test kept its module's fixtures for this one, which
        # never used them here; tear down what the next test does not need, as
        # pytest's own teardown would, so that the next setup finds a clean stack.
        state = getattr(item.session, "_setupstate", None)
        if state is None:
            return
        call = pytest.CallInfo.from_call(lambda: state.teardown_exact(nextitem), when="teardown")
        if call.excinfo is not None:
            report = item.ihook.pytest_runtest_makereport(item=item, call=call)
            item.ihook.pytest_runtest_logreport(report=report)

    def _stop(self, *, kill: bool = False) -> None:
        child, self.child, self.group = self.child, None, ""
        if child is not None:
            if kill:
                child.abort()
                child.close()
                return
            with contextlib.suppress(ChildGone):
                child.channel.send({"stop": True})
            # Its tests are reported: let it finish its session while the next test runs.
            self.finishing.append(child)
        self._reap(0.0)

    def _reap(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for child in list(self.finishing):
            if child.wait(max(0.0, deadline - time.monotonic())) is None:
                if timeout == 0.0:
                    continue
                child.abort()
            self.finishing.remove(child)
            child.close()

    def pytest_sessionfinish(self) -> None:
        self._stop()
        self._reap(self.settings.timeout)
        if self.launcher is not None:
            self.launcher.close()
            self.launcher = None

    def pytest_unconfigure(self) -> None:
        self.pytest_sessionfinish()


def _catch_warnings(item: pytest.Item) -> contextlib.AbstractContextManager[object]:
    """Record warnings as the test's, under its filters and marks, as pytest does around it."""
    try:
        from _pytest.warnings import catch_warnings_for_item
    except ImportError:  # another pytest: the warnings show as the run's, unfiltered
        return contextlib.nullcontext()
    return catch_warnings_for_item(item.config, ihook=item.ihook, when="runtest", item=item)


def _last_fatal_error(child: Child) -> str:
    """The stacks faulthandler wrote when the child was aborted, else its last output."""
    try:
        text = child.output.read_text(errors="replace")
    except OSError:
        return ""
    start = text.rfind("Fatal Python error")
    return isolate.trim_stacks(text[start:].rstrip() if start >= 0 else child.output_tail())
