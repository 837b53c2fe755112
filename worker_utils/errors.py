"""The base of every error worker_utils raises.

Each error also keeps a built-in base where callers already catch one (a bad
setting is a ``ValueError``, a server that will not start a ``RuntimeError``),
so ``except WorkerUtilsError`` catches all of ours and nothing else.
"""

from __future__ import annotations

__all__ = ["WorkerUtilsError"]


class WorkerUtilsError(Exception):
    """An error raised by worker_utils: its message says what was found and what to change."""
