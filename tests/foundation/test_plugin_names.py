"""The plugin's names: the entry point, its module, and one per resource, each usable with -p.

Which plugins a run registers is the run's own: runs without workers run in this process.
"""

from __future__ import annotations

import pytest

from worker_utils import plugin

USES_A_PORT = "def test_it(worker_port):\n    assert worker_port()\n"

# One fixture each resource plugin provides (the guard, isolation and the server backends
# provide options and a marker instead).
RESOURCE_FIXTURES = {
    "worker_utils.run.plugin": "run_tmp_path",
    "worker_utils.ports.plugin": "worker_port",
    "worker_utils.postgres.plugin": "worker_postgres_dsn",
    "worker_utils.redis.plugin": "worker_redis_url",
    "worker_utils.sqlite.plugin": "worker_sqlite_path",
    "worker_utils.sandbox.plugin": "worker_env",
}


def test_the_plugin_module_named_with_p_loads_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_A_PORT)
    result = pytester.runpytest("-p", "worker_utils.plugin", "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    result.stderr.no_fnmatch_line("*already registered*")


def test_the_plugin_module_listed_in_a_conftest_loads_once_in_every_worker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest('pytest_plugins = ["worker_utils.plugin"]\n')
    pytester.makepyfile(USES_A_PORT)
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=1)
    result.stderr.no_fnmatch_line("*already registered*")


@pytest.mark.parametrize("name", ["worker_utils", "worker_utils.plugin"])
def test_blocking_the_plugin_switches_every_resource_off(
    pytester: pytest.Pytester, name: str
) -> None:
    pytester.makepyfile(USES_A_PORT)
    result = pytester.runpytest("-p", f"no:{name}", "-p", "no:xdist")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'worker_port' not found"])
    result.stdout.no_fnmatch_line("worker_utils: *")


def test_every_resource_plugin_is_covered_here() -> None:
    assert sorted(plugin.pytest_plugins) == sorted(
        [
            *RESOURCE_FIXTURES,
            "worker_utils.guard.plugin",
            "worker_utils.isolate.plugin",
            "worker_utils.servers.plugin",
        ]
    )


@pytest.mark.parametrize(("name", "fixture"), sorted(RESOURCE_FIXTURES.items()))
def test_blocking_a_resource_plugin_switches_off_only_that_resource(
    pytester: pytest.Pytester, name: str, fixture: str
) -> None:
    other = "run_tmp_path" if fixture == "worker_port" else "worker_port"
    pytester.makepyfile(
        f"""
        def test_blocked({fixture}):
            pass

        def test_other({other}):
            pass
        """
    )
    result = pytester.runpytest("-p", f"no:{name}", "-p", "no:xdist")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"*fixture '{fixture}' not found"])


def test_blocking_the_guard_plugin_removes_its_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_A_PORT)
    blocked = ["-p", "no:worker_utils.guard.plugin", "-p", "no:xdist"]
    pytester.runpytest(*blocked).assert_outcomes(passed=1)
    result = pytester.runpytest(*blocked, "--worker-utils-guard")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*error: unrecognized arguments: --worker-utils-guard"])


def test_blocking_the_servers_plugin_removes_its_options_and_keeps_the_embedded_servers(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        "def test_it(worker_redis_server_url):\n    assert worker_redis_server_url\n"
    )
    blocked = ["-p", "no:worker_utils.servers.plugin", "-p", "no:xdist"]
    pytester.runpytest(*blocked).assert_outcomes(passed=1)
    result = pytester.runpytest(*blocked, "--worker-utils-servers=docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*error: unrecognized arguments: --worker-utils-servers=docker"])
