"""The suite's unittest cases, unchanged, run on each worker's own database."""

import os
import unittest
from urllib.parse import urlsplit

import suite_helpers


class QueueTest(unittest.TestCase):
    def setUp(self):
        self.redis = suite_helpers.find_empty_redis_database()
        self.redis.flushdb()

    def tearDown(self):
        self.redis.close()

    def test_the_queue_holds_only_what_this_test_pushed(self):
        self.redis.rpush("queue", "job")
        assert self.redis.lrange("queue", 0, -1) == [b"job"]
        leased = int(urlsplit(os.environ["SUITE_REDIS_URL"]).path.strip("/"))
        assert self.redis.connection_pool.connection_kwargs["db"] == leased
