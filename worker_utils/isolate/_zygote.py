"""The zygote: a clean process that forks one isolated child per request.

Started with ``subprocess`` (never forked from the test process), it imports
pytest, its built-in plugins and this plugin, and nothing of the user's: no
test module, no conftest, no native extension the tests load. It starts no
thread, so a fork of it holds no lock another thread owned. Each request on
its socket carries the child's channel and output file descriptors; the
zygote answers with the child's pid, and with its exit status once it ends.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import select
import signal
import socket
import sys


def _warm_up() -> None:
    """Import what every child needs, so that a fork starts with it loaded."""
    import pytest  # noqa: F401
    from _pytest.config import default_plugins

    for name in default_plugins:
        with contextlib.suppress(ImportError):
            importlib.import_module(f"_pytest.{name}")
    from worker_utils import plugin

    for module in ("xdist.plugin", "xdist.looponfail", *plugin.pytest_plugins):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    importlib.import_module("worker_utils.isolate._child")
    # pytest reads every installed distribution's entry points: warm the caches.
    from importlib import metadata

    for dist in metadata.distributions():
        dist.entry_points  # noqa: B018


def _child(control: int, output: int, zygote: socket.socket, wakeup: tuple[int, int]) -> None:
    zygote.close()
    signal.set_wakeup_fd(-1)
    for fd in wakeup:
        os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()  # its own process group: a time-out kills what the test started too
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    from worker_utils.isolate import _child as child

    code = 1
    try:
        code = child.serve(control)
    finally:
        child.exit(code)


def _reap(children: set[int], zygote: socket.socket) -> None:
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            message = {"pid": pid, "status": os.waitstatus_to_exitcode(status)}
            with contextlib.suppress(OSError):
                zygote.sendall(json.dumps(message).encode() + b"\n")


def main(fd: int) -> None:
    """Serve fork requests on socket ``fd`` until it closes; then kill what is left."""
    # Ctrl-C reaches the whole terminal group; the test process decides what ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _warm_up()
    # Children would otherwise copy every page of this heap the first time
    # their garbage collector walks it.
    gc.freeze()
    zygote = socket.socket(fileno=fd)
    wakeup = os.pipe()
    os.set_blocking(wakeup[1], False)
    signal.set_wakeup_fd(wakeup[1])
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    children: set[int] = set()
    while True:
        ready = select.select([zygote.fileno(), wakeup[0]], [], [])[0]
        if wakeup[0] in ready:
            os.read(wakeup[0], 512)
            _reap(children, zygote)
        if zygote.fileno() not in ready:
            continue
        try:
            _, fds, _, _ = socket.recv_fds(zygote, 64, 2)
        except OSError:
            fds = []
        if len(fds) != 2:
            break  # the test process closed the socket: it is done, or dead
        control, output = fds
        pid = os.fork()
        if pid == 0:
            _child(control, output, zygote, wakeup)
        os.close(control)
        os.close(output)
        children.add(pid)
        zygote.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main(int(sys.argv[1]))
