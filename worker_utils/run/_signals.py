"""SIGTERM ends a run the way Ctrl-C does: as KeyboardInterrupt, so that every teardown runs.

Python dies on SIGTERM without running ``finally`` blocks, so a run ended by
``timeout``, ``docker stop`` or a CI cancel would leave its servers, schemas,
leases and directory to the next run's reaper. Each process of the run turns
its first SIGTERM into KeyboardInterrupt. The process that owns the run also
passes its first SIGTERM or SIGINT on to the run's xdist workers, which register
here when they start: a terminal's Ctrl-C reaches every worker at once, but a
signal sent to the controller alone (``kill -INT``, a CI runner's cancel) would
reach them only through execnet, 5 to 10 seconds later, while they sit in a test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Literal

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
    :meth:`restore`, after calling ``on_signal``.

    Later SIGTERMs are ignored: ``timeout`` signals the process and then its
    whole process group, and a second interrupt would cut the cleanup short.
    SIGKILL still ends the process at once.

    With ``sigint``, SIGINT is taken over too, and counts as the same first
    interrupt: ``on_signal`` runs once for either. ``sigint="repeat"`` (the
    controller's choice) lets every later SIGINT interrupt as usual, so a user
    can still cut a slow cleanup short; ``sigint="once"`` (a worker's) ignores
    the later ones, which a terminal's Ctrl-C and the controller's relay would
    otherwise deliver twice.
    """

    def __init__(
        self,
        on_signal: Callable[[], object] | None = None,
        *,
        sigint: Literal["repeat", "once"] | None = None,
    ) -> None:
        self.on_signal = on_signal
        self.sigint = sigint
        self.installed: list[int] = []
        self.received = False

    def install(self) -> None:
        """Take over the signals, unless someone else handles them already or this is no
        main thread."""
        if threading.current_thread() is not threading.main_thread():
            return
        wanted = [signal.SIGTERM] + ([signal.SIGINT] if self.sigint else [])
        for sig in wanted:
            if signal.getsignal(sig) is _DEFAULTS[sig]:
                signal.signal(sig, self._handle)
                self.installed.append(sig)

    def restore(self) -> None:
        """Give the signals back their default action, where :meth:`install` took them over."""
        for sig in self.installed:
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, _DEFAULTS[sig])
        self.installed = []

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True  # pytest names the line the signal interrupted, as without us
        if self.received:
            if signum == signal.SIGINT and self.sigint == "repeat":
                raise KeyboardInterrupt
            return
        self.received = True
        if self.on_signal is not None:
            self.on_signal()
        raise KeyboardInterrupt


_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
_DEFAULTS: dict[int, _Handler] = {
    signal.SIGTERM: signal.SIG_DFL,
    signal.SIGINT: signal.default_int_handler,
}
