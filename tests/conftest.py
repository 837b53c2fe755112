"""Fixtures for tests that run inner pytest sessions and read what they recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RECORD_DIR_VAR = "WU_TEST_RECORD_DIR"

# Inner test files call this to record what a test saw; the outer test reads it.
RECORD_SNIPPET = """
import json, os, uuid
from pathlib import Path

def record(**data):
    directory = Path(os.environ["WU_TEST_RECORD_DIR"])
    (directory / f"{uuid.uuid4().hex}.json").write_text(json.dumps(data))
"""


@pytest.fixture
def record_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory inner runs write records to, passed through the environment."""
    directory = tmp_path / "records"
    directory.mkdir()
    monkeypatch.setenv(RECORD_DIR_VAR, str(directory))
    return directory


@pytest.fixture
def read_records(record_dir: Path) -> Callable[[], list[dict[str, Any]]]:
    """Return a function that reads every record the inner runs wrote."""

    def read() -> list[dict[str, Any]]:
        return [json.loads(path.read_text()) for path in sorted(record_dir.glob("*.json"))]

    return read
