"""TCP port leases that no other worker or concurrent run on this host receives while held.

Ports come from a range, by default one below the kernel's ephemeral range
(see :func:`default_port_range`): a port there is never taken as the local
port of an outgoing connection. The lease is an exclusive ``flock`` on
``<lock dir>/<port>.lock``, a directory shared by every user and run on the
host. Lock files stay after release: unlinking a lock file while another
process opens it would let two processes lock two different files of the
same name. The kernel drops the lock when the holder dies, so a crashed
worker never keeps a port reserved.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import portpicker

from worker_utils._worker import get_worker_num
from worker_utils.errors import WorkerUtilsError

__all__ = [
    "PortLease",
    "PortsExhaustedError",
    "count_ports",
    "default_port_range",
    "describe_range",
    "get_worker_port_offset",
    "lease_port",
    "parse_port_range",
    "port_lock_dir",
]

LOCK_DIR_VAR = "WORKER_UTILS_PORT_LOCK_DIR"
_RANGE = re.compile(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*")
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_RANGE = range(20000, 30000)
_RANDOM_ATTEMPTS = 20

# The ports this process holds leases on, to tell in an error whose they are.
_held: set[int] = set()


def describe_range(ports: range) -> str:
    """Return ``"LOW-HIGH"`` for an inclusive port range, the form the settings take."""
    return f"{ports.start}-{ports.stop - 1}"


def count_ports(count: int) -> str:
    """Return ``"1 port"`` or ``"N ports"``."""
    return f"{count} port{'' if count == 1 else 's'}"


class PortsExhaustedError(WorkerUtilsError, RuntimeError):
    """Every port of the range is bound, or leased by this or another process.

    Attributes:
        port_range: The range that was searched.
        held_here: How many of its ports this process holds leases on.
    """

    def __init__(self, port_range: range, held_here: int) -> None:
        self.port_range = port_range
        self.held_here = held_here
        super().__init__(
            f"lease_port: every port of {describe_range(port_range)} is taken, "
            f"{count_ports(len(port_range))}: {held_here} held by this process, "
            f"{len(port_range) - held_here} bound or leased elsewhere; pass a wider "
            f"port_range, or release leases"
        )

    def __reduce__(self) -> tuple[type[PortsExhaustedError], tuple[range, int]]:
        return type(self), (self.port_range, self.held_here)


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
            _held.discard(self.port)

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


def default_port_range(ephemeral: Path = _EPHEMERAL) -> range:
    """Return the ports leased when no range is configured: 20000-29999 on most hosts.

    The kernel takes the local port of every outgoing connection from its
    ephemeral range (read from ``ephemeral``; 32768-60999 by default on Linux),
    so a port leased there can be taken before the test binds it. When that
    range starts below 30000, the default is instead the (up to) 10000 ports
    just below it, from 1024; when fewer than 1000 ports are left there,
    20000-29999 is kept all the same. Every run on the host computes the same
    range, and the host-wide lock files keep their leases apart.
    """
    try:
        low = int(ephemeral.read_text().split()[0])
    except (OSError, ValueError, IndexError):  # no such file: not Linux
        return _DEFAULT_RANGE
    if low >= _DEFAULT_RANGE.stop or low - 1024 < 1000:
        return _DEFAULT_RANGE
    return range(max(1024, low - len(_DEFAULT_RANGE)), low)


def _candidates(ports: range) -> Iterator[int]:
    """A few random ports, then every port of the range once, from a random start.

    The random picks spread concurrent callers over the range; the scan makes
    sure a lease fails only when every port is taken, however many are held.
    """
    for _ in range(min(_RANDOM_ATTEMPTS, len(ports))):
        yield random.choice(ports)
    start = random.randrange(len(ports)) if ports else 0
    for offset in range(len(ports)):
        yield ports[(start + offset) % len(ports)]


def lease_port(*, port_range: range | None = None, lock_dir: Path | None = None) -> PortLease:
    """Reserve a free TCP port for this process.

    Args:
        port_range: Take ports only from this range; by default a range below
            the kernel's ephemeral range, 20000-29999 on most hosts.
        lock_dir: The host-wide lock directory; :func:`port_lock_dir` by default.

    Raises:
        PortsExhaustedError: Every port of the range is bound, or leased by
            this or another process.
    """
    directory = lock_dir or port_lock_dir()
    ports = default_port_range() if port_range is None else port_range
    for port in _candidates(ports):
        lease = _try_lease(port, directory)
        if lease is not None:
            _held.add(port)
            return lease
    raise PortsExhaustedError(ports, sum(port in ports for port in _held))
