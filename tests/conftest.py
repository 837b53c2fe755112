"""Fixtures for tests that run inner pytest sessions: records they write, settings they get."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from worker_utils import plugin
from worker_utils._settings import Setting

RECORD_DIR_VAR = "WU_TEST_RECORD_DIR"

# Inner test files call this to record what a test saw; the outer test reads it.
RECORD_SNIPPET = """
import json, os, uuid
from pathlib import Path

def record(**data):
    directory = Path(os.environ["WU_TEST_RECORD_DIR"])
    # Written, then renamed: a test that reads records while the run goes on never
    # reads one half written.
    name = uuid.uuid4().hex
    (directory / f".{name}").write_text(json.dumps(data))
    (directory / f".{name}").rename(directory / f"{name}.json")
"""

# A conftest for each of two concurrent inner runs of two workers each: every worker
# waits for the other three before its first test, and fails if they never come, so
# the two runs surely overlap. Format it with the directory, shared by both runs,
# where the workers check in.
BOTH_RUNS_STARTED = """
import os, time
from pathlib import Path
import pytest

@pytest.fixture(scope="session", autouse=True)
def both_runs_started():
    started = Path({!r})
    started.mkdir(exist_ok=True)
    (started / str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(started.iterdir())) < 4:
        assert time.monotonic() < deadline, "the other run's workers never started"
        time.sleep(0.05)
"""


#: What inner runs skip: anyio's pytest plugin, which no test uses and which costs every
#: interpreter (an inner run's and each of its workers') about 0.07 s of CPU.
INNER_ADDOPTS = "-p no:anyio"


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's ``pytester``, whose inner runs skip the plugins in :data:`INNER_ADDOPTS`.

    pytester drops ``PYTEST_ADDOPTS`` so that the outer run's options stay out of inner
    runs; this gives them only these.
    """
    monkeypatch.setenv("PYTEST_ADDOPTS", INNER_ADDOPTS)
    return pytester


@pytest.fixture
def record_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory inner runs write records to, passed through the environment."""
    directory = tmp_path / "records"
    directory.mkdir()
    monkeypatch.setenv(RECORD_DIR_VAR, str(directory))
    return directory


@pytest.fixture
def read_records(record_dir: Path) -> Callable[[], list[dict[str, Any]]]:
    """Return a function that reads every record the inner runs wrote."""

    def read() -> list[dict[str, Any]]:
        return [json.loads(path.read_text()) for path in sorted(record_dir.glob("*.json"))]

    return read


#: Where a setting can be given, in the order of precedence.
SOURCES = ("option", "env", "ini")
#: Sources given at once, for the tests of precedence; the first one wins.
PRECEDENCE = [("option", "env", "ini"), ("env", "ini"), ("ini",), ()]


class Given:
    """Gives settings to an inner run from the command line, the environment or the ini file."""

    def __init__(self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pytester = pytester
        self.monkeypatch = monkeypatch
        self.args: list[str] = []
        self.ini: list[str] = []
        for setting in all_settings():  # none leaks in from the environment of this run
            monkeypatch.delenv(setting.env, raising=False)

    def __call__(self, setting: Setting[Any], text: str, source: str) -> str:
        """Give ``setting`` the value ``text`` from ``source``; return how errors name it."""
        if source == "option":
            self.args.append(f"{setting.option}={text}")
            return setting.option
        if source == "env":
            self.monkeypatch.setenv(setting.env, text)
            return setting.env
        self.ini.append(f"{setting.ini} = {text}")
        return "tox.ini"  # what pytester.makeini writes

    def each(
        self, setting: Setting[Any], texts: dict[str, str], sources: tuple[str, ...]
    ) -> str | None:
        """Give ``setting`` ``texts[source]`` from each of ``sources``; return the winner's text."""
        for source in sources:
            self(setting, texts[source], source)
        return texts[sources[0]] if sources else None

    def run(self, *args: str) -> pytest.RunResult:
        """Run pytest in this process with the settings given so far."""
        if self.ini:
            self.pytester.makeini("[pytest]\n" + "\n".join(self.ini) + "\n")
        return self.pytester.runpytest("-p", "no:randomly", "-s", *self.args, *args)

    def shown(self, show: str, *args: str) -> list[str]:
        """Run the test file ``show``, which prints settings; return the lines of the output."""
        self.pytester.makepyfile(show)
        result = self.run(*args)
        result.assert_outcomes(passed=1)
        return result.stdout.lines

    def usage_error(self, *args: str) -> list[str]:
        """Run a suite that needs nothing; return the lines of the usage error it stops with."""
        self.pytester.makepyfile("def test_it(): pass")
        result = self.run(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        return [line for line in result.stderr.lines if line]


def all_settings() -> list[Setting[Any]]:
    """Every setting of every resource plugin."""
    return [s for module in plugin.resource_plugins() for s in getattr(module, "SETTINGS", ())]


@pytest.fixture
def given(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Given:
    """Give settings to an inner run; see :class:`Given`."""
    return Given(pytester, monkeypatch)


@pytest.fixture
def private_tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp dir of this test's own, here and in inner runs: no other run on the host reaps theirs.

    The run directories of both live under it, and a reaper called here sees only those.
    """
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setenv("TMPDIR", str(directory))
    monkeypatch.setattr(tempfile, "tempdir", str(directory))  # gettempdir() caches it
    return directory


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.docker.conftest import report_skips

    report_skips(terminalreporter)
