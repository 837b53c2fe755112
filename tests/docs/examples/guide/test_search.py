"""Every test of every worker gets the index that one worker built for the run."""

from pathlib import Path

import pytest


@pytest.mark.parametrize("n", range(4))
def test_the_index_is_built_once_for_the_run(search_index, n):
    assert search_index["documents"] == 3
    assert Path(search_index["path"]).read_text() == '{"documents": 3}'
