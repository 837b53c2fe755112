"""Per-worker resources for pytest-xdist.

The helpers below are pure: they need no running pytest and can be called at
import time, for example from a settings module. The fixtures live in
:mod:`worker_utils.plugin`, which pytest loads through its entry point.

PYTEST_DONT_REWRITE: this module has no assert for pytest to rewrite, and an
editable install's import hook loads it before pytest could (pytest would warn).
"""

from __future__ import annotations

from worker_utils._worker import (
    WorkerContractError,
    get_testrun_uid,
    get_worker_count,
    get_worker_id,
    get_worker_num,
    is_xdist_worker,
)
from worker_utils.errors import WorkerUtilsError
from worker_utils.ports import PortLease, PortsExhaustedError, get_worker_port_offset, lease_port
from worker_utils.postgres import get_worker_postgres_schema, worker_postgres_name
from worker_utils.redis import RedisLease, RedisSetupError, get_worker_redis_db, lease_redis
from worker_utils.run.coordination import RunOnceError, run_once
from worker_utils.run.paths import run_tmp_path, worker_tmp_path
from worker_utils.sandbox import register_reset

__all__ = [
    "PortLease",
    "PortsExhaustedError",
    "RedisLease",
    "RedisSetupError",
    "RunOnceError",
    "WorkerContractError",
    "WorkerUtilsError",
    "get_testrun_uid",
    "get_worker_count",
    "get_worker_id",
    "get_worker_num",
    "get_worker_port_offset",
    "get_worker_postgres_schema",
    "get_worker_redis_db",
    "is_xdist_worker",
    "lease_port",
    "lease_redis",
    "register_reset",
    "run_once",
    "run_tmp_path",
    "worker_postgres_name",
    "worker_tmp_path",
]
