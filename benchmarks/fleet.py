"""A fleet on one server: K concurrent runs of W workers each, against one PostgreSQL and one Redis.

Run with ``python benchmarks/fleet.py`` (``--help`` for sizes); ``--fleets 15x4,25x4``
measures several fleet sizes one after the other in one invocation and prints them
side by side. Each run is ``pytest -n W`` on the same generated suite of light tests,
which use Postgres and Redis the way an application does: a session fixture opens the
application's own connection from ``worker_postgres_url`` and a client from
``worker_redis_url``, and every test writes the same primary key and the same Redis
key (so a missing reset fails it). The runs get the servers by URL (by default the
machine's own, as CI shards would share them) and start together.

Printed per fleet:

- runs that passed, and tests failed; a failure is "one line" when its whole report is
  a single ``worker_utils:`` line (what a worker_utils refusal looks like), "raw"
  otherwise (a traceback from psycopg or redis);
- the peak number of client connections on the PostgreSQL server and of clients on the
  Redis server during the fleet (a sampler polls both every 50 ms; its own two
  connections are not counted), and the server's limit;
- per-worker provisioning time: how long a worker's first request of
  ``worker_postgres_url`` and of ``worker_redis_url`` took (median and maximum),
  and how many workers spent more than 1 s getting Redis;
- the Redis workers in prefix mode (more workers than databases), and those that
  waited for a free database (``worker_redis_lease.waited``): how many got one after
  waiting (the wait helped) and how many fell back to prefix mode after waiting (it
  did not), with the longest wait of each;
- leftovers: schemas, databases, Redis keys and ACL users that were not there before
  and are there after, and run directories left under the temp dir.

``--catalog 0,250,1000`` measures instead what grows with the number of worker
namespaces on one server, in a database of its own that it drops at the end: for
each count, the namespaces are made the way workers make them (a copy of a
10-table setup, with an ownership record naming a run on another host, whose
advisory lock one connection holds, as live owners elsewhere would), then it times
one more copy, the reaper's pass at a run's start (it must keep every namespace,
trying each one's lock), and reports the catalog's size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's directory comes first on sys.path, and the
# benchmarks named redis.py and postgres.py would hide the real packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import psycopg  # noqa: E402
import redis  # noqa: E402
from psycopg import sql  # noqa: E402

from worker_utils import postgres  # noqa: E402
from worker_utils.postgres._clone import clone_schema  # noqa: E402
from worker_utils.postgres._names import lock_key, record  # noqa: E402

CONFTEST = '''
import json, os, time, uuid
from pathlib import Path

import psycopg
import pytest
import redis


@pytest.fixture(scope="session")
def worker_postgres_setup():
    def migrate(conn):
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, label text)")

    return migrate


@pytest.fixture(scope="session")
def provisioned(request):
    """The worker's URLs, timed: the first request of each provisions it."""
    started = time.perf_counter()
    postgres_url = request.getfixturevalue("worker_postgres_url")
    postgres_s = time.perf_counter() - started
    started = time.perf_counter()
    redis_url = request.getfixturevalue("worker_redis_url")
    redis_s = time.perf_counter() - started
    lease = request.getfixturevalue("worker_redis_lease")
    record = {
        "postgres_s": postgres_s,
        "redis_s": redis_s,
        "redis_waited_s": lease.waited,
        "redis_mode": lease.mode,
    }
    path = Path(os.environ["FLEET_RECORDS"]) / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(record))
    # In prefix mode (more workers than databases) the application's keys carry it.
    return postgres_url, redis_url, request.getfixturevalue("worker_redis_prefix")


@pytest.fixture(scope="session")
def app(provisioned):
    """The application's own connection and client, configured once per worker."""
    postgres_url, redis_url, prefix = provisioned
    # Named after the run, so that the benchmark can count the fleet's connections.
    conn = psycopg.connect(postgres_url, autocommit=True, application_name=os.environ["FLEET_TAG"])
    client = redis.Redis.from_url(redis_url)
    yield conn, client, prefix
    client.close()
    conn.close()
