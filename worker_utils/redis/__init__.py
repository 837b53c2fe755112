"""Per-worker Redis databases: leased indexes, a key-prefix mode, and cleanup of our own keys only.

A worker leases a database index on the server with ``SET NX`` on a lease
key kept in the *bookkeeping database* (the one in the configured URL, 0 by
default), which is never given to a test. The lease names the connection that
holds it (its ``CLIENT ID`` and the server's ``run_id``): it stays held while
that connection is open, however long the worker is paused, and is taken over
as soon as Redis drops the connection of a dead worker. Where the server
refuses ``CLIENT LIST``, the lease expires instead after a TTL without a
refresh from a daemon thread. An index is claimed only if it is empty, or if
its keys were left by a worker_utils run that died (a ``dirty`` marker says
so): a shared server's other users keep their data.

When every index is taken, the worker waits only while a release is
plausible (a holder releasing it, a lease about to expire, a holder it cannot
check) and otherwise decides at once. When no index frees, or the server is a
cluster (no ``SELECT``), the lease falls back to *prefix mode*: the worker owns
every key that starts with :attr:`RedisLease.prefix` in the *prefix database*
(the highest index besides the bookkeeping one, never leased), and cleanup
removes those keys with ``SCAN`` + ``UNLINK``. Where the server allows ``ACL
SETUSER``, each lease gets its own Redis user, and tests connect as that user:
it cannot run ``FLUSHALL``, ``SWAPDB``, ``CONFIG``, ``SHUTDOWN``, ``CLIENT
KILL`` or ``SELECT`` another database, and in prefix mode it reaches only the
worker's own keys and cannot ``FLUSHDB``. Nothing here ever sends
``FLUSHALL``; ``FLUSHDB`` runs only in a script that checks, in the same step,
that the index's lease still holds the token of the lease it empties.

redis-py is imported inside the functions that need it, so that ``import
worker_utils`` stays light.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from worker_utils._util import mask_password, wait_until
from worker_utils._worker import get_testrun_uid, get_worker_id, get_worker_num, run_tag
from worker_utils.errors import WorkerUtilsError
from worker_utils.servers._process import owner_alive, owner_record

if TYPE_CHECKING:
    import redis

__all__ = [
    "LEASE_KEY_PREFIX",
    "RedisLease",
    "RedisSetupError",
    "RedisUrl",
    "RedisUrlError",
    "delete_prefix",
    "get_worker_redis_db",
    "lease_redis",
    "parse_redis_url",
    "redis_url_with_db",
    "release_abandoned",
]

#: Every key the plugin keeps in the bookkeeping database starts with this.
LEASE_KEY_PREFIX = "worker_utils:"
_LEASE = LEASE_KEY_PREFIX + "lease:{}"
_DIRTY = LEASE_KEY_PREFIX + "dirty:{}"
# A prefix-mode lease, by its token: it names the worker's prefix, user and connection.
_PREFIX = LEASE_KEY_PREFIX + "prefix:{}"
# The state a lease record carries once its worker has begun to release it.
_RELEASING = "releasing"

Mode = Literal["auto", "index", "prefix"]
MODES: tuple[Mode, ...] = ("auto", "index", "prefix")
#: The longest a worker in mode ``auto`` waits for a plausible release. A run's
#: teardown frees its databases within milliseconds; a wait longer than this means
#: other waiters took them, and a prefix is as isolated as a database of its own.
AUTO_WAIT = 0.3

#: The forms of a Redis URL, as error messages list them.
URL_FORMS = (
    "redis://[[user]:password@]host[:port][/db], rediss://... or unix:///path/to/socket[?db=N]"
)
_SCHEMES = ("redis", "rediss", "unix")
# The plugin's own connections never hang on a server that accepts and stays
# silent; the clients handed to tests keep redis-py's defaults (blocking commands).
# They speak RESP2 and skip CLIENT SETINFO (see _import_redis): a connection costs no
# round trip before its first command (redis-py's defaults cost four, slow under load).
_ADMIN_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 10, "socket_timeout": 30, "protocol": 2}
_DIGITS = re.compile(r"[0-9]{1,9}")

# Compare-and-act on a lease value: only the owner refreshes or deletes it.
_REFRESH = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', unpack(KEYS)) end "
    "return 0"
)
# ARGV[3] is the TTL in milliseconds, 0 for a lease tied to its connection (no expiry).
_TAKE_OVER = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2]) "
    "else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end return 1 end return 0"
)
# Empty an index (ARGV[3], none if empty) and delete KEYS (if ARGV[4] is 1) only while
# the lease KEYS[1] in the bookkeeping database ARGV[2] holds the token ARGV[1]: checked
# and done in one step, so no other worker can lease the index in between.
_FLUSH = """
redis.call('SELECT', ARGV[2])
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local ok, owner = pcall(cjson.decode, value)
if not ok or type(owner) ~= 'table' or owner['token'] ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' then
  redis.call('SELECT', ARGV[3])
  redis.call('FLUSHDB')
  redis.call('SELECT', ARGV[2])
