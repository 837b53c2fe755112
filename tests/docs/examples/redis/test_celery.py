"""A Celery task goes through the worker's database, every key under the worker's prefix."""


def test_a_task_runs_through_the_workers_database(
    celery_app, celery_worker, worker_redis, worker_redis_prefix
):
    @celery_app.task
    def add(x, y):
        return x + y

    celery_worker.reload()
    assert add.delay(2, 3).get(timeout=30) == 5
    keys = [key.decode() for key in worker_redis.keys("*")]
    assert keys
    assert all(key.startswith(worker_redis_prefix) for key in keys), keys
