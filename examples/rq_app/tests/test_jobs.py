import subprocess
import sys
from pathlib import Path

import pytest
from jobs import add, queue

APP = Path(__file__).parents[1]


@pytest.mark.parametrize("n", range(2))
def test_a_worker_subprocess_runs_the_jobs_of_this_test(n):
    assert queue.count == 0, "each test starts from an empty database"
    job = queue.enqueue(add, n, 1)
    subprocess.run([sys.executable, "worker.py"], cwd=APP, check=True, timeout=60)
    job.refresh()
    assert job.return_value() == n + 1
