"""Every configuration and server error: one clear message naming what to change."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.postgres.conftest import URL, Example, execute, schemas
from worker_utils import postgres

ONE_TEST = "def test_uses_postgres(worker_postgres):\n    pass\n"


def run_one(example: Example, *args: str) -> pytest.RunResult:
    """Run one test that uses PostgreSQL, in this process."""
    example.pytester.makeini(f"[pytest]\nworker_utils_postgres_prefix = {example.prefix}\n")
    example.pytester.makepyfile(test_one=ONE_TEST)
    return example.pytester.runpytest("-p", "no:randomly", *args)


def test_an_unreachable_server_is_one_usage_error_naming_the_setting(
    example: Example, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(postgres.URL_VAR, "postgresql://postgres@127.0.0.1:1/test")  # noqa: WU202
    result = run_one(example, "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: WORKER_UTILS_POSTGRES_URL: cannot connect to "  # noqa: WU202
            "postgresql://postgres@127.0.0.1:1/test (*Connection refused*); start the server "
            "or point WORKER_UTILS_POSTGRES_URL at one that accepts connections"
        ]
    )


@contextlib.contextmanager
def not_postgres(greeting: bytes | None) -> Iterator[int]:
    """A TCP server that is not PostgreSQL: it says ``greeting`` and closes (None: it is silent)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                with conn:
                    conn.sendall(greeting or b"")
                    while greeting is None and conn.recv(64):
                        pass  # silent until the client gives up and closes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown(socket.SHUT_RDWR)  # ends the accept() above
        server.close()
        thread.join(5)


@pytest.mark.parametrize(
    ("greeting", "problem"),
    [
        (None, "it accepted a connection but gave no PostgreSQL answer within 1.5 s"),
        (
            b"SSH-2.0-OpenSSH_9.6\r\n",
            "it answered 'SSH-2.0-OpenSSH_9.6\\r\\n', which is not PostgreSQL's protocol",
        ),
        (b"", "it closed the connection without a PostgreSQL answer"),
    ],
)
def test_a_port_where_another_server_listens_is_named_within_two_seconds(
    greeting: bytes | None, problem: str
) -> None:
    with not_postgres(greeting) as port:
        started = time.monotonic()
        with pytest.raises(postgres.PostgresError) as failed:
            postgres.preflight(f"postgresql://postgres@127.0.0.1:{port}/test", setting="the_url")
        assert time.monotonic() - started < 3  # 1.5 s of silence; libpq alone waits 10 s
    assert str(failed.value) == (
        f"the_url: 127.0.0.1:{port} is not a PostgreSQL server ({problem}); "
        f"point the_url at PostgreSQL's port, 5432 by default"
    )


def test_the_redis_port_is_one_quick_usage_error_saying_it_is_not_postgres(
    example: Example, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The machine's Redis: libpq alone would wait its 10 s connect timeout, twice.
    monkeypatch.setenv(postgres.URL_VAR, "postgresql://postgres@127.0.0.1:6379/test")  # noqa: WU202
    started = time.monotonic()
    result = run_one(example, "-n", "2")
    assert time.monotonic() - started < 10  # no second wait in the end-of-run reaping
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: WORKER_UTILS_POSTGRES_URL: 127.0.0.1:6379 is not a PostgreSQL server "  # noqa: WU202
            "(it accepted a connection but gave no PostgreSQL answer within 1.5 s); point "
            "WORKER_UTILS_POSTGRES_URL at PostgreSQL's port, 5432 by default"
        ]
    )


def test_a_database_that_does_not_exist_is_named_with_how_to_create_it(
    example: Example, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/wu_no_such_db"  # noqa: WU202 the shared server
    monkeypatch.setenv(postgres.URL_VAR, url)
    result = run_one(example)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            'ERROR: WORKER_UTILS_POSTGRES_URL: database "wu_no_such_db" does not exist on the '  # noqa: WU203
            "server; create it (createdb -h 127.0.0.1 -p 5432 -U postgres wu_no_such_db) or "  # noqa: WU202
            "name another database in WORKER_UTILS_POSTGRES_URL"
        ]
    )
    result.stderr.no_fnmatch_line("*start the server*")


def test_a_malformed_url_names_the_option_and_hides_the_password(example: Example) -> None:
    result = run_one(example, "--worker-utils-postgres-url=host=x password=secret port")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --worker-utils-postgres-url: 'host=x password=*** port' is not a "
            'PostgreSQL URL (missing "=" after "port" in connection info string); '
            "use postgresql://USER@HOST:PORT/DBNAME"
        ]
    )
    assert "secret" not in result.stderr.str()


@pytest.mark.parametrize("port", ["54x2", "99999", "0"])
def test_a_malformed_port_is_named_as_such_not_as_an_unreachable_server(port: str) -> None:
    url = f"postgresql://postgres@127.0.0.1:{port}/test"
    with pytest.raises(postgres.PostgresError) as failed:
        postgres.preflight(url, setting="worker_utils_postgres_url")
    assert str(failed.value) == (
        f"worker_utils_postgres_url: {url!r} is not a PostgreSQL URL (port {port!r} is not a "
        f"number from 1 to 65535); use postgresql://USER@HOST:PORT/DBNAME"
    )


