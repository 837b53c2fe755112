"""What each fixture gives a test, in index and prefix mode, sync and async."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.redis.conftest import Server
from worker_utils import ports

# A readable run id, as a CI job gives one; this process's pid keeps it apart from
# the same test in a concurrent run of this suite.
JOB = os.getpid()

FIXTURES = """
import asyncio
import redis

def test_the_url_names_the_leased_database(worker_redis_url, worker_redis_db, worker_redis_lease):
    user, password = worker_redis_lease.acl_user, worker_redis_url.split(":")[2].split("@")[0]
    assert user.startswith("worker_utils.") and len(password) == 32
    host = worker_redis_lease.server_url[len("redis://"):-2]
    assert worker_redis_url == f"redis://{user}:{password}@{host}/{worker_redis_db}"
    with redis.Redis.from_url(worker_redis_url) as app:
        app.set("from-app", 1)
        assert app.connection_pool.connection_kwargs["db"] == worker_redis_db

def test_the_async_client_uses_the_same_database(worker_redis_async, worker_redis, worker_redis_db):
    async def main():
        async with worker_redis_async:
            assert await worker_redis_async.dbsize() == 0
            await worker_redis_async.set("k", "v")
            return worker_redis_async.connection_pool.connection_kwargs["db"]
    assert asyncio.run(main()) == worker_redis_db
    assert worker_redis.get("k") == b"v"

def test_an_async_client_left_open_fails_the_test(worker_redis_async):
    async def main():
        await worker_redis_async.ping()
    asyncio.run(main())

def test_the_prefix_names_this_worker(worker_redis_prefix, worker_redis_lease):
    assert worker_redis_prefix.startswith("wu:")
    assert worker_redis_prefix.endswith(":master:")
    assert worker_redis_lease.mode == "index"
"""


def test_the_fixtures_agree_on_one_database_and_the_summary_names_it(
    pytester: pytest.Pytester, redis_server: Server
) -> None:
    pytester.makepyfile(FIXTURES)
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "-p", "no:xdist",
        "-W", "ignore::pytest.PytestUnraisableExceptionWarning",
        f"--worker-utils-redis-url={redis_server.url}", "-v",
    )  # fmt: skip
    result.assert_outcomes(passed=4, errors=1)
    assert (
        result.stdout.lines.count(
            "worker_redis_async: the client still had open connections when the test ended; end "
            "the coroutine that uses it with `await worker_redis_async.aclose()` (or `async with "
            "worker_redis_async:`) while its event loop runs"
        )
        == 1
    )
    result.stdout.fnmatch_lines(
        [
            "worker_utils: master: redis db 1",
            f"worker_utils: redis server {redis_server.url} (given by --worker-utils-redis-url)",
        ]
    )
    assert redis_server.keys_by_db() == {}


PREFIX = """
import pytest
import redis

