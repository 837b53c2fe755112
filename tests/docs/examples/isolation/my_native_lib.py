"""Stands in for a native library (docs/isolation.md): a runtime thread, started once a process."""

from __future__ import annotations

import threading

_runtime: threading.Thread | None = None


def init() -> None:
    """Start the runtime; a second call in the same process is refused, as such libraries do."""
    global _runtime
    if _runtime is not None:
        raise RuntimeError("my_native_lib: the runtime is already initialised in this process")
    _runtime = threading.Thread(target=threading.Event().wait, name="runtime", daemon=True)
    _runtime.start()


def initialised() -> bool:
    return _runtime is not None
