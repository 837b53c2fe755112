"""Database-mode provisioning per worker for a Django project's default apps.

Run with ``python benchmarks/django.py [--runs 3] [--url URL]``. It runs the Django
example (``examples/django_app``: pytest-django, ``worker_utils_postgres_mode =
database``, migrations once per run in the template) at ``-n 2``, against the
server at ``--url`` (default: the machine's, ``postgresql://postgres@127.0.0.1/postgres``)
and against the embedded server, ``--runs`` times each. A plugin loaded into every
worker times :meth:`WorkerNamespace.create` for the worker's own database (the
copy of the run's template, its ownership record, its lock and its connection)
and prints each worker's seconds, then the median and the maximum.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "django_app"

TIMING_PLUGIN = """
import json, os, time
from worker_utils.postgres import _namespace

_create = _namespace.WorkerNamespace.create

def create(self, template=None):
    started = time.perf_counter()
    try:
        return _create(self, template)
    finally:
        if not self.template and template is not None:
            with open(os.environ["WU_BENCH_TIMES"], "a") as out:
                out.write(json.dumps(time.perf_counter() - started) + "\\n")

_namespace.WorkerNamespace.create = create
"""


def measure(url: str | None, runs: int, plugin_dir: Path) -> list[float]:
    times = plugin_dir / f"times-{os.urandom(4).hex()}.jsonl"
    env = {**os.environ, "PYTHONPATH": str(plugin_dir), "WU_BENCH_TIMES": str(times)}
    env.pop("WORKER_UTILS_POSTGRES_URL", None)
    if url:
        env["WORKER_UTILS_POSTGRES_URL"] = url
    command = [sys.executable, "-m", "pytest", "-n", "2", "-q", "-p", "wu_bench_timing"]
    command += ["-p", "no:randomly", "-p", "no:cacheprovider"]
    for _ in range(runs):
        subprocess.run(command, cwd=EXAMPLE, env=env, check=True, capture_output=True)
    return [json.loads(line) for line in times.read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1/postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        plugin_dir = Path(directory)
        (plugin_dir / "wu_bench_timing.py").write_text(TIMING_PLUGIN)
        for name, url in (("server by URL", args.url), ("embedded server", None)):
            seconds = measure(url, args.runs, plugin_dir)
            listed = ", ".join(f"{s:.3f}" for s in seconds)
            print(
                f"{name:<16} per worker s: {listed}; median {statistics.median(seconds):.3f}, "
                f"max {max(seconds):.3f}"
            )


if __name__ == "__main__":
    main()
