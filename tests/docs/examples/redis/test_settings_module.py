"""The settings module computed at import time names the classic database."""

import settings


def test_the_database_is_the_worker_number_plus_one(worker_id):
    database = {"gw0": 1, "gw1": 2}[worker_id]
    assert f"redis://localhost:6379/{database}" == settings.REDIS_URL
