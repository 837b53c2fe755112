"""Port leases: free, exclusive across processes, released on exit, clear when exhausted."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import worker_utils as wu
from worker_utils import ports
from worker_utils.ports import _leases

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


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
    one_port = range(19190, 19191)
    lease = wu.lease_port(port_range=one_port, lock_dir=tmp_path)
    with pytest.raises(wu.PortsExhaustedError):
        wu.lease_port(port_range=one_port, lock_dir=tmp_path)
    lease.release()
    again = wu.lease_port(port_range=one_port, lock_dir=tmp_path)
    assert again.port == lease.port
    again.release()


def test_a_lease_dies_with_its_process(tmp_path: Path) -> None:
    one_port = range(19191, 19192)
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from worker_utils import lease_port\n"
        f"lease = lease_port(port_range=range(19191, 19192), lock_dir=Path({str(tmp_path)!r}))\n"
        "print(lease.port, flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "19191"
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
        f"lease_port: every port of {taken}-{taken} is taken, 1 port: 0 held by this process, "
        f"1 bound or leased elsewhere; pass a wider port_range, or release leases"
    )


def test_the_error_tells_the_ports_this_process_holds_from_the_others(tmp_path: Path) -> None:
    three = range(19180, 19183)
    held = [wu.lease_port(port_range=three, lock_dir=tmp_path) for _ in range(2)]
    free = (set(three) - {lease.port for lease in held}).pop()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free))
        with pytest.raises(wu.PortsExhaustedError) as excinfo:
            wu.lease_port(port_range=three, lock_dir=tmp_path)
    for lease in held:
        lease.release()
    assert (excinfo.value.port_range, excinfo.value.held_here) == (three, 2)
    assert str(excinfo.value) == (
        "lease_port: every port of 19180-19182 is taken, 3 ports: 2 held by this process, "
        "1 bound or leased elsewhere; pass a wider port_range, or release leases"
    )


def test_a_mostly_held_range_still_leases_its_last_free_ports(tmp_path: Path) -> None:
    fifty = range(19100, 19150)
    held = [wu.lease_port(port_range=fifty, lock_dir=tmp_path) for _ in range(45)]
    last = [wu.lease_port(port_range=fifty, lock_dir=tmp_path) for _ in range(5)]
    try:
        assert sorted(lease.port for lease in held + last) == list(fifty)
        with pytest.raises(wu.PortsExhaustedError) as excinfo:
            wu.lease_port(port_range=fifty, lock_dir=tmp_path)
    finally:
        for lease in held + last:
            lease.release()
    assert str(excinfo.value) == (
        "lease_port: every port of 19100-19149 is taken, 50 ports: 50 held by this process, "
        "0 bound or leased elsewhere; pass a wider port_range, or release leases"
    )


def test_a_process_never_runs_out_of_ports_however_many_it_leases_over_time() -> None:
    # portpicker hands a port out only once per process (until return_port),
    # which once ran lease_port dry after some 11,000 leases.
    with tempfile.TemporaryDirectory(dir=ports.port_lock_dir().parent) as tmp:
        for _ in range(75):
            held = [wu.lease_port(lock_dir=Path(tmp)) for _ in range(200)]
            for lease in held:
                lease.release()


def test_without_a_range_ports_come_from_below_the_ephemeral_range(tmp_path: Path) -> None:
    held = [wu.lease_port(lock_dir=tmp_path) for _ in range(50)]
    for lease in held:
        lease.release()
    leased = [lease.port for lease in held]
    assert all(port in _leases.default_port_range() for port in leased), leased
    if EPHEMERAL.exists():  # Linux: the default is below the kernel's range, wherever it is
        low = int(EPHEMERAL.read_text().split()[0])
        assert all(port < low for port in leased) or low < 2024, (low, leased)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("32768\t60999\n", range(20000, 30000)),
        ("30000 60999", range(20000, 30000)),
        ("25000 60999", range(15000, 25000)),
        ("10000 65535", range(1024, 10000)),
        ("2023 65535", range(20000, 30000)),
        ("", range(20000, 30000)),
        (None, range(20000, 30000)),
    ],
)
def test_the_default_range_lies_below_the_kernels_ephemeral_range(
    tmp_path: Path, content: str | None, expected: range
) -> None:
    proc = tmp_path / "ip_local_port_range"
    if content is not None:
        proc.write_text(content)
    assert _leases.default_port_range(proc) == expected


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
    pytester.makeini("[pytest]\nworker_utils_port_range = 19195-19196\n")
    pytester.makepyfile(
        """
        def test_three(worker_port):
            worker_port(); worker_port(); worker_port()

        def test_two_after_release(worker_port):
            worker_port(); worker_port()
        """
    )
    result = pytester.runpytest("-p", "no:xdist", "-p", "no:randomly")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "worker_port: every port of 19195-19196 (set by worker_utils_port_range) is taken, "
            "2 ports: 2 held by this test, 0 by other leases of this process, 0 bound or leased "
            "elsewhere; widen the range with --worker-utils-port-range, WORKER_UTILS_PORT_RANGE "
            "or the worker_utils_port_range ini option, or hold fewer ports at once",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


def test_an_exhausted_range_counts_this_test_this_session_and_elsewhere_apart(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="session")
        def server_port(worker_port_factory):
            return worker_port_factory()

        def test_a_test_port(server_port, worker_port):
            worker_port(); worker_port()

        def test_a_session_port(server_port, worker_port_factory):
            worker_port_factory(); worker_port_factory()
        """
    )
    three = range(19185, 19188)
    elsewhere = wu.lease_port(port_range=three)  # the host-wide lock directory, as the run's
    try:  # in a process of its own: this one's lease is held elsewhere
        result = pytester.runpytest_subprocess(
            "-p", "no:xdist", "-p", "no:randomly", "--worker-utils-port-range=19185-19187"
        )
    finally:
        elsewhere.release()
    result.assert_outcomes(failed=2)
    source = "19185-19187 (set by --worker-utils-port-range) is taken, 3 ports"
    fix = (
        "widen the range with --worker-utils-port-range, WORKER_UTILS_PORT_RANGE or the "
        "worker_utils_port_range ini option, or hold fewer ports at once"
    )
    result.stdout.fnmatch_lines(
        [
            f"worker_port: every port of {source}: 1 held by this test, 1 by other leases of "
            f"this process, 1 bound or leased elsewhere; {fix}",
            f"worker_port_factory: every port of {source}: 2 held by this session, 0 by other "
            f"leases of this process, 1 bound or leased elsewhere; {fix}",
        ]
    )


def test_without_a_range_the_fixture_leases_from_the_default_range(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        f"""
        def test_it(worker_port):
            ports = [worker_port() for _ in range(20)]
            assert all(port in {_leases.default_port_range()!r} for port in ports), ports
        """
    )
    pytester.runpytest("-p", "no:xdist").assert_outcomes(passed=1)


def test_session_ports_stay_leased_for_the_whole_session(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nworker_utils_port_range = 19197-19198\n")
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
    pytester.runpytest("-p", "no:xdist").assert_outcomes(passed=2)


@pytest.mark.parametrize("value", ["gw-1", "../x", ""])
def test_a_malformed_worker_variable_stops_the_run_with_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", value)
    pytester.makepyfile("def test_it(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: PYTEST_XDIST_WORKER: found {value!r}, expected 'gw<N>' such as 'gw0'; "
            f"unset it outside pytest-xdist workers"
        ]
    )
    result.stderr.no_fnmatch_line("*Traceback*")
