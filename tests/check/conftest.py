from __future__ import annotations

# The corpus holds deliberately bad test files for the checker to read, not to run.
collect_ignore = ["corpus"]
