"""Run chosen tests in fresh interpreters that never loaded the user's code.

Pure machinery, no pytest: which tests a setting selects, how a child process
is started (from a zygote, a pool, or plainly spawned) and how the test
process talks to it. The child side lives in :mod:`worker_utils.isolate._child`
and the pytest side in :mod:`worker_utils.isolate.plugin`.

A child is never a fork of the test process. The zygote is a process started
with ``subprocess`` that has started pytest up to the first conftest, checked
that it holds no thread, native module or code of the project, and forks one
child per request, as the ``forkserver`` start method of :mod:`multiprocessing`
does: a child inherits nothing a test initialised.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from worker_utils.errors import WorkerUtilsError

__all__ = [
    "START_METHODS",
    "Child",
    "ChildGone",
    "IsolateError",
    "Launcher",
    "default_start_method",
    "describe_exit",
    "parse_patterns",
    "parse_start_method",
    "parse_timeout",
    "selects",
    "trim_stacks",
]

StartMethod = Literal["zygote", "pool", "spawn"]
START_METHODS: tuple[StartMethod, ...] = ("zygote", "pool", "spawn")

_PYTHON_FLAGS = ("-X", "faulthandler")  # a child that crashes still names where


class IsolateError(WorkerUtilsError, RuntimeError):
    """An isolated process could not be started, or a setting of isolation is wrong."""


class ChildGone(IsolateError):
    """The isolated process closed its channel: it exited or was killed."""


# -- settings ---------------------------------------------------------------------------


def parse_patterns(text: str) -> list[str]:
    """Split a setting of node-id globs and paths, separated by commas or whitespace."""
    return [part for part in text.replace(",", " ").split() if part]


def selects(patterns: Iterable[str], nodeid: str) -> bool:
    """Whether one of ``patterns`` selects the test ``nodeid``.

    A pattern is an :mod:`fnmatch` glob on the node id (``tests/native/*``,
    ``*::test_init*``) or a path: a directory or file selects every test under it.
    """
    for pattern in patterns:
        base = pattern.rstrip("/")
        if (
            fnmatch.fnmatchcase(nodeid, pattern)
            or nodeid == base
            or nodeid.startswith((base + "/", base + "::"))
        ):
            return True
    return False


def parse_timeout(text: str) -> float:
    """Read a number of seconds greater than zero.

    Raises:
        ValueError: ``text`` is not such a number.
    """
    try:
        value = float(text)
    except ValueError:
        raise ValueError from None  # float's own reason says nothing the message does not
    if not 0 < value < float("inf"):
        raise ValueError
    return value


def default_start_method(platform: str = sys.platform) -> StartMethod:
    """The zygote where forking a clean process is safe (Linux), else a pool of interpreters.

    On macOS system libraries may be unusable in a forked child even when the
    parent never touched them, which is why :mod:`multiprocessing` spawns there.
    """
    return "zygote" if platform.startswith("linux") else "pool"


def parse_start_method(text: str) -> StartMethod:
    """Read one of :data:`START_METHODS`, in any case.

    Raises:
        ValueError: Another value, or ``zygote`` where there is no ``fork``.
    """
    for method in START_METHODS:
        if text.lower() == method:
            if method == "zygote" and not hasattr(os, "fork"):
                raise ValueError("this platform cannot fork")
            return method
    raise ValueError


def describe_exit(returncode: int | None) -> str:
    """Say how a process ended: ``was killed by signal 11 (SIGSEGV)``, ``exited with code 3``."""
    if returncode is None:
        return "did not exit"
    if returncode < 0:
        try:
            name = f" ({signal.Signals(-returncode).name})"
        except ValueError:
            name = ""
        return f"was killed by signal {-returncode}{name}"
    return f"exited with code {returncode}"


_PLUMBING = re.compile(r'^\s+File "[^"]*(/_pytest/|/pluggy/|/worker_utils/isolate/|<frozen )')


def trim_stacks(text: str) -> str:
    """Drop the frames of pytest, pluggy and this package from faulthandler's stacks."""
    return "\n".join(line for line in text.splitlines() if not _PLUMBING.match(line))


# -- the channel ------------------------------------------------------------------------


class Channel:
    """JSON messages, one a line, over a stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        """Send one message; raise :class:`ChildGone` if the other end is closed."""
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as exc:
            raise ChildGone(str(exc)) from None

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """Return the next message.

        Raises:
            TimeoutError: Nothing complete arrived within ``timeout`` seconds.
            ChildGone: The other end closed the channel.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], wait)
            if not ready:
                raise TimeoutError
            try:
                chunk = self.sock.recv(1 << 16)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ChildGone("the channel closed")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


# -- children ---------------------------------------------------------------------------


class Child:
    """One isolated process: its channel, its output file, and how to end it."""

    def __init__(
        self,
        pid: int,
        channel: Channel,
        output: Path,
        scratch: Path,
        waiter: _Waiter,
    ) -> None:
        self.pid = pid
        self.channel = channel
        self.output = output
        self.scratch = scratch
        self._waiter = waiter
        self.returncode: int | None = None

    def wait(self, timeout: float) -> int | None:
        """Return the child's return code (negative: a signal), or None if it still runs."""
        if self.returncode is None:
            self.returncode = self._waiter.wait(self.pid, timeout)
        return self.returncode

    def abort(self, grace: float = 5.0) -> int | None:
        """End the child: SIGABRT (faulthandler writes every thread's stack), then SIGKILL."""
        self._signal(signal.SIGABRT)
        if self.wait(grace) is None:
            self.kill()
        return self.wait(grace)

    def kill(self) -> None:
        """Kill the child and everything it started, at once."""
        sig = getattr(signal, "SIGKILL", signal.SIGTERM)
        self._signal(sig)

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if hasattr(os, "killpg"):
                os.killpg(self.pid, sig)  # the child leads its own process group
            else:
                os.kill(self.pid, sig)

    def output_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines the child wrote to its stdout and stderr."""
        try:
            text = self.output.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip("\n").splitlines()[-lines:])

    def captured(self) -> list[str]:
        """Output the child's pytest had captured and not yet reported, in capture order."""
        found = []
        for path in sorted(self.scratch.glob("capture-*"), key=lambda p: int(p.name[8:])):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace")
                if text:
                    found.append(text)
        return found

    def close(self) -> None:
        """Close the channel and remove the child's scratch files."""
        self.channel.close()
        for path in (*self.scratch.glob("*"), self.output):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.scratch.rmdir()


class _Waiter:
    """Collects the exit status of children: ours (spawned) or the zygote's (forked)."""

    def __init__(self) -> None:
        self.popens: dict[int, subprocess.Popen[bytes]] = {}
        self.zygote: Channel | None = None
        self.statuses: dict[int, int] = {}

    def wait(self, pid: int, timeout: float) -> int | None:
        popen = self.popens.get(pid)
        if popen is not None:
            try:
                code = popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
            del self.popens[pid]
            return code
        deadline = time.monotonic() + timeout
        while pid not in self.statuses:
            if self.zygote is None:
                return None
            try:
                message = self.zygote.receive(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return None
            except ChildGone:
                return None  # the zygote died, and its children with it
            self.statuses[message["pid"]] = message["status"]
        return self.statuses.pop(pid)


def _spec(request: dict[str, Any]) -> dict[str, Any]:
    """What starting pytest takes from a request: the same for every child of a test process."""
    return {key: request[key] for key in ("env", "cwd", "path", "args", "rootdir")}


def _interpreter(module: str) -> list[str]:
    return [sys.executable, *_PYTHON_FLAGS, "-m", module]


class Launcher:
    """Starts isolated processes for one test process, by one of :data:`START_METHODS`.

    ``zygote``: one clean process, started with ``subprocess``, forks each child.
    ``pool``: each child is a new interpreter started ahead of need, so its
    start overlaps the previous test. ``spawn``: a new interpreter when needed.

    The zygote first starts pytest itself, up to the first conftest (see
    :mod:`worker_utils.isolate._zygote`); if that leaves it unclean it says why,
    :attr:`plain_reason` keeps the reason, and a plain zygote takes its place.

    Args:
        method: One of :data:`START_METHODS`.
        scratch: A directory for the children's output files, private to this process.
    """

    def __init__(self, method: StartMethod, scratch: Path) -> None:
        self.method = method
        self.scratch = scratch
        self._waiter = _Waiter()
        self._count = 0
        self._zygote: subprocess.Popen[bytes] | None = None
        self._zygote_sock: socket.socket | None = None
        self._spare: tuple[subprocess.Popen[bytes], socket.socket, Path] | None = None
        #: Why the zygote could not start pytest before forking, if it could not.
        self.plain_reason: str | None = None

    def start(self, request: dict[str, Any]) -> Child:
        """Start a child and send it ``request``.

        The request holds the test process's command line and environment, the
        node ids to run and the worker the child acts for.

        Raises:
            IsolateError: The process could not be started.
        """
        self._count += 1
        scratch = self.scratch / f"child-{self._count}"
        scratch.mkdir(parents=True, exist_ok=True)
        if self.method == "zygote":
            child = self._fork(scratch, request)
        else:
            popen, sock, output = self._spare or self._spawn(request)
            self._spare = None
            self._waiter.popens[popen.pid] = popen
            child = Child(popen.pid, Channel(sock), output, scratch, self._waiter)
            if self.method == "pool":
                self._spare = self._spawn(request)
        child.channel.send({**request, "scratch": str(scratch)})
        return child

    def _spawn(
        self, request: dict[str, Any]
    ) -> tuple[subprocess.Popen[bytes], socket.socket, Path]:
        ours, theirs = socket.socketpair()
        output = self._output_path()
        with theirs, open(output, "wb") as out:
            try:
                popen = subprocess.Popen(
                    [*_interpreter("worker_utils.isolate._child"), str(theirs.fileno())],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
            except OSError as exc:
                ours.close()
                raise IsolateError(
                    f"worker_utils.isolate: cannot start {sys.executable}: {exc}"
                ) from None
        # The command line first: it starts pytest before the test it will run is known.
        Channel(ours).send(_spec(request))
        return popen, ours, output

    def _output_path(self) -> Path:
        return self.scratch / f"output-{self._count}-{time.monotonic_ns()}"

    def _start_zygote(self, request: dict[str, Any]) -> socket.socket:
        configure = self.plain_reason is None
        ours, theirs = socket.socketpair()
        output = self.scratch / "zygote-output"
        with theirs, open(output, "ab") as out:
            try:
                self._zygote = subprocess.Popen(
                    [*_interpreter("worker_utils.isolate._zygote"), str(theirs.fileno())],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    pass_fds=(theirs.fileno(),),
                )
            except OSError as exc:
                ours.close()
                raise IsolateError(
                    f"worker_utils.isolate: cannot start {sys.executable}: {exc}"
                ) from None
        self._zygote_sock = ours
        channel = self._waiter.zygote = Channel(ours)
        try:
            channel.send({"configure": configure, **_spec(request)})
            answer = channel.receive(120.0)
        except (TimeoutError, ChildGone):
            self._stop_zygote()
            raise IsolateError(
                f"worker_utils.isolate: the zygote did not start; its last output:\n"
                f"{self._zygote_output()}"
            ) from None
        if "unclean" in answer:
            self._stop_zygote()
            self.plain_reason = answer["unclean"]
            return self._start_zygote(request)
        return ours

    def _zygote_output(self) -> str:
        try:
            text = (self.scratch / "zygote-output").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-40:])

    def _stop_zygote(self) -> None:
        if self._zygote is not None:
            assert self._zygote_sock is not None
            self._zygote_sock.close()
            try:
                self._zygote.wait(10)
            except subprocess.TimeoutExpired:
                self._zygote.kill()
                self._zygote.wait()
            self._zygote = self._zygote_sock = self._waiter.zygote = None

    def _fork(self, scratch: Path, request: dict[str, Any]) -> Child:
        zygote = self._zygote_sock
        if zygote is None or self._zygote is None or self._zygote.poll() is not None:
            zygote = self._start_zygote(request)
        ours, theirs = socket.socketpair()
        output = self._output_path()
        out_fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            socket.send_fds(zygote, [b"fork\n"], [theirs.fileno(), out_fd])
        except OSError as exc:
            ours.close()
            raise IsolateError(f"worker_utils.isolate: the zygote is gone: {exc}") from None
        finally:
            theirs.close()
            os.close(out_fd)
        assert self._waiter.zygote is not None
        try:
            while True:
                message = self._waiter.zygote.receive(60.0)
                if "status" in message:  # a previous child's exit, read late
                    self._waiter.statuses[message["pid"]] = message["status"]
                    continue
                break
        except (TimeoutError, ChildGone):
            ours.close()
            raise IsolateError(
                f"worker_utils.isolate: the zygote did not answer; its last output:\n"
                f"{self._zygote_output()}"
            ) from None
        return Child(message["pid"], Channel(ours), output, scratch, self._waiter)

    def close(self) -> None:
        """Stop the zygote and any spare interpreter."""
        if self._spare is not None:
            popen, sock, output = self._spare
            sock.close()  # it waits for a request: a closed channel ends it
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(10)
            if popen.poll() is None:
                popen.kill()
                popen.wait()
            with contextlib.suppress(OSError):
                output.unlink()
            self._spare = None
        self._stop_zygote()
