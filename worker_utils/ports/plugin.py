"""Options and fixtures of the ports package: leased TCP ports and short socket paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from worker_utils import _handover, _settings
from worker_utils._plugin import fail, get_run, pop_stash
from worker_utils.ports._leases import (
    PortLease,
    PortsExhaustedError,
    count_ports,
    default_port_range,
    describe_range,
    lease_port,
    parse_port_range,
)
from worker_utils.ports._sockets import SocketPathFactory


def _port_range(text: str) -> range:
    try:
        return parse_port_range(text)
    except ValueError:
        raise ValueError from None  # the setting's message says what is accepted


PORT_RANGE = _settings.Setting[range | None](
    name="port_range",
    help="Lease worker_port ports only from this range",
    accepted="LOW-HIGH with 1 <= LOW <= HIGH <= 65535, such as 20000-20999",
    parse=_port_range,
    default=None,
    default_text="20000-29999, below the kernel's ephemeral range",
    metavar="LOW-HIGH",
)
SETTINGS: list[_settings.Setting[Any]] = [PORT_RANGE]

_range_key = pytest.StashKey["range | None"]()
_range_source_key = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_settings(parser, SETTINGS)


def pytest_configure(config: pytest.Config) -> None:
    found = _settings.resolve(config, PORT_RANGE)
    config.stash[_range_key] = found.value
    config.stash[_range_source_key] = found.where


def pytest_sessionfinish(session: pytest.Session) -> None:
    ports = session.config.stash[_range_key] or default_port_range()
    get_run(session.config).report.plan("ports", f"range {describe_range(ports)}")


@pytest.fixture
def worker_socket_path(worker_tmp_path: Path) -> Iterator[SocketPathFactory]:
    """A factory of Unix socket paths short enough for ``AF_UNIX`` (107 bytes on Linux).

    ``worker_socket_path("db.sock")`` returns a path in this worker's directory
    when it fits, else in a short private directory under ``/tmp``. Whatever is
    left at the paths is removed after the test, so every test may use the same
    names.
    """
    factory = SocketPathFactory(worker_tmp_path)
    yield factory
    factory.cleanup()


class PortFactory:
    """Leases free TCP ports; each stays reserved until the factory is closed."""

    def __init__(self, config: pytest.Config, *, name: str, holder: str) -> None:
        self._report = get_run(config).report
        self._range = config.stash[_range_key]
        self._source = config.stash[_range_source_key]
        self._name = name
        self._holder = holder
        self._calls = 0
        self.leases: list[PortLease] = []

    def __call__(self) -> int:
        """Return a free TCP port no other worker or concurrent run holds."""
        __tracebackhide__ = True
        try:
            port = self.port(self._calls)
        except PortsExhaustedError as exc:
            fail(self._exhausted(exc))
        self._calls += 1
        return port

    def port(self, index: int) -> int:
        """The port this factory's call number ``index`` (from 0) returns, leased now if need be.

        Raises:
            PortsExhaustedError: No port of the range was free.
        """
        while len(self.leases) <= index:
            lease = lease_port(port_range=self._range)
            self.leases.append(lease)
            self._report.note("ports", lease.port)
        return self.leases[index].port

    def _exhausted(self, error: PortsExhaustedError) -> str:
        ports = error.port_range
        mine = sum(lease.port in ports for lease in self.leases)
        here, elsewhere = error.held_here - mine, len(ports) - error.held_here
        source = f"set by {self._source}" if self._source else "the default"
        return (
            f"{self._name}: every port of {describe_range(ports)} ({source}) is taken, "
            f"{count_ports(len(ports))}: {mine} held by {self._holder}, {here} by other "
            f"leases of this process, {elsewhere} bound or leased elsewhere; widen the range "
            f"with --worker-utils-port-range, WORKER_UTILS_PORT_RANGE or the "
            f"worker_utils_port_range ini option, or hold fewer ports at once"
        )

    def close(self) -> None:
        """Release every port this factory leased."""
        for lease in self.leases:
            lease.release()
        self.leases.clear()
        self._calls = 0


class _WorkerPorts(PortFactory):
    """``worker_port_factory`` in an isolated process: the worker's session ports, in order.

    The copy of a session fixture that runs here gets the ports the worker's
    own copy gets; the worker leases those that neither has asked for yet.
    """

    def __init__(self, config: pytest.Config, ports: list[int]) -> None:
        super().__init__(config, name="worker_port_factory", holder="this session")
        self._config = config
        self.ports = ports

    def port(self, index: int) -> int:
        __tracebackhide__ = True
        if index >= len(self.ports):
            try:
                answer = _handover.ask(self._config, "ports", {"index": index})
            except _handover.HandoverError as exc:
                fail(exc)
            assert answer is not None
            self.ports = answer["ports"]
        return self.ports[index]

    def close(self) -> None:
        self._calls = 0  # the worker holds the leases


_session_key = pytest.StashKey[PortFactory]()


def _session_ports(config: pytest.Config) -> PortFactory:
    """This worker's session factory, made on first use by a fixture here or an isolated process."""
    if _session_key not in config.stash:
        held = _handover.given(config, "ports")
        if held is not None or _handover.isolated(config):
            factory: PortFactory = _WorkerPorts(config, held["ports"] if held else [])
        else:
            factory = PortFactory(config, name="worker_port_factory", holder="this session")
        config.stash[_session_key] = factory
    return config.stash[_session_key]


@pytest.fixture(scope="session")
def worker_port_factory(request: pytest.FixtureRequest) -> Iterator[PortFactory]:
    """Session-scoped ``worker_port``: ports stay leased until the worker's session ends.

    Use it from session fixtures that start servers. In an isolated process
    it returns the worker's session ports, call for call.
    """
    yield _session_ports(request.config)
    _close_session_ports(request.config)


def _close_session_ports(config: pytest.Config) -> None:
    factory = pop_stash(config, _session_key)
    if factory is not None:
        factory.close()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # Leased for an isolated process, when no fixture here asked for the factory.
    _close_session_ports(config)


@pytest.hookimpl
def pytest_worker_utils_held(config: pytest.Config) -> dict[str, Any] | None:
    factory = config.stash.get(_session_key, None)
    return (
        None if factory is None else {"ports": {"ports": [lease.port for lease in factory.leases]}}
    )


@pytest.hookimpl
def pytest_worker_utils_provide(
    config: pytest.Config, name: str, request: dict[str, Any]
) -> dict[str, Any] | None:
    if name != "ports":
        return None
    factory = _session_ports(config)
    try:
        factory.port(request["index"])
    except PortsExhaustedError as exc:
        raise _handover.HandoverError(factory._exhausted(exc)) from None
    return {"ports": [lease.port for lease in factory.leases]}


@pytest.fixture
def worker_port(request: pytest.FixtureRequest) -> Iterator[PortFactory]:
    """A factory of free TCP ports: ``worker_port()`` returns a new port each call.

    No other worker, and no concurrent pytest run on this host, receives a port
    while this test holds it; the ports are released when the test ends, or
    by the kernel if the worker dies.
    """
    factory = PortFactory(request.config, name="worker_port", holder="this test")
    yield factory
    factory.close()
