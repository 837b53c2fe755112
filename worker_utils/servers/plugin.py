"""Options and run hooks of the server backends: which backend starts each server, and images.

A server with a configured URL is used as it is. Without one, the backend
chosen by ``--worker-utils-servers`` starts it once per run: ``embedded`` (the
default: the host's binaries) or ``docker`` (a container,
:mod:`worker_utils.servers.docker`). The Docker SDK is imported only when the
``docker`` backend is chosen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from worker_utils import _settings
from worker_utils._plugin import Run, get_run, usage_error
from worker_utils.servers.docker import DEFAULT_IMAGES

BACKENDS = ("embedded", "docker")
SERVERS = ("postgres", "redis")


def parse_backends(text: str) -> dict[str, str]:
    """Return the backend of each server from a setting's text.

    Raises:
        ValueError: An unknown backend or server, named in the message.
    """
    if "=" not in text:
        if text.strip().lower() in BACKENDS:
            return dict.fromkeys(SERVERS, text.strip().lower())
        raise ValueError
    chosen = dict.fromkeys(SERVERS, "embedded")
    for part in text.split(","):
        kind, _, backend = (piece.strip().lower() for piece in part.partition("="))
        if kind not in SERVERS or backend not in BACKENDS:
            raise ValueError(f"at {part.strip()!r}")
        chosen[kind] = backend
    return chosen


BACKEND = _settings.Setting(
    name="servers",
    help="What starts the servers that have no URL, once per run",
    accepted="embedded or docker, or one per server such as postgres=docker,redis=embedded",
    parse=parse_backends,
    default=dict.fromkeys(SERVERS, "embedded"),
    default_text="embedded",
    metavar="BACKEND",
)
IMAGES = {
    kind: _settings.Setting(
        name=f"{kind}_image",
        help=f"Image of the {kind} container of the docker backend",
        accepted=f"an image compatible with the official {kind} image",
        parse=str,
        default=DEFAULT_IMAGES[kind],
        metavar="IMAGE",
    )
    for kind in SERVERS
}
SETTINGS: list[_settings.Setting[Any]] = [BACKEND, *IMAGES.values()]


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_settings(parser, SETTINGS)


class _ServerSettings:
    """The run's backend choice and images, read once in every process."""

    def __init__(self, config: pytest.Config) -> None:
        __tracebackhide__ = True
        self.backends = _settings.resolve(config, BACKEND).value
        self.images: dict[str, tuple[str, str]] = {}
        for kind, setting in IMAGES.items():
            found = _settings.resolve(config, setting)
            self.images[kind] = (found.value, found.where or setting.ini)

    @property
    def docker(self) -> bool:
        return "docker" in self.backends.values()


_servers_key = pytest.StashKey[_ServerSettings]()


def _server_settings(config: pytest.Config) -> _ServerSettings | None:
    """The settings, read on first use: a worker's exports start servers before pytest_configure.

    None when this plugin is blocked (``-p no:worker_utils.servers.plugin``).
    """
    settings = config.stash.get(_servers_key, None)
    if settings is None and config.pluginmanager.has_plugin("worker_utils.servers.plugin"):
        settings = config.stash[_servers_key] = _ServerSettings(config)
    return settings


def pytest_configure(config: pytest.Config) -> None:
    settings = _server_settings(config)
    assert settings is not None
    run = get_run(config)
    if settings.docker and run.lock is not None:
        config.pluginmanager.register(_DockerRunHooks(run, settings), "worker_utils.servers.docker")


def backend(config: pytest.Config, kind: str) -> str:
    """Return the backend that starts server ``kind`` when it has no URL.

    ``embedded`` when this plugin is blocked (``-p no:worker_utils.servers.plugin``).
    """
    settings = _server_settings(config)
    return "embedded" if settings is None else settings.backends[kind]


def origin(config: pytest.Config, kind: str) -> str:
    """How the run summary says where the run's own server of ``kind`` runs."""
    return "docker container" if backend(config, kind) == "docker" else "embedded"


def docker_url(config: pytest.Config, kind: str, *, max_connections: int = 100) -> str:
    """Start the run's ``kind`` container once (or join it); return its URL.

    Raises:
        DockerError: The container could not be started.
    """
    from worker_utils.servers import docker

    settings = _server_settings(config)
    assert settings is not None  # backend() said docker
    image, setting = settings.images[kind]
    run = get_run(config)
    return docker.shared_url(
        kind,
        image,
        run_dir=run.directory,
        run_uid=run.uid,
        setting=setting,
        max_connections=max_connections,
    )


class _DockerRunHooks:
    """In the process that owns the run, with the docker backend chosen: reap, report, remove."""

    def __init__(self, run: Run, settings: _ServerSettings) -> None:
        from worker_utils.servers import docker

        self.run = run
        self.settings = settings
        self.docker = docker
        run.set_env(docker.OWNER_VAR, docker.owner_value())

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Once, before any test: no engine is one clear message, not one error per test.
        __tracebackhide__ = True
        try:
            self.docker.reap(keep_runs=[self.run.uid])
        except self.docker.DockerError as exc:
            usage_error(exc)
        self.docker.sweep_when_run_ends(self.run.directory, self.run.uid)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        containers = self.docker.run_containers(self.run.directory)
        if containers:
            terminalreporter.write_line(
                "worker_utils: docker containers: "
                + ", ".join(_describe(value) for value in containers)
            )


def _describe(value: Mapping[str, Any]) -> str:
    return f"{value['name']} ({value['image']}, 127.0.0.1:{value.get('port', '?')})"
