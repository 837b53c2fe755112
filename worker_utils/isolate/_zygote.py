"""The zygote: a clean process that forks one isolated child per request.

Started with ``subprocess`` (never forked from the test process), it imports
pytest, its built-in plugins and this plugin. It then starts pytest with the
test process's command line and stops where pytest would import the first
``conftest.py``: plugins are loaded, options and ini files read, and nothing of
the project's code has run. Each child continues from there, so it starts
with what any pytest process holds before its first conftest, and does the
rest itself: conftests, configuration, collection of its tests, the tests.

It then reads its plugin modules once for what pytest's fixture manager acts
on at session start (:mod:`worker_utils.isolate._fixture_scan`), which each
child would otherwise read again in full.

Before it forks anything the zygote checks that it is still clean: one
thread, no extension module outside the standard library, no module of the
project under test. A plugin that breaks this (it starts a thread or loads a
native module when imported) makes it stop and say why; the test process then
starts a *plain* zygote, which imports only pytest and this plugin, and whose
children start pytest from the beginning.

Each request on the zygote's socket carries the child's channel and output
file descriptors; the zygote answers with the child's pid, and with its exit
status once it ends.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import importlib.machinery
import json
import os
import select
import signal
import socket
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from worker_utils.isolate import Channel, _fixture_scan


def _warm_up() -> None:
    """Import what every child needs, so that a fork starts with it loaded."""
    import pytest  # noqa: F401
    from _pytest.config import default_plugins

    for name in default_plugins:
        with contextlib.suppress(ImportError):
            importlib.import_module(f"_pytest.{name}")
    from worker_utils import plugin

    # pytest imports pdb (debugging) and readline (capture) in every process.
    for module in ("xdist.plugin", "xdist.looponfail", *plugin.pytest_plugins, "pdb", "readline"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    importlib.import_module("worker_utils.isolate._child")
    # pytest reads every installed distribution's entry points: warm the caches.
    from importlib import metadata

    for dist in metadata.distributions():
        dist.entry_points  # noqa: B018


def _stdlib_dirs() -> tuple[Path, ...]:
    return tuple({Path(os.__file__).parent, Path(select.__file__).parent})


def unclean(before: Iterable[str], rootdir: str) -> str | None:
    """Why this process may not fork isolated children, or None if it may.

    Args:
        before: Modules that were imported before pytest was started here
            (pytest and worker_utils): only the others are examined.
        rootdir: The project's root directory; modules found in it, outside a
            ``site-packages`` directory, are the project's own.
    """
    known = set(before)
    stdlib = _stdlib_dirs()
    root = Path(rootdir)
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for name, module in sorted(sys.modules.items()):
        if name in known:
            continue
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file)
        installed = {"site-packages", "dist-packages"} & set(path.parts)
        if file.endswith(suffixes) and (installed or not any(map(path.is_relative_to, stdlib))):
            return f"a plugin imported the extension module {name} ({file})"
        if path.is_relative_to(root) and not installed:
            return f"a plugin imported {name} of the project under test ({file})"
    started = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
    if started:
        return f"a plugin started a thread ({', '.join(started)})"
    tasks = Path("/proc/self/task")  # threads that native code started, on Linux
    native = len(os.listdir(tasks)) - 1 if tasks.is_dir() else 0
    if native:
        return f"a plugin started {native} native thread{'s' if native > 1 else ''}"
    return None


class Server:
    """The zygote's side of its socket: forks a child per request, reports exit statuses."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.channel = Channel(sock)
        self.children: set[int] = set()
        self.wakeup = (-1, -1)

    def serve(self) -> tuple[int, int]:
        """Fork a child per request until the socket closes, then end every child and exit.

        Returns only in a child: its channel and output file descriptors.
        """
        # Children would otherwise copy every page of this heap the first time
        # their garbage collector walks it.
        gc.freeze()
        wakeup = self.wakeup = os.pipe()
        os.set_blocking(wakeup[1], False)
        signal.set_wakeup_fd(wakeup[1])
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        while True:
            ready = select.select([self.sock.fileno(), wakeup[0]], [], [])[0]
            if wakeup[0] in ready:
                os.read(wakeup[0], 512)
                self._reap()
            if self.sock.fileno() not in ready:
                continue
            try:
                _, fds, _, _ = socket.recv_fds(self.sock, 64, 2)
            except OSError:
                fds = []
            if len(fds) != 2:
                break  # the test process closed the socket: it is done, or dead
            control, output = fds
            pid = os.fork()
            if pid == 0:
                self._become_child(output)
                return control, output
            os.close(control)
            os.close(output)
            self.children.add(pid)
            self.sock.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os._exit(0)

    def _become_child(self, output: int) -> None:
        self.sock.close()
        signal.set_wakeup_fd(-1)
        for fd in self.wakeup:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()  # its own process group: a time-out kills what the test started too
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)

    def _reap(self) -> None:
        for pid in list(self.children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.children.discard(pid)
                message = {"pid": pid, "status": os.waitstatus_to_exitcode(status)}
                with contextlib.suppress(OSError):
                    self.sock.sendall(json.dumps(message).encode() + b"\n")


def _forked(server: Server, before: set[str], rootdir: str, config: pytest.Config) -> Channel:
    """Check that this process is clean, then fork children; return a child's channel, in it."""
    # Before the check: it reads only the plugins' modules, and the check covers what it did.
    _fixture_scan.prepare(config.pluginmanager.list_name_plugin())
    problem = unclean(before, rootdir)
    if problem is not None:
        server.channel.send({"unclean": problem})
        os._exit(0)
    server.channel.send({"ready": True})
    control, _ = server.serve()
    return Channel(socket.socket(fileno=control))


def main(fd: int) -> None:
    """Serve the test process on socket ``fd``: configure pytest up to its conftests, or not."""
    # Ctrl-C reaches the whole terminal group; the test process decides what ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server = Server(socket.socket(fileno=fd))
    spec = server.channel.receive()
    _warm_up()
    from worker_utils.isolate import _child

    if spec["configure"]:
        _child.adopt(spec)
        before = set(sys.modules)
        pause = _child.Pause(functools.partial(_forked, server, before, spec["rootdir"]))
        code = pytest.main(_child.pytest_args(spec["args"]), plugins=[pause])
        if not _child.running():
            # pytest stopped before its conftests (a usage error): plain children say why.
            server.channel.send(
                {"unclean": f"pytest stopped before loading conftest.py files (exit code {code})"}
            )
            os._exit(0)
        _child.exit(int(code))
    server.channel.send({"ready": True})
    control, _ = server.serve()
    code = 1
    try:
        code = _child.serve(control)
    finally:
        _child.exit(code)


if __name__ == "__main__":
    main(int(sys.argv[1]))
