"""Per-call cost of a worker_port lease beside a plain bind to port 0.

Both are measured in one run, alternating rounds so load on the machine hits
both alike; each figure is the median of the per-round means.

    python benchmarks/ports.py [--rounds 30] [--calls 200]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from worker_utils.ports import lease_port, port_lock_dir


def bind_port_zero() -> int:
    """What a test does without worker_utils: let the kernel pick, then close."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def make_lease(lock_dir: Path) -> Callable[[], int]:
    def lease_and_release() -> int:
        lease = lease_port(lock_dir=lock_dir)
        lease.release()
        return lease.port

    return lease_and_release


def make_held_leases(lock_dir: Path, calls: int) -> Callable[[], int]:
    """Lease ``calls`` ports held at once, as a test taking many ports does."""
    held = []

    def lease_and_hold() -> int:
        lease = lease_port(lock_dir=lock_dir)
        held.append(lease)
        if len(held) == calls:
            for each in held:
                each.release()
            held.clear()
        return lease.port

    return lease_and_hold


def per_call_us(function: Callable[[], int], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    # The real host-wide lock directory: its file system decides the cost.
    with tempfile.TemporaryDirectory(dir=port_lock_dir().parent) as tmp:
        lock_dir = Path(tmp)
        print(f"lock files in {lock_dir}")
        candidates = {
            "bind to port 0 (no reservation)": bind_port_zero,
            "lease_port + release": make_lease(lock_dir),
            f"lease_port, {args.calls} held at once": make_held_leases(lock_dir, args.calls),
        }
        samples: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(args.rounds):
            for name, function in candidates.items():
                samples[name].append(per_call_us(function, args.calls))
    baseline = statistics.median(samples["bind to port 0 (no reservation)"])
    print(f"{args.rounds} rounds x {args.calls} calls, median of round means")
    print(f"{'':40} {'us/call':>10} {'vs bind 0':>10}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:40} {median:10.1f} {median / baseline:9.1f}x")


if __name__ == "__main__":
    main()
