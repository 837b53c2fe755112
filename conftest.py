"""Test-suite set-up shared by every directory of the repository."""

from __future__ import annotations

pytest_plugins = ["pytester"]

# The demo suite and benchmarks are run on their own, not as part of `pytest`.
collect_ignore = ["examples", "benchmarks"]
