"""The hand-written numbers of docs/migration.md depend on the worker id alone."""

from worker_utils import get_worker_port_offset, get_worker_redis_db


def test_a_concurrent_run_computes_the_same_port_and_database(port, redis_db, worker_id):
    # The classic helpers compute what the hand-written fixtures do...
    assert (port, redis_db) == (8000 + get_worker_port_offset(stride=1), get_worker_redis_db())
    # ...and give another run's worker of the same id the same: the collision.
    other = {"PYTEST_XDIST_WORKER": worker_id, "PYTEST_XDIST_TESTRUNUID": "another-run"}
    assert (8000 + get_worker_port_offset(stride=1, env=other), get_worker_redis_db(other)) == (
        port,
        redis_db,
    )
