"""Temporary paths private to a worker or shared by one run, and short socket paths."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from worker_utils._worker import get_worker_id
from worker_utils.coordination import current_run_dir

__all__ = [
    "SOCKET_PATH_MAX",
    "SocketPathError",
    "make_short_dir",
    "run_tmp_path",
    "short_socket_dir",
    "worker_tmp_path",
]

#: Longest path ``bind(AF_UNIX)`` accepts, in bytes, without the final NUL.
SOCKET_PATH_MAX = 103 if sys.platform == "darwin" else 107

# Where a socket directory goes when the temp root is too deep: short, and
# writable on every POSIX host.
_SHORT_ROOTS = ("/tmp", "/var/tmp")


class SocketPathError(OSError):
    """No directory on this host is short enough for a Unix socket path."""


def run_tmp_path(env: Mapping[str, str] | None = None) -> Path:
    """Return a directory shared by every worker of the current run, and only that run.

    It is removed when the run ends. Two concurrent runs get different directories.
    """
    path = current_run_dir(env) / "shared"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def worker_tmp_path(env: Mapping[str, str] | None = None) -> Path:
    """Return a directory private to this worker in the current run.

    A worker that replaces a crashed one has a new id, and so a new directory.
    """
    path = current_run_dir(env) / "workers" / get_worker_id(env)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def short_socket_dir(preferred: Path, longest_name: int = 32) -> Path | None:
    """Return ``preferred`` if a socket named up to ``longest_name`` bytes fits in it.

    Returns None when it does not: the caller then makes a directory with
    :func:`make_short_dir` and removes it when done.
    """
    if len(os.fsencode(preferred)) + 1 + longest_name <= SOCKET_PATH_MAX:
        return preferred
    return None


def make_short_dir(longest_name: int = 32) -> Path:
    """Create a new private directory short enough for socket names of ``longest_name`` bytes.

    Raises:
        SocketPathError: Neither ``/tmp``, ``/var/tmp`` nor the temp dir is short
            enough and writable.
    """
    for root in (*_SHORT_ROOTS, tempfile.gettempdir()):
        # mkdtemp adds 8 characters after the prefix
        if len(os.fsencode(root)) + len("/wu-") + 8 + 1 + longest_name > SOCKET_PATH_MAX:
            continue
        try:
            return Path(tempfile.mkdtemp(prefix="wu-", dir=root))
        except OSError:
            continue
    raise SocketPathError(
        f"worker_socket_path: no writable directory among {', '.join(_SHORT_ROOTS)} leaves room "
        f"for a {longest_name}-byte socket name within {SOCKET_PATH_MAX} bytes; "
        f"make /tmp writable or set TMPDIR to a short directory"
    )
