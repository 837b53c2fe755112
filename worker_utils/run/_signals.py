"""SIGTERM ends a run the way Ctrl-C does: as KeyboardInterrupt, so that every teardown runs.

Python dies on SIGTERM without running ``finally`` blocks, so a run ended by
``timeout``, ``docker stop`` or a CI cancel would leave its servers, schemas,
leases and directory to the next run's reaper. Each process of the run turns
its first SIGTERM into KeyboardInterrupt. The process that owns the run also
passes it on to the run's xdist workers, which register here when they start:
a terminal's Ctrl-C reaches every worker at once, a SIGTERM sent to the
controller alone would reach them only through execnet, seconds later.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

__all__ = ["SigtermAsInterrupt", "register_worker", "signal_workers"]

_WORKERS = "worker-pids"


def register_worker(run_dir: Path) -> None:
    """Record this process as a worker of the run, for :func:`signal_workers`."""
    directory = run_dir / _WORKERS
    directory.mkdir(mode=0o700, exist_ok=True)
    (directory / str(os.getpid())).touch()


def signal_workers(run_dir: Path, sig: int) -> None:
    """Send ``sig`` to the run's registered workers that are children of this process.

    Only children: a child's pid cannot be reused until this process reaps it,
    so a registered pid that a stranger took since is never signalled.
    """
    import psutil

    registered = {path.name for path in (run_dir / _WORKERS).glob("*")}
    for child in psutil.Process().children():
        if str(child.pid) in registered:
            with contextlib.suppress(psutil.Error):
                child.send_signal(sig)


class SigtermAsInterrupt:
    """Raises KeyboardInterrupt on this process's first SIGTERM, between :meth:`install` and
    :meth:`restore`.

    Later SIGTERMs are ignored: ``timeout`` signals the process and then its
    whole process group, and a second interrupt would cut the cleanup short.
    SIGKILL still ends the process at once.
    """

    def __init__(self, on_signal: Callable[[], object] | None = None) -> None:
        self.on_signal = on_signal
        self.installed = False
        self.received = False

    def install(self) -> None:
        """Take over SIGTERM, unless someone else handles it already or this is no main thread."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, self._handle)
        self.installed = True

    def restore(self) -> None:
        """Give SIGTERM back its default action, if :meth:`install` took it over."""
        if self.installed and signal.getsignal(signal.SIGTERM) == self._handle:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received:
            return
        self.received = True
        if self.on_signal is not None:
            self.on_signal()
        raise KeyboardInterrupt
