"""The contract every server the plugin starts keeps, and the run-once machinery behind it."""

from __future__ import annotations

import abc
import contextlib
import functools
import importlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from worker_utils.errors import WorkerUtilsError
from worker_utils.run import coordination

__all__ = ["Server", "ServerStartError", "stop_saved"]

_STATE_DIR = "servers"


class ServerStartError(WorkerUtilsError, RuntimeError):
    """A server the plugin starts could not be found or started."""


class Server(abc.ABC):
    """A server started once per run when no URL is configured, and stopped when the run ends.

    A backend implements :meth:`start` and :meth:`stop`; :meth:`url` does the
    rest. The first worker to call :meth:`url` starts the server through
    :func:`~worker_utils.run.coordination.run_once`; every other worker of the
    run gets the same URL. The controller calls :meth:`stop` after the last
    worker ends, and the next run's reaper does so if the run crashed: the
    server's record is kept in the run's directory, whose liveness lock says
    whether its owner, the run, is alive.
    """

    #: Names the server in its run-once keys and its state file: ``postgres``.
    name: ClassVar[str]

    @abc.abstractmethod
    def start(self, directory: Path, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Start the server; return its record: JSON with its ``url`` and what :meth:`stop` needs.

        Hold the lease of the server's port until the server listens on it,
        and record its process as a :class:`~worker_utils.servers._process.ProcessId`,
        so that :meth:`stop` never signals a process that reused its pid.

        Args:
            directory: A private directory in the run's directory for the
                server's files (logs, pid files), removed with it.
            save: Called with the record as soon as there is something to undo
                (a directory, a process, a container) and again as it grows:
                if the start is cut short, the record saved last is what
                :meth:`stop` gets, in this process or after a crash.
        """

    @classmethod
    @abc.abstractmethod
    def stop(cls, record: Mapping[str, Any]) -> None:
        """Stop the server a record describes and remove what it made.

        Safe on a record saved halfway through :meth:`start`, when the server
        is gone already, and twice.
        """

    def url(self, run_dir: Path, *, timeout: float = 120.0) -> str:
        """Start the run's server, or wait for the worker that does, and return its URL.

        Raises:
            ServerStartError: The server could not start, or another worker's
                start took longer than ``timeout`` seconds.
        """
        key = f"worker-utils-{self.name}-server"
        state = run_dir / _STATE_DIR / f"{self.name}.json"
        cls = type(self)
        try:
            # Registered before the start, so that a start cut short by a crash is undone too.
            coordination.run_once(
                f"{key}-stop",
                lambda: {"server": f"{cls.__module__}:{cls.__qualname__}", "state": str(state)},
                teardown=stop_saved,
                run_dir=run_dir,
            )
            record = coordination.run_once(
                key, functools.partial(self._start, state), run_dir=run_dir, timeout=timeout
            )
        except coordination.RunOnceError as exc:
            raise ServerStartError(str(exc)) from None
        return str(record["url"])

    def _start(self, state: Path) -> dict[str, Any]:
        directory = state.with_suffix("")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        saved: dict[str, Any] = {}

        def save(record: dict[str, Any]) -> None:
            saved.clear()
            saved.update(record)
            tmp = state.with_suffix(".tmp")
            tmp.write_text(json.dumps(record))
            tmp.replace(state)  # a crash never leaves half a record

        try:
            record = self.start(directory, save)
            save(record)
        except BaseException:
            # A stop that fails too leaves the record for the run's teardown to retry;
            # the start's own error is the one to report.
            with contextlib.suppress(Exception):
                if saved:
                    type(self).stop(saved)
                state.unlink(missing_ok=True)
            raise
        return record


def stop_saved(value: Mapping[str, str]) -> None:
    """Stop the server whose record :meth:`Server.url` saved: the run-once teardown of servers."""
    state = Path(value["state"])
    try:
        record = json.loads(state.read_text())
    except FileNotFoundError:
        return  # never started, or its start failed and undid itself
    module, _, name = value["server"].partition(":")
    server: type[Server] = getattr(importlib.import_module(module), name)
    server.stop(record)
    state.unlink(missing_ok=True)
