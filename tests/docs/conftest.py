"""The doc tests' own files: tests/docs/examples holds what the docs' examples run with."""

from __future__ import annotations

# Written into the inner runs of tests/docs/test_examples.py, never collected here.
collect_ignore = ["examples"]
