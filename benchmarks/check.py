"""How fast is ``worker-utils check``? Generates 2,000 realistic test files and times it.

Run with ``python benchmarks/check.py [--files N]``. The tree lives in a
temporary directory that is removed afterwards. The process is pinned to one
CPU where the platform allows, so the figure is a single-core figure; CPU
time is printed next to wall time because a busy machine inflates the latter.
The time ``ast.parse`` alone takes over the same files is the floor.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worker_utils.check import Settings, check_paths  # noqa: E402

_HEADER = '''"""Tests for the {name} service."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.{name} import Client, Config, build_payload


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(root=tmp_path, retries=3, timeout=2.5)


@pytest.fixture
def client(config: Config, worker_port) -> Client:
    return Client(config, port=worker_port())
'''

_TEST = '''

@pytest.mark.parametrize(("value", "expected"), [(1, 2), (2, 4), (10, 20), (-1, -2)])
def test_{name}_{i}_doubles(client: Client, value: int, expected: int) -> None:
    """The {name} client doubles {i} values."""
    payload = build_payload(value, tag="case-{i}")
    response = client.post("/double", json.dumps(payload))
    assert response.status == 200
    assert response.json()["result"] == expected


class TestGroup{i}:
    def test_it_round_trips(self, client: Client, tmp_path: Path) -> None:
        target = tmp_path / "out-{i}.json"
        target.write_text(json.dumps({{"id": {i}, "items": list(range(5))}}))
        assert json.loads(target.read_text())["id"] == {i}

    def test_it_reads_settings(self, monkeypatch: pytest.MonkeyPatch, config: Config) -> None:
        monkeypatch.setenv("APP_MODE_{i}", "test")
        assert config.mode(os.environ["APP_MODE_{i}"]) == "test"
'''

# A few files carry real problems, as an unconverted suite would.
_PROBLEMS = (
    '\n\ndef test_legacy_env() -> None:\n    os.environ["LEGACY"] = "1"\n',
    '\n\ndef test_legacy_url() -> None:\n    assert Client.from_url("http://localhost:8000")\n',
    '\n\ndef test_legacy_tmp() -> None:\n    assert Path("/tmp/legacy").name\n',
)


def generate(root: Path, count: int) -> None:
    """Write ``count`` test modules (about 130 lines each) and a conftest.py per package."""
    rng = random.Random(0)
    for index in range(count):
        package = root / f"pkg{index // 50}"
        if not package.exists():
            package.mkdir()
            (package / "conftest.py").write_text(_HEADER.format(name=f"pkg{index // 50}"))
        name = f"svc{index}"
        parts = [_HEADER.format(name=name)]
        parts += [_TEST.format(name=name, i=i) for i in range(rng.randint(3, 6))]
        if index % 10 == 0:
            parts.append(rng.choice(_PROBLEMS))
        (package / f"test_{name}.py").write_text("".join(parts))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report(
    what: str, files: int, start: float, cpu: float, note: str = "", clock: Any = time.process_time
) -> None:
    """Print wall and CPU seconds and files per CPU second since ``start``/``cpu``."""
    wall, used = time.perf_counter() - start, clock() - cpu
    print(
        f"{what:16} {wall:5.2f} s wall, {used:5.2f} s CPU, "
        f"{files / used:6,.0f} files per CPU second  {note}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="Number of test modules")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory(prefix="worker-utils-bench-") as directory:
        root = Path(directory)
        generate(root, args.files)
        files = sum(1 for _ in root.rglob("*.py"))
        lines = sum(path.read_text().count("\n") for path in root.rglob("*.py"))
        print(f"{files} files, {lines} lines")

        start, cpu = time.perf_counter(), time.process_time()
        for path in root.rglob("*.py"):
            ast.parse(path.read_bytes())
        report("ast.parse alone", files, start, cpu)

        start, cpu = time.perf_counter(), time.process_time()
        findings = check_paths([root], Settings(root=root))
        report("in-process", files, start, cpu, f"{len(findings)} findings")

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "worker_utils", "check", "--isolated", str(root)]
        start, cpu = time.perf_counter(), _children_cpu()
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        report("CLI", files, start, cpu, f"exit status {result.returncode}", clock=_children_cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
