"""A registry of transports, each a Unix socket the service listens on, made at first use."""

from __future__ import annotations

import socket

from service.settings import get_settings


class Transport:
    """A listening Unix socket; ``echo`` sends through it and reads the reply."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen()

    def echo(self, data: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(self.path)
            peer, _ = self.server.accept()
            with peer:
                client.sendall(data)
                return peer.recv(len(data))

    def close(self) -> None:
        self.server.close()


_transports: dict[str, Transport] = {}


def get_transport(name: str = "default") -> Transport:
    if name not in _transports:
        _transports[name] = Transport(get_settings().socket_path)
    return _transports[name]


def close_transports() -> None:
    for transport in _transports.values():
        transport.close()
    _transports.clear()
