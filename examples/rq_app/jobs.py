"""The application: a queue on the Redis server named by REDIS_URL, read at import time."""

import os

from redis import Redis
from rq import Queue

redis = Redis.from_url(os.environ["REDIS_URL"])
queue = Queue("default", connection=redis)


def add(a: int, b: int) -> int:
    return a + b
