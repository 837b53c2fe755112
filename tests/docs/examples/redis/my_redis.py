"""A Redis server the suite starts itself (docs/redis.md, "Bringing your own server")."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

import redis

from worker_utils import lease_port


def start_my_redis() -> dict[str, str]:
    directory = tempfile.mkdtemp(prefix="my-redis-")
    lease = lease_port()  # held until the server listens on the port
    url = f"redis://127.0.0.1:{lease.port}/0"
    try:
        options = {"bind": "127.0.0.1", "port": lease.port, "save": "", "appendonly": "no"}
        options |= {"dir": directory, "daemonize": "yes", "logfile": f"{directory}/redis.log"}
        arguments = [str(part) for name, value in options.items() for part in (f"--{name}", value)]
        subprocess.run(["redis-server", *arguments], check=True)
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        client.close()
    finally:
        lease.release()
    return {"url": url, "dir": directory}


def stop_my_redis(server: dict[str, str]) -> None:
    client = redis.Redis.from_url(server["url"])
    try:
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # the server closes the connection as it goes
    finally:
        client.close()
    shutil.rmtree(server["dir"])
