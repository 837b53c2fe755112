"""Bad settings and unusable servers: one clear message, no traceback."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from tests.redis.conftest import Server
from worker_utils import ports
from worker_utils.redis import RedisUrlError, mask_password, parse_redis_url, redis_url_with_db
from worker_utils.servers._process import ServerStartError
from worker_utils.servers.redis import find_redis_server

FORMS = "redis://[[user]:password@]host[:port][/db], rediss://... or unix:///path/to/socket[?db=N]"

SUITE = """
def test_one(worker_redis):
    pass

def test_two(worker_redis_url):
    pass

def test_without_redis():
    pass
"""


def run_failing(pytester: pytest.Pytester, url: str, message: str, workers: int = 0) -> None:
    """The suite's two Redis tests error with ``message`` alone; the third test passes."""
    pytester.makepyfile(SUITE)
    result = pytester.runpytest("-n", str(workers), f"--worker-utils-redis-url={url}")
    result.assert_outcomes(passed=1, errors=2)
    assert result.stdout.lines.count(message) == 2, result.stdout.str()
    assert "Traceback" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()


def test_an_unreachable_server_is_reported_as_such(pytester: pytest.Pytester) -> None:
    lease = ports.lease_port()  # a port nothing listens on, for as long as we hold it
    try:
        url = f"redis://127.0.0.1:{lease.port}/0"
        run_failing(
            pytester,
            url,
            f"worker_redis: cannot connect to {url} (Error 111 connecting to 127.0.0.1:"
            f"{lease.port}. Connection refused); start Redis there, or set "
            f"--worker-utils-redis-url to a running server",
            workers=2,  # each worker reports it
        )
    finally:
        lease.release()


def test_a_wrong_password_is_reported_masked(
    pytester: pytest.Pytester, redis_server_factory: object
) -> None:
    server: Server = redis_server_factory("--requirepass", "secret")  # type: ignore[operator]
    run_failing(
        pytester,
        f"redis://:wrong@127.0.0.1:{server.port}/0",
        f"worker_redis: redis://:***@127.0.0.1:{server.port}/0 refused the user name or "
        f"password (invalid username-password pair or user is disabled); fix them in "
        f"--worker-utils-redis-url",
    )


def test_a_missing_password_is_reported_with_the_url_form(
    pytester: pytest.Pytester, redis_server_factory: object
) -> None:
    server: Server = redis_server_factory("--requirepass", "secret")  # type: ignore[operator]
    run_failing(
        pytester,
        f"redis://127.0.0.1:{server.port}/0",
        f"worker_redis: redis://127.0.0.1:{server.port}/0 requires a password; give it in "  # noqa: WU202
        f"--worker-utils-redis-url, such as redis://:PASSWORD@host:6379/0",
    )


def test_a_database_out_of_range_names_the_servers_count(
    pytester: pytest.Pytester, redis_server: Server
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/16"
    run_failing(
        pytester,
        url,
        f"worker_redis: database 16 in --worker-utils-redis-url ({url}) is out of range: "
        f"the server has 16 (0-15); name one of those, such as 0",
    )


def test_a_server_without_config_is_measured_by_select(
    pytester: pytest.Pytester, redis_server_factory: object
) -> None:
    server: Server = redis_server_factory(  # type: ignore[operator]
        "--databases", "5", "--rename-command", "CONFIG", ""
    )
    pytester.makepyfile(
        """
        def test_count(worker_redis_lease, worker_redis_db):
            assert worker_redis_lease.database_count == 5
            assert worker_redis_db == 1
        """
    )
    result = pytester.runpytest(f"--worker-utils-redis-url={server.url}")
    result.assert_outcomes(passed=1)


def test_a_redis_server_variable_naming_no_executable_is_an_error() -> None:
    with pytest.raises(ServerStartError) as raised:
        find_redis_server({"WORKER_UTILS_REDIS_SERVER": "/nonexistent/redis-server"})
    assert str(raised.value) == (
        "WORKER_UTILS_REDIS_SERVER: found '/nonexistent/redis-server', which is not an "
        "executable file; set it to the path of redis-server, or unset it"
    )


def test_urls_keep_their_form_when_given_a_database() -> None:
    assert redis_url_with_db("redis://h:1/0", 7) == "redis://h:1/7"  # noqa: WU202
    assert redis_url_with_db("rediss://u:p@h:1?db=2&ssl_cert_reqs=none", 7) == (  # noqa: WU202
        "rediss://u:p@h:1/7?ssl_cert_reqs=none"  # noqa: WU202
    )
    assert redis_url_with_db("unix:///run/redis.sock?db=0", 3) == "unix:///run/redis.sock?db=3"
    assert parse_redis_url("redis://h").db == 0
    assert parse_redis_url("unix:///s.sock?db=4").db == 4
    assert mask_password("redis://u:p@h:1/0") == "redis://u:***@h:1/0"  # noqa: WU202


def test_a_url_error_is_a_value_error() -> None:
    with pytest.raises(RedisUrlError, match=r"^X: found 'ftp://h' \(scheme 'ftp'"):
        parse_redis_url("ftp://h", setting="X")


def test_a_server_that_is_not_redis_is_reported_as_such(pytester: pytest.Pytester) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_like_http() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                with connection:
                    connection.recv(1024)
                    connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer_like_http, daemon=True).start()
    try:
        run_failing(
            pytester,
            f"redis://127.0.0.1:{port}/0",
            f"worker_redis: redis://127.0.0.1:{port}/0 does not answer like a Redis server "
            f"(Protocol Error: b'HTTP/1.1 400 Bad Request'); check that "
            f"--worker-utils-redis-url names one",
        )
    finally:
        listener.close()


def test_an_overridden_server_fixture_is_named_in_its_errors(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKER_UTILS_REDIS_URL", raising=False)
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def worker_redis_server_url():
            return "redis://localhost/zero"
        """
    )
    pytester.makepyfile(SUITE)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=2)
    message = (
        "the worker_redis_server_url fixture: found 'redis://localhost/zero' "
        f"(database 'zero' is not a number); expected {FORMS}"
    )
    assert result.stdout.lines.count(message) == 2