def test_a_role_without_create_on_the_database_is_told_what_to_grant(
    example: Example, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute("DROP ROLE IF EXISTS wu_no_create; CREATE ROLE wu_no_create LOGIN")
    try:
        monkeypatch.setenv(postgres.URL_VAR, URL.replace("//postgres@", "//wu_no_create@", 1))
        result = run_one(example)
    finally:
        execute("DROP ROLE wu_no_create")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            'ERROR: WORKER_UTILS_POSTGRES_URL: role "wu_no_create" may not create schemas in '
            'database "test"; GRANT CREATE ON DATABASE "test" TO "wu_no_create", or point '
            "WORKER_UTILS_POSTGRES_URL at a database where it may"
        ]
    )


def test_a_bad_marker_value_fails_that_test_only(example: Example) -> None:
    example.pytester.makeini(f"[pytest]\nworker_utils_postgres_prefix = {example.prefix}\n")
    example.pytester.makepyfile(
        test_one=ONE_TEST + "\nimport pytest\n\n@pytest.mark.worker_postgres(reset='rollback')\n"
        "def test_marked(worker_postgres):\n    pass\n"
    )
    result = example.pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.worker_postgres: reset='rollback'; "
            "use one of auto, transaction, delete, truncate, none"
        ]
    )


def test_a_misspelt_marker_argument_is_named(example: Example) -> None:
    example.pytester.makeini(f"[pytest]\nworker_utils_postgres_prefix = {example.prefix}\n")
    example.pytester.makepyfile(
        test_one="import pytest\n\n@pytest.mark.worker_postgres(rest='delete')\n"
        "def test_marked(worker_postgres):\n    pass\n"
    )
    result = example.pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.worker_postgres: takes one argument, reset= (or one positional "
            "value); got rest"
        ]
    )


def test_the_marker_takes_auto_and_a_positional_value(example: Example) -> None:
    # The ini says delete; the markers choose per test, and a committed row shows the mode.
    example.pytester.makeini(
        f"[pytest]\nworker_utils_postgres_prefix = {example.prefix}\n"
        "worker_utils_postgres_reset = delete\n"
    )
    example.pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def worker_postgres_setup():
            def setup(conn):
                conn.execute("CREATE TABLE item (id int PRIMARY KEY)")
            return setup
        """
    )
    example.pytester.makepyfile(
        test_one="""
        import pytest

        @pytest.mark.worker_postgres("transaction")
        def test_a_positional_mode(worker_postgres):
            worker_postgres.execute("INSERT INTO item VALUES (1)")
            assert worker_postgres.info.transaction_status.name == "INTRANS"

        @pytest.mark.worker_postgres(reset="auto")
        def test_auto_picks_transaction_for_the_fixture_connection(worker_postgres):
            assert worker_postgres.info.transaction_status.name == "INTRANS"

        def test_the_ini_mode_applies_without_a_marker(worker_postgres):
            assert worker_postgres.info.transaction_status.name == "IDLE"
        """
    )
    example.pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=3)


@pytest.mark.parametrize("extensions", ["", "worker_utils_postgres_extensions = citext"])
def test_an_extension_schema_the_server_lacks_stops_the_run_before_any_test(
    example: Example, extensions: str
) -> None:
    example.pytester.makeini(
        f"[pytest]\nworker_utils_postgres_prefix = {example.prefix}\n{extensions}\n"
        "worker_utils_postgres_extension_schema = wu_no_such_schema\n"
    )
    example.pytester.makepyfile(test_one=ONE_TEST)
    result = example.pytester.runpytest("-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    database = URL.rpartition("/")[2]
    assert [line for line in result.stderr.lines if line] == [
        "ERROR: worker_utils_postgres_extension_schema: schema 'wu_no_such_schema' does not "
        f'exist in database "{database}"; create it (CREATE SCHEMA wu_no_such_schema) or '
        "leave the setting at public"
    ]


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        (
            "worker_utils_postgres_extensions = wu_no_such_extension",
            "worker_utils_postgres_extensions: cannot create extension 'wu_no_such_extension' "
            "(*); install it on the server or remove it from the setting",
        ),
    ],
)
def test_an_unusable_extension_setting_is_named_without_a_traceback(
    example: Example, ini: str, message: str
) -> None:
    example.pytester.makeini(f"[pytest]\nworker_utils_postgres_prefix = {example.prefix}\n{ini}\n")
    example.pytester.makepyfile(test_one=ONE_TEST)
    result = example.pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_a_schema_worker_utils_did_not_create_is_never_dropped_and_the_error_says_so(
    example: Example,
) -> None:
    taken = postgres.worker_postgres_name("fixed-run", "master", example.prefix)
    execute(f"CREATE SCHEMA {taken}; CREATE TABLE {taken}.keep (id int)")
    try:
        example.pytester.makepyfile(test_two=ONE_TEST + "\n\n" + ONE_TEST.replace("uses", "too"))
        result = run_one(example, "-n", "0", "--testrunuid=fixed-run")
        result.assert_outcomes(passed=0, errors=3)
        result.stdout.fnmatch_lines(
            [
                f'worker_postgres: schema "{taken}" exists and was not created by '
                "worker_utils; drop it yourself or set worker_utils_postgres_prefix to another "
                "prefix"
            ]
        )
        assert schemas(example.prefix) == [taken]
    finally:
        execute(f"DROP SCHEMA {taken} CASCADE")
