"""Servers as Docker containers: one container per server per run, shared by all workers.

:class:`DockerPostgres` and :class:`DockerRedis` keep the server contract
(:class:`~worker_utils.servers.Server`): the first worker to need a server
starts its container, the others read its URL. The container keeps its
data on tmpfs with durability off, publishes its port on ``127.0.0.1`` on a port
the engine picks, and is ready once a real query through that port answers.
Labels record who made it (:data:`LABEL_PREFIX`): the run id, and the host,
pid namespace, pid and start time of the process that owns the run. The run's controller
removes it when the run ends (Ctrl-C and SIGTERM included); after a crash the
next run, or ``worker-utils reap --docker``, removes containers whose owner is
gone. A container without our labels, or of a run on another host, is never
touched, and no helper container is started.

The Docker SDK for Python (the ``docker`` extra) talks to the engine at
``DOCKER_HOST``, else the current ``docker context``, else the default socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from worker_utils._util import wait_until
from worker_utils.run import coordination
from worker_utils.servers._base import Server, ServerStartError
from worker_utils.servers._process import owner_alive, owner_record

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

__all__ = [
    "CREATOR",
    "CREATOR_LABEL",
    "DEFAULT_IMAGES",
    "KINDS",
    "LABEL_PREFIX",
    "OWNER_VAR",
    "SERVER_CLASSES",
    "DockerError",
    "DockerPostgres",
    "DockerRedis",
    "DockerServer",
    "container_name",
    "engine",
    "engine_address",
    "owner_value",
    "reap",
    "remove_container",
    "remove_run",
    "run_containers",
    "run_owner",
    "shared_url",
    "start_container",
    "sweep_when_run_ends",
]

#: The images used when no image is configured: the official ones, tags pinned here only.
DEFAULT_IMAGES = {"postgres": "postgres:17.2-alpine", "redis": "redis:7.4.1-alpine"}
#: Every label key we set starts with this; ``<prefix>.creator`` marks our containers.
LABEL_PREFIX = "io.github.worker-utils"
CREATOR = "worker-utils"
#: The variable that tells workers which process owns the run (``pid:start time``).
OWNER_VAR = "WORKER_UTILS_RUN_OWNER"
CREATOR_LABEL = f"{LABEL_PREFIX}.creator={CREATOR}"
_SWEEP_KEY = "worker-utils-containers-of-run"
_START_TIMEOUT = 60.0
_LOG_LINES = 10
_DEFAULT_SOCKET = "unix:///var/run/docker.sock"


class DockerError(ServerStartError):
    """The Docker backend could not reach the engine, find an image or start a container."""


@dataclass(frozen=True)
class _Kind:
    """How to run one kind of server in a container and tell that it is ready."""

    name: str
    port: int
    command: Callable[[int], list[str]]
    url: Callable[[int], str]
    probe: Callable[[str], bool]
    tmpfs: str
    environment: Mapping[str, str] = field(default_factory=dict)


def _postgres_probe(url: str) -> bool:
    try:
        import psycopg
    except ImportError:
        raise DockerError(
            "docker backend: PostgreSQL needs psycopg; pip install 'pytest-worker-utils[postgres]'"
        ) from None
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _redis_probe(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


KINDS: dict[str, _Kind] = {
    "postgres": _Kind(
        name="postgres",
        port=5432,
        # Durability off: the data lives on tmpfs and dies with the run anyway.
        command=lambda connections: [
            "postgres",
            *("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
            *("-c", f"max_connections={connections}"),
        ],
        url=lambda port: f"postgresql://postgres@127.0.0.1:{port}/postgres",
        probe=_postgres_probe,
        tmpfs="/var/lib/postgresql/data",
        environment={"POSTGRES_HOST_AUTH_METHOD": "trust"},
    ),
    "redis": _Kind(
        name="redis",
        port=6379,
        # --protected-mode no: connections arrive through the engine's bridge, not loopback.
        command=lambda _: [
            "redis-server",
            *("--save", "", "--appendonly", "no", "--protected-mode", "no"),
        ],
        url=lambda port: f"redis://127.0.0.1:{port}/0",
        probe=_redis_probe,
        tmpfs="/data",
    ),
}


def _context_host(home: Path) -> tuple[str, str] | None:
    """Return the current ``docker context``'s engine address, as the CLI would use it."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        config = json.loads((home / ".docker" / "config.json").read_text())
        name = config.get("currentContext")
        if name and name != "default":
            digest = hashlib.sha256(name.encode()).hexdigest()
            meta = home / ".docker" / "contexts" / "meta" / digest / "meta.json"
            host = json.loads(meta.read_text())["Endpoints"]["docker"]["Host"]
            return str(host), f"docker context {name!r}"
    return None


