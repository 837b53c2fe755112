# Fixed temporary paths: WU401.
import os
import subprocess
from pathlib import Path


def test_fixed_paths():
    Path("/tmp").joinpath("app.sock")  # expect: WU401
    open("/tmp/output.txt", "w")  # expect: WU401
    os.makedirs("/var/tmp/cache", exist_ok=True)  # expect: WU401
    Path("/dev/shm/queue")  # expect: WU401
    subprocess.run("rm -rf /tmp/build", shell=True)  # expect: WU401
    name = f"/tmp/{os.getpid()}.log"  # expect: WU401
    url = "file:///tmp/data.csv"  # expect: WU401
    assert name and url


def test_suppressed_by_noqa():
    Path("/tmp/ok")  # noqa: WU401


def test_near_misses(tmp_path, worker_tmp_path, run_tmp_path):
    """Write under /tmp/ never; this docstring is prose."""
    (tmp_path / "output.txt").write_text("x")
    Path("data/tmp/file.txt")
    Path("tmp/file.txt")
    Path("/tmpfiles")
    Path("/home/user/tmp")
    os.path.join(worker_tmp_path, "tmp")
