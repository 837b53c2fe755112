"""Reaping on a Redis server: the leases, databases, prefixed keys and users of dead workers.

Run by ``worker-utils reap --redis-url URL``. What a worker leased is removed
only when its holder is proven gone: its lease names a connection that Redis
no longer lists, a server process that has restarted since, or a process on
this host that has exited. A lease held by a live worker, one being released
and one whose holder cannot be checked from here stay. Each index is taken
over with compare-and-set before it is emptied, and emptied by the script that
checks the lease in the same step, so a worker that leases it meanwhile keeps
its data.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker_utils.redis import (
    _ADMIN_OPTIONS,
    _DIRTY,
    _FLUSH,
    _LEASE,
    _PREFIX,
    _TAKE_OVER,
    LEASE_KEY_PREFIX,
    RedisSetupError,
    RedisUrl,
    _connection_tie,
    _database_count,
    _explain,
    _holder,
    _import_redis,
    _owner,
    _token,
    delete_prefix,
    redis_url_with_db,
)
from worker_utils.servers._process import owner_record

__all__ = ["URL_VAR", "ReapResult", "reap"]

#: The variable ``worker-utils reap`` reads the server from, as the plugin does.
URL_VAR = "WORKER_UTILS_REDIS_URL"
_USER_PREFIX = "worker_utils."


@dataclass
class ReapResult:
    """What :func:`reap` freed (or would free) and what it kept, with the reason."""

    freed: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)


def reap(
    url: RedisUrl,
    *,
    setting: str = URL_VAR,
    dry_run: bool = False,
    log: Callable[[str], object] | None = None,
) -> ReapResult:
    """Free what dead workers left on the server of ``url``, whose database holds the leases.

    Args:
        url: The server; its database is the bookkeeping database.
        setting: Where the URL came from, named in errors.
        dry_run: Report what would be freed; change nothing.
        log: Called with one line per lease or user found.

    Raises:
        RedisSetupError: The server is unreachable or refuses us.
    """
    redis_mod = _import_redis()
    try:
        count, cluster = _database_count(redis_mod, url)
        if cluster:
            return ReapResult()  # leases and users are never kept on a cluster
        keeper = redis_mod.Redis.from_url(url.url, single_connection_client=True, **_ADMIN_OPTIONS)
        try:
            return _Reaper(redis_mod, keeper, url, count, dry_run, log or (lambda _: None)).run()
        finally:
            keeper.close()
    except redis_mod.RedisError as exc:
        raise RedisSetupError(_explain(exc, url, setting)) from None


class _Reaper:
    def __init__(
        self,
        redis_mod: Any,
        keeper: Any,
        url: RedisUrl,
        count: int,
        dry_run: bool,
        log: Callable[[str], object],
    ) -> None:
        self.redis_mod = redis_mod
        self.keeper = keeper
        self.url = url
        self.count = count
        self.dry_run = dry_run
        self.log = log
        self.result = ReapResult()
        tie = _connection_tie(redis_mod, keeper)
        self.run_id = None if tie is None else tie[1]
        # While it empties an index, the reaper holds its lease like a worker.
        self.token = uuid.uuid4().hex
        record: dict[str, Any] = {
            "run": "",
            "worker": "worker-utils reap",
            **owner_record(),
            "time": time.time(),
            "token": self.token,
        }
        if tie is not None:
            record.update(client=tie[0], server=tie[1])
        self.value = json.dumps(record)
        self.ttl_ms = 0 if tie is not None else 60_000
        self.take_over = keeper.register_script(_TAKE_OVER)
        self.flush = keeper.register_script(_FLUSH)
        self.held: set[str] = set()  # tokens of leases not proven gone: their users stay
        self.gone: set[str] = set()

    def run(self) -> ReapResult:
        # Users first: a worker records its lease before it creates its user, and
        # deletes its user before its lease, so every user listed here whose
        # worker lives has a record that the scan below finds.
        users = self._users()
        keys = sorted(key.decode() for key in self.keeper.scan_iter(match=LEASE_KEY_PREFIX + "*"))
        indexes: set[int] = set()
        for key in keys:
            kind, _, rest = key[len(LEASE_KEY_PREFIX) :].partition(":")
            if kind in ("lease", "dirty") and rest.isdigit():
                indexes.add(int(rest))
        for index in sorted(indexes - {self.url.db}):
            self._index(index)
        for key in keys:
            if key.startswith(_PREFIX.format("")):
                self._prefix(key)
        for name in users:
            self._user(name)
        return self.result

    def _users(self) -> list[str]:
        try:
            names = self.keeper.acl_users()
        except self.redis_mod.ResponseError:
            return []  # ACL refused: no worker got a user of its own here either
        return sorted(str(name) for name in names if str(name).startswith(_USER_PREFIX))

    def _index(self, index: int) -> None:
        key, dirty = _LEASE.format(index), _DIRTY.format(index)
        raw, marker = self.keeper.get(key), self.keeper.get(dirty)
        if raw is None and marker is None:
            return  # released meanwhile
        name = f"redis db {index}{_of(raw if raw is not None else marker)}"
        if raw is None:
            reason = "no lease holds it (its lease expired)"
        else:
            state, reason = _holder(self.redis_mod, self.keeper, key, raw, self.run_id)
            if state != "gone":
                self._keep(raw, name, reason)
                return
        verb = "flush" if marker is not None else "free"
        if not self.dry_run:
            if raw is None:
                taken = self.keeper.set(key, self.value, nx=True, px=self.ttl_ms or None)
            else:
                taken = self.take_over(keys=[key], args=[raw, self.value, self.ttl_ms])
            if not taken:
                self._keep(None, name, "another worker leased it just now")
                return
            emptied = index if self.keeper.exists(dirty) and index < self.count else ""
            self.flush(keys=[key, dirty], args=[self.token, self.url.db, emptied, 1])
        self._free(raw, marker, f"{_done(verb, self.dry_run)} {name}: {reason}", name)

    def _prefix(self, key: str) -> None:
        raw = self.keeper.get(key)
        owner = _owner(raw)
        if raw is None or owner is None:
            return
        prefix, db = str(owner.get("prefix", "")), owner.get("db")
        name = f"redis prefix {prefix} in db {db}{_of(raw)}"
        state, reason = _holder(self.redis_mod, self.keeper, key, raw, self.run_id)
        if state != "gone" or not prefix or not isinstance(db, int):
            self._keep(raw, name, reason)
            return
        if not self.dry_run:
            if not self.take_over(keys=[key], args=[raw, self.value, self.ttl_ms]):
                self._keep(None, name, "another worker took it just now")
                return
            with self.redis_mod.Redis.from_url(
                redis_url_with_db(self.url.url, db), **_ADMIN_OPTIONS
            ) as janitor:
                delete_prefix(janitor, prefix)
            self.flush(keys=[key], args=[self.token, self.url.db, "", 1])
        self._free(raw, None, f"{_done('remove', self.dry_run)} {name}: {reason}", name)

    def _user(self, name: str) -> None:
        short = name.rpartition(".")[2]
        if any(token.startswith(short) for token in self.held):
            self.result.kept.append((name, "its lease is held"))
            self.log(f"kept redis user {name}: its lease is held")
            return
        gone = any(token.startswith(short) for token in self.gone)
        if not self.dry_run:
            self.keeper.acl_deluser(name)
        self.result.users.append(name)
        why = "its lease was freed" if gone else "no lease names it"
        self.log(f"{_done('remove', self.dry_run)} redis user {name}: {why}")

    def _keep(self, raw: bytes | None, name: str, reason: str) -> None:
        token = _token(raw) if raw is not None else None
        if token is not None:
            self.held.add(token)
        self.result.kept.append((name, reason))
        self.log(f"kept {name}: {reason}")

    def _free(self, raw: bytes | None, marker: bytes | None, line: str, name: str) -> None:
        for value in (raw, marker):
            token = _token(value) if value is not None else None
            if token is not None:
                self.gone.add(token)
        self.result.freed.append(name)
        self.log(line)


def _of(raw: bytes | None) -> str:
    """`` of run <id> <worker>`` from a lease record, or nothing if it names none."""
    owner = _owner(raw)
    if owner is None or not owner.get("run"):
        return ""
    return f" of run {owner['run']} {owner.get('worker', '')}".rstrip()


def _done(verb: str, dry_run: bool) -> str:
    past = {"flush": "flushed", "free": "freed", "remove": "removed"}[verb]
    return f"would {verb}" if dry_run else past