def engine_address(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Return the engine's address and where it came from, for connecting and for messages."""
    mapping = os.environ if env is None else env
    if mapping.get("DOCKER_HOST"):
        return mapping["DOCKER_HOST"], "DOCKER_HOST"
    home = mapping.get("HOME")
    found = _context_host(Path(home)) if home else None
    return found or (_DEFAULT_SOCKET, "the default socket; DOCKER_HOST is not set")


def engine(env: Mapping[str, str] | None = None) -> DockerClient:
    """Return a client of a reachable engine.

    Raises:
        DockerError: The SDK is not installed, or no engine answers; the message
            names the address tried and where it came from.
    """
    try:
        import docker
        import docker.constants
        import docker.errors
    except ImportError:
        raise DockerError(
            "docker backend: the Docker SDK is not installed; "
            "pip install 'pytest-worker-utils[docker]'"
        ) from None
    address, where = engine_address(env)
    mapping = os.environ if env is None else env
    tls = _tls_config(mapping) if mapping.get("DOCKER_TLS_VERIFY") else False
    # The oldest API version first: constructing a client with version "auto" asks
    # the engine, and leaks the connection when that fails.
    try:
        probe = docker.DockerClient(
            base_url=address,
            tls=tls,
            timeout=30,
            version=docker.constants.MINIMUM_DOCKER_API_VERSION,
        )
    except docker.errors.DockerException as exc:  # an address the SDK cannot use
        raise DockerError(
            f"docker backend: {address!r} ({where}) is not an address the Docker SDK can use: "
            f"{_reason(exc)}; set DOCKER_HOST to unix:///path/to/docker.sock or "
            f"tcp://HOST:PORT"
        ) from None
    try:
        _connect_unix(address)
        server = probe.version(api_version=False)["ApiVersion"]
    except Exception as exc:  # the SDK raises DockerException, requests' and OSError's kinds
        raise DockerError(
            f"docker backend: no Docker engine reachable at {address} ({where}): "
            f"{_reason(exc)}; start the engine or set DOCKER_HOST to its socket, "
            f"or choose another server backend with --worker-utils-servers"
        ) from None
    finally:
        probe.close()
    newest = docker.constants.DEFAULT_DOCKER_API_VERSION
    version = min(server, newest, key=lambda v: tuple(int(p) for p in v.split(".")))
    return docker.DockerClient(base_url=address, tls=tls, timeout=30, version=version)


def _connect_unix(address: str) -> None:
    """Connect to a ``unix://`` address once: the SDK leaks its socket when that fails."""
    if address.startswith("unix://"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(address.removeprefix("unix://"))


def _tls_config(mapping: Mapping[str, str]) -> Any:
    from docker.tls import TLSConfig

    cert = Path(mapping.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    return TLSConfig(
        client_cert=(str(cert / "cert.pem"), str(cert / "key.pem")),
        ca_cert=str(cert / "ca.pem"),
        verify=True,
    )


_REASONS = (
    ("No such file or directory", "no socket there"),
    ("Permission denied", "permission denied"),
    ("Connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("Name or service not known", "unknown host"),
)


def _reason(exc: BaseException) -> str:
    """A short reason for an SDK error: its engine's explanation, or what the connection said."""
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc)
    if explanation is None:
        for marker, reason in _REASONS:
            if marker in text:
                return reason
    line = " ".join(text.split()).removeprefix("Error while fetching server API version: ")
    return line if len(line) <= 200 else line[:197] + "..."


def run_owner(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the identity of the process that owns the current run (this one by default)."""
    mapping = os.environ if env is None else env
    with contextlib.suppress(ValueError, TypeError):
        given = json.loads(mapping.get(OWNER_VAR, ""))
        if isinstance(given, dict):
            return given
    return owner_record()


def owner_value() -> str:
    """Return this process's identity as the value of :data:`OWNER_VAR`, for its workers."""
    return json.dumps(owner_record())


def _labels(kind: str, run_uid: str) -> dict[str, str]:
    owner = run_owner()
    labels = {
        f"{LABEL_PREFIX}.creator": CREATOR,
        f"{LABEL_PREFIX}.run": run_uid,
        f"{LABEL_PREFIX}.server": kind,
    }
    for key in ("host", "pidns", "pid", "started"):
        labels[f"{LABEL_PREFIX}.{key}"] = str(owner.get(key, ""))
    return labels


def container_name(kind: str, run_uid: str) -> str:
    """Return the name of a run's container, such as ``worker-utils-redis-3f2a9c01be12``."""
    return f"worker-utils-{kind}-{run_uid[:12]}"


def _ensure_image(client: DockerClient, image: str, setting: str) -> None:
    import docker.errors

    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.pull(image)
    except Exception as exc:
        raise DockerError(
            f"{setting}: image {image!r} is not on the engine and could not be pulled "
            f"({_reason(exc)}); pull or build it there, or set {setting} to an image it has"
        ) from None


def _log_tail(container: Container) -> str:
    with contextlib.suppress(Exception):
        lines = container.logs(tail=_LOG_LINES).decode(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in lines if line.strip()) or "(empty)"
    return "(unavailable)"


def _host_port(container: Container, port: int) -> int | None:
    bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []
    for binding in bindings:
        if binding.get("HostIp") in ("127.0.0.1", "") and binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def start_container(
    kind: str,
    image: str,
    *,
    run_uid: str,
    setting: str = "",
    max_connections: int = 100,
    timeout: float = _START_TIMEOUT,
    env: Mapping[str, str] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Start a ``kind`` server container for run ``run_uid``; return what removing it needs.

    The value (JSON data) holds ``url``, ``id``, ``name``, ``image`` and ``engine``.

    Args:
        kind: ``postgres`` or ``redis``.
        image: Any image compatible with the official one of ``kind``.
        run_uid: The test-run id, recorded in a label and in the container's name.
        setting: The setting that chose ``image``, named in errors.
        max_connections: PostgreSQL's ``max_connections``.
        timeout: Seconds to wait for the server to answer a query.
        env: The environment to find the engine in (default: ``os.environ``).
        save: Called with the record as soon as the container exists, so that a
            start cut short still leaves what removes it.

    Raises:
        DockerError: No engine, no image, or a container that exited or did not
            answer in time (with its log tail); nothing is left running.
    """
    spec = KINDS[kind]
    setting = setting or f"worker_utils_{kind}_image"
    client = engine(env)
    address = engine_address(env)[0]
    _ensure_image(client, image, setting)
    name = container_name(kind, run_uid)
    # An empty host port: the engine picks one, read back below.
    ports: dict[str, Any] = {f"{spec.port}/tcp": ("127.0.0.1", None)}
    container = client.containers.run(
        image,
        spec.command(max_connections),
        name=name,
        detach=True,
        labels=_labels(kind, run_uid),
        environment=dict(spec.environment),
        tmpfs={spec.tmpfs: "rw"},
        ports=ports,
        shm_size="256m",
    )
    value: dict[str, Any] = {
        "kind": kind,
        "id": container.id,
        "name": name,
        "image": image,
        "engine": address,
        "created": time.time(),
    }
    if save is not None:
        save(dict(value))
    try:

        def running() -> None:
            container.reload()
            if container.status in ("exited", "dead"):
                code = container.attrs["State"].get("ExitCode")
                raise DockerError(
                    f"docker backend: container {name} ({image}) exited with {code} during "
                    f"start; log: {_log_tail(container)}"
                )

        running()
        port = _host_port(container, spec.port)
        if port is None:
            running()  # it may have exited meanwhile
            raise DockerError(
                f"docker backend: container {name} ({image}) published no port for "
                f"{spec.port}/tcp; log: {_log_tail(container)}"
            )
        url = spec.url(port)
        value.update(url=url, port=port)

        def ready() -> bool | None:
            running()
            return True if spec.probe(url) else None

        if wait_until(ready, timeout=timeout, interval=0.02, max_interval=0.05) is None:
            raise DockerError(
                f"docker backend: {kind} in container {name} ({image}) did not answer on "
                f"127.0.0.1:{port} within {timeout:g}s; log: {_log_tail(container)}"
            )
    except BaseException:
        remove_container(value)
        raise
    finally:
        client.close()
    return value


def remove_container(value: Mapping[str, Any]) -> None:
    """Remove the container :func:`start_container` made (killing it); a no-op if it is gone."""
    import docker.errors

    client = engine({**os.environ, "DOCKER_HOST": str(value["engine"])})
    try:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(str(value["id"])).remove(force=True, v=True)
    finally:
        client.close()


class DockerServer(Server):
    """A server in a container, one per run: the ``docker`` backend of the server contract."""

    #: ``postgres`` or ``redis``: which entry of :data:`KINDS`.
    kind: ClassVar[str]

    def __init__(
        self, image: str, *, run_uid: str, setting: str = "", max_connections: int = 100
    ) -> None:
        self.image = image
        self.run_uid = run_uid
        self.setting = setting
        self.max_connections = max_connections

    def start(self, directory: Path, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Start the container; its record holds ``url`` and what :meth:`stop` needs."""
        return start_container(
            self.kind,
            self.image,
            run_uid=self.run_uid,
            setting=self.setting,
            max_connections=self.max_connections,
            save=save,
        )

    @classmethod
    def stop(cls, record: Mapping[str, Any]) -> None:
        """Remove the container (killing it); a no-op if it is gone."""
        remove_container(record)


class DockerPostgres(DockerServer):
    """PostgreSQL in a container."""

    name = "docker-postgres"
    kind = "postgres"


class DockerRedis(DockerServer):
    """Redis in a container."""

    name = "docker-redis"
    kind = "redis"


SERVER_CLASSES: dict[str, type[DockerServer]] = {"postgres": DockerPostgres, "redis": DockerRedis}


def shared_url(
    kind: str,
    image: str,
    *,
    run_dir: Path,
    run_uid: str,
    setting: str = "",
    max_connections: int = 100,
) -> str:
    """Start the run's ``kind`` container once (or join it) and return its URL."""
    server = SERVER_CLASSES[kind](
        image, run_uid=run_uid, setting=setting, max_connections=max_connections
    )
    return server.url(run_dir, timeout=_START_TIMEOUT + 120)  # a pull may come first


def run_containers(run_dir: Path) -> list[dict[str, Any]]:
    """Return the records of the run's containers that are up, in start order."""
    records = []
    for server in SERVER_CLASSES.values():
        with contextlib.suppress(OSError, ValueError):
            record = json.loads((run_dir / "servers" / f"{server.name}.json").read_text())
            if "url" in record:
                records.append((record.get("created", 0.0), record))
    return [record for _, record in sorted(records, key=lambda pair: pair[0])]


def _owner_dead(labels: Mapping[str, str]) -> bool:
    """Whether the labels name an owner on this host that is gone (a reused pid counts)."""
    record: dict[str, Any] = {
        key: labels.get(f"{LABEL_PREFIX}.{key}", "") for key in ("host", "pidns")
    }
    with contextlib.suppress(ValueError):
        record["pid"] = int(labels.get(f"{LABEL_PREFIX}.pid", ""))
        record["started"] = float(labels.get(f"{LABEL_PREFIX}.started", ""))
    return owner_alive(record) is False  # None: another host or pid namespace, or unknown


def reap(
    *,
    env: Mapping[str, str] | None = None,
    keep_runs: Iterable[str] = (),
    dry_run: bool = False,
    log: Callable[[str], object] | None = None,
) -> list[str]:
    """Remove the containers of dead runs on this host; return their names.

    A container is removed only if it carries our creator label, its host
    label is this host, its run is not in ``keep_runs``, and the process that
    owned its run is gone (a pid now used by another process counts as gone).

    Raises:
        DockerError: No engine is reachable.
    """
    client = engine(env)
    keep = set(keep_runs)
    removed = []
    try:
        for container in client.containers.list(all=True, filters={"label": CREATOR_LABEL}):
            labels = container.labels
            if labels.get(f"{LABEL_PREFIX}.run") in keep or not _owner_dead(labels):
                continue
            if not dry_run:
                with contextlib.suppress(Exception):  # removed meanwhile by another reaper
                    container.remove(force=True, v=True)
            removed.append(container.name or container.id or "")
            if log is not None:
                verb = "would remove" if dry_run else "removed"
                run = labels.get(f"{LABEL_PREFIX}.run")
                log(f"{verb} container {container.name} of dead run {run}")
    finally:
        client.close()
    return removed


def sweep_when_run_ends(run_dir: Path, run_uid: str) -> None:
    """Have the run's end remove every container labelled with it, after its other teardowns.

    Registered before any container exists, so it runs last (teardowns run newest
    first). It also finds a container whose worker was killed between creating
    it and recording it.
    """
    coordination.run_once(_SWEEP_KEY, lambda: run_uid, teardown=remove_run, run_dir=run_dir)


def remove_run(run_uid: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Remove every container labelled with run ``run_uid``; return their names."""
    client = engine(env)
    removed = []
    try:
        for container in client.containers.list(
            all=True,
            filters={
                "label": [f"{LABEL_PREFIX}.creator={CREATOR}", f"{LABEL_PREFIX}.run={run_uid}"]
            },
        ):
            with contextlib.suppress(Exception):  # removed meanwhile
                container.remove(force=True, v=True)
            removed.append(container.name or "")
    finally:
        client.close()
    return removed
