"""The application of the guide's `run_once` example (docs/guide.md): a search index."""

from __future__ import annotations

import os
from pathlib import Path

# In the tests' working directory, which every worker of the run shares.
INDEX = Path("search-index.json")


def build_search_index() -> dict[str, object]:
    # "x": a second build in the same run fails instead of overwriting the first.
    with INDEX.open("x") as index:
        index.write('{"documents": 3}')
    return {"path": str(INDEX.resolve()), "documents": 3, "built_by": os.getpid()}


def drop_search_index(index: dict[str, object]) -> None:
    Path(str(index["path"])).unlink()
