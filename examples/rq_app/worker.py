"""The queue's worker, as production runs it: its own process, configured by REDIS_URL."""

from jobs import queue, redis
from rq import SimpleWorker

if __name__ == "__main__":
    SimpleWorker([queue], connection=redis).work(burst=True)
