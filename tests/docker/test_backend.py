"""The docker backend against a real engine: one container per server per run, and cleanup."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import RECORD_SNIPPET
from tests.docker.conftest import IMAGES, LABEL, Inner, our_containers
from worker_utils.servers import docker as backend
from worker_utils.servers._process import owner_record

pytestmark = pytest.mark.usefixtures("docker_engine")

USES_BOTH = (
    RECORD_SNIPPET
    + """
import redis
import worker_utils

def _use(worker_postgres, worker_redis, worker_postgres_server_url, worker_redis_server_url):
    worker_postgres.execute("CREATE TABLE t (x int)")
    worker_redis.set("k", "v")
    # CONFIG is for the server's own user: a worker's Redis user may not run it.
    with redis.Redis.from_url(worker_redis_server_url) as admin:
        config = admin.config_get("appendonly") | admin.config_get("save")
    record(
        run=worker_utils.get_testrun_uid(),
        worker=worker_utils.get_worker_id(),
        postgres=worker_postgres_server_url,
        redis=worker_redis_server_url,
        fsync=worker_postgres.execute("SHOW fsync").fetchone()[0],
        appendonly=config["appendonly"],
        save=config["save"],
    )
"""
    + "".join(
        f"\ndef test_{i}(worker_postgres, worker_redis, worker_postgres_server_url, "
        f"worker_redis_server_url):\n"
        f"    _use(worker_postgres, worker_redis, worker_postgres_server_url, "
        f"worker_redis_server_url)\n"
        for i in range(8)
    )
)

SLEEPS = (
    RECORD_SNIPPET
    + """
import time, worker_utils

def test_sleeps(worker_postgres_server_url, worker_redis_server_url):
    record(run=worker_utils.get_testrun_uid())
    time.sleep(120)
