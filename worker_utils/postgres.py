"""Per-worker PostgreSQL namespaces."""

from __future__ import annotations

import re
from collections.abc import Mapping

from worker_utils._worker import get_worker_id

__all__ = ["get_worker_postgres_schema"]

_PREFIX = re.compile(r"[a-z_][a-z0-9_]*")
_NAME_MAX = 63


def get_worker_postgres_schema(
    prefix: str = "test_worker", env: Mapping[str, str] | None = None
) -> str:
    """Return ``<prefix>_<worker id>``, e.g. ``"test_worker_gw0"`` or ``"test_worker_master"``.

    The classic deterministic name, the same in every run: two concurrent runs
    against one server get the same name. The ``worker_postgres_schema`` fixture
    adds the run id to make names unique across runs.

    Raises:
        ValueError: ``prefix`` is not a lower-case identifier, starts with
            ``pg_``, or makes the name longer than 63 bytes.
    """
    if not _PREFIX.fullmatch(prefix) or prefix.startswith("pg_"):
        raise ValueError(
            f"get_worker_postgres_schema: prefix {prefix!r} must be a lower-case identifier "
            f"(letters, digits, '_') that does not start with 'pg_'"
        )
    name = f"{prefix}_{get_worker_id(env)}"
    if len(name) > _NAME_MAX:
        raise ValueError(
            f"get_worker_postgres_schema: {name!r} is longer than PostgreSQL's "
            f"{_NAME_MAX}-byte limit; use a shorter prefix"
        )
    return name
