"""Per-worker Redis databases."""

from __future__ import annotations

from collections.abc import Mapping

from worker_utils._worker import get_worker_num

__all__ = ["get_worker_redis_db"]


def get_worker_redis_db(env: Mapping[str, str] | None = None) -> int:
    """Return ``worker number + 1``: 1 on ``gw0`` and outside xdist, 2 on ``gw1``...

    The classic deterministic index, leaving database 0 to the application. It
    breaks when a restarted worker's number passes the server's database count
    (16 by default) and when two runs share a server; the ``worker_redis_db``
    fixture leases an index on the server instead.
    """
    return get_worker_num(env) + 1