'''

TESTS = """
import os, time
import pytest

HOLD = float(os.environ["FLEET_HOLD"])


@pytest.mark.parametrize("n", range(int(os.environ["FLEET_TESTS"])))
def test_light(app, worker_redis, n):
    conn, client, prefix = app
    conn.execute("INSERT INTO item VALUES (1, %s)", (str(n),))
    assert conn.execute("SELECT count(*) FROM item").fetchone()[0] == 1
    assert client.set(prefix + "key", n, nx=True)
    worker_redis.incr(prefix + "counter")
    time.sleep(HOLD)
"""

INI = """
[pytest]
worker_utils_postgres_reset = delete
"""


@dataclass
class Peaks:
    postgres: int = 0
    fleet: int = 0
    redis: int = 0
    stop: threading.Event = field(default_factory=threading.Event)


def sample(postgres_url: str, redis_url: str, peaks: Peaks, tags: list[str]) -> None:
    """Record the peak client counts of both servers until ``peaks.stop`` is set.

    On Postgres, ``peaks.postgres`` counts every client and ``peaks.fleet`` those
    whose application name carries a tag of the fleet's runs.
    """
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        client = redis.Redis.from_url(redis_url)
        try:
            while not peaks.stop.is_set():
                names = [
                    name
                    for (name,) in conn.execute(
                        "SELECT application_name FROM pg_stat_activity"
                        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                    )
                ]
                peaks.postgres = max(peaks.postgres, len(names))
                fleet = sum(any(tag in name for tag in tags) for name in names)
                peaks.fleet = max(peaks.fleet, fleet)
                clients = int(client.info("clients")["connected_clients"]) - 1
                peaks.redis = max(peaks.redis, clients)
                time.sleep(0.05)
        finally:
            client.close()


def snapshot(postgres_url: str, redis_url: str, run_root: Path) -> set[str]:
    """Names of what could be left behind: schemas, databases, Redis keys and users, and
    the run directories under ``run_root``."""
    found: set[str] = set()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for (name,) in conn.execute("SELECT nspname FROM pg_namespace"):
            found.add(f"schema {name}")
        for (name,) in conn.execute("SELECT datname FROM pg_database"):
            found.add(f"database {name}")
    client = redis.Redis.from_url(redis_url)
    try:
        databases = int(client.config_get("databases")["databases"])
        for index in range(databases):
            client.execute_command("SELECT", index)
            for key in client.scan_iter(count=1000):
                value = client.get(key) if client.type(key) == b"string" else b""
                found.add(f"redis db {index} key {key.decode()} = {(value or b'').decode()[:200]}")
        client.execute_command("SELECT", 0)
        for user in client.acl_users():
            found.add(f"redis user {user}")
    finally:
        client.close()
    found.update(f"run dir {path.name}" for path in run_root.rglob("run-*"))
    return found


def server_limits(postgres_url: str, redis_url: str) -> tuple[int, int]:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('max_connections')::int").fetchone()
    client = redis.Redis.from_url(redis_url)
    try:
        databases = int(client.config_get("databases")["databases"])
    finally:
        client.close()
    return (row[0] if row else 0), databases


@dataclass
class Outcome:
    runs: int
    workers: int
    passed_runs: int = 0
    failed_tests: int = 0
    one_line: int = 0
    raw: list[str] = field(default_factory=list)
    peaks: Peaks = field(default_factory=Peaks)
    postgres_s: list[float] = field(default_factory=list)
    redis_s: list[float] = field(default_factory=list)
    redis_waited_s: list[float] = field(default_factory=list)
    redis_modes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    leftovers: list[str] = field(default_factory=list)


def failures(junit: Path) -> list[str]:
    """The failure and error reports of one run's JUnit XML."""
    if not junit.exists():
        return ["(the run wrote no JUnit XML)"]
    texts = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        for child in case:
            if child.tag in ("failure", "error"):
                texts.append(child.text or child.get("message") or "")
    return texts


def one_line(text: str) -> bool:
    """Whether a report is one line of worker_utils' own (``worker_postgres: ...``)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return len(lines) == 1 and re.match(r"worker_\w+: ", lines[0]) is not None


def run_fleet(runs: int, workers: int, args: argparse.Namespace, suite: Path) -> Outcome:
    outcome = Outcome(runs, workers)
    records = Path(tempfile.mkdtemp(prefix="fleet-records-"))
    # The fleet's run directories live here, apart from any other run on the host.
    run_root = Path(tempfile.mkdtemp(prefix="fleet-tmp-"))
    stamp = os.urandom(3).hex()
    uids = [f"fleet-{stamp}-{index}" for index in range(runs)]
    tags = [uid.replace("-", "_") for uid in uids]
    env = {
        **os.environ,
        "TMPDIR": str(run_root),
        "WORKER_UTILS_POSTGRES_URL": args.postgres_url,
        "WORKER_UTILS_REDIS_URL": args.redis_url,
        "FLEET_RECORDS": str(records),
        "FLEET_TESTS": str(args.tests),
        "FLEET_HOLD": str(args.hold),
    }
    before = snapshot(args.postgres_url, args.redis_url, run_root)
    sampler = threading.Thread(
        target=sample, args=(args.postgres_url, args.redis_url, outcome.peaks, tags), daemon=True
    )
    sampler.start()
    started = time.perf_counter()
    processes = []
    for index in range(runs):
        junit = records / f"run-{index}.xml"
        command = [sys.executable, "-m", "pytest", "-n", str(workers), "-q", "-p", "no:randomly"]
        command += ["-p", "no:cacheprovider", f"--junitxml={junit}", f"--testrunuid={uids[index]}"]
        processes.append(
            (
                subprocess.Popen(
                    command,
                    cwd=suite,
                    env={**env, "FLEET_TAG": f"app {tags[index]}"},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                ),
                junit,
            )
        )
    for process, junit in processes:
        output, _ = process.communicate()
        if process.returncode == 0:
            outcome.passed_runs += 1
        texts = failures(junit)
        if process.returncode != 0 and not texts:
            texts = [output[-2000:]]
        for text in texts:
            outcome.failed_tests += 1
            if one_line(text):
                outcome.one_line += 1
            else:
                outcome.raw.append(text)
    outcome.seconds = time.perf_counter() - started
    outcome.peaks.stop.set()
    sampler.join()
    for path in records.glob("*.json"):
        record = json.loads(path.read_text())
        outcome.postgres_s.append(record["postgres_s"])
        outcome.redis_s.append(record["redis_s"])
        outcome.redis_waited_s.append(record["redis_waited_s"])
        outcome.redis_modes.append(record["redis_mode"])
    time.sleep(args.settle)  # a run's controller may still be dropping what it made
    after = snapshot(args.postgres_url, args.redis_url, run_root) - before
    # Other runs on the server come and go meanwhile: keep what names this fleet,
    # and the keys its tests write.
    ours = re.compile("|".join([*tags, *uids, r"key (\S*:)?(key|counter) ="]))
    outcome.leftovers = sorted(line for line in after if ours.search(line))
    shutil.rmtree(records)
    shutil.rmtree(run_root)
    return outcome


def waited(outcome: Outcome, mode: str) -> str:
    """How many workers waited and got ``mode``, and the longest wait, in seconds."""
    waits = [
        seconds
        for seconds, got in zip(outcome.redis_waited_s, outcome.redis_modes, strict=True)
        if got == mode and seconds > 0
    ]
    return f"{len(waits)}, max {max(waits, default=0):.2f}s"


def median_max(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} / {max(values):.2f}"


SETUP_TABLES = 10


def _namespace(
    conn: psycopg.Connection[Any], database: str, name: str, holder: psycopg.Connection[Any]
) -> float:
    """Make worker namespace ``name`` as a worker on another host would; return the seconds."""
    started = time.perf_counter()
    owner = record("schema", name, database, "f" * 32)
    owner.update(host="another-host.invalid", pid=1, started=0.0)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        clone_schema(conn, "setup", name, "")
        conn.execute(
            sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                sql.Identifier(name), sql.Literal(json.dumps(owner))
            )
        )
    holder.execute("SELECT pg_advisory_lock(%s)", [lock_key("schema", name)])
    return time.perf_counter() - started


def catalog(args: argparse.Namespace) -> None:
    counts = sorted(int(part) for part in args.catalog.split(","))
    database = f"fleet_catalog_{os.urandom(3).hex()}"
    base = psycopg.conninfo.conninfo_to_dict(args.postgres_url)
    url = psycopg.conninfo.make_conninfo(args.postgres_url, dbname=database)
    with psycopg.connect(args.postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    print(f"catalog: database {database} on {base.get('host')}:{base.get('port', 5432)}")
    rows = []
    try:
        with (
            psycopg.connect(url, autocommit=True) as conn,
            psycopg.connect(url, autocommit=True) as holder,
        ):
            conn.execute("CREATE SCHEMA setup")
            for i in range(SETUP_TABLES):
                conn.execute(
                    f"CREATE TABLE setup.t{i} (id bigserial PRIMARY KEY, slug text UNIQUE, "
                    f"n int NOT NULL, created timestamptz DEFAULT now())"
                )
                conn.execute(f"CREATE INDEX t{i}_n ON setup.t{i} (n)")
            made = 0
            for count in counts:
                while made < count:
                    _namespace(conn, database, f"wu_fleet_{made}_gw0", holder)
                    made += 1
                one_more = statistics.median(
                    _namespace(conn, database, f"wu_fleet_{made + i}_gw0", holder) for i in range(5)
                )
                made += 5
                lines: list[str] = []
                started = time.perf_counter()
                result = postgres.reap(url, dry_run=True, log=lines.append)
                reap_s = time.perf_counter() - started
                assert not result.dropped, result.dropped  # every owner holds its lock
                size = conn.execute(
                    "SELECT pg_total_relation_size('pg_class') + pg_total_relation_size("
                    "'pg_attribute') + pg_total_relation_size('pg_depend') + "
                    "pg_total_relation_size('pg_description'), "
                    "(SELECT count(*) FROM pg_class)"
                ).fetchone()
                assert size is not None
                kept = [name for name, _ in result.kept if name.startswith("wu_fleet_")]
                reasons = {why for name, why in result.kept if name.startswith("wu_fleet_")}
                assert reasons == {"its owner holds its lock"}, reasons  # the lock was tried
                rows.append((made, one_more, reap_s, len(kept), size[0], size[1]))
    finally:
        with psycopg.connect(args.postgres_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
    print(
        f"{'namespaces':>10}  {'one more copy ms':>16}  {'reaper pass s':>13}  "
        f"{'kept':>5}  {'catalog MB':>10}  {'pg_class rows':>13}"
    )
    for made, one_more, reap_s, kept, size, relations in rows:
        print(
            f"{made:>10}  {one_more * 1000:>16.1f}  {reap_s:>13.3f}  {kept:>5}  "
            f"{size / 2**20:>10.1f}  {relations:>13}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fleets", default="15x4,25x4", help="runs x workers, comma-separated")
    parser.add_argument("--tests", type=int, default=12, help="tests per run")
    parser.add_argument("--hold", type=float, default=0.25, help="seconds each test sleeps")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before leftovers")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "WORKER_UTILS_POSTGRES_URL", "postgresql://postgres@127.0.0.1/postgres"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("WORKER_UTILS_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--catalog", default="", help="namespace counts, comma-separated: the catalog part"
    )
    args = parser.parse_args()
    if args.catalog:
        catalog(args)
        return
    max_connections, databases = server_limits(args.postgres_url, args.redis_url)
    print(
        f"machine: {os.cpu_count()} cores; PostgreSQL max_connections={max_connections}, "
        f"Redis databases={databases}; {args.tests} tests per run, {args.hold}s each"
    )
    suite = Path(tempfile.mkdtemp(prefix="fleet-suite-"))
    (suite / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (suite / "test_fleet.py").write_text(textwrap.dedent(TESTS))
    (suite / "pytest.ini").write_text(textwrap.dedent(INI))
    outcomes = []
    try:
        for fleet in args.fleets.split(","):
            runs, workers = (int(part) for part in fleet.lower().split("x"))
            outcomes.append(run_fleet(runs, workers, args, suite))
    finally:
        shutil.rmtree(suite)
    rows = [
        ("fleet (runs x workers)", lambda o: f"{o.runs} x {o.workers} = {o.runs * o.workers}"),
        ("runs passed", lambda o: f"{o.passed_runs}/{o.runs}"),
        (
            "tests failed (one line / raw)",
            lambda o: f"{o.failed_tests} ({o.one_line}/{len(o.raw)})",
        ),
        ("peak Postgres connections, fleet's", lambda o: str(o.peaks.fleet)),
        ("peak Postgres connections, all", lambda o: f"{o.peaks.postgres} of {max_connections}"),
        ("peak Redis clients", lambda o: str(o.peaks.redis)),
        ("Postgres provisioning s (median / max)", lambda o: median_max(o.postgres_s)),
        ("Redis provisioning s (median / max)", lambda o: median_max(o.redis_s)),
        ("Redis: workers in prefix mode", lambda o: str(o.redis_modes.count("prefix"))),
        ("Redis: waited, then a database", lambda o: waited(o, "index")),
        ("Redis: waited, then prefix mode", lambda o: waited(o, "prefix")),
        ("workers over 1 s for Redis", lambda o: str(sum(s > 1 for s in o.redis_s))),
        ("wall time s", lambda o: f"{o.seconds:.1f}"),
        ("leftovers", lambda o: str(len(o.leftovers))),
    ]
    width = max(len(name) for name, _ in rows)
    for name, cell in rows:
        print(f"{name:<{width}}  " + "  ".join(f"{cell(o):>18}" for o in outcomes))
    for outcome in outcomes:
        for text in outcome.raw[:3]:
            print(f"\nraw failure in {outcome.runs} x {outcome.workers}:\n{text.strip()[:1500]}")
        for line in outcome.leftovers[:20]:
            print(f"left behind by {outcome.runs} x {outcome.workers}: {line}")


if __name__ == "__main__":
    main()
