"""Processes the plugin starts or records: their identity, liveness, ports and stopping.

A process is named by its pid *and* its start time (:class:`ProcessId`): once
a process exits its pid is free for the next one, and a reused pid must never
be taken for the recorded process, let alone signalled. psutil reads both the
same way on Linux, macOS and the BSDs. It is imported inside the functions
that need it, to keep the plugin's start-up light.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from worker_utils._util import wait_until
from worker_utils.servers._base import ServerStartError

__all__ = [
    "ProcessId",
    "ServerStartError",
    "find_binary",
    "owner_alive",
    "owner_record",
    "wait_for_port",
]

# psutil derives a start time from the boot time, which moves by up to a second
# when the clock is adjusted; a pid is never reused within a second of its start.
_START_SLACK = 1.0


def find_binary(name: str, extra_dirs: Iterable[str | Path] = ()) -> Path | None:
    """Return the first executable ``name`` on PATH or in ``extra_dirs``, else None."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for directory in extra_dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass(frozen=True)
class ProcessId:
    """One process, named by its pid and its start time (seconds since the epoch)."""

    pid: int
    started: float

    @classmethod
    def of(cls, pid: int | None = None, *, command_has: str | None = None) -> ProcessId | None:
        """Return the identity of process ``pid`` (this process by default), None if it is gone.

        Args:
            pid: The process; this one by default.
            command_has: Return None unless the process's command line contains
                this text: for a pid read from a file that may be stale.
        """
        import psutil

        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            if command_has is not None and command_has not in " ".join(process.cmdline()):
                return None
            return cls(process.pid, process.create_time())
        except psutil.Error:
            return None

    @classmethod
    def from_record(cls, data: object) -> ProcessId | None:
        """Read what :meth:`as_record` wrote; None if ``data`` is not such a record."""
        if not isinstance(data, Mapping):
            return None
        pid, started = data.get("pid"), data.get("started")
        if isinstance(pid, int) and isinstance(started, (int, float)):
            return cls(pid, float(started))
        return None

    def as_record(self) -> dict[str, Any]:
        """Return this identity as JSON data."""
        return asdict(self)

    def alive(self) -> bool:
        """Whether this very process still runs: same pid, same start time, not a zombie.

        A process we may not inspect (another user's, on some systems) counts
        as alive: the answer decides whether to take over what it owns.
        """
        import psutil

        try:
            process = psutil.Process(self.pid)
            return (
                process.status() != psutil.STATUS_ZOMBIE
                and abs(process.create_time() - self.started) < _START_SLACK
            )
        except psutil.AccessDenied:
            return True
        except psutil.Error:
            return False

    def send(self, sig: int) -> bool:
        """Send ``sig`` if this very process still runs; return whether it was sent."""
        import psutil

        if not self.alive():
            return False
        try:
            # psutil checks again, just before sending, that the pid was not reused.
            psutil.Process(self.pid).send_signal(sig)
        except psutil.Error:
            return False
        return True

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 10.0) -> None:
        """Send ``sig``, wait up to ``timeout`` seconds for the process to end, then SIGKILL it."""
        if self.send(sig) and not self._wait_gone(timeout) and self.send(signal.SIGKILL):
            self._wait_gone(5.0)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, os.WNOHANG)  # reap it if it was our child

    def _wait_gone(self, timeout: float) -> bool:
        return wait_until(lambda: None if self.alive() else True, timeout=timeout) is not None


def _pid_namespace() -> str:
    # psutil has no word for pid namespaces; two containers on one host share
    # its name but not their pids.
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def owner_record() -> dict[str, Any]:
    """This process as the owner of a lease or a namespace: host, pid namespace, pid, start."""
    me = ProcessId.of()
    assert me is not None  # this process runs
    return {"host": socket.gethostname(), "pidns": _pid_namespace(), **me.as_record()}


def owner_alive(record: Mapping[str, Any]) -> bool | None:
    """Whether the owner :func:`owner_record` wrote still runs; None when that cannot be told here.

    None for an owner on another host or in another pid namespace, and for a
    record without a start time.
    """
    process = ProcessId.from_record(record)
    if (
        process is None
        or record.get("host") != socket.gethostname()
        or record.get("pidns") != _pid_namespace()
    ):
        return None
    return process.alive()


def wait_for_port(
    host: str, port: int, timeout: float, *, process: ProcessId | None = None
) -> None:
    """Wait until something accepts TCP connections on ``host:port``.

    Raises:
        ServerStartError: Nothing listened within ``timeout`` seconds, or
            ``process`` exited first.
    """

    def listening() -> bool | None:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        if process is not None and not process.alive():
            raise ServerStartError(
                f"the server process {process.pid} exited before listening on {port}"
            )
        return None

    if wait_until(listening, timeout=timeout) is None:
        raise ServerStartError(f"nothing listened on {host}:{port} after {timeout:g}s")
