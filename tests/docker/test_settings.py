"""Settings of the server backends and how the engine is found; no engine needed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker_utils import cli
from worker_utils.servers import docker as backend
from worker_utils.servers.plugin import parse_backends


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docker", {"postgres": "docker", "redis": "docker"}),
        ("Embedded", {"postgres": "embedded", "redis": "embedded"}),
        ("postgres=docker", {"postgres": "docker", "redis": "embedded"}),
        (" redis = docker , postgres=embedded", {"postgres": "embedded", "redis": "docker"}),
    ],
)
def test_the_servers_setting_chooses_a_backend_per_server(
    text: str, expected: dict[str, str]
) -> None:
    assert parse_backends(text) == expected


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("dokcer", "found 'dokcer'"),
        (
            "postgres=docker,mysql=docker",
            "found 'postgres=docker,mysql=docker' (at 'mysql=docker')",
        ),
    ],
)
def test_a_bad_servers_setting_is_a_usage_error_naming_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, text: str, found: str
) -> None:
    monkeypatch.setenv("WORKER_UTILS_SERVERS", text)
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: worker_utils_servers (from WORKER_UTILS_SERVERS): {found}; expected "
            f"embedded or docker, or one per server such as postgres=docker,redis=embedded"
        ]
    )


def test_docker_host_wins_then_the_current_context_then_the_default_socket(
    tmp_path: Path,
) -> None:
    docker_dir = tmp_path / ".docker"
    meta = docker_dir / "contexts" / "meta" / hashlib.sha256(b"colima").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": "colima", "Endpoints": {"docker": {"Host": "unix:///c.sock"}}})
    )
    home = {"HOME": str(tmp_path)}
    assert backend.engine_address(home) == (
        "unix:///var/run/docker.sock",
        "the default socket; DOCKER_HOST is not set",
    )
    (docker_dir / "config.json").write_text(json.dumps({"currentContext": "colima"}))
    assert backend.engine_address(home) == ("unix:///c.sock", "docker context 'colima'")
    given = {**home, "DOCKER_HOST": "tcp://127.0.0.1:2375"}  # noqa: WU202 never connected
    assert backend.engine_address(given) == (
        given["DOCKER_HOST"],
        "DOCKER_HOST",
    )


def test_without_the_sdk_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)
    with pytest.raises(backend.DockerError) as raised:
        backend.engine({})
    assert str(raised.value) == (
        "docker backend: the Docker SDK is not installed; pip install 'pytest-worker-utils[docker]'"
    )


def test_reap_with_nothing_to_reap_says_what_to_pass(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WORKER_UTILS_POSTGRES_URL", raising=False)
    monkeypatch.delenv("WORKER_UTILS_REDIS_URL", raising=False)
    assert cli.main(["reap"]) == 2
    assert capsys.readouterr().err == (
        "worker-utils reap: nothing to reap; pass --postgres-url URL or set "
        "WORKER_UTILS_POSTGRES_URL, --redis-url URL or set WORKER_UTILS_REDIS_URL, "
        "or pass --docker\n"
    )


def test_reap_without_an_engine_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert cli.main(["reap", "--docker"]) == 2
    assert capsys.readouterr().err == (
        "worker-utils reap: docker backend: no Docker engine reachable at "
        "unix:///nonexistent/docker.sock (DOCKER_HOST): no socket there; start the engine or "
        "set DOCKER_HOST to its socket, or choose another server backend with "
        "--worker-utils-servers\n"
    )


def test_the_compose_example_uses_the_pinned_images_and_their_settings() -> None:
    compose = Path(__file__).parents[2] / "examples" / "docker" / "compose.yaml"
    images = [
        line.split("image:")[1].strip()
        for line in compose.read_text().splitlines()
        if line.strip().startswith("image:")
    ]
    assert images == [
        f"${{WORKER_UTILS_{kind.upper()}_IMAGE:-{backend.DEFAULT_IMAGES[kind]}}}"
        for kind in ("postgres", "redis")
    ]


def test_the_docker_page_shows_the_compose_example_as_it_is() -> None:
    root = Path(__file__).parents[2]  # testpaths, as `make test` runs it
    compose = (root / "examples" / "docker" / "compose.yaml").read_text()
    assert f"```yaml\n{compose}```\n" in (root / "docs" / "docker.md").read_text()


def test_without_an_engine_the_docker_tests_skip_with_one_notice_under_xdist_too() -> None:
    root = Path(__file__).parents[2]  # testpaths, as `make test` runs it
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # under CI they fail instead
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-n", "2", "-k", "compose_recipe"),
            *("-p", "no:randomly", "-p", "no:cacheprovider"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    notices = [line for line in run.stdout.splitlines() if line.startswith("notice:")]
    assert notices == [
        "notice: 1 Docker tests skipped: no engine reachable at unix:///nonexistent/docker.sock; "
        "to run them, start one with `sudo tests/docker/engine.sh start` (or set DOCKER_HOST to "
        "an engine that has the images it builds)"
    ], run.stdout


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("/var/run/docker.sock", "Invalid bind address format: /var/run/docker.sock"),
        ("bogus", "Invalid bind address format: port is required: bogus"),
    ],
)
def test_a_docker_host_the_sdk_cannot_use_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], address: str, reason: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", address)
    assert cli.main(["reap", "--docker"]) == 2
    assert capsys.readouterr().err == (
        f"worker-utils reap: docker backend: {address!r} (DOCKER_HOST) is not an address the "
        f"Docker SDK can use: {reason}; set DOCKER_HOST to unix:///path/to/docker.sock or "
        f"tcp://HOST:PORT\n"
    )