def test_our_keys_go_and_others_stay(worker_redis, worker_redis_prefix, worker_redis_db):
    assert worker_redis_db == 15
    assert list(worker_redis.scan_iter(match=worker_redis_prefix + "*")) == []
    worker_redis.set(worker_redis_prefix + "a", 1)
    worker_redis.set(worker_redis_prefix + "b", 1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker_redis.get("theirs")

def test_again(worker_redis, worker_redis_prefix):
    assert list(worker_redis.scan_iter(match=worker_redis_prefix + "*")) == []
    worker_redis.set(worker_redis_prefix + "a", 1)
"""


def test_prefix_mode_cleans_only_the_workers_prefix(
    pytester: pytest.Pytester, redis_server: Server
) -> None:
    for db in (0, 15):
        with redis_server.client(db) as other:
            other.set("theirs", "keep")
            other.set("wu:someone-elses-run:gw0:a", "keep")
    pytester.makepyfile(PREFIX)
    result = pytester.runpytest(
        "-n",
        "2",
        "--worker-utils-redis-mode=prefix",
        f"--worker-utils-redis-url={redis_server.url}",
        f"--testrunuid=ci-job-{JOB}",
        "-v",
    )
    result.assert_outcomes(passed=2)
    # The run tag of the given run id, the same as in PostgreSQL names.
    result.stdout.fnmatch_lines([f"worker_utils: gw0: redis prefix wu:ci_job_{JOB}:gw0: in db 15"])
    assert redis_server.keys_by_db() == {
        db: [b"theirs", b"wu:someone-elses-run:gw0:a"] for db in (0, 15)
    }


CLUSTER = """
def test_a(worker_redis, worker_redis_prefix, worker_redis_lease):
    assert worker_redis_lease.cluster and worker_redis_lease.mode == "prefix"
    for name in "abcdef":  # keys in many hash slots
        worker_redis.set(worker_redis_prefix + name, 1)

def test_b(worker_redis, worker_redis_prefix):
    assert list(worker_redis.scan_iter(match=worker_redis_prefix + "*")) == []
    worker_redis.set(worker_redis_prefix + "a", 1)
"""


def test_a_cluster_has_no_select_so_workers_get_prefixes(
    pytester: pytest.Pytester, redis_server_factory: Any, tmp_path: Path
) -> None:
    # The cluster bus listens on port + 10000 unless told: in the ephemeral range, where
    # the suite's own connections may hold it.
    bus = ports.lease_port()
    try:
        server = redis_server_factory(
            "--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf"),
            "--cluster-port", str(bus.port),
        )  # fmt: skip
    finally:
        bus.release()
    with server.client() as admin:
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the one-node cluster did not come up"
            time.sleep(0.05)
    pytester.makepyfile(CLUSTER)
    result = pytester.runpytest(
        "-n", "2", "-p", "no:randomly", f"--worker-utils-redis-url={server.url}", "-v"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["worker_utils: gw*: redis prefix wu:*:gw*: in cluster"])
    with server.client() as admin:
        assert admin.dbsize() == 0


def test_a_project_can_override_the_server_fixture_with_its_own(
    pytester: pytest.Pytester, redis_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKER_UTILS_REDIS_URL", raising=False)
    pytester.makeconftest(
        f"""
        import pytest

        @pytest.fixture(scope="session")
        def worker_redis_server_url():
            return "redis://127.0.0.1:{redis_server.port}/0"
        """
    )
    pytester.makepyfile(
        """
        def test_uses_it(worker_redis, worker_redis_lease):
            assert worker_redis_lease.server_url.endswith(":{port}/0")
            worker_redis.set("k", 1)
        """.replace("{port}", str(redis_server.port))
    )
    # The server fixture is resolved in the process that runs the test: no workers needed.
    pytester.runpytest("-n", "0").assert_outcomes(passed=1)
    assert redis_server.keys_by_db() == {}


SESSION_CONFTEST = """
import pytest
import redis

APP = {}


@pytest.fixture(scope="session", autouse=True)
def _configure_app(worker_redis_url, worker_redis_db, worker_redis_prefix, worker_redis):
    APP["client"] = redis.Redis.from_url(worker_redis_url)
    APP["db"], APP["prefix"] = worker_redis_db, worker_redis_prefix
    APP["fixture"] = worker_redis
    yield
    APP["client"].close()
"""

SESSION_TESTS = """
import os
import subprocess
import sys

from conftest import APP


def key():
    return APP["prefix"] + "hits"


def test_1_the_app_writes_without_any_function_fixture():
    assert APP["client"].incr(key()) == 1


def test_2_the_next_test_starts_clean():
    assert APP["client"].get(key()) is None
    APP["fixture"].set(key(), 1)


def test_3_a_subprocess_given_the_url_writes(worker_redis_url):
    assert APP["client"].get(key()) is None
    code = "import redis, sys; redis.Redis.from_url(sys.argv[1]).set(sys.argv[2], 1)"
    subprocess.run([sys.executable, "-c", code, worker_redis_url, key()], check=True)


def test_4_and_that_is_gone_too():
    assert APP["client"].get(key()) is None
"""


# In prefix mode the workers share a database: two of them run every test at once. In
# index mode each has a database of its own: one process shows what one worker gets.
@pytest.mark.parametrize("mode", ["index", "prefix"])
def test_session_fixtures_take_the_plain_values_and_every_test_starts_clean(
    pytester: pytest.Pytester, redis_server: Server, mode: str
) -> None:
    pytester.makeconftest(SESSION_CONFTEST)
    pytester.makepyfile(test_app=SESSION_TESTS)
    args = ["-p", "no:randomly", f"--worker-utils-redis-mode={mode}"]
    args.append(f"--worker-utils-redis-url={redis_server.url}")
    if mode == "prefix":
        result = pytester.runpytest(*args, "-n", "2", "--dist=each")
        result.assert_outcomes(passed=8)
    else:
        pytester.runpytest(*args, "-n", "0").assert_outcomes(passed=4)
    assert redis_server.keys_by_db() == {}
