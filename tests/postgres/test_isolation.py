"""What a worker's schema can see, and teardown that never waits on a leaked connection."""

from __future__ import annotations

import time

import pytest

from tests.postgres.conftest import Example, databases, execute, schemas


def test_teardown_ends_a_leaked_idle_transaction_instead_of_waiting_for_it(
    example: Example, scratch_database: str
) -> None:
    example.copy("leaks", ini="worker_utils_postgres_extensions = citext\n")
    started = time.monotonic()
    result = example.pytester.runpytest("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert time.monotonic() - started < 30
    assert schemas(example.prefix) == []


def test_an_extension_in_public_is_reachable_and_public_tables_are_shadowed(
    example: Example, scratch_database: str
) -> None:
    execute("CREATE EXTENSION citext; CREATE TABLE public.person (name text)", scratch_database)
    execute("INSERT INTO public.person VALUES ('not yours')", scratch_database)
    example.copy("leaks")
    result = example.pytester.runpytest("-n", "0", "-p", "no:randomly", "-k", "extension")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_database_mode_creates_the_extensions_in_every_workers_database(
    example: Example, scratch_database: str, workers: str
) -> None:
    example.copy(
        "leaks",
        ini="worker_utils_postgres_mode = database\nworker_utils_postgres_extensions = citext\n",
    )
    result = example.pytester.runpytest("-n", workers, "-p", "no:randomly", "-k", "extension")
    result.assert_outcomes(passed=1)
    assert databases(example.prefix) == []
