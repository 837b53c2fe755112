"""The test suite the checker's Python example reads (docs/checker.md)."""

import os

os.environ["APP_DEBUG"] = "1"  # printed: WU101
CACHE = "/tmp/app-cache"  # not printed: the example deselects WU4
