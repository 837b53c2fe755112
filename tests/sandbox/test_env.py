"""worker_env puts os.environ, the working directory and sys.path back exactly."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from worker_utils.sandbox import EnvSandbox

IN_ORDER = ("-p", "no:randomly", "-p", "no:xdist")


def test_it_reads_sets_and_deletes_variables_like_a_mapping(worker_env: EnvSandbox) -> None:
    worker_env["SANDBOX_TEST_SET"] = "1"
    assert os.environ["SANDBOX_TEST_SET"] == "1"
    assert "SANDBOX_TEST_SET" in worker_env
    assert worker_env.get("SANDBOX_TEST_MISSING") is None
    assert len(worker_env) == len(os.environ)
    del worker_env["SANDBOX_TEST_SET"]
    assert "SANDBOX_TEST_SET" not in os.environ
    with pytest.raises(KeyError):
        del worker_env["SANDBOX_TEST_SET"]


def test_it_changes_directory_and_sys_path_until_the_test_ends(
    worker_env: EnvSandbox, tmp_path: Path
) -> None:
    worker_env.chdir(tmp_path)
    worker_env.syspath_prepend(tmp_path)
    assert Path.cwd() == tmp_path
    assert sys.path[0] == str(tmp_path)


def test_restore_undoes_changes_that_never_went_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_TEST_KEPT", "original")
    environ, cwd, path = dict(os.environ), os.getcwd(), list(sys.path)
    sandbox = EnvSandbox()
    # Behind the sandbox's back, as code under test does; restored below.
    os.environ["SANDBOX_TEST_NEW"] = "1"  # noqa: WU101
    os.environ["SANDBOX_TEST_KEPT"] = "changed"  # noqa: WU101
    del os.environ["SANDBOX_TEST_KEPT"]  # noqa: WU102
    os.chdir(tmp_path)
    sys.path.insert(0, "/sandbox-test")
    sys.path.remove(path[-1])
    sandbox.restore()
    assert (dict(os.environ), os.getcwd(), sys.path) == (environ, cwd, path)


def test_restore_returns_from_a_directory_that_was_removed(tmp_path: Path) -> None:
    cwd = os.getcwd()
    sandbox = EnvSandbox()
    gone = tmp_path / "gone"
    gone.mkdir()
    os.chdir(gone)
    gone.rmdir()
    sandbox.restore()
    assert os.getcwd() == cwd


@pytest.mark.parametrize(
    ("fixture", "outcome"),
    [("worker_env", {"passed": 2}), ("monkeypatch", {"passed": 1, "failed": 1})],
)
def test_after_the_test_the_next_one_sees_the_original_state_only_with_worker_env(
    pytester: pytest.Pytester,
    example: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    fixture: str,
    outcome: dict[str, int],
) -> None:
    monkeypatch.setenv("WU_TEST_FIXTURE", fixture)
    monkeypatch.setenv("SANDBOX_INHERITED", "original")
    monkeypatch.setenv("SANDBOX_REMOVED", "original")
    # The run shares this process: monkeypatch, having seen them absent, removes the
    # variables its first test leaks; pytester puts the directory and sys.path back.
    for name in ("SANDBOX_BEHIND_ITS_BACK", "SANDBOX_THROUGH_FIXTURE"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    example("env")
    result = pytester.runpytest(*IN_ORDER)
    result.assert_outcomes(**outcome)
