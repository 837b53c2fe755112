"""Options and fixtures of the ports package: leased TCP ports and short socket paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from worker_utils import _settings
from worker_utils._plugin import fail, get_run
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
        self.leases: list[PortLease] = []

    def __call__(self) -> int:
        """Return a free TCP port no other worker or concurrent run holds."""
        __tracebackhide__ = True
        try:
            lease = lease_port(port_range=self._range)
        except PortsExhaustedError as exc:
            fail(self._exhausted(exc))
        self.leases.append(lease)
        self._report.note("ports", lease.port)
        return lease.port

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


@pytest.fixture(scope="session")
def worker_port_factory(request: pytest.FixtureRequest) -> Iterator[PortFactory]:
    """Session-scoped ``worker_port``: ports stay leased until the worker's session ends.

    Use it from session fixtures that start servers.
    """
    factory = PortFactory(request.config, name="worker_port_factory", holder="this session")
    yield factory
    factory.close()


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
