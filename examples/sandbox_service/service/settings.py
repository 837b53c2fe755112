"""Settings read from the environment once, at first use, as most services do."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    socket_path: str
    mode: str


@functools.cache
def get_settings() -> Settings:
    return Settings(
        socket_path=os.environ["SERVICE_SOCKET"],
        mode=os.environ.get("SERVICE_MODE", "production"),
    )
