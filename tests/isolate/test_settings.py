"""What selects a test for isolation, its scope, the worker it belongs to, and bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker_utils import isolate

NO_PLUGINS = ("-p", "no:randomly", "-p", "no:cacheprovider")

RECORDING_TESTS = """
import json, os
from pathlib import Path
import pytest

def record(name, **extra):
    data = {"pid": os.getpid(), "worker": os.environ.get("PYTEST_XDIST_WORKER", "master"),
            "run": os.environ["WORKER_UTILS_TESTRUN_UID"], **extra}
    Path(os.environ["WU_TEST_RECORD_DIR"], name).write_text(json.dumps(data))
"""


@pytest.mark.parametrize(
    ("nodeid", "selected"),
    [
        ("tests/native/test_a.py::test_x", True),
        ("tests/native_other/test_a.py::test_x", False),
        ("tests/unit/test_b.py::test_init_once", True),
        ("tests/unit/test_b.py::test_plain", False),
        ("tests/unit/test_c.py::TestX::test_y", True),
    ],
)
def test_patterns_select_by_glob_path_or_file(nodeid: str, selected: bool) -> None:
    patterns = isolate.parse_patterns("tests/native/, *::test_init*\ntests/unit/test_c.py")
    assert isolate.selects(patterns, nodeid) is selected


def test_exit_codes_and_signals_are_described() -> None:
    assert isolate.describe_exit(-11) == "was killed by signal 11 (SIGSEGV)"
    assert isolate.describe_exit(3) == "exited with code 3"
    assert isolate.describe_exit(None) == "did not exit"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--worker-utils-isolate-timeout", "soon"],
            {},
            "ERROR: worker_utils_isolate_timeout (from --worker-utils-isolate-timeout): "
            "found 'soon'; expected a number of seconds greater than 0, such as 300",
        ),
        (
            [],
            {"WORKER_UTILS_ISOLATE_TIMEOUT": "0"},
            "ERROR: worker_utils_isolate_timeout (from WORKER_UTILS_ISOLATE_TIMEOUT): "
            "found '0'; expected a number of seconds greater than 0, such as 300",
        ),
        (
            ["-o", "worker_utils_isolate_start=fork"],
            {},
            "ERROR: worker_utils_isolate_start (from -o): found 'fork'; "
            "expected zygote, pool or spawn",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*NO_PLUGINS, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line] == [message]


def test_a_bad_marker_is_a_usage_error_naming_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.isolated(scope="session")
        def test_wide():
            pass
        """
    )
    result = pytester.runpytest(*NO_PLUGINS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line] == [
        "ERROR: test_a_bad_marker_is_a_usage_error_naming_the_test.py::test_wide: "
        "@pytest.mark.isolated: found scope='session'; expected function, class or module"
    ]


def test_a_module_scope_shares_one_process_and_a_worker_keeps_its_resources(
    pytester: pytest.Pytester, record_dir: Path
) -> None:
    pytester.makeconftest(RECORDING_TESTS.replace("def record", "def _unused"))
    pytester.makepyfile(
        test_grouped=RECORDING_TESTS
        + """
pytestmark = pytest.mark.isolated(scope="module")

def test_one(worker_tmp_path):
    record("one", tmp=str(worker_tmp_path))

def test_two(worker_tmp_path):
    record("two", tmp=str(worker_tmp_path))
""",
        test_alone=RECORDING_TESTS
        + """
@pytest.mark.isolated
def test_three(worker_tmp_path, worker_id, testrun_uid):
    record("three", tmp=str(worker_tmp_path), fixture_worker=worker_id, uid=testrun_uid)

@pytest.mark.isolated
def test_four():
    record("four")

def test_in_process(worker_tmp_path, worker_id, testrun_uid):
    record("here", tmp=str(worker_tmp_path), fixture_worker=worker_id, uid=testrun_uid)
""",
    )
    result = pytester.runpytest_subprocess(*NO_PLUGINS, "-n", "2", "--dist", "loadfile")
    result.assert_outcomes(passed=5)
    import json

    seen = {path.name: json.loads(path.read_text()) for path in record_dir.iterdir()}
    assert seen["one"]["pid"] == seen["two"]["pid"]
    assert len({seen[name]["pid"] for name in ("one", "three", "four", "here")}) == 4
    assert len({entry["run"] for entry in seen.values()}) == 1
    here, three = seen["here"], seen["three"]
    assert (three["worker"], three["fixture_worker"], three["tmp"], three["uid"]) == (
        here["worker"],
        here["fixture_worker"],
        here["tmp"],
        here["uid"],
    )
    assert here["worker"] in ("gw0", "gw1")


@pytest.mark.parametrize("method", ["pool", "spawn"])
def test_every_start_method_runs_a_test_in_a_new_interpreter(
    pytester: pytest.Pytester, method: str
) -> None:
    pytester.makepyfile(
        """
        import sys
        import pytest

        @pytest.mark.isolated
        def test_first():
            assert "test_second_module" not in sys.modules

        @pytest.mark.isolated
        def test_second():
            pass
        """
    )
    result = pytester.runpytest_subprocess(*NO_PLUGINS, "--worker-utils-isolate-start", method)
    result.assert_outcomes(passed=2)
