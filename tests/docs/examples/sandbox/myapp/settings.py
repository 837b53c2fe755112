"""The application's settings, read from the environment once and cached."""

import functools
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    debug: bool


@functools.cache
def get_settings() -> Settings:
    return Settings(debug=os.environ.get("MYAPP_DEBUG") == "1")
