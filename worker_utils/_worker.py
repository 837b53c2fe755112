"""The worker contract: who am I, which run am I in.

Every helper here is pure: it reads the ``PYTEST_XDIST_*`` variables from a
mapping (``os.environ`` unless one is passed) and never imports pytest. The
plugin keeps that mapping truthful: on a worker xdist sets the variables itself;
in a controller or a plain ``pytest`` run the plugin removes variables inherited
from an outer run and publishes this run's id in ``WORKER_UTILS_TESTRUN_UID``.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Mapping

from worker_utils.errors import WorkerUtilsError

__all__ = [
    "WorkerContractError",
    "get_testrun_uid",
    "get_worker_count",
    "get_worker_id",
    "get_worker_num",
    "is_xdist_worker",
    "run_tag",
]

WORKER_VAR = "PYTEST_XDIST_WORKER"
COUNT_VAR = "PYTEST_XDIST_WORKER_COUNT"
XDIST_RUN_VAR = "PYTEST_XDIST_TESTRUNUID"
RUN_VAR = "WORKER_UTILS_TESTRUN_UID"
MASTER = "master"

_WORKER_ID = re.compile(r"gw(0|[1-9][0-9]{0,5})")
_RUN_UID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_RANDOM_UID = re.compile(r"[0-9a-f]{32}")
#: The longest run tag, and the shortest a caller may ask for.
RUN_TAG_MAX = 24
RUN_TAG_MIN = 10
_TAG_HASH = 6

# One id for a process that runs outside pytest (a script importing a settings
# module): stable for the life of the process, as a run id must be.
_PROCESS_RUN_UID = uuid.uuid4().hex


class WorkerContractError(WorkerUtilsError, ValueError):
    """A ``PYTEST_XDIST_*`` variable holds a value no xdist worker would set."""


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def get_worker_id(env: Mapping[str, str] | None = None) -> str:
    """Return this process's xdist worker id: ``"gw0"``, ``"gw1"``, ... or ``"master"``.

    Matches xdist's own ``worker_id`` fixture. A worker that replaces a crashed
    one gets a new, higher id (``gw2`` under ``-n 2``), and two concurrent runs
    on one host both have a ``gw0``: never use the id alone to name a resource
    that outlives the run or is shared between runs.

    Args:
        env: Where to read ``PYTEST_XDIST_WORKER``; ``os.environ`` by default.

    Raises:
        WorkerContractError: The variable is set but is not ``gw<N>``.
    """
    value = _env(env).get(WORKER_VAR)
    if value is None:
        return MASTER
    if not _WORKER_ID.fullmatch(value):
        raise WorkerContractError(
            f"{WORKER_VAR}: found {value!r}, expected 'gw<N>' such as 'gw0'; "
            f"unset it outside pytest-xdist workers"
        )
    return value


def get_worker_num(env: Mapping[str, str] | None = None) -> int:
    """Return the number in the worker id (``gw3`` -> 3), and 0 outside xdist."""
    worker_id = get_worker_id(env)
    return 0 if worker_id == MASTER else int(worker_id[2:])


def is_xdist_worker(env: Mapping[str, str] | None = None) -> bool:
    """Return True in a pytest-xdist worker process."""
    return get_worker_id(env) != MASTER


def get_worker_count(env: Mapping[str, str] | None = None) -> int:
    """Return how many workers the run started (``-n``), and 1 outside xdist.

    Raises:
        WorkerContractError: ``PYTEST_XDIST_WORKER_COUNT`` is not a positive integer.
    """
    mapping = _env(env)
    if get_worker_id(mapping) == MASTER:
        return 1
    value = mapping.get(COUNT_VAR)
    if value is None:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise WorkerContractError(
            f"{COUNT_VAR}: found {value!r}, expected a positive integer; "
            f"unset it outside pytest-xdist workers"
        )
    return int(value)


def get_testrun_uid(env: Mapping[str, str] | None = None) -> str:
    """Return the id of the current test run, the same in every process of the run.

    On xdist workers and their controller this is xdist's ``testrunuid``. In a
    run without xdist the plugin makes one per run. Outside pytest it is one id
    per process.

    Raises:
        WorkerContractError: The variable holds characters unsafe in a file or
            database name.
    """
    mapping = _env(env)
    for var in (XDIST_RUN_VAR, RUN_VAR):
        value = mapping.get(var)
        if value is not None:
            if not _RUN_UID.fullmatch(value):
                raise WorkerContractError(
                    f"{var}: found {value!r}, expected 1-64 letters, digits, '_' or '-'; "
                    f"unset it and let pytest choose the run id"
                )
            return value
    return _PROCESS_RUN_UID


def run_tag(run_uid: str, max_length: int = RUN_TAG_MAX) -> str:
    """Return the part of the run id that goes into the names of the run's resources.

    A random id (32 hex digits, as xdist and the plugin make them) gives its
    first 10 digits. Any other id stays readable: lower-case, with ``-`` as
    ``_`` (``ci-job-4711`` gives ``ci_job_4711``); one longer than
    ``max_length`` keeps its start and ends in 6 hex digits of a hash of the
    whole id, so that two long ids with the same start still differ. The tag
    holds only ``[a-z0-9_]``: it fits in a PostgreSQL name and a Redis key.

    Args:
        run_uid: The run id (:func:`get_testrun_uid`).
        max_length: The longest tag the caller has room for, from 10 to 24.
    """
    if not RUN_TAG_MIN <= max_length <= RUN_TAG_MAX:
        raise ValueError(f"run_tag: max_length {max_length} is not from 10 to 24")
    if _RANDOM_UID.fullmatch(run_uid):
        return run_uid[:RUN_TAG_MIN]
    readable = re.sub(r"[^a-z0-9_]", "_", run_uid.lower())
    if len(readable) <= max_length:
        return readable
    digest = hashlib.sha256(run_uid.encode()).hexdigest()[:_TAG_HASH]
    return f"{readable[: max_length - _TAG_HASH - 1].rstrip('_')}_{digest}"
