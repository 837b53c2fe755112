"""Each test configures the service its own way: it passes only if the singletons are reset."""

from __future__ import annotations

from pathlib import Path

import pytest
from service.settings import get_settings
from service.transports import get_transport


@pytest.mark.parametrize("mode", ["production", "debug", "maintenance"])
def test_the_settings_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch, service_socket: Path, mode: str
) -> None:
    monkeypatch.setenv("SERVICE_MODE", mode)
    assert get_settings().mode == mode


@pytest.mark.parametrize("payload", [b"ping", b"hello", b"status"])
def test_the_transport_listens_on_this_tests_socket(service_socket: Path, payload: bytes) -> None:
    transport = get_transport()
    assert transport.path == str(service_socket)
    assert transport.echo(payload) == payload
