"""Options and run hooks of the server backends: which backend starts each server, and images.

A server with a configured URL is used as it is. Without one, the backend
chosen by ``--worker-utils-servers`` starts it once per run: ``embedded`` (the
default: the host's binaries) or ``docker`` (a container,
:mod:`worker_utils.servers.docker`). The Docker SDK is imported only when the
``docker`` backend is chosen.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from types import FrameType
from typing import Any

import pytest

from worker_utils._plugin import Run, find_setting, get_run, usage_error

BACKENDS = ("embedded", "docker")
SERVERS = ("postgres", "redis")
_SERVERS_VAR = "WORKER_UTILS_SERVERS"
_IMAGE_VARS = {kind: f"WORKER_UTILS_{kind.upper()}_IMAGE" for kind in SERVERS}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("worker_utils")
    group.addoption(
        "--worker-utils-servers",
        dest="worker_utils_servers",
        default=None,
        metavar="BACKEND",
        help="What starts servers without a URL: embedded (the default) or docker, "
        "or per server, such as postgres=docker,redis=embedded",
    )
    parser.addini(
        "worker_utils_servers",
        "What starts servers without a URL: embedded or docker, or per server "
        "(postgres=docker,redis=embedded)",
        default="",
    )
    for kind in SERVERS:
        group.addoption(
            f"--worker-utils-{kind}-image",
            dest=f"worker_utils_{kind}_image",
            default=None,
            metavar="IMAGE",
            help=f"Image of the {kind} container of the docker backend (default: "
            f"{_default_image(kind)})",
        )
        parser.addini(
            f"worker_utils_{kind}_image",
            f"Image of the {kind} container of the docker backend",
            default="",
        )


def _default_image(kind: str) -> str:
    from worker_utils.servers.docker import DEFAULT_IMAGES

    return DEFAULT_IMAGES[kind]


def parse_backends(text: str, setting: str) -> dict[str, str]:
    """Return the backend of each server from a setting's value.

    Raises:
        ValueError: The value names an unknown backend or server; the message
            names ``setting``.
    """
    chosen = dict.fromkeys(SERVERS, "embedded")
    if not text:
        return chosen
    problem = ""
    if "=" not in text:
        if text.strip() in BACKENDS:
            return dict.fromkeys(SERVERS, text.strip())
        problem = f"found {text!r}"
    else:
        for part in text.split(","):
            kind, _, backend = (piece.strip() for piece in part.partition("="))
            if kind not in SERVERS or backend not in BACKENDS:
                problem = f"found {part.strip()!r} in {text!r}"
                break
            chosen[kind] = backend
    if problem:
        raise ValueError(
            f"{setting}: {problem}; use embedded or docker, or one per server "
            f"such as postgres=docker,redis=embedded"
        )
    return chosen


class _ServerSettings:
    """The run's backend choice and images, read once in every process."""

    def __init__(self, config: pytest.Config) -> None:
        __tracebackhide__ = True
        setting, text = find_setting(config, "servers", _SERVERS_VAR)
        try:
            self.backends = parse_backends(text, setting)
        except ValueError as exc:
            usage_error(exc)
        self.images: dict[str, tuple[str, str]] = {}
        for kind in SERVERS:
            where, image = find_setting(config, f"{kind}_image", _IMAGE_VARS[kind])
            self.images[kind] = (
                image or _default_image(kind),
                where or f"--worker-utils-{kind}-image",
            )

    @property
    def docker(self) -> bool:
        return "docker" in self.backends.values()


_servers_key = pytest.StashKey[_ServerSettings]()


def pytest_configure(config: pytest.Config) -> None:
    settings = _ServerSettings(config)
    config.stash[_servers_key] = settings
    run = get_run(config)
    if settings.docker and run.lock is not None:
        config.pluginmanager.register(_DockerRunHooks(run, settings), "worker_utils.servers.docker")


def backend(config: pytest.Config, kind: str) -> str:
    """Return the backend that starts server ``kind`` when it has no URL."""
    return config.stash[_servers_key].backends[kind]


def docker_url(config: pytest.Config, kind: str, *, max_connections: int = 100) -> str:
    """Start the run's ``kind`` container once (or join it); return its URL.

    Raises:
        DockerError: The container could not be started.
    """
    from worker_utils.servers import docker

    image, setting = config.stash[_servers_key].images[kind]
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
        self.previous_sigterm: Any = None
        run.set_env(docker.OWNER_VAR, docker.owner_value())

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Once, before any test: no engine is one clear message, not one error per test.
        __tracebackhide__ = True
        try:
            self.docker.reap(keep_runs=[self.run.uid])
        except self.docker.DockerError as exc:
            usage_error(exc)
        self.docker.sweep_when_run_ends(self.run.directory, self.run.uid)
        # SIGTERM (a cancelled CI job) unwinds like Ctrl-C, so the containers are removed.
        self.previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        containers = self.docker.run_containers(self.run.directory)
        if containers:
            terminalreporter.write_line(
                "worker_utils: docker containers: "
                + ", ".join(_describe(value) for value in containers)
            )

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self.previous_sigterm)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _describe(value: Mapping[str, Any]) -> str:
    return f"{value['name']} ({value['image']}, 127.0.0.1:{value.get('port', '?')})"
