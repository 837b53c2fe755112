"""Port leases: free, exclusive across processes, released on exit, clear when exhausted."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

import worker_utils as wu
from worker_utils import ports


def test_a_leased_port_is_free_to_bind(tmp_path: Path) -> None:
    lease = wu.lease_port(lock_dir=tmp_path)
    assert isinstance(lease, wu.PortLease)
    assert lease.held
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", lease.port))
    finally:
        lease.release()
    assert not lease.held


def test_a_held_port_is_not_leased_again_until_released(tmp_path: Path) -> None:
    one_port = range(29190, 29191)
    lease = wu.lease_port(port_range=one_port, lock_dir=tmp_path)
    with pytest.raises(wu.PortsExhaustedError):
        wu.lease_port(port_range=one_port, lock_dir=tmp_path)
    lease.release()
    again = wu.lease_port(port_range=one_port, lock_dir=tmp_path)
    assert again.port == lease.port
    again.release()


def test_a_lease_dies_with_its_process(tmp_path: Path) -> None:
    one_port = range(29191, 29192)
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from worker_utils import lease_port\n"
        f"lease = lease_port(port_range=range(29191, 29192), lock_dir=Path({str(tmp_path)!r}))\n"
        "print(lease.port, flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "29191"
    with pytest.raises(wu.PortsExhaustedError):
        wu.lease_port(port_range=one_port, lock_dir=tmp_path)
    holder.kill()
    holder.wait()
    holder.stdout.close()
    wu.lease_port(port_range=one_port, lock_dir=tmp_path).release()


def test_a_port_bound_by_someone_else_is_skipped(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        taken = sock.getsockname()[1]
        with pytest.raises(wu.PortsExhaustedError) as excinfo:
            wu.lease_port(port_range=range(taken, taken + 1), lock_dir=tmp_path)
    assert str(excinfo.value) == (
        f"worker_port: all 1 ports in {taken}-{taken} are bound or leased by other workers; "
        f"widen worker_utils_port_range (ini) or WORKER_UTILS_PORT_RANGE, or use fewer ports"
    )


@pytest.mark.parametrize("text", ["20000", "2-1", "0-10", "1-70000", "a-b", ""])
def test_a_malformed_port_range_names_the_setting(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        ports.parse_port_range(text)
    assert str(excinfo.value) == (
        f"worker_utils_port_range: found {text!r}; expected LOW-HIGH with "
        f"1 <= LOW <= HIGH <= 65535, such as 20000-20999"
    )


def test_an_exhausted_range_fails_the_test_with_the_setting_to_change(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nworker_utils_port_range = 29195-29196\n")
    pytester.makepyfile(
        """
        def test_three(worker_port):
            worker_port(); worker_port(); worker_port()

        def test_two_after_release(worker_port):
            worker_port(); worker_port()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:randomly")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "worker_port: all 2 ports in 29195-29196 are bound or leased by other workers; "
            "widen worker_utils_port_range (ini) or WORKER_UTILS_PORT_RANGE, or use fewer ports",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


def test_session_ports_stay_leased_for_the_whole_session(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nworker_utils_port_range = 29197-29198\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="session")
        def server_port(worker_port_factory):
            return worker_port_factory()

        def test_one(server_port, worker_port):
            assert worker_port() != server_port

        def test_two(server_port, worker_port):
            assert worker_port() != server_port
        """
    )
    pytester.runpytest_subprocess("-p", "no:xdist").assert_outcomes(passed=2)


@pytest.mark.parametrize("value", ["gw-1", "../x", ""])
def test_a_malformed_worker_variable_stops_the_run_with_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", value)
    pytester.makepyfile("def test_it(): pass")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: PYTEST_XDIST_WORKER: found {value!r}, expected 'gw<N>' such as 'gw0'; "
            f"unset it outside pytest-xdist workers"
        ]
    )
    result.stderr.no_fnmatch_line("*Traceback*")
