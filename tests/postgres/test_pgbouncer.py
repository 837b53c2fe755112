"""Runs through PgBouncer: session pooling works in database mode; what cannot work is refused.

The module starts Debian's pgbouncer twice, in front of the test server, with
the configuration of docs/postgres.md: as it is (``transaction`` and
``statement`` databases added, which pool per transaction and per statement),
and without ``ignore_startup_parameters = options`` (PgBouncer's default).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.postgres.conftest import URL, Example, databases
from worker_utils import ports, postgres
from worker_utils.postgres import _pooler
from worker_utils.servers._process import ProcessId, wait_for_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "postgres.md"


@dataclass
class PgBouncer:
    port: int
    process: subprocess.Popen[bytes]

    def url(self, database: str = "test") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def documented_config() -> list[str]:
    """The lines of the pgbouncer.ini in the PgBouncer section of docs/postgres.md."""
    text = DOCS.read_text()
    block = re.search(r"```ini\n(.*?)```", text[text.index("## PgBouncer") :], re.DOTALL)
    assert block is not None
    return block[1].splitlines()


def start_pgbouncer(directory: Path, config: list[str]) -> PgBouncer:
    """Start pgbouncer with ``config``, in front of the test server, on a port of its own."""
    if not os.access(PGBOUNCER, os.X_OK):
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer): no pooler test")
    server = psycopg.conninfo.conninfo_to_dict(URL)
    backend = f"host={server.get('host', '127.0.0.1')} port={server.get('port', 5432)}"
    directory.mkdir()
    (directory / "users.txt").write_text('"postgres" ""\n')
    lease = ports.lease_port()
    try:
        overrides = {
            "listen_port": f"listen_port = {lease.port}",
            "auth_file": f"auth_file = {directory / 'users.txt'}",
        }
        lines = []
        for line in config:
            lines.append(overrides.get(line.partition(" =")[0], line))
            if line == "[databases]":
                lines += [
                    f"transaction = {backend} dbname=test pool_mode=transaction",
                    f"statement = {backend} dbname=test pool_mode=statement",
                ]
            elif line == "[pgbouncer]":
                lines.append("unix_socket_dir =")
                if os.geteuid() == 0:  # pgbouncer refuses root, and changes to this user
                    lines.append(f"user = {_unprivileged_user()}")
        text = "\n".join(lines).replace("host=127.0.0.1 port=5432", backend)
        (directory / "pgbouncer.ini").write_text(text + "\n")
        with (directory / "log").open("wb") as log:
            process = subprocess.Popen(
                [PGBOUNCER, str(directory / "pgbouncer.ini")], stdout=log, stderr=log
            )
        wait_for_port("127.0.0.1", lease.port, 10, process=ProcessId.of(process.pid))
    finally:
        lease.release()
    return PgBouncer(lease.port, process)


def _unprivileged_user() -> str:
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return "nobody"


@pytest.fixture(scope="module")
def pgbouncer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    """PgBouncer as docs/postgres.md configures it: session pooling, ``options`` ignored."""
    config = documented_config()
    assert "ignore_startup_parameters = options" in config
    bouncer = start_pgbouncer(tmp_path_factory.mktemp("pgbouncer") / "session", config)
    yield bouncer
    bouncer.stop()


@pytest.fixture(scope="module")
def strict_pgbouncer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    """PgBouncer with its default for startup parameters: a connection with ``options`` fails."""
    config = [line for line in documented_config() if "ignore_startup_parameters" not in line]
    bouncer = start_pgbouncer(tmp_path_factory.mktemp("pgbouncer") / "strict", config)
    yield bouncer
    bouncer.stop()


THROUGH_THE_POOLER = """
import psycopg


def test_the_workers_url_goes_through_the_pooler(worker_postgres_url, worker_postgres_namespace):
    with psycopg.connect(worker_postgres_url) as app:
        row = app.execute(
            "SELECT pg_backend_pid(), current_database(), current_setting('lock_timeout'),"
            " current_setting('application_name')"
        ).fetchone()
        name = worker_postgres_namespace.name
        assert row[0] != app.pgconn.backend_pid  # the pid of the handshake is the pooler's
        assert row[1:] == (name, "300ms", name)


def test_blocked_by_its_own_worker_postgres(worker_postgres, worker_postgres_url):
    worker_postgres.execute("INSERT INTO account VALUES (7, 'ann')")
    with psycopg.connect(worker_postgres_url) as app:
        app.execute("SET statement_timeout = '5s'")  # should the lock timeout be lost
        app.execute("INSERT INTO account VALUES (7, 'bob')")
