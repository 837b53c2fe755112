"""The run: its id and directory, run-once setup shared by its workers, and temp paths."""

from __future__ import annotations

from worker_utils.run.coordination import RunOnceError, run_once
from worker_utils.run.paths import run_tmp_path, worker_tmp_path

__all__ = ["RunOnceError", "run_once", "run_tmp_path", "worker_tmp_path"]
