"""Fixtures that replace pytest-xdist's own; registered after every installed plugin."""

from __future__ import annotations

import pytest

from worker_utils._plugin import get_run


@pytest.fixture(scope="session")
def testrun_uid(request: pytest.FixtureRequest) -> str:
    """The run's id, the value of :func:`worker_utils.get_testrun_uid` in every process.

    pytest-xdist's fixture of that name is a new random id in a run without workers.
    """
    return get_run(request.config).uid
