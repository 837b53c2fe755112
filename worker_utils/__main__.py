"""``python -m worker_utils``: the same as the ``worker-utils`` command."""

from __future__ import annotations

import sys

from worker_utils.cli import main

if __name__ == "__main__":
    sys.exit(main())
