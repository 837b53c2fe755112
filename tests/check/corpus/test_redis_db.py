# Hard-coded Redis databases: WU601-WU603. Lines marked "expect" must be reported, no other line may be.
import unittest

import redis
import redis.asyncio
from redis import Redis, StrictRedis

CACHE_DB = 3
SESSION_URL = "redis://localhost/2"  # expect: WU602


class CachingRedis(redis.Redis):
    """A client subclass: called with db=N it hard-codes the database as much as Redis does."""


def make_client(**options):
    return redis.Redis(**options)


class RedisTestCase(unittest.TestCase):
    """The base class of a real suite: every test on every worker flushed database 9."""

    REDIS_DB = 9

    def setUp(self):
        self.client = redis.Redis(host="cache", db=self.REDIS_DB)  # expect: WU601
        self.client.flushdb()


def test_client_keywords():
    Redis(db=15)  # expect: WU601
    StrictRedis(host="cache", db=3)  # expect: WU601
    redis.asyncio.Redis(db=0)  # expect: WU601
    redis.ConnectionPool(host="cache", db="4")  # expect: WU601
    redis.Redis.from_url("redis://cache", db=5)  # expect: WU601
    Redis("cache", 6380, 7)  # expect: WU601
    Redis(db=CACHE_DB)  # expect: WU601


def test_subclasses_and_wrappers():
    CachingRedis(db=11)  # expect: WU601
    make_client(db=12)  # expect: WU601
    make_client(redis_db=13)  # expect: WU601


def test_urls(port):
    redis.from_url("redis://:secret@cache:6380/15")  # expect: WU202, WU602
    redis.from_url("rediss://cache/1")  # expect: WU602
    redis.from_url("redis://cache?db=8")  # expect: WU602
    redis.from_url("unix:///run/redis.sock?timeout=1&db=6")  # expect: WU602
    redis.from_url(f"redis://cache:{port}/14")  # expect: WU602
    redis.from_url("valkey://cache/10")  # expect: WU602


def test_select(client):
    client.select(9)  # expect: WU603
    client.execute_command("SELECT", 9)  # expect: WU603
    client.execute_command("select", "10")  # expect: WU603
    client.connection.send_command("SELECT", CACHE_DB)  # expect: WU603


def test_suppressed_by_noqa(client):
    Redis(db=15)  # noqa: WU601
    client.select(2)  # noqa
    redis.from_url("redis://cache/3")  # noqa: WU602
    Redis(db=15)  # noqa: WU603  # expect: WU601


def test_near_misses(worker_redis_url, worker_redis_db, worker_redis, db, port):
    """Docs may say "redis://cache/15" without being reported."""
    Redis(db=worker_redis_db)
    Redis.from_url(worker_redis_url)
    Redis(db=db)
    Redis("cache", port)
    worker_redis.select(worker_redis_db)
    worker_redis.execute_command("GET", 9)
    redis.from_url(f"redis://cache/{worker_redis_db}")
    redis.from_url("redis://cache")
    redis.from_url("redis://cache/")
    fetch("http://cache/15")
    connect(db=-1)
    query.select("name")
    query.select(1, 2)
