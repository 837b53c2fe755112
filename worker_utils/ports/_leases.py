"""TCP port leases that no other worker or concurrent run on this host receives while held.

A candidate port comes from portpicker (free for TCP and UDP when checked). The
lease is an exclusive ``flock`` on ``<lock dir>/<port>.lock``, a directory
shared by every user and run on the host. Lock files stay after release:
unlinking a lock file while another process opens it would let two processes
lock two different files of the same name. The kernel drops the lock when the
holder dies, so a crashed worker never keeps a port reserved.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import portpicker

from worker_utils._worker import get_worker_num
from worker_utils.errors import WorkerUtilsError

__all__ = [
    "PortLease",
    "PortsExhaustedError",
    "get_worker_port_offset",
    "lease_port",
    "parse_port_range",
    "port_lock_dir",
]

LOCK_DIR_VAR = "WORKER_UTILS_PORT_LOCK_DIR"
_RANGE = re.compile(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*")
_PICK_ATTEMPTS = 200


class PortsExhaustedError(WorkerUtilsError, RuntimeError):
    """No free, unleased port could be found."""


@dataclass
class PortLease:
    """A port reserved for this process until :meth:`release` (or process exit)."""

    port: int
    _fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        """Give the port back; other workers may lease it again."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this lease still reserves the port."""
        return self._fd is not None


def get_worker_port_offset(stride: int = 100, env: Mapping[str, str] | None = None) -> int:
    """Return ``worker number * stride``: 0 on ``gw0`` and outside xdist, 100 on ``gw1``...

    The classic deterministic scheme, for configurations that must be computed
    at import time. It does not protect against other runs on the host, nor
    against a restarted worker whose higher number leaves the planned block:
    prefer the ``worker_port`` fixture or :func:`lease_port`.
    """
    if stride < 1:
        raise ValueError(f"get_worker_port_offset: stride must be at least 1, got {stride}")
    return get_worker_num(env) * stride


def _lock_root() -> str:
    # tmpfs first: creating a lock file there costs microseconds, on a disk it
    # can cost milliseconds, and a lock means nothing after a reboot anyway.
    for root in ("/dev/shm", "/tmp"):
        if os.path.isdir(root) and os.access(root, os.W_OK):
            return root
    return tempfile.gettempdir()


def port_lock_dir() -> Path:
    """Return the host-wide directory of port lock files, creating it.

    ``WORKER_UTILS_PORT_LOCK_DIR`` overrides it; every run that must not collide
    has to agree on it.
    """
    given = os.environ.get(LOCK_DIR_VAR)
    path = Path(given) if given else Path(_lock_root()) / "worker-utils-ports"
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        # Shared by every user on the host, like /tmp itself.
        with contextlib.suppress(PermissionError):
            os.chmod(path, 0o1777)
    return path


def parse_port_range(text: str, *, setting: str = "worker_utils_port_range") -> range:
    """Parse ``"20000-20999"`` into an inclusive range of ports.

    Raises:
        ValueError: The text is not ``LOW-HIGH`` with 1 <= LOW <= HIGH <= 65535.
    """
    match = _RANGE.fullmatch(text)
    if match:
        low, high = int(match[1]), int(match[2])
        if 1 <= low <= high <= 65535:
            return range(low, high + 1)
    raise ValueError(
        f"{setting}: found {text!r}; expected LOW-HIGH with 1 <= LOW <= HIGH <= 65535, "
        f"such as 20000-20999"
    )


def _lock(path: Path) -> int | None:
    # A bare flock rather than filelock: a lease is taken per port, often many
    # per test, and filelock's bookkeeping costs about 35 times more here.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _try_lease(port: int, lock_dir: Path) -> PortLease | None:
    fd = _lock(lock_dir / f"{port}.lock")
    if fd is None:
        return None
    # Checked after locking: a port bound by something outside our scheme
    # (another program, or a server a lease holder started) is not free.
    if not portpicker.is_port_free(port):
        os.close(fd)
        return None
    return PortLease(port, fd)


def lease_port(*, port_range: range | None = None, lock_dir: Path | None = None) -> PortLease:
    """Reserve a free TCP port for this process.

    Args:
        port_range: Take ports only from this range; portpicker's choice otherwise.
        lock_dir: The host-wide lock directory; :func:`port_lock_dir` by default.

    Raises:
        PortsExhaustedError: Every candidate was bound or leased by someone else.
    """
    directory = lock_dir or port_lock_dir()
    if port_range is not None:
        candidates = list(port_range)
        random.shuffle(candidates)  # concurrent callers start at different ports
        for port in candidates:
            lease = _try_lease(port, directory)
            if lease is not None:
                return lease
        raise PortsExhaustedError(
            f"worker_port: all {len(port_range)} ports in {port_range.start}-"
            f"{port_range.stop - 1} are bound or leased by other workers; widen "
            f"worker_utils_port_range (ini) or WORKER_UTILS_PORT_RANGE, or use fewer ports"
        )
    for _ in range(_PICK_ATTEMPTS):
        try:
            port = portpicker.pick_unused_port()
        except portpicker.NoFreePortFoundError:
            break
        lease = _try_lease(port, directory)
        if lease is not None:
            return lease
    raise PortsExhaustedError(
        f"worker_port: portpicker found no free, unleased port in {_PICK_ATTEMPTS} attempts; "
        f"set worker_utils_port_range (ini) or WORKER_UTILS_PORT_RANGE to a range with free ports"
    )
