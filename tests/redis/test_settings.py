"""Every Redis setting from the command line, the environment or the ini file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PRECEDENCE, SOURCES, Given
from tests.redis.test_errors import FORMS
from worker_utils._settings import Setting
from worker_utils.redis.plugin import LEASE_TTL, MODE, SERVER, URL, WAIT

SHOW = """
import os
from worker_utils.redis.plugin import _redis_key

def test_show(request):
    settings = request.config.stash[_redis_key]
    print("\\nredis_url", settings.url and settings.url.url, settings.setting)
    print("\\nredis_mode", settings.mode)
    print("\\nredis_wait", settings.wait)
    print("\\nredis_server", os.environ.get("WORKER_UTILS_REDIS_SERVER"))
"""


@pytest.fixture
def server(tmp_path: Path) -> Path:
    """An executable file standing for redis-server."""
    path = tmp_path / "redis-server"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


#: Each setting, a value for it, and the line the inner run shows for that value.
GIVEN = [
    (URL, "redis://redis.example/3", "redis_url redis://redis.example/3 {where}"),
    (MODE, "prefix", "redis_mode prefix"),
    (WAIT, "2.5", "redis_wait 2.5"),
    (SERVER, "{server}", "redis_server {server}"),
]


@pytest.mark.parametrize("source", SOURCES)
def test_each_setting_is_read_from_every_source(given: Given, server: Path, source: str) -> None:
    # Every setting at once, each with a value of its own: one run shows them all.
    for setting, text, _ in GIVEN:
        given(setting, text.format(server=server), source)
    lines = given.shown(SHOW)
    # Later errors name what the user set: the option, the variable or the ini key.
    where = {"option": URL.option, "env": URL.env, "ini": URL.ini}[source]
    for setting, _, shown in GIVEN:
        assert shown.format(server=server, where=where) in lines, setting.name


@pytest.mark.parametrize("sources", PRECEDENCE)
def test_the_option_wins_over_the_variable_which_wins_over_the_ini_file(
    given: Given, sources: tuple[str, ...]
) -> None:
    waits = {"option": "1.0", "env": "2.0", "ini": "3.0"}
    winner = given.each(WAIT, waits, sources)
    assert f"redis_wait {winner or '60.0'}" in given.shown(SHOW)


@pytest.mark.parametrize("source", SOURCES)
def test_a_bad_url_names_the_setting_where_it_came_from_and_hides_the_password(
    given: Given, source: str
) -> None:
    origin = given(URL, "redis://:hunter2@localhost:port/0", source)
    assert given.usage_error() == [
        f"ERROR: worker_utils_redis_url (from {origin}): found 'redis://:***@localhost:port/0' "
        f"(the port is not a number from 0 to 65535); expected {FORMS}"
    ]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://localhost", "scheme 'http' is not redis, rediss or unix"),
        ("localhost:6379", "scheme 'localhost' is not redis, rediss or unix"),  # noqa: WU202
        ("6379", "no scheme"),
        ("redis://localhost:99999/0", "the port is not a number from 0 to 65535"),
        ("redis://localhost/zero", "database 'zero' is not a number"),
        ("redis://:secret@/0", "no host"),
        ("unix://", "no socket path"),
    ],
)
def test_a_bad_url_says_what_is_wrong_with_it(given: Given, url: str, reason: str) -> None:
    given(URL, url, "option")
    assert given.usage_error() == [
        f"ERROR: worker_utils_redis_url (from --worker-utils-redis-url): "
        f"found {url.replace(':secret@', ':***@')!r} ({reason}); expected {FORMS}"
    ]


@pytest.mark.parametrize(
    ("setting", "text", "source", "message"),
    [
        (
            MODE,
            "sometimes",
            "ini",
            "worker_utils_redis_mode (from tox.ini): found 'sometimes'; "
            "expected auto, index or prefix",
        ),
        (
            WAIT,
            "soon",
            "env",
            "worker_utils_redis_wait (from WORKER_UTILS_REDIS_WAIT): found 'soon'; "
            "expected a number of seconds, such as 60",
        ),
        (
            WAIT,
            "-1",
            "option",
            "worker_utils_redis_wait (from --worker-utils-redis-wait): found '-1'; "
            "expected a number of seconds, such as 60",
        ),
        (
            LEASE_TTL,
            "0",
            "env",
            "worker_utils_redis_lease_ttl (from WORKER_UTILS_REDIS_LEASE_TTL): found '0'; "
            "expected a number of seconds above 0, such as 30",
        ),
        (
            SERVER,
            "/nonexistent/redis-server",
            "env",
            "worker_utils_redis_server (from WORKER_UTILS_REDIS_SERVER): "
            "found '/nonexistent/redis-server'; expected an executable file",
        ),
    ],
    ids=["mode", "wait-text", "wait-negative", "lease-ttl-zero", "server"],
)
def test_a_bad_value_is_one_usage_error(
    given: Given, setting: Setting[object], text: str, source: str, message: str
) -> None:
    given(setting, text, source)
    assert given.usage_error() == [f"ERROR: {message}"]


def test_the_server_setting_from_the_ini_file_starts_the_embedded_server_of_every_worker(
    given: Given, tmp_path: Path
) -> None:
    from worker_utils.servers.redis import find_redis_server

    used = tmp_path / "used"
    wrapper = tmp_path / "my-redis-server"
    wrapper.write_text(f'#!/bin/sh\necho yes > {used}\nexec {find_redis_server()} "$@"\n')
    wrapper.chmod(0o755)
    given.pytester.makeini(f"[pytest]\n{SERVER.ini} = {wrapper}\n")
    given.pytester.makepyfile(
        "def test_one(worker_redis):\n    worker_redis.set('k', 1)\n\n"
        "def test_two(worker_redis):\n    worker_redis.set('k', 2)\n"
    )
    result = given.pytester.runpytest("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert used.read_text() == "yes\n"
