"""Names of worker namespaces, and the ownership records and lock keys that go with them.

A worker's schema (or database) is ``<prefix>_<run tag>_<worker id>``: unique
per worker and per run, so concurrent runs and CI shards can share one server.
Every namespace made here carries an ownership record (a JSON comment on the
schema or database) naming it, and its owner holds a session advisory lock on
the record's key for as long as it lives.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from worker_utils._worker import RUN_TAG_MAX, RUN_TAG_MIN, get_worker_id, run_tag
from worker_utils.servers._process import owner_record

__all__ = [
    "DEFAULT_PREFIX",
    "RECORD_PATTERN",
    "get_worker_postgres_schema",
    "lock_key",
    "parse_record",
    "record",
    "scratch_name",
    "template_name",
    "worker_postgres_name",
]

DEFAULT_PREFIX = "test_worker"
#: A comment that may be a record: ``LIKE`` pattern for the catalogs.
RECORD_PATTERN = '{"worker_utils":%'

_PREFIX = re.compile(r"[a-z_][a-z0-9_]*")
_NAME_MAX = 63
_WORKER_MAX = len("gw999999")
# A prefix leaves room for the shortest run tag; a shorter prefix, for a longer one.
_PREFIX_MAX = _NAME_MAX - 1 - RUN_TAG_MIN - 1 - _WORKER_MAX
_RECORD_KEY = "worker_utils"


def get_worker_postgres_schema(
    prefix: str = DEFAULT_PREFIX, env: Mapping[str, str] | None = None
) -> str:
    """Return ``<prefix>_<worker id>``, e.g. ``"test_worker_gw0"`` or ``"test_worker_master"``.

    The classic deterministic name, the same in every run: two concurrent runs
    against one server get the same name. The ``worker_postgres_schema`` fixture
    inserts a tag of the run id (:func:`worker_postgres_name`) to make names
    unique across runs.

    Raises:
        ValueError: ``prefix`` is not a lower-case identifier, starts with
            ``pg_``, or makes the name longer than 63 bytes.
    """
    _check_prefix(prefix, "get_worker_postgres_schema", _NAME_MAX - 1 - _WORKER_MAX)
    name = f"{prefix}_{get_worker_id(env)}"
    if len(name) > _NAME_MAX:
        raise ValueError(
            f"get_worker_postgres_schema: {name!r} is longer than PostgreSQL's "
            f"{_NAME_MAX}-byte limit; use a shorter prefix"
        )
    return name


def _check_prefix(prefix: str, setting: str, longest: int) -> None:
    if not _PREFIX.fullmatch(prefix) or prefix.startswith("pg_"):
        raise ValueError(
            f"{setting}: prefix {prefix!r} must be a lower-case identifier "
            f"(letters, digits, '_') that does not start with 'pg_'"
        )
    if len(prefix) > longest:
        raise ValueError(
            f"{setting}: prefix {prefix!r} is {len(prefix)} bytes; use at most {longest} "
            f"so that names fit PostgreSQL's {_NAME_MAX}-byte limit"
        )


def worker_postgres_name(
    run_uid: str, worker_id: str | None = None, prefix: str = DEFAULT_PREFIX
) -> str:
    """Return ``<prefix>_<run tag>_<worker id>``, the schema or database of one worker in one run.

    The run tag is readable for a run id given with ``--testrunuid``
    (``ci-job-4711`` gives ``test_worker_ci_job_4711_gw0``) and the first 10
    digits of a random one (``test_worker_3f2a9c01be_gw0``); an id too long for
    the name is shortened and ends in a hash of the whole id.
    ``get_worker_postgres_schema(prefix)`` is the same name without the run tag.

    Args:
        run_uid: The run id (:func:`worker_utils.get_testrun_uid`).
        worker_id: ``gw0``, ``gw1``, ... or ``master``; this process's by default.
        prefix: A lower-case identifier of at most 43 bytes, not starting with ``pg_``.

    Raises:
        ValueError: A bad prefix.
    """
    _check_prefix(prefix, "worker_utils_postgres_prefix", _PREFIX_MAX)
    room = _NAME_MAX - len(prefix) - 2 - _WORKER_MAX
    tag = run_tag(run_uid, min(RUN_TAG_MAX, room))
    return f"{prefix}_{tag}_{worker_id or get_worker_id()}"


def scratch_name(namespace: str, suffix: str) -> str:
    """Return ``<namespace>_<suffix>``, a scratch database of the worker whose namespace it is.

    Raises:
        ValueError: ``suffix`` is not a lower-case identifier, or the name is
            longer than 63 bytes.
    """
    if not re.fullmatch(r"[a-z0-9_]+", suffix):
        raise ValueError(
            f"worker_postgres_scratch_database: suffix {suffix!r} must be lower-case letters, "
            f"digits and '_'"
        )
    name = f"{namespace}_{suffix}"
    if len(name) > _NAME_MAX:
        raise ValueError(
            f"worker_postgres_scratch_database: suffix {suffix!r} makes {name!r} longer than "
            f"PostgreSQL's {_NAME_MAX}-byte limit; use at most {_NAME_MAX - len(namespace) - 1} "
            f"bytes"
        )
    return name


def template_name(run_uid: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Return the name of the run's template namespace, ``<prefix>_<run tag>_template``."""
    return worker_postgres_name(run_uid, "template", prefix)


def lock_key(kind: str, name: str) -> int:
    """The advisory lock key of a namespace: 64 bits of a hash of its kind and name."""
    digest = hashlib.sha256(f"worker_utils:{kind}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def record(kind: str, name: str, database: str, run_uid: str) -> dict[str, Any]:
    """The ownership record of a namespace this process is about to create."""
    return {
        _RECORD_KEY: 1,
        "kind": kind,
        "name": name,
        "database": database,
        "run": run_uid,
        **owner_record(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "lock": lock_key(kind, name),
    }


def parse_record(text: str | None, kind: str, name: str) -> dict[str, Any] | None:
    """Return the ownership record in a comment, or None if the comment is not ours."""
    if not text or not text.startswith('{"worker_utils"'):
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    if (
        not isinstance(found, dict)
        or found.get(_RECORD_KEY) != 1
        or found.get("kind") != kind
        or found.get("name") != name
        or not isinstance(found.get("lock"), int)
    ):
        return None
    return found
