"""The pure worker-contract helpers, fed an explicit environment."""

from __future__ import annotations

import re

import pytest

import worker_utils as wu
from worker_utils._worker import run_tag

WORKER = {"PYTEST_XDIST_WORKER": "gw3", "PYTEST_XDIST_WORKER_COUNT": "4"}


def test_it_reports_master_outside_xdist() -> None:
    assert wu.get_worker_id({}) == "master"
    assert wu.get_worker_num({}) == 0
    assert wu.get_worker_count({}) == 1
    assert wu.is_xdist_worker({}) is False


def test_it_reads_the_worker_from_the_environment() -> None:
    assert wu.get_worker_id(WORKER) == "gw3"
    assert wu.get_worker_num(WORKER) == 3
    assert wu.get_worker_count(WORKER) == 4
    assert wu.is_xdist_worker(WORKER) is True


def test_a_restarted_worker_has_a_number_at_or_past_the_worker_count() -> None:
    # Under -n 2, xdist replaces a crashed gw0 with gw2: arithmetic that assumes
    # numbers below the count (such as a pool of 2 ports) breaks.
    env = {"PYTEST_XDIST_WORKER": "gw2", "PYTEST_XDIST_WORKER_COUNT": "2"}
    assert wu.get_worker_num(env) >= wu.get_worker_count(env)
    assert wu.get_worker_port_offset(env=env) == 200
    assert wu.get_worker_redis_db(env) == 3


def test_two_concurrent_runs_both_have_a_gw0_so_only_the_run_id_tells_them_apart() -> None:
    run_a = {"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_TESTRUNUID": "a" * 32}
    run_b = {"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_TESTRUNUID": "b" * 32}
    assert wu.get_worker_postgres_schema(env=run_a) == wu.get_worker_postgres_schema(env=run_b)
    assert wu.get_testrun_uid(run_a) != wu.get_testrun_uid(run_b)


def test_the_testrun_uid_prefers_xdist_then_the_plugin_then_the_process() -> None:
    both = {"PYTEST_XDIST_TESTRUNUID": "x1", "WORKER_UTILS_TESTRUN_UID": "p1"}
    assert wu.get_testrun_uid(both) == "x1"
    assert wu.get_testrun_uid({"WORKER_UTILS_TESTRUN_UID": "p1"}) == "p1"
    assert wu.get_testrun_uid({}) == wu.get_testrun_uid({})


def test_classic_helpers_follow_the_worker_number() -> None:
    assert wu.get_worker_port_offset(env=WORKER) == 300
    assert wu.get_worker_port_offset(stride=1000, env=WORKER) == 3000
    assert wu.get_worker_postgres_schema(env=WORKER) == "test_worker_gw3"
    assert wu.get_worker_postgres_schema("app", env={}) == "app_master"
    assert wu.get_worker_redis_db(WORKER) == 4


@pytest.mark.parametrize("value", ["gw-1", "../x", "", "GW0", "gw01", "gw0 ", "worker1"])
def test_it_rejects_a_malformed_worker_variable(value: str) -> None:
    with pytest.raises(wu.WorkerContractError) as excinfo:
        wu.get_worker_id({"PYTEST_XDIST_WORKER": value})
    assert str(excinfo.value) == (
        f"PYTEST_XDIST_WORKER: found {value!r}, expected 'gw<N>' such as 'gw0'; "
        f"unset it outside pytest-xdist workers"
    )


def test_its_errors_are_worker_utils_errors_and_keep_their_builtin_base() -> None:
    with pytest.raises(wu.WorkerUtilsError) as excinfo:
        wu.get_worker_id({"PYTEST_XDIST_WORKER": "nope"})
    assert isinstance(excinfo.value, ValueError)
    assert isinstance(excinfo.value, wu.WorkerContractError)


@pytest.mark.parametrize("value", ["0", "-2", "two", ""])
def test_it_rejects_a_malformed_worker_count(value: str) -> None:
    env = {"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": value}
    with pytest.raises(wu.WorkerContractError) as excinfo:
        wu.get_worker_count(env)
    assert str(excinfo.value) == (
        f"PYTEST_XDIST_WORKER_COUNT: found {value!r}, expected a positive integer; "
        f"unset it outside pytest-xdist workers"
    )


@pytest.mark.parametrize("value", ["../etc", "a b", "", "x" * 65])
def test_it_rejects_a_run_id_unsafe_in_names(value: str) -> None:
    with pytest.raises(wu.WorkerContractError) as excinfo:
        wu.get_testrun_uid({"PYTEST_XDIST_TESTRUNUID": value})
    assert str(excinfo.value) == (
        f"PYTEST_XDIST_TESTRUNUID: found {value!r}, expected 1-64 letters, digits, '_' or '-'; "
        f"unset it and let pytest choose the run id"
    )


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("Test", "prefix 'Test' must be a lower-case identifier"),
        ("pg_test", "prefix 'pg_test' must be a lower-case identifier"),
        ("a-b", "prefix 'a-b' must be a lower-case identifier"),
    ],
)
def test_the_schema_helper_rejects_unusable_prefixes(prefix: str, message: str) -> None:
    with pytest.raises(ValueError, match="^get_worker_postgres_schema: " + message):
        wu.get_worker_postgres_schema(prefix, env={})


def test_the_schema_helper_refuses_names_over_63_bytes() -> None:
    with pytest.raises(ValueError) as excinfo:
        wu.get_worker_postgres_schema("p" * 60, env=WORKER)
    assert str(excinfo.value) == (
        f"get_worker_postgres_schema: prefix '{'p' * 60}' is 60 bytes; use at most 54 "
        f"so that names fit PostgreSQL's 63-byte limit"
    )


def test_the_port_offset_rejects_a_stride_below_one() -> None:
    with pytest.raises(ValueError, match="stride must be at least 1, got 0"):
        wu.get_worker_port_offset(stride=0, env={})


@pytest.mark.parametrize(
    ("run_uid", "tag"),
    [
        ("3f2a9c01be5d4e6f8a7b9c0d1e2f3a4b", "3f2a9c01be"),  # random, as xdist makes them
        ("ci-job-4711", "ci_job_4711"),
        ("CI_Job-4711", "ci_job_4711"),
        ("12345678901", "12345678901"),  # a numeric job id keeps every digit
        ("x" * 24, "x" * 24),
    ],
)
def test_the_run_tag_keeps_a_given_run_id_readable(run_uid: str, tag: str) -> None:
    assert run_tag(run_uid) == tag


def test_a_run_id_too_long_for_the_tag_keeps_its_start_and_a_hash_of_the_whole() -> None:
    first, second = "ci-pipeline-123456-job-7", "ci-pipeline-123456-job-8"
    assert run_tag(first).startswith("ci_pipeline_12345")
    assert len(run_tag(first)) == 24
    assert run_tag(first) != run_tag(second)
    assert re.fullmatch(r"ci_[0-9a-f]{6}", run_tag(first, max_length=10))


def test_the_run_tag_refuses_a_length_outside_10_to_24() -> None:
    with pytest.raises(ValueError) as excinfo:
        run_tag("ci-job-4711", max_length=9)
    assert str(excinfo.value) == "run_tag: max_length 9 is not from 10 to 24"


@pytest.mark.parametrize("prefix", ["test_worker", "p" * 43])
def test_postgres_names_carry_the_run_tag_within_63_bytes(prefix: str) -> None:
    name = wu.worker_postgres_name("ci-job-4711", "gw999999", prefix)
    assert len(name) <= 63
    assert name.startswith(prefix + "_ci_")
    if prefix == "test_worker":
        assert name == "test_worker_ci_job_4711_gw999999"