end
if ARGV[4] == '1' then redis.call('DEL', unpack(KEYS)) end
return 1
"""
# Every lease and its time to live, on the keeper's own connection in one round trip.
_LOOK = """
local found = {}
for _, key in ipairs(KEYS) do
  found[#found + 1] = redis.call('GET', key) or ''
  found[#found + 1] = redis.call('PTTL', key)
end
return found
"""
#: What a test's Redis user may not do on a server others share.
_ACL_DENIED = ("-@admin", "-flushall", "-swapdb", "-move")
#: The reads among the ``@admin`` commands that libraries make (RQ lists its clients,
#: clients read CONFIG GET and ROLE): they change nothing for anyone.
_ACL_READS = ("+client|list", "+config|get", "+role", "+lastsave", "+module|list", "+slowlog|get")


class RedisUrlError(WorkerUtilsError, ValueError):
    """A Redis URL that no client could use: wrong scheme, port or database."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        #: What is wrong with the URL, such as ``no host``.
        self.reason = reason


class RedisSetupError(WorkerUtilsError, RuntimeError):
    """The Redis server cannot give this worker a database or a prefix."""


def get_worker_redis_db(env: Mapping[str, str] | None = None) -> int:
    """Return ``worker number + 1``: 1 on ``gw0`` and outside xdist, 2 on ``gw1``...

    The classic deterministic index, leaving database 0 to the application, for
    settings computed at import time. It breaks when a restarted worker's number
    passes the server's database count (16 by default) and when two runs share
    a server. The ``worker_redis_db`` fixture leases an index on the server
    instead; it tries this index first, so in a lone run without restarts the
    two agree.
    """
    return get_worker_num(env) + 1


@dataclass(frozen=True)
class RedisUrl:
    """A checked Redis URL and the database it names."""

    url: str
    db: int

    @property
    def masked(self) -> str:
        """The URL with its password replaced by ``***``, for messages."""
        return mask_password(self.url)


def parse_redis_url(url: str, *, setting: str = "worker_utils_redis_url") -> RedisUrl:
    """Check a Redis URL the way redis-py will read it, without importing redis-py.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        setting: The option or variable the URL came from, named in errors.

    Raises:
        RedisUrlError: The URL has another scheme, no host or socket path, a
            bad port or a database that is not a number.
    """

    def bad(reason: str) -> RedisUrlError:
        return RedisUrlError(
            f"{setting}: found {mask_password(url)!r} ({reason}); expected {URL_FORMS}", reason
        )

    parts = urlsplit(url.strip())
    if parts.scheme not in _SCHEMES:
        raise bad(
            f"scheme {parts.scheme!r} is not redis, rediss or unix" if parts.scheme else "no scheme"
        )
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise bad("the port is not a number from 0 to 65535") from None
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "unix":
        if not parts.path:
            raise bad("no socket path")
        db_text = query.get("db", "0")
    else:
        if not parts.hostname:
            raise bad("no host")
        path = parts.path.strip("/")
        db_text = path or query.get("db", "0")
    if not _DIGITS.fullmatch(db_text):
        raise bad(f"database {db_text!r} is not a number")
    return RedisUrl(url.strip(), int(db_text))


def redis_url_with_db(url: str, db: int) -> str:
    """Return ``url`` pointing at database ``db`` (the path for TCP, ``?db=`` for sockets)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"]
    if parts.scheme == "unix":
        query.append(("db", str(db)))
        return f"unix://{parts.netloc}{parts.path}?{urlencode(query)}"  # keeps the empty host
    return urlunsplit(parts._replace(path=f"/{db}", query=urlencode(query)))


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise RedisSetupError(
            "worker_redis: the redis package is not installed; "
            "install it with: pip install 'pytest-worker-utils[redis]'"
        ) from None
    if "driver_info" not in _ADMIN_OPTIONS and "lib_name" not in _ADMIN_OPTIONS:
        # None skips CLIENT SETINFO; redis-py 7.1 renamed lib_name and lib_version.
        if importlib.util.find_spec("redis.driver_info") is not None:
            _ADMIN_OPTIONS["driver_info"] = None
        else:
            _ADMIN_OPTIONS.update(lib_name=None, lib_version=None)
    return redis


def _print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class RedisLease:
    """A Redis database (or key prefix) that belongs to this worker until :meth:`release`.

    Attributes:
        server_url: The server's URL, naming the bookkeeping database.
        url: The URL application code should use: the server with :attr:`db`,
            and the worker's own Redis user where the server allows ACLs.
        db: The leased index in index mode; the prefix database in prefix mode.
        prefix: Keys and channel names starting with it belong to this worker.
            Pub/sub channels are server-wide in both modes, so name them with it.
        mode: ``"index"`` (the whole database is ours) or ``"prefix"``.
        database_count: The server's number of databases (1 on a cluster).
        waited: Seconds from finding every index taken to the lease (an index
            freed, or the fallback to a prefix); 0.0 when the first look
            found one free. A worker that decided at once waited the time of
            one look (milliseconds).
        reclaimed: The index held keys of a dead worker_utils run, removed on claim.
        cluster: The server runs in cluster mode.
        acl_user: The Redis user :attr:`url` connects as; empty when the server
            refused ``ACL SETUSER`` (or is a cluster) and tests connect as the
            configured user.
        acl_refused: Why the server refused the ACL user, if it did.
    """

    server_url: str
    url: str
    db: int
    prefix: str
    mode: Literal["index", "prefix"]
    database_count: int
    waited: float = 0.0
    reclaimed: bool = False
    cluster: bool = False
    acl_user: str = ""
    acl_refused: str = ""
    #: Held by another process of this worker (see :meth:`borrow`): cleaned and released there.
    borrowed: bool = False
    _janitor: Any = field(default=None, repr=False)
    _client: Any = field(default=None, repr=False)
    _refresher: _Refresher | None = field(default=None, repr=False)
    _bookkeeping: int = field(default=0, repr=False)
    _flush_script: Any = field(default=None, repr=False)

    @property
    def lost(self) -> bool:
        """Whether another worker holds the lease now (its connection dropped, or it expired)."""
        return self._refresher is not None and self._refresher.lost

    def handover(self) -> dict[str, Any]:
        """What :meth:`borrow` needs to use this lease from another process: JSON."""
        return {
            "server_url": self.server_url,
            "url": self.url,
            "db": self.db,
            "prefix": self.prefix,
            "mode": self.mode,
            "database_count": self.database_count,
            "cluster": self.cluster,
            "acl_user": self.acl_user,
            "acl_refused": self.acl_refused,
        }

    @classmethod
    def borrow(cls, data: Mapping[str, Any]) -> RedisLease:
        """The lease another process of this worker holds (its :meth:`handover`), to use here.

        Clients reach the same database or prefix; the process that holds the
        lease empties it and gives it back: :meth:`release` here only closes
        the clients made here.
        """
        return cls(**data, borrowed=True)

    def abandon_record(self) -> dict[str, Any]:
        """What :func:`release_abandoned` needs to free this lease if the worker dies."""
        value = self._refresher.value if self._refresher is not None else ""
        return {
            "url": self.server_url,
            "db": self.db,
            "lease": value,
            "mode": self.mode,
            "prefix": self.prefix,
            "user": self.acl_user,
        }

    def describe(self) -> str:
        """One phrase for the run summary: ``db 3`` or ``prefix wu:...: in db 15``."""
        if self.mode == "index":
            return f"db {self.db}"
        where = "cluster" if self.cluster else f"db {self.db}"
        return f"prefix {self.prefix} in {where}"

    def client(self, **kwargs: Any) -> redis.Redis:
        """Return a redis-py client on this worker's database.

        Without arguments it returns the same client every time (making one
        costs more than the cleanup after a test); with arguments
        (``decode_responses=True``...) a new client that the caller closes.
        """
        redis_mod = _import_redis()
        factory = redis_mod.cluster.RedisCluster if self.cluster else redis_mod.Redis
        if kwargs:
            return factory.from_url(self.url, **kwargs)  # type: ignore[no-any-return]
        if self._client is None:
            self._client = factory.from_url(self.url)
        return self._client  # type: ignore[no-any-return]

    def clean(self) -> None:
        """Remove every key this worker owns: ``FLUSHDB`` on the leased index, or its prefix.

        The index is emptied only while its lease is still this one, checked in
        the same step on the server: a lease lost meanwhile is reported by
        :attr:`lost` instead, and the index, which may be another worker's
        now, is left alone.
        """
        if self.mode == "index":
            if self._refresher is not None and not self._refresher.lost:
                self._flush(release=False)
        else:
            delete_prefix(self._janitor, self.prefix)

    def _flush(self, *, release: bool) -> None:
        """Empty the leased index (with ``release``, give it back too) if the lease is ours."""
        assert self._refresher is not None
        refresher = self._refresher
        if self._flush_script is None:
            self._flush_script = self._janitor.register_script(_FLUSH)
        done = self._flush_script(
            keys=[refresher.key, _DIRTY.format(self.db)],
            args=[refresher.token, self._bookkeeping, self.db, int(release)],
        )
        if not done:
            refresher.lost = True

    def announce_release(self) -> None:
        """Mark the lease as being released, so that workers who find every index taken wait.

        A worker that finds every index held by live workers falls back at
        once; one held by a worker that announced its release makes it wait
        for that index instead. The pytest plugin calls this when a worker's
        session ends, before the other plugins' teardowns; :meth:`release`
        calls it if nobody did.
        """
        if self._refresher is not None and self.mode == "index":
            with contextlib.suppress(Exception):  # the server may be gone at run end
                self._refresher.update(state=_RELEASING)

    def release(self) -> None:
        """Empty the database or prefix, give the index back and close the connections.

        The worker's Redis user goes first, which closes every connection made
        with :attr:`url`: nothing of this worker writes to the database after
        it is given back.
        """
        if self.borrowed:
            if self._client is not None:
                self._client.close()
            return
        try:
            if self._refresher is not None:
                self._refresher.stop()
                if not self._refresher.releasing:
                    self.announce_release()
            with contextlib.suppress(Exception):  # the server may be gone at run end
                if self.acl_user:
                    self._janitor.acl_deluser(self.acl_user)
            with contextlib.suppress(Exception):
                if self.mode == "prefix":
                    delete_prefix(self._janitor, self.prefix)
                    if self._refresher is not None:
                        self._refresher.release()
                elif not self.lost:
                    self._flush(release=True)
        finally:
            if self._refresher is not None:
                self._refresher.close()
            if self._janitor is not None:
                self._janitor.close()
            if self._client is not None:
                self._client.close()


def delete_prefix(client: Any, prefix: str, *, batch: int = 1000) -> int:
    """Remove every key starting with ``prefix`` by ``SCAN MATCH`` + ``UNLINK``; return the count.

    The cost grows with the size of the whole database, not with the prefix:
    ``SCAN`` walks every key to find ours.
    """
    pattern = _glob_escape(prefix) + "*"
    removed = 0
    keys: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=batch):
        keys.append(key)
        if len(keys) >= batch:
            removed += client.unlink(*keys)
            keys.clear()
    if keys:
        removed += client.unlink(*keys)
    return removed


class _Refresher:
    """Watches a lease record from a daemon thread, every third of its TTL.

    A record tied to its connection (``tie`` is the connection's client id)
    has no expiry: the thread checks that the record still names that
    connection, and records the new one if redis-py reconnected. An untied
    record expires after ``ttl_ms`` without a refresh, so the thread refreshes
    it.
    """

    def __init__(self, client: Any, key: str, value: str, ttl_ms: int, tie: int | None) -> None:
        self.client = client
        self.key = key
        self.value = value
        self.token = str(json.loads(value)["token"])
        self.ttl_ms = ttl_ms
        self.tie = tie
        self.lost = False
        self.releasing = False
        self._refresh = client.register_script(_REFRESH)
        self._take_over = client.register_script(_TAKE_OVER)
        self._release = client.register_script(_RELEASE)
        self._lock = threading.Lock()  # the thread and update() both rewrite the value
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"worker_utils redis lease {key}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                with self._lock:
                    if not self._check():
                        self.lost = True
                        return
            except Exception:  # a blip of the server: try again next period
                continue

    def _check(self) -> bool:
        if self.tie is None:
            return bool(self._refresh(keys=[self.key], args=[self.value, self.ttl_ms]))
        current = int(self.client.client_id())
        if current == self.tie:
            return bool(self.client.get(self.key) == self.value.encode())
        # Reconnected (a server-side idle timeout, a network blip): the lease is
        # ours only if nobody took it while no connection held it.
        if not self._rewrite(client=current):
            return False
        self.tie = current
        return True

    def _rewrite(self, **fields: Any) -> bool:
        """Replace fields of the record if it is still ours (compare-and-set); return whether."""
        value = json.dumps({**json.loads(self.value), **fields})
        ttl_ms = 0 if self.tie is not None else self.ttl_ms  # 0: no expiry
        if not self._take_over(keys=[self.key], args=[self.value, value, ttl_ms]):
            return False
        self.value = value
        return True

    def update(self, **fields: Any) -> None:
        """Record ``fields`` in the lease record, such as its ``state``; mark it lost if taken."""
        with self._lock:
            if not self._rewrite(**fields):
                self.lost = True
            elif fields.get("state") == _RELEASING:
                self.releasing = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def release(self, *keys: str) -> None:
        """Delete the record and ``keys``, if the record is still ours."""
        self._release(keys=[self.key, *keys], args=[self.value])

    def close(self) -> None:
        self.client.close()


def _owner(raw: bytes | None) -> dict[str, Any] | None:
    """The owner a lease value records, None if it is not a JSON object."""
    if raw is None:
        return None
    try:
        owner = json.loads(raw)
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def _owner_is_dead(owner: dict[str, Any]) -> bool:
    """Return True if a lease's owner is a process on this host that no longer runs."""
    return owner.get("pid") != os.getpid() and owner_alive(owner) is False


def _connection_tie(redis_mod: Any, keeper: Any) -> tuple[int, str] | None:
    """Return the keeper's client id and the server's run id; None if ``CLIENT LIST`` is refused."""
    try:
        client = int(keeper.client_id())
        keeper.execute_command("CLIENT", "LIST", "ID", client)
        run_id = str(keeper.info("server")["run_id"])
    except (redis_mod.ResponseError, KeyError, ValueError):
        return None
    return client, run_id


@dataclass
class _Seen:
    """One look at every candidate lease: two round trips, however many are held."""

    raw: dict[str, bytes | None]
    left_ms: dict[str, int]
    #: The ids among the holders' connections that are open; None if not asked.
    clients: set[int] | None

    @classmethod
    def look(cls, redis_mod: Any, keeper: Any, keys: list[str], run_id: str | None) -> _Seen:
        found = keeper.register_script(_LOOK)(keys=keys)
        raw = {key: value or None for key, value in zip(keys, found[0::2], strict=True)}
        left_ms = {key: int(left) for key, left in zip(keys, found[1::2], strict=True)}
        ids = set()
        for value in raw.values():
            owner = _owner(value)
            if owner is not None and owner.get("server") == run_id:
                client = owner.get("client")
                if isinstance(client, int):
                    ids.add(client)
        clients: set[int] | None = None
        if run_id is not None and ids:
            try:
                listing = keeper.execute_command("CLIENT", "LIST", "ID", *sorted(ids))
            except redis_mod.ResponseError:
                pass  # CLIENT LIST refused, or before Redis 6.2 one id at a time: ask per lease
            else:
                text = listing.decode() if isinstance(listing, bytes) else str(listing)
                clients = {int(m) for m in re.findall(r"(?:^|\s)id=(\d+)", text)}
        return cls(raw, left_ms, clients)


# What a claimant can tell of a lease it could not take (see _holder).
_Holder = Literal["gone", "live", "releasing", "expiring", "unknown", "changing"]
# A release is plausible soon for these: the worker waits for them.
_PLAUSIBLE: tuple[str, ...] = ("releasing", "expiring", "unknown", "changing")
_SURVEY_WORDS = {
    "live": ("held by a live worker", "held by live workers"),
    "releasing": ("being released", "being released"),
    "expiring": ("on an expiring lease", "on expiring leases"),
    "unknown": (
        "held by a worker not checkable from here",
        "held by workers not checkable from here",
    ),
    "changing": ("changing hands", "changing hands"),
    "foreign": ("holding other users' keys", "holding other users' keys"),
}


def _holder(
    redis_mod: Any,
    keeper: Any,
    key: str,
    raw: bytes | None,
    run_id: str | None,
    seen: _Seen | None = None,
) -> tuple[_Holder, str]:
    """Classify the holder of the lease ``key`` whose value is ``raw``; say why in words.

    ``gone``: the holder no longer holds it (its connection is closed, it was
    leased before the server restarted, or its process on this host exited);
    ``live``: held by a worker that is alive and not releasing it;
    ``releasing``: its worker is in its teardown; ``expiring``: an expiring
    lease that missed its refresh, or whose refresh period is unknown;
    ``unknown``: nothing here can check the holder (``CLIENT LIST`` refused,
    another host, or not a worker_utils record); ``changing``: released
    while we looked. ``run_id`` is the server's, None where ``CLIENT LIST``
    is refused. ``seen`` answers from one look at every lease instead of a
    command per question.
    """
    if raw is None:
        return "changing", "it was released just now"
    owner = _owner(raw)
    if owner is None:
        return "unknown", "its lease is not a worker_utils record"
    client, server = owner.get("client"), owner.get("server")
    listed = False
    if run_id is not None and isinstance(client, int) and isinstance(server, str):
        if server != run_id:
            return "gone", "it was leased before the server restarted"
        connected: bool | None = None  # None: CLIENT LIST refused
        if seen is not None and seen.clients is not None:
            connected = client in seen.clients
        else:
            with contextlib.suppress(redis_mod.ResponseError):
                connected = bool(keeper.execute_command("CLIENT", "LIST", "ID", client))
        if connected is False:
            return "gone", "its connection to Redis is closed"
        listed = bool(connected)
    pid = owner.get("pid")
    if not listed and _owner_is_dead(owner):
        return "gone", f"its process {pid} on this host has exited"
    if owner.get("state") == _RELEASING:
        return "releasing", "its worker is releasing it"
    if listed:
        return "live", "its connection to Redis is open"
    left_ms = int(keeper.pttl(key)) if seen is None else seen.left_ms[key]
    if left_ms > 0:
        ttl_ms = owner.get("ttl")
        # Refreshed every third of its TTL: below half of it, a refresh is late.
        if isinstance(ttl_ms, int) and left_ms > ttl_ms / 2:
            return "live", f"it is refreshed on time (expires in {left_ms / 1000:.1f}s if not)"
        return "expiring", f"it expires in {left_ms / 1000:.1f}s unless refreshed"
    if pid != os.getpid() and owner_alive(owner):
        return "live", f"its process {pid} on this host runs"
    return "unknown", "its holder cannot be checked from here"


@dataclass
class _Survey:
    """What one claim pass found of the leasable indexes it could not take."""

    found: dict[str, int] = field(default_factory=dict)

    def add(self, state: str) -> None:
        self.found[state] = self.found.get(state, 0) + 1

    @property
    def plausible(self) -> bool:
        """Whether an index may be released soon: a reason to wait rather than decide."""
        return any(self.found.get(state) for state in _PLAUSIBLE)

    def describe(self) -> str:
        """``2 leasable: 1 held by a live worker, 1 being released``, in a fixed order."""
        parts = []
        for state, (one, many) in _SURVEY_WORDS.items():
            n = self.found.get(state, 0)
            if n:
                parts.append(f"{n} {one if n == 1 else many}")
        return f"{sum(self.found.values())} leasable: {', '.join(parts)}"


def _prefix_database(count: int, bookkeeping: int) -> int:
    """The database prefix mode uses: the highest index besides ``bookkeeping``, never leased.

    A server with one database has no other: prefixed keys then share it with
    the leases, and only the worker's Redis user keeps tests off them.
    """
    if count < 2:
        return bookkeeping
    return count - 1 if count - 1 != bookkeeping else count - 2


def _with_user(url: str, db: int, user: str, password: str) -> str:
    """Return ``url`` on database ``db``, connecting as ``user``."""
    parts = urlsplit(redis_url_with_db(url, db))
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{password}@{host}"))


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _acl_user(
    redis_mod: Any, admin: Any, name: str, db: int, prefix: str, shared: bool
) -> tuple[str, str]:
    """Create the worker's Redis user; return its password and why it was refused ("" if not).

    Redis ACLs do not name databases, so ``SELECT`` is allowed only with the
    worker's index. In a shared (prefix) database the user reaches only keys
    under ``prefix`` and cannot ``FLUSHDB``.
    """
    password = secrets.token_hex(16)
    keys = f"~{_glob_escape(prefix)}*" if shared else "~*"
    rules = ["reset", "on", f">{password}", keys, "&*", "+@all", *_ACL_DENIED, *_ACL_READS]
    rules += ["-select", f"+select|{db}"]
    if shared:
        rules.append("-flushdb")
    try:
        admin.execute_command("ACL", "SETUSER", name, *rules)
    except redis_mod.ResponseError as exc:
        # An unknown command's error quotes the arguments, the password among them.
        return "", str(exc).split(", with args")[0].rstrip(".")
    return password, ""


def _database_count(redis_mod: Any, url: RedisUrl) -> tuple[int, bool]:
    """Return the server's database count and whether it is a cluster."""
    client = redis_mod.Redis.from_url(
        redis_url_with_db(url.url, 0), single_connection_client=True, **_ADMIN_OPTIONS
    )
    try:
        with contextlib.suppress(redis_mod.ResponseError):
            if client.info("cluster").get("cluster_enabled"):
                return 1, True
        try:
            return int(client.config_get("databases")["databases"]), False
        except (redis_mod.ResponseError, KeyError, ValueError):
            pass
        # CONFIG renamed away or denied (ACLs, managed services): count by SELECT.

        def selectable(index: int) -> bool:
            try:
                client.execute_command("SELECT", index)
            except redis_mod.ResponseError:
                return False
            return True

        low, high = 0, 1  # low selectable; high is tried next
        while high < 1 << 20 and selectable(high):
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if selectable(middle) else (low, middle)
        return low + 1, False
    finally:
        client.close()


def _explain(exc: Exception, url: RedisUrl, setting: str) -> str:
    text = str(exc).rstrip(".")
    name = type(exc).__name__
    if "NOAUTH" in text or "Authentication required" in text or "already authenticated" in text:
        return (
            f"worker_redis: {url.masked} requires a password; give it in {setting}, "
            f"such as redis://:PASSWORD@host:6379/0"
        )
    if name == "AuthenticationError" or "WRONGPASS" in text or "invalid password" in text:
        return (
            f"worker_redis: {url.masked} refused the user name or password ({text}); "
            f"fix them in {setting}"
        )
    if "out of range" in text:
        return (
            f"worker_redis: database {url.db} in {setting} ({url.masked}) is out of range "
            f"({text}); name a database the server has, such as 0"
        )
    if name in ("ConnectionError", "TimeoutError"):
        return (
            f"worker_redis: cannot connect to {url.masked} ({text}); start Redis there, "
            f"or set {setting} to a running server"
        )
    if name == "InvalidResponse":
        return (
            f"worker_redis: {url.masked} does not answer like a Redis server ({text}); "
            f"check that {setting} names one"
        )
    return f"worker_redis: {url.masked} answered with an error ({name}: {text}); check {setting}"


def lease_redis(
    url: RedisUrl,
    *,
    setting: str = "worker_utils_redis_url",
    mode: Mode = "auto",
    wait: float = 60.0,
    ttl: float = 30.0,
    notify: Callable[[str], object] | None = None,
    acl_notify: Callable[[str], object] | None = None,
    env: Mapping[str, str] | None = None,
) -> RedisLease:
    """Lease a database index on the server, or fall back to a key prefix.

    Usable outside pytest: ``lease = lease_redis(parse_redis_url(url))``, hand
    ``lease.url`` to the application, ``lease.clean()`` between tests and
    ``lease.release()`` at the end.

    Args:
        url: The server; its database is the bookkeeping database, never leased.
        setting: Where the URL came from, named in errors.
        mode: ``"auto"`` leases an index and falls back to a prefix; ``"index"``
            fails instead of falling back; ``"prefix"`` never leases an index.
        wait: Seconds to wait for an index when all are taken and a release is
            plausible: a holder is releasing one, an expiring lease missed its
            refresh, or a holder cannot be checked; at most :data:`AUTO_WAIT`
            in mode ``"auto"``. When every index is held by a live worker that
            is not releasing it, or holds other users' keys, the worker
            decides at once.
        ttl: Seconds a lease lives without a refresh where the server refuses
            ``CLIENT LIST``, so that it cannot be tied to its connection; the
            period of the lease's checks is a third of it.
        notify: Called with a message when the worker starts waiting or falls
            back to a prefix; by default the message goes to stderr.
        acl_notify: Called with the message that the server refused a Redis
            user for the worker; ``notify`` by default.
        env: Where to read the worker contract; ``os.environ`` by default.

    Raises:
        RedisSetupError: redis-py is missing, the server is unreachable or
            refuses us, or ``mode="index"`` and no index was free (at once,
            or after ``wait`` seconds while a release was plausible).
    """
    redis_mod = _import_redis()
    if notify is None:
        notify = _print_to_stderr
    worker = get_worker_id(env)
    run_uid = get_testrun_uid(env)
    tag = run_tag(run_uid)
    prefix = f"wu:{tag}:{worker}:"
    token = uuid.uuid4().hex
    try:
        count, cluster = _database_count(redis_mod, url)
        if not cluster and url.db >= count:
            raise RedisSetupError(
                f"worker_redis: database {url.db} in {setting} ({url.masked}) is out of range: "
                f"the server has {count} (0-{count - 1}); name one of those, such as 0"
            )
        if cluster and url.db:
            raise RedisSetupError(
                f"worker_redis: {url.masked} is a cluster, which has only database 0; "
                f"remove /{url.db} from {setting}"
            )
        keeper = redis_mod.Redis.from_url(url.url, single_connection_client=True, **_ADMIN_OPTIONS)
        try:
            keeper.ping()
            tie = None if cluster else _connection_tie(redis_mod, keeper)
        except redis_mod.RedisError:
            keeper.close()
            raise
    except redis_mod.RedisError as exc:
        raise RedisSetupError(_explain(exc, url, setting)) from None
    shared = _prefix_database(count, url.db)
    user = f"worker_utils.{tag}.{worker}.{token[:8]}"
    ttl_ms = max(1, int(ttl * 1000))
    record: dict[str, Any] = {
        "run": run_uid,
        "worker": worker,
        **owner_record(),
        "time": time.time(),
        "token": token,
    }
    if tie is not None:
        record.update(client=tie[0], server=tie[1])
    else:
        record["ttl"] = ttl_ms  # a claimant tells a late refresh from this
    value = json.dumps(record)

    def with_user(lease: RedisLease) -> RedisLease:
        if lease.cluster:
            return lease  # ACL users are per node; a cluster's tests use the configured user
        password, refused = _acl_user(
            redis_mod, lease._janitor, user, lease.db, prefix, lease.mode == "prefix"
        )
        if refused:
            lease.acl_refused = refused
            (acl_notify or notify)(
                f"worker_utils: {url.masked} refused a Redis user per worker ({refused}); "
                f"tests connect as the user of {setting}, so FLUSHALL, SWAPDB, CLIENT KILL, "
                f"CONFIG SET or SHUTDOWN in a test reaches every worker and run (allow that "
                f"user ACL SETUSER to contain them)"
            )
        else:
            lease.acl_user = user
            lease.url = _with_user(url.url, lease.db, user, password)
        return lease

    def prefixed(waited: float = 0.0) -> RedisLease:
        lease = _prefix_lease(redis_mod, url, shared, prefix, count, cluster)
        lease.waited = waited
        if cluster:
            keeper.close()
            return with_user(lease)
        # Recorded like an index lease, so that a reaper on any host can tell
        # whether the worker is gone and remove its keys and user.
        key = _PREFIX.format(token)
        prefix_value = json.dumps({**record, "prefix": prefix, "db": shared})
        keeper.set(key, prefix_value, px=None if tie else ttl_ms)
        lease._refresher = _Refresher(
            keeper, key, prefix_value, ttl_ms, None if tie is None else tie[0]
        )
        return with_user(lease)

    if cluster or mode == "prefix" or count < 3:
        try:
            return prefixed()
        except redis_mod.RedisError as exc:
            keeper.close()
            raise RedisSetupError(_explain(exc, url, setting)) from None
    if mode == "auto":
        wait = min(wait, AUTO_WAIT)
    started = time.monotonic()
    deadline = started + wait
    candidates = [i for i in range(count) if i not in (url.db, shared)]
    first = get_worker_redis_db(env)
    if first in candidates:
        at = candidates.index(first)
        candidates = candidates[at:] + candidates[:at]
    run_id = None if tie is None else tie[1]
    looks = 0
    survey = _Survey()
    announced = False

    def look() -> tuple[int, bool] | _Survey | None:
        """Claim an index; else the survey if no release is plausible, else None (wait)."""
        nonlocal looks, survey, announced
        looks += 1
        found = _claim(
            redis_mod, keeper, url, candidates, value, 0 if tie else ttl_ms, run_id, token
        )
        if isinstance(found, tuple) or not found.plausible:
            return found
        survey = found
        if not announced and time.monotonic() < deadline:
            notify(
                f"worker_utils: {worker}: no free Redis database on {url.masked} "
                f"({found.describe()}); waiting up to {wait:g}s for one to be released"
            )
            announced = True
        return None

    try:
        outcome = cast(
            "tuple[int, bool] | _Survey | None",
            wait_until(look, timeout=wait, interval=0.1, max_interval=0.4),
        )
        if not isinstance(outcome, tuple):
            waited = time.monotonic() - started
            if outcome is None:  # still plausible when the wait ran out
                why = f"after {wait:g}s ({survey.describe()})"
                advice = "raise worker_utils_redis_wait, use fewer workers"
            else:
                why = f"({outcome.describe()}) and none is about to be freed"
                advice = "use fewer workers or concurrent runs"
            if mode == "index":
                keeper.close()
                raise RedisSetupError(
                    f"worker_redis: no free database on {url.masked} {why}; {advice}, start "
                    f"the server with more --databases, or set worker_utils_redis_mode to "
                    f"auto to fall back to a key prefix"
                )
            notify(
                f"worker_utils: {worker}: no free Redis database on {url.masked} {why}; "
                f"using key prefix {prefix!r} in database {shared}"
            )
            return prefixed(waited)
        index, reclaimed = outcome
        leased_url = redis_url_with_db(url.url, index)
        janitor = redis_mod.Redis.from_url(
            leased_url, single_connection_client=True, **_ADMIN_OPTIONS
        )
        lease = RedisLease(
            server_url=url.url,
            url=leased_url,
            db=index,
            prefix=prefix,
            mode="index",
            database_count=count,
            waited=0.0 if looks == 1 else time.monotonic() - started,
            reclaimed=reclaimed,
            _janitor=janitor,
            _refresher=_Refresher(
                keeper, _LEASE.format(index), value, ttl_ms, None if tie is None else tie[0]
            ),
            _bookkeeping=url.db,
        )
        return with_user(lease)
    except redis_mod.RedisError as exc:
        keeper.close()
        raise RedisSetupError(_explain(exc, url, setting)) from None


def release_abandoned(value: dict[str, Any]) -> None:
    """Remove what a worker that died left: its Redis user, its keys and its lease.

    Registered per worker as a run teardown: the controller calls it when the
    run ends (every worker is gone by then) and a later run's reaper calls it
    for a crashed run. The index is emptied and given back only if its lease
    still holds the dead worker's token, checked in the same step on the
    server: a worker that took the lease over since keeps its data. A lease
    released cleanly no longer matches: no-op. A server that does not answer
    is an error, unless ``value["own_server"]`` says it was the run's own
    (embedded, or a container), which went with the run.
    """
    redis_mod = _import_redis()
    try:
        _release_abandoned(redis_mod, value)
    except redis_mod.ConnectionError:
        if value.get("own_server"):
            return  # the run's own server (embedded, or a container) is gone, and all with it
        raise


def _release_abandoned(redis_mod: Any, value: dict[str, Any]) -> None:
    url, index = value["url"], int(value["db"])
    token = _token(value["lease"].encode()) if value.get("lease") else None
    bookkeeping = parse_redis_url(url).db
    with redis_mod.Redis.from_url(url, **_ADMIN_OPTIONS) as keeper:
        if value.get("user"):
            with contextlib.suppress(redis_mod.ResponseError):
                keeper.acl_deluser(value["user"])
        flush = keeper.register_script(_FLUSH)
        if value.get("mode") == "prefix":
            with redis_mod.Redis.from_url(
                redis_url_with_db(url, index), **_ADMIN_OPTIONS
            ) as janitor:
                delete_prefix(janitor, value["prefix"])
            if token is not None:
                flush(keys=[_PREFIX.format(token)], args=[token, bookkeeping, "", 1])
            return
        if token is not None:
            flush(
                keys=[_LEASE.format(index), _DIRTY.format(index)],
                args=[token, bookkeeping, index, 1],
            )


def _token(raw: bytes) -> str | None:
    """The token of a lease value: it stays when the value records a new connection."""
    owner = _owner(raw)
    token = owner.get("token") if owner is not None else None
    return token if isinstance(token, str) else None


def _claim(
    redis_mod: Any,
    keeper: Any,
    url: RedisUrl,
    candidates: list[int],
    value: str,
    ttl_ms: int,
    run_id: str | None,
    token: str,
) -> tuple[int, bool] | _Survey:
    """Try each candidate once; return ``(index, reclaimed)`` for the first one taken.

    Otherwise return what was found of each candidate. ``ttl_ms`` 0 claims
    without an expiry (a lease tied to its connection); ``token`` is the one
    in ``value``.
    """
    take_over = keeper.register_script(_TAKE_OVER)
    release = keeper.register_script(_RELEASE)
    flush = keeper.register_script(_FLUSH)
    survey = _Survey()
    # Under load every round trip is slow: look at every lease at once, then
    # claim only an index that looked free or abandoned.
    seen = _Seen.look(redis_mod, keeper, [_LEASE.format(i) for i in candidates], run_id)
    probe = redis_mod.Redis.from_url(url.url, single_connection_client=True, **_ADMIN_OPTIONS)
    try:
        for index in candidates:
            key = _LEASE.format(index)
            owner = seen.raw[key]
            if owner is not None or not keeper.set(key, value, nx=True, px=ttl_ms or None):
                if owner is None:  # taken since the look: ask about its new holder
                    owner = keeper.get(key)
                    state, _ = _holder(redis_mod, keeper, key, owner, run_id)
                else:
                    state, _ = _holder(redis_mod, keeper, key, owner, run_id, seen)
                if state != "gone":
                    survey.add(state)
                    continue
                if not take_over(keys=[key], args=[owner, value, ttl_ms]):
                    survey.add("changing")  # another claimant was faster
                    continue
            pipe = probe.pipeline(transaction=False)
            pipe.execute_command("SELECT", index)
            pipe.dbsize()
            pipe.execute_command("SELECT", url.db)
            size = pipe.execute()[1]
            reclaimed = False
            if size:
                if not keeper.exists(_DIRTY.format(index)):
                    release(keys=[key], args=[value])  # someone else's data: not ours to touch
                    survey.add("foreign")
                    continue
                # Left by a worker_utils run that died: ours to remove, and only this index.
                if not flush(keys=[key], args=[token, url.db, index, 0]):
                    survey.add("changing")  # our expiring lease ran out meanwhile
                    continue
                reclaimed = True
            keeper.set(_DIRTY.format(index), value)
            return index, reclaimed
        return survey
    finally:
        probe.close()


def _prefix_lease(
    redis_mod: Any, url: RedisUrl, db: int, prefix: str, count: int, cluster: bool
) -> RedisLease:
    if cluster:
        janitor = redis_mod.cluster.RedisCluster.from_url(url.url, **_ADMIN_OPTIONS)
    else:
        janitor = redis_mod.Redis.from_url(
            redis_url_with_db(url.url, db), single_connection_client=True, **_ADMIN_OPTIONS
        )
    return RedisLease(
        server_url=url.url,
        url=redis_url_with_db(url.url, db),
        db=db,
        prefix=prefix,
        mode="prefix",
        database_count=count,
        cluster=cluster,
        _janitor=janitor,
    )
