"""Finding server binaries, waiting for them to listen, and stopping them for sure."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterable
from pathlib import Path

from worker_utils.errors import WorkerUtilsError

__all__ = ["ServerStartError", "find_binary", "pid_alive", "stop_pid", "wait_for_port"]


class ServerStartError(WorkerUtilsError, RuntimeError):
    """An embedded server could not be found or started."""


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


def wait_for_port(host: str, port: int, timeout: float, *, pid: int | None = None) -> None:
    """Wait until something accepts TCP connections on ``host:port``.

    Raises:
        ServerStartError: Nothing listened within ``timeout`` seconds, or the
            process ``pid`` exited first.
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        if pid is not None and not pid_alive(pid):
            raise ServerStartError(f"the server process {pid} exited before listening on {port}")
        if time.monotonic() > deadline:
            raise ServerStartError(f"nothing listened on {host}:{port} after {timeout:g}s")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    """Return True if process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text()
        return status.rpartition(")")[2].split()[0] != "Z"
    return True


def stop_pid(pid: int, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to ``pid``, wait up to ``timeout`` seconds, then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it was our child
