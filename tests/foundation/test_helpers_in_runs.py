"""Every helper and fixture, seen from inside real runs: -n 0, -n 3, -p no:xdist."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RECORD_SNIPPET

SUITE = (
    RECORD_SNIPPET
    + """
import os
import pytest
import worker_utils as wu

@pytest.mark.parametrize("n", range(8))
def test_record(n, request, worker_tmp_path, run_tmp_path):
    xdist = request.config.pluginmanager.hasplugin("xdist")
    xdist_id = request.getfixturevalue("worker_id") if xdist else None
    xdist_uid = request.getfixturevalue("testrun_uid")  # worker_utils' own without xdist
    record(
        id=wu.get_worker_id(), num=wu.get_worker_num(), count=wu.get_worker_count(),
        is_worker=wu.is_xdist_worker(), uid=wu.get_testrun_uid(),
        offset=wu.get_worker_port_offset(), schema=wu.get_worker_postgres_schema(),
        redis_db=wu.get_worker_redis_db(), helper_tmp=str(wu.worker_tmp_path()),
        fixture_tmp=str(worker_tmp_path), run_tmp=str(run_tmp_path),
        helper_run_tmp=str(wu.run_tmp_path()), xdist_id=xdist_id, xdist_uid=xdist_uid,
    )
"""
)

# Three workers prove for any number of them what two or four would.
MODES = {
    "-n 0": ["-n", "0"],
    "-n 3": ["-n", "3"],
    "-p no:xdist": ["-p", "no:xdist"],
}

# What an outer xdist run leaves in the environment of a pytest it starts.
INHERITED = {
    "PYTEST_XDIST_WORKER": "gw7",
    "PYTEST_XDIST_WORKER_COUNT": "9",
    "PYTEST_XDIST_TESTRUNUID": "outer0run0id",
}


# Read at import time, as a conftest's module-level settings would.
SETTINGS = """
import worker_utils

RUN_UID = worker_utils.get_testrun_uid()
WORKER_ID = worker_utils.get_worker_id()
CACHE_DIR = worker_utils.worker_tmp_path() / "cache"
"""
SETTINGS_TEST = """
import settings
import worker_utils

def test_settings_match_the_fixtures(worker_tmp_path):
    assert settings.RUN_UID == worker_utils.get_testrun_uid()
    assert settings.WORKER_ID == worker_utils.get_worker_id()
    assert settings.CACHE_DIR.parent == worker_tmp_path
"""


def _expected_workers(args: list[str]) -> int:
    return int(args[1]) if args[0] == "-n" and args[1] != "0" else 0


@pytest.mark.parametrize("inherited", [False, True], ids=["clean-env", "inherited-env"])
@pytest.mark.parametrize("mode", list(MODES))
def test_every_helper_agrees_with_xdist_in_every_mode(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    read_records: Callable[[], list[dict[str, Any]]],
    mode: str,
    inherited: bool,
) -> None:
    root = pytester.path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))  # a temp root of this test's own, to inspect
    for name, value in INHERITED.items():
        if inherited:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_suite=SUITE)
    if not inherited:
        # A top-level run, as a user starts it, whose conftest.py calls the helpers
        # at import time. (Inside a worker of another run, as with the inherited
        # variables, a conftest import cannot tell that worker from a real worker of
        # its own: a limit recorded in ADR-0001.)
        pytester.makepyfile(settings=SETTINGS, test_settings=SETTINGS_TEST)
        pytester.makeconftest("import settings  # imported before pytest_configure runs")
    result = pytester.runpytest_subprocess(*MODES[mode])
    result.assert_outcomes(passed=8 if inherited else 9)
    records = read_records()
    assert len(records) == 8
    workers = _expected_workers(MODES[mode])

    uids = {r["uid"] for r in records}
    assert len(uids) == 1, "one run id for the whole run"
    (uid,) = uids
    assert uid != INHERITED["PYTEST_XDIST_TESTRUNUID"]
    assert len({r["run_tmp"] for r in records}) == 1
    for r in records:
        assert r["fixture_tmp"] == r["helper_tmp"]
        assert r["run_tmp"] == r["helper_run_tmp"]
        assert Path(r["fixture_tmp"]).name == r["id"]
        assert uid in r["run_tmp"]
        assert r["offset"] == r["num"] * 100
        assert r["schema"] == f"test_worker_{r['id']}"
        assert r["redis_db"] == r["num"] + 1
        if r["xdist_id"] is not None:
            assert r["id"] == r["xdist_id"]
        # xdist's fixture would be a new random id of its own without workers.
        assert r["uid"] == r["xdist_uid"]
        if workers:
            assert r["is_worker"] is True
            assert r["id"] == f"gw{r['num']}"
            assert r["count"] == workers
        else:
            assert (r["id"], r["num"], r["count"], r["is_worker"]) == ("master", 0, 1, False)
    if workers:
        ids = {r["id"] for r in records}
        assert ids <= {f"gw{i}" for i in range(workers)}
        # one private directory per worker, none shared
        assert len({r["fixture_tmp"] for r in records}) == len(ids)
    assert not Path(records[0]["run_tmp"]).parent.exists(), "the run directory is removed"
    assert [path.name for path in root.rglob("run-*")] == [], "no run directory is left behind"


def test_two_runs_get_different_run_ids(
    pytester: pytest.Pytester, read_records: Callable[[], list[dict[str, Any]]]
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    # Both in this process: an id made from the process would be the same twice.
    pytester.runpytest("-n", "0").assert_outcomes(passed=8)
    pytester.runpytest("-n", "0").assert_outcomes(passed=8)
    assert len({r["uid"] for r in read_records()}) == 2


# Tests that use no resource: they ask the run's id of the helper alone.
NO_RESOURCE = (
    RECORD_SNIPPET
    + """
import pytest
import worker_utils as wu

@pytest.mark.parametrize("n", range(4))
def test_nothing(n):
    record(uid=wu.get_testrun_uid(), worker=wu.get_worker_id())
"""
)


def test_a_testrunuid_given_to_xdist_is_the_run_id_and_no_resource_means_no_summary(
    pytester: pytest.Pytester, read_records: Callable[[], list[dict[str, Any]]]
) -> None:
    pytester.makepyfile(test_suite=NO_RESOURCE)
    result = pytester.runpytest("-n", "2", "-v", "--testrunuid", "ci-shard-3")
    result.assert_outcomes(passed=4)
    assert {r["uid"] for r in read_records()} == {"ci-shard-3"}
    assert {r["worker"] for r in read_records()} <= {"gw0", "gw1"}
    result.stdout.no_fnmatch_line("worker_utils:*")
