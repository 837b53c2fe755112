"""The service's singletons are reset after every test, declared once for the whole suite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from service.transports import close_transports

import worker_utils

# The settings' reset is in pytest.ini; this one closes the sockets as well.
worker_utils.register_reset(close_transports, name="service transports")


@pytest.fixture
def service_socket(
    monkeypatch: pytest.MonkeyPatch,
    worker_socket_path: Callable[[str], Path],
    request: pytest.FixtureRequest,
) -> Path:
    """Point the service at a socket path of this worker's own, different for each test."""
    path = worker_socket_path(f"{request.node.name[:40]}.sock")
    monkeypatch.setenv("SERVICE_SOCKET", str(path))
    return path
