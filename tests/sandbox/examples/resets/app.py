"""A loader cached at first use, as services cache their configuration."""

import functools
import json
import os
import uuid
from pathlib import Path


@functools.lru_cache
def load_config():
    path = Path(os.environ["WU_TEST_RECORD_DIR"]) / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps({"loaded": True}))
    return {"loaded": True}


def broken():
    raise RuntimeError("the registry is gone")