"""


def test_a_run_through_pgbouncer_in_session_mode_passes_in_database_mode(
    example: Example, pgbouncer: PgBouncer, record_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(postgres.URL_VAR, pgbouncer.url())
    example.copy(
        "pollution",
        ini="worker_utils_postgres_mode = database\nworker_utils_postgres_lock_timeout = 300ms\n",
    )
    example.pytester.makepyfile(test_pooler=THROUGH_THE_POOLER)
    result = example.pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=19, failed=1)
    # The fixture's connection is known by its backend's pid, not the pooler's.
    result.stdout.fnmatch_lines(
        [
            "worker_postgres: a lock wait ran out after 300ms "
            "(worker_utils_postgres_lock_timeout): the worker_postgres connection of this test "
            "holds the lock in its uncommitted transaction; *"
        ]
    )
    assert databases(example.prefix) == []


def refusal(example: Example, url: str, *args: str) -> list[str]:
    """The usage error of a run whose server is ``url``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(postgres.URL_VAR, url)
        example.pytester.makepyfile(test_one="def test_one(worker_postgres):\n    pass\n")
        result = example.pytester.runpytest("-p", "no:randomly", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    return [line for line in result.stderr.lines if line]


@pytest.mark.parametrize("pool_mode", ["transaction", "statement"])
def test_pooling_per_transaction_or_statement_is_refused_with_one_line(
    example: Example, pgbouncer: PgBouncer, pool_mode: str
) -> None:
    url = pgbouncer.url(pool_mode)
    assert refusal(example, url) == [
        f"ERROR: WORKER_UTILS_POSTGRES_URL: {url} is a connection pooler that gives one client's "
        f"transactions to different server connections (PgBouncer's pool_mode = transaction or "
        f"statement), but each worker's search path, lock timeout and liveness lock belong to "
        f"its session; set pool_mode = session for this database in the pooler's "
        f"configuration, or point WORKER_UTILS_POSTGRES_URL at PostgreSQL itself"
    ]


def test_schema_mode_through_a_pooler_that_drops_the_search_path_is_refused(
    example: Example, pgbouncer: PgBouncer
) -> None:
    url = pgbouncer.url()
    assert refusal(example, url) == [
        f"ERROR: WORKER_UTILS_POSTGRES_URL: {url} is a connection pooler that drops the options "
        f"startup parameter (PgBouncer's ignore_startup_parameters = options), which carries "
        f"each worker's search path in schema mode; set worker_utils_postgres_mode = database, "
        f"whose workers need no search path, or point WORKER_UTILS_POSTGRES_URL at PostgreSQL "
        f"itself"
    ]


@pytest.mark.parametrize(
    ("mode", "fix"),
    [
        ("schema", "set worker_utils_postgres_mode = database and add ignore_startup_parameters"),
        ("database", "add ignore_startup_parameters"),
    ],
    ids=["schema", "database"],
)
def test_a_pooler_that_refuses_options_is_one_line_naming_the_setting(
    example: Example, strict_pgbouncer: PgBouncer, mode: str, fix: str
) -> None:
    url = strict_pgbouncer.url()
    assert refusal(example, url, f"--worker-utils-postgres-mode={mode}") == [
        f"ERROR: WORKER_UTILS_POSTGRES_URL: {url} is a connection pooler that refuses the options "
        f"startup parameter of worker URLs (it answered: unsupported startup parameter: "
        f"options); {fix} = options to the pooler's configuration (pgbouncer.ini), or point "
        f"WORKER_UTILS_POSTGRES_URL at PostgreSQL itself"
    ]


def test_reaping_through_a_pooler_needs_session_pooling_and_nothing_else(
    strict_pgbouncer: PgBouncer, pgbouncer: PgBouncer
) -> None:
    postgres.check_pooler(strict_pgbouncer.url(), setting="--postgres-url", kind=None)
    with pytest.raises(postgres.PostgresError, match=r"^--postgres-url: .* pool_mode = session"):
        postgres.check_pooler(pgbouncer.url("transaction"), setting="--postgres-url", kind=None)


def test_a_search_path_that_arrives_passes_the_options_check() -> None:
    # PostgreSQL itself keeps "a,b" as given in options; a pooler that passes them on, the same.
    assert _pooler._options(URL, "schema") is None


@pytest.fixture(scope="module")
def crowded_pgbouncer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    """PgBouncer that takes one client at a time."""
    config = [*documented_config(), "max_client_conn = 1"]
    bouncer = start_pgbouncer(tmp_path_factory.mktemp("pgbouncer") / "crowded", config)
    yield bouncer
    bouncer.stop()


def test_a_pooler_that_refuses_the_second_client_is_one_line(
    crowded_pgbouncer: PgBouncer,
) -> None:
    url = crowded_pgbouncer.url()
    with pytest.raises(postgres.PostgresError) as error:
        postgres.check_pooler(url, setting="the_url", kind="database")
    assert str(error.value) == (
        f"the_url: cannot connect to {url} (no more connections allowed (max_client_conn)); "
        f"start the server or point the_url at one that accepts connections"
    )


def test_clients_beyond_the_pool_wait_for_a_server_connection_instead_of_being_refused(
    tmp_path: Path,
) -> None:
    # docs/scaling.md: in session pooling a client beyond the pool waits; it is not refused.
    bouncer = start_pgbouncer(tmp_path / "small", [*documented_config(), "default_pool_size = 2"])
    served: list[int] = []
    failed: list[BaseException] = []

    def client() -> None:
        try:
            with psycopg.connect(bouncer.url(), autocommit=True) as conn:
                row = conn.execute("SELECT pg_backend_pid(), pg_sleep(0.3)").fetchone()
                assert row is not None
                served.append(row[0])
        except BaseException as exc:  # reported below
            failed.append(exc)

    try:
        clients = [threading.Thread(target=client) for _ in range(6)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=60)
    finally:
        bouncer.stop()
    assert failed == []
    assert len(served) == 6
    assert len(set(served)) <= 2  # the pool's two server connections served all six
