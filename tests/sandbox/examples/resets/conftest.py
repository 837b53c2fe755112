"""Resets at every scope; each records its call."""

import json
import os
import uuid
from pathlib import Path

import worker_utils


def record(name):
    path = Path(os.environ["WU_TEST_RECORD_DIR"]) / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps({"reset": name, "test": os.environ.get("PYTEST_CURRENT_TEST")}))


for scope in ("function", "class", "module", "session"):
    worker_utils.register_reset(lambda scope=scope: record(scope), name=scope, scope=scope)
