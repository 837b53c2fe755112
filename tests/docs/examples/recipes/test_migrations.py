"""Every test of every worker sees the migrations one worker ran for the run."""

import pytest


@pytest.mark.parametrize("n", range(4))
def test_the_migrations_ran_once_for_the_run(migrated, n):
    assert migrated == {"revision": "0042"}
