"""Temporary paths private to a worker or shared by one run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from worker_utils._worker import get_worker_id
from worker_utils.run.coordination import current_run_dir

__all__ = ["run_tmp_path", "worker_dir", "worker_tmp_path"]


def run_tmp_path(env: Mapping[str, str] | None = None) -> Path:
    """Return a directory shared by every worker of the current run, and only that run.

    It is removed when the run ends. Two concurrent runs get different directories.
    """
    path = current_run_dir(env) / "shared"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def worker_tmp_path(env: Mapping[str, str] | None = None) -> Path:
    """Return a directory private to this worker in the current run.

    A worker that replaces a crashed one has a new id, and so a new directory.
    """
    path = worker_dir(env)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def worker_dir(env: Mapping[str, str] | None = None) -> Path:
    """Return the path :func:`worker_tmp_path` returns, without creating it."""
    return current_run_dir(env) / "workers" / get_worker_id(env)
