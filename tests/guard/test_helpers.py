"""The guard's helpers on plain data, its options, and its fallback on pytest internals."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker_utils import guard
from worker_utils.guard import FixtureSite, Snapshot

BEFORE = Snapshot({"KEEP": "k", "CHANGE": "secret", "DROP": "d"}, "/a", ("/p", "/q"))


def test_find_leak_lists_set_changed_and_removed_variables_cwd_and_sys_path() -> None:
    after = Snapshot({"KEEP": "k", "CHANGE": "new", "ADD": "1"}, "/b", ("/q", "/x"))
    leak = guard.find_leak(BEFORE, after)
    assert guard.describe_leak("t.py::test", leak) == (
        "t.py::test: leaked os.environ (set ADD='1', changed CHANGE='new', removed DROP), "
        "cwd (changed from '/a' to '/b'), sys.path (added '/x', removed '/p'); "
        "use the worker_env fixture or undo the change in the test (the guard restored it)"
    )


def test_the_old_value_of_a_changed_variable_is_never_shown() -> None:
    after = Snapshot({**BEFORE.environ, "CHANGE": "new"}, "/a", BEFORE.sys_path)
    assert "secret" not in guard.describe_leak("t", guard.find_leak(BEFORE, after))


def test_a_reordered_sys_path_and_a_deleted_cwd_are_described() -> None:
    after = Snapshot(BEFORE.environ, None, ("/q", "/p"))
    assert guard.describe_leak("t", guard.find_leak(BEFORE, after)) == (
        "t: leaked cwd (changed from '/a' to a deleted directory), sys.path (reordered); "
        "use the worker_env fixture or undo the change in the test (the guard restored it)"
    )


def test_pytest_current_test_and_ignored_patterns_are_no_leak() -> None:
    after = Snapshot(
        {**BEFORE.environ, "PYTEST_CURRENT_TEST": "x", "APP_CACHE": "1"}, "/a", BEFORE.sys_path
    )
    assert not guard.find_leak(BEFORE, after, ["APP_*"])
    assert guard.find_leak(BEFORE, after)


def test_absorb_keeps_what_a_fixture_changed_and_nothing_else() -> None:
    before = Snapshot({"A": "1"}, "/a", ("/p",))
    after = Snapshot({"A": "2", "B": "3"}, "/b", ("/p", "/f"))
    baseline = Snapshot({"A": "1", "T": "t"}, "/a", ("/p",))
    assert guard.absorb(baseline, before, after) == Snapshot(
        {"A": "2", "B": "3", "T": "t"}, "/b", ("/p", "/f")
    )


def test_restore_puts_back_the_environment_cwd_and_sys_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GUARD_TEST_KEEP", "1")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = guard.take_snapshot()
    monkeypatch.setenv("GUARD_TEST_KEEP", "2")
    monkeypatch.setenv("GUARD_TEST_NEW", "1")
    monkeypatch.chdir("/")
    monkeypatch.syspath_prepend("/guard-test")
    guard.restore(before, guard.find_leak(before, guard.take_snapshot()))
    assert guard.take_snapshot() == before


def _site(path: str, line: int, *, scope: str = "function", autouse: bool = True) -> FixtureSite:
    return FixtureSite("f", scope, autouse, path, line, in_test_module=path.startswith("test_"))


def test_autouse_findings_report_each_problem_once_in_path_order() -> None:
    conftest, module = _site("conftest.py", 3), _site("test_a.py", 7, scope="module")
    findings = guard.autouse_findings([[conftest, module], [conftest, module]])
    assert [str(finding) for finding in findings] == [
        "test_a.py:7: autouse fixture 'f' already defined at conftest.py:3; "
        "keep one definition in the conftest.py shared by both, "
        "or declare a reset once with worker_utils.register_reset",
        "test_a.py:7: module-scoped autouse fixture 'f' in a test module; "
        "move it to conftest.py or make it function-scoped",
    ]


def test_autouse_findings_ignore_an_override_that_is_not_autouse() -> None:
    sites = [_site("conftest.py", 3, scope="session"), _site("test_a.py", 7, autouse=False)]
    assert guard.autouse_findings([sites]) == []


def test_without_fixture_information_the_autouse_check_gives_up() -> None:
    class Item:
        pass

    assert guard._sites(Item(), set(), Path("/")) is None  # type: ignore[arg-type]


def test_the_guard_plugin_is_registered_only_when_enabled(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        def pytest_collection_finish(session):
            plugin = session.config.pluginmanager.get_plugin("worker_utils.guard")
            print("guard:", type(plugin).__name__)
        """
    )
    pytester.makepyfile("def test_x(): pass")
    pytester.runpytest("-s").stdout.fnmatch_lines(["guard: NoneType"])
    pytester.runpytest("-s", "--worker-utils-guard").stdout.fnmatch_lines(["guard: Guard"])


def test_when_pytest_hides_fixture_definitions_the_autouse_check_is_off_with_a_warning(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard, "_sites", lambda *args: None)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--worker-utils-guard=strict")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*WorkerUtilsGuardWarning: worker_utils guard: this pytest version does not "
            "expose fixture definitions; the autouse check is off"
        ]
    )
