"""Small machinery every package shares: waiting for a condition, masking passwords."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^/?#]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.02,
    max_interval: float = 0.2,
) -> T | None:
    """Call ``probe`` until it returns something other than None, or ``timeout`` passes.

    Returns what ``probe`` returned, or None on time-out; ``probe`` runs at
    least once. The pause between calls doubles from ``interval`` up to
    ``max_interval``. Exceptions from ``probe`` propagate: a probe that sees a
    condition that will never change (the process exited) raises.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, max_interval)


def mask_password(text: str) -> str:
    """Return a URL or libpq conninfo with any password replaced by ``***``, for messages."""
    return _KEYWORD_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))
