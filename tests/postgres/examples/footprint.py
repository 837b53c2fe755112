"""Each test records every connection its worker process holds to the server, and its own two."""

import json
import os
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest

RECORDS = Path(os.environ["WU_TEST_RECORD_DIR"])


@pytest.mark.parametrize("n", range(4))
def test_records_the_connections_of_its_worker(
    n, worker_postgres, worker_postgres_url, worker_postgres_server_url, worker_postgres_namespace
):
    port = worker_postgres.execute("SELECT inet_server_port()").fetchone()[0]
    with psycopg.connect(worker_postgres_url) as app:
        own = [worker_postgres.pgconn.backend_pid, app.pgconn.backend_pid]
        ports = [
            conn.laddr.port
            for conn in psutil.Process().net_connections("tcp")
            if conn.raddr and conn.raddr.port == port
        ]
        with psycopg.connect(worker_postgres_server_url) as probe:  # not among those ports
            held = probe.execute(
                "SELECT pid, application_name FROM pg_stat_activity WHERE client_port = ANY(%s)",
                [ports],
            ).fetchall()
    (RECORDS / f"{uuid.uuid4().hex}.json").write_text(
        json.dumps(
            {
                "worker": os.environ.get("PYTEST_XDIST_WORKER", "master"),
                "namespace": worker_postgres_namespace.name,
                "own": own,
                "held": held,
            }
        )
    )
