"""Process identity: a live process, a zombie, a reused pid, an owner elsewhere."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from worker_utils import ports
from worker_utils._util import wait_until
from worker_utils.servers import ServerStartError
from worker_utils.servers._process import ProcessId, owner_alive, owner_record, wait_for_port


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child process that runs until it is signalled."""
    script = "import time; print(flush=True); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert process.stdout is not None
    with process.stdout:
        process.stdout.readline()  # it runs its own command line now, not pytest's
        yield process
        process.kill()
        process.wait()


def test_a_live_process_is_alive_and_stops_when_stopped(
    sleeper: subprocess.Popen[bytes],
) -> None:
    process = ProcessId.of(sleeper.pid)
    assert process is not None
    assert process.alive()
    process.stop(timeout=10)
    assert not process.alive()
    assert ProcessId.of(sleeper.pid) is None


def test_a_reused_pid_is_dead_and_never_signalled(sleeper: subprocess.Popen[bytes]) -> None:
    running = ProcessId.of(sleeper.pid)
    assert running is not None
    # The record of an earlier process that had the same pid.
    earlier = ProcessId(sleeper.pid, running.started - 30)
    assert not earlier.alive()
    assert not earlier.send(signal.SIGTERM)
    earlier.stop(timeout=0.1)
    assert sleeper.poll() is None
    assert running.alive()


def test_a_zombie_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    try:
        process = ProcessId.of(child.pid)
        assert process is not None
        zombie = wait_until(
            lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE or None,
            timeout=10,
        )
        assert zombie, "the child never exited"
        assert not process.alive()
        assert ProcessId.of(child.pid) is None
        assert not process.send(signal.SIGTERM)
    finally:
        child.wait()


def test_a_process_that_ignores_sigterm_is_killed() -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline()  # SIGTERM is ignored from here on
        process = ProcessId.of(child.pid)
        assert process is not None
        process.stop(timeout=0.2)
        assert not process.alive()
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()


def test_a_pid_file_that_names_another_program_is_not_taken(
    sleeper: subprocess.Popen[bytes],
) -> None:
    assert ProcessId.of(sleeper.pid, command_has="time.sleep(60)") is not None
    assert ProcessId.of(sleeper.pid, command_has="redis-server") is None


def test_this_process_owns_what_it_records_and_is_alive() -> None:
    record = owner_record()
    assert record["host"] == socket.gethostname()
    assert owner_alive(record) is True


def test_a_dead_or_reused_owner_is_dead(sleeper: subprocess.Popen[bytes]) -> None:
    process = ProcessId.of(sleeper.pid)
    assert process is not None
    record = {**owner_record(), **process.as_record()}
    assert owner_alive(record) is True
    assert owner_alive({**record, "started": process.started - 30}) is False
    sleeper.kill()
    sleeper.wait()
    assert owner_alive(record) is False


@pytest.mark.parametrize(
    "change",
    [{"host": "elsewhere"}, {"pidns": "pid:[1]"}, {"started": None}, {"pid": "1"}],
    ids=["another host", "another pid namespace", "no start time", "a malformed pid"],
)
def test_an_owner_that_cannot_be_checked_from_here_is_unknown(change: dict[str, object]) -> None:
    assert owner_alive({**owner_record(), **change}) is None


def test_a_port_nothing_listens_on_is_reported_after_the_timeout() -> None:
    lease = ports.lease_port()
    try:
        with pytest.raises(ServerStartError) as raised:
            wait_for_port("127.0.0.1", lease.port, 0.1)
    finally:
        lease.release()
    assert str(raised.value) == f"nothing listened on 127.0.0.1:{lease.port} after 0.1s"


def test_a_server_that_exits_before_listening_is_reported_at_once(
    sleeper: subprocess.Popen[bytes],
) -> None:
    process = ProcessId.of(sleeper.pid)
    assert process is not None
    sleeper.kill()
    sleeper.wait()
    lease = ports.lease_port()
    try:
        with pytest.raises(ServerStartError) as raised:
            wait_for_port("127.0.0.1", lease.port, 30, process=process)
    finally:
        lease.release()
    assert str(raised.value) == (
        f"the server process {sleeper.pid} exited before listening on {lease.port}"
    )