"""
)


def _created(client: Any, since: float, run: str) -> Counter[str]:
    """How many containers of each server were created for run ``run`` since ``since``."""
    events = client.events(
        since=int(since) - 1,
        until=int(time.time()) + 1,
        decode=True,
        filters={"type": "container", "event": "create", "label": f"{LABEL}.run={run}"},
    )
    return Counter(event["Actor"]["Attributes"][f"{LABEL}.server"] for event in events)


def test_two_concurrent_runs_each_get_one_container_per_server_named_in_the_summary(
    inner: Inner, docker_engine: Any, read_records: Callable[[], list[dict[str, Any]]]
) -> None:
    inner.pytester.makepyfile(test_both=USES_BOTH)
    started = time.time()
    uids = [uuid.uuid4().hex for _ in range(2)]
    # Two workers each: a backend that started a container per worker would start two.
    runs = [inner.popen("-n", "2", "--testrunuid", uid) for uid in uids]
    outputs = [run.communicate(timeout=240)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs

    records = read_records()
    by_run: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_run.setdefault(record["run"], []).append(record)
    assert sorted(by_run) == sorted(uids)
    assert len(records) == 16
    seen = []
    for run, recorded in by_run.items():
        assert len({r["worker"] for r in recorded}) > 1  # really shared by several workers
        urls = {(r["postgres"], r["redis"]) for r in recorded}
        assert len(urls) == 1  # every worker of the run got the same two servers
        seen.append(urls.pop())
        assert {(r["fsync"], r["appendonly"], r["save"]) for r in recorded} == {("off", "no", "")}
        assert _created(docker_engine, started, run) == {"postgres": 1, "redis": 1}
        assert our_containers(docker_engine, run) == []  # removed at the run's end
    assert seen[0][0] != seen[1][0]
    assert seen[0][1] != seen[1][1]
    for url in (*seen[0], *seen[1]):
        assert "@127.0.0.1:" in url or "//127.0.0.1:" in url
    for uid, output in zip(uids, outputs, strict=True):
        line = next(x for x in output.splitlines() if x.startswith("worker_utils: docker"))
        described = re.sub(
            r":\d+\)", ":PORT)", line.removeprefix("worker_utils: docker containers: ")
        )
        parts = [
            f"worker-utils-postgres-{uid[:12]} ({IMAGES['postgres']}, 127.0.0.1:PORT)",
            f"worker-utils-redis-{uid[:12]} ({IMAGES['redis']}, 127.0.0.1:PORT)",
        ]
        assert described in {", ".join(parts), ", ".join(parts[::-1])}  # in start order


def _start_sleeper(inner: Inner, *args: str) -> tuple[Any, str]:
    inner.pytester.makepyfile(test_sleeps=SLEEPS)
    process = inner.popen(*args)
    inner.wait_for_records(1, process)
    run = json.loads(next(inner.record_dir.glob("*.json")).read_text())["run"]
    return process, run


def test_reap_removes_a_dead_runs_containers_found_only_by_their_labels(
    inner: Inner, docker_engine: Any
) -> None:
    process, run = _start_sleeper(inner)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    reap = subprocess.run(
        [sys.executable, "-m", "worker_utils", "reap", "--docker"],
        capture_output=True,
        text=True,
        env=inner.env(),
        check=False,
    )
    names = sorted(f"worker-utils-{kind}-{run[:12]}" for kind in ("postgres", "redis"))
    assert reap.returncode == 0, reap.stderr
    # Dead runs of tests running meanwhile may be reaped too: look at ours.
    lines = reap.stdout.splitlines()
    assert sorted(line for line in lines if line.endswith(run)) == [
        f"removed container {name} of dead run {run}" for name in names
    ]
    assert lines[-1] == f"removed {len(lines) - 1} container(s)"
    assert our_containers(docker_engine, run) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_containers_are_removed_when_the_run_is_stopped_by(
    inner: Inner, docker_engine: Any, sig: int
) -> None:
    process, run = _start_sleeper(inner, "-n", "2")
    assert len(our_containers(docker_engine, run)) == 2
    os.kill(process.pid, sig)  # the controller only, as a terminal or CI runner would
    process.communicate(timeout=60)
    assert our_containers(docker_engine, run) == []


def test_the_next_run_removes_a_sigkilled_runs_containers_and_dead_ones_never_live_ones(
    inner: Inner, docker_engine: Any
) -> None:
    process, run = _start_sleeper(inner, "-n", "2")
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    assert len(our_containers(docker_engine, run)) == 2  # left behind by the crash
    (inner.pytester.path / "test_sleeps.py").unlink()

    # Containers of other owners beside them, labelled by hand.
    tag = uuid.uuid4().hex[:8]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    me = owner_record()

    def labels(pid: int, started: float, host: str = me["host"]) -> dict[str, str]:
        return {
            f"{LABEL}.creator": backend.CREATOR,
            f"{LABEL}.run": f"{tag}{pid}{started}",
            f"{LABEL}.host": host,
            f"{LABEL}.pidns": me["pidns"],
            f"{LABEL}.pid": str(pid),
            f"{LABEL}.started": str(started),
            f"{LABEL}.server": "redis",
        }

    cases = {
        "unlabelled": ({}, True),
        "live": (labels(me["pid"], me["started"]), True),
        "other-host": (labels(dead.pid, 1.0, host="elsewhere.invalid"), True),
        "dead": (labels(dead.pid, 1.0), False),
        "reused-pid": (labels(me["pid"], 1.0), False),
    }
    for name, (given, _) in cases.items():
        docker_engine.containers.create(
            IMAGES["redis"], name=f"wu-test-{tag}-{name}", labels=given, command=["true"]
        )
    try:
        inner.pytester.makepyfile(test_next="def test_next(worker_redis_server_url): pass")
        code, output = inner.run()
        assert code == 0, output
        assert our_containers(docker_engine, run) == []
        existing = {c.name for c in docker_engine.containers.list(all=True)}
        assert {name: f"wu-test-{tag}-{name}" in existing for name in cases} == {
            name: kept for name, (_, kept) in cases.items()
        }
    finally:
        for name in cases:
            with contextlib.suppress(Exception):  # removed by the run, as it should be
                docker_engine.containers.get(f"wu-test-{tag}-{name}").remove(force=True)


def test_no_reachable_engine_is_one_line_naming_docker_host_and_the_socket(
    inner: Inner,
) -> None:
    inner.pytester.makepyfile(test_one="def test_one(worker_redis_server_url): pass")
    # Never created; short, because AF_UNIX paths have a length limit.
    socket_path = f"/tmp/wu-none-{uuid.uuid4().hex[:8]}.sock"  # noqa: WU401
    code, output = inner.run(DOCKER_HOST=f"unix://{socket_path}")
    assert code == 4, output
    assert output.strip().splitlines() == [
        f"ERROR: docker backend: no Docker engine reachable at unix://{socket_path} "
        f"(DOCKER_HOST): no socket there; start the engine or set DOCKER_HOST to its socket, "
        f"or choose another server backend with --worker-utils-servers"
    ]


def test_an_image_that_is_missing_and_cannot_be_pulled_is_one_line(
    inner: Inner, worker_port: Callable[[], int]
) -> None:
    # A registry on a held, closed local port: the pull fails at once, without leaving the host.
    port = worker_port()
    image = f"127.0.0.1:{port}/worker-utils-missing:0"
    inner.pytester.makepyfile(test_one="def test_one(worker_redis_server_url): pass")
    code, output = inner.run(WORKER_UTILS_REDIS_IMAGE=image)
    assert code == 1, output
    assert (
        f"WORKER_UTILS_REDIS_IMAGE: image '{image}' is not on the engine and could not be "
        f'pulled (Get "http://127.0.0.1:{port}/v2/": dial tcp 127.0.0.1:{port}: connect: '
        f"connection refused); pull or build it there, or set WORKER_UTILS_REDIS_IMAGE to an "
        f"image it has"
    ) in output.splitlines()


def test_a_container_that_exits_during_start_is_one_line_with_its_log_tail(
    inner: Inner, docker_engine: Any
) -> None:
    image = f"worker-utils-local/exits:{uuid.uuid4().hex[:8]}"
    (inner.pytester.path / "Dockerfile").write_text(
        f"FROM {IMAGES['redis']}\n"
        'ENTRYPOINT ["sh", "-c", "echo starting >&2; echo no memory for you >&2; exit 3"]\n'
    )
    docker_engine.images.build(path=str(inner.pytester.path), tag=image, rm=True, forcerm=True)
    try:
        inner.pytester.makepyfile(test_one="def test_one(worker_redis_server_url): pass")
        code, output = inner.run(
            "--testrunuid", "e0170000000000000000000000000000", WORKER_UTILS_REDIS_IMAGE=image
        )
    finally:
        docker_engine.images.remove(image, force=True)
    assert code == 1, output
    assert (
        f"docker backend: container worker-utils-redis-e01700000000 ({image}) exited "
        f"with 3 during start; log: starting | no memory for you"
    ) in output.splitlines()
    assert our_containers(docker_engine, "e0170000000000000000000000000000") == []


def test_a_run_ends_quietly_on_its_own_containers_and_the_summary_says_where_they_are(
    inner: Inner,
) -> None:
    # The containers go before the run's last teardowns: a worker that freed its
    # lease itself leaves them nothing to reach.
    inner.pytester.makepyfile(
        test_one="def test_one(worker_redis, worker_postgres): worker_redis.set('k', 1)"
    )
    code, output = inner.run("-n", "0", "-v")
    assert code == 0, output
    assert "run_once(" not in output
    assert re.search(r"^worker_utils: redis server redis://\S+ \(docker container\)$", output, re.M)
    assert re.search(r"^worker_utils: postgres server \S+ \(docker container\)$", output, re.M)


def test_after_reap_the_next_run_frees_a_killed_runs_leases_without_errors(
    inner: Inner, docker_engine: Any
) -> None:
    inner.pytester.makepyfile(
        test_sleeps=RECORD_SNIPPET + "import time, worker_utils\n\n"
        "def test_sleeps(worker_redis):\n"
        "    record(run=worker_utils.get_testrun_uid())\n"
        "    time.sleep(120)\n"
    )
    process = inner.popen("-n", "2")
    inner.wait_for_records(1, process)
    run = json.loads(next(inner.record_dir.glob("*.json")).read_text())["run"]
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    reaped = subprocess.run(
        [sys.executable, "-m", "worker_utils", "reap", "--docker"],
        env=inner.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert reaped.returncode == 0, reaped.stderr
    assert our_containers(docker_engine, run) == []
    (inner.pytester.path / "test_sleeps.py").unlink()
    inner.pytester.makepyfile(test_next="def test_next(worker_redis): pass")
    code, output = inner.run("-n", "2")
    assert code == 0, output
    # The dead run's leases were on its own container, gone with it: nothing to free.
    assert "ConnectionError" not in output
    assert "reaping" not in output
