"""Unix socket paths short enough for ``bind(AF_UNIX)``, however deep the temp dir."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from worker_utils.errors import WorkerUtilsError

__all__ = [
    "SOCKET_PATH_MAX",
    "SocketPathError",
    "SocketPathFactory",
    "make_short_dir",
    "short_socket_dir",
]

#: Longest path ``bind(AF_UNIX)`` accepts, in bytes, without the final NUL.
SOCKET_PATH_MAX = 103 if sys.platform == "darwin" else 107

# Where a socket directory goes when the temp root is too deep: short, and
# writable on every POSIX host.
_SHORT_ROOTS = ("/tmp", "/var/tmp")


class SocketPathError(WorkerUtilsError, OSError):
    """No directory on this host is short enough for a Unix socket path."""


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


class SocketPathFactory:
    """Hands out Unix socket paths that fit ``bind(AF_UNIX)``, however deep the temp dir."""

    def __init__(self, preferred: Path) -> None:
        self._preferred = preferred
        self._short: Path | None = None
        self._given: set[str] = set()
        self._paths: list[Path] = []

    def __call__(self, name: str = "socket") -> Path:
        """Return a new socket path ending in ``name`` (made unique if asked twice)."""
        unique, n = name, 1
        while unique in self._given:
            n += 1
            unique = f"{name}{n}"
        self._given.add(unique)
        directory = short_socket_dir(self._preferred, len(os.fsencode(unique)))
        if directory is None:
            if self._short is None:
                self._short = make_short_dir()
            directory = self._short
        self._paths.append(directory / unique)
        return directory / unique

    def cleanup(self) -> None:
        """Remove the sockets at the paths handed out, and the short directory if one was made.

        The next test of the worker may then bind the same names again.
        """
        for path in self._paths:
            path.unlink(missing_ok=True)
        if self._short is not None:
            shutil.rmtree(self._short, ignore_errors=True)
