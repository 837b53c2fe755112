"""The worker's resources, handed to its isolated processes instead of provisioned again.

An isolated test runs in a child process (:mod:`worker_utils.isolate`) that
acts for its worker: it uses the worker's PostgreSQL namespace, Redis lease
and session ports, and takes none of its own. The worker owns them: it makes
each at most once, whoever asks first (an in-process fixture or a child), and
releases it at its session end. It also undoes an isolated test, around it,
as its autouse fixtures undo a test run in process: a test is reset once,
whichever process ran it, and the child never needs the worker's state of a
resource (a reset plan, a baseline of rows) nor a connection to reset it.

Each resource plugin implements, in the worker, :func:`pytest_worker_utils_held`
(what it holds for a child that starts now), :func:`pytest_worker_utils_provide`
(make it for a child that asks), and :func:`pytest_worker_utils_before_isolated`
and :func:`pytest_worker_utils_after_isolated` around each isolated test; in a
child, :func:`pytest_worker_utils_give_back` reports what the worker's reset
needs to know. The isolate plugin carries the messages. A plugin reaches its
worker with :func:`given` and :func:`ask`, which return None outside an
isolated process.
"""

from __future__ import annotations

from typing import Any

import pytest

from worker_utils.errors import WorkerUtilsError

__all__ = [
    "ISOLATED_INPUT",
    "HandoverError",
    "ask",
    "given",
    "isolated",
    "pytest_worker_utils_after_isolated",
    "pytest_worker_utils_ask",
    "pytest_worker_utils_before_isolated",
    "pytest_worker_utils_give_back",
    "pytest_worker_utils_held",
    "pytest_worker_utils_provide",
]


#: In an isolated process's ``config.workerinput``: it acts for a worker and runs no children.
ISOLATED_INPUT = "worker_utils_isolated"


class HandoverError(WorkerUtilsError, RuntimeError):
    """The worker could not provide a resource its isolated process asked for; says why."""


@pytest.hookspec
def pytest_worker_utils_held(config: pytest.Config) -> dict[str, Any] | None:
    """In a worker: ``{name: description}`` of what it holds, for an isolated process starting now.

    Descriptions are JSON; the child rebuilds its view of the resource from one.
    """


@pytest.hookspec(firstresult=True)
def pytest_worker_utils_provide(
    config: pytest.Config, name: str, request: dict[str, Any]
) -> dict[str, Any] | None:
    """In a worker: provide resource ``name`` to an isolated process that asked for it.

    Make it now if the worker has none yet (it then holds it for the rest of
    its session, as if an in-process fixture had made it), and return its
    description. Raise a :class:`~worker_utils.errors.WorkerUtilsError` whose
    message the child's test fails with.
    """


@pytest.hookspec
def pytest_worker_utils_before_isolated(item: pytest.Item) -> str | None:
    """In a worker, before its isolated process runs ``item``: get the worker's resources ready.

    Return why the test cannot run (it fails at setup with that message), or None.
    """


@pytest.hookspec
def pytest_worker_utils_after_isolated(item: pytest.Item, state: dict[str, Any]) -> str | None:
    """In a worker, after its isolated process ran ``item``: undo what the test did.

    ``state`` is what the child's :func:`pytest_worker_utils_give_back` hooks
    returned. Return why undoing failed (the test's teardown fails with it), or
    None; warnings are the test's, as in process.
    """


@pytest.hookspec
def pytest_worker_utils_give_back(config: pytest.Config) -> dict[str, Any] | None:
    """In an isolated process, after each test: ``{name: state}`` for its worker's reset."""


@pytest.hookspec(firstresult=True)
def pytest_worker_utils_ask(
    config: pytest.Config, name: str, request: dict[str, Any] | None
) -> dict[str, Any] | None:
    """In an isolated process: the worker's resource ``name``; None in any other process.

    With ``request`` None, only what the worker held when the process started;
    otherwise the worker provides it, making it if it must.
    """


def isolated(config: pytest.Config) -> bool:
    """Whether this process is an isolated process, acting for a worker."""
    workerinput = getattr(config, "workerinput", None) or {}
    return bool(workerinput.get(ISOLATED_INPUT))


def given(config: pytest.Config, name: str) -> dict[str, Any] | None:
    """The description of the worker's resource ``name``, if this is an isolated process of a
    worker that held it when the process started."""
    answer: dict[str, Any] | None = config.hook.pytest_worker_utils_ask(
        config=config, name=name, request=None
    )
    return answer


def ask(config: pytest.Config, name: str, request: dict[str, Any]) -> dict[str, Any] | None:
    """Have the worker provide its resource ``name``; None if this is not an isolated process.

    Raises:
        HandoverError: The worker could not provide it.
    """
    answer: dict[str, Any] | None = config.hook.pytest_worker_utils_ask(
        config=config, name=name, request=request
    )
    return answer
