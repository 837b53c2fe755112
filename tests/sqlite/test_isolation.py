"""Workers never share a file; the template is built once per run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from worker_utils.run import coordination

Records = Callable[[], list[dict[str, Any]]]


def test_two_workers_never_share_a_file_and_the_setup_runs_once(
    pytester: pytest.Pytester, example: Callable[..., Path], read_records: Records
) -> None:
    example("workers")
    result = pytester.runpytest("-n", "2", "-p", "no:randomly", "--dist", "load")
    result.assert_outcomes(passed=8)
    records = read_records()
    assert len([r for r in records if "setup" in r]) == 1
    tests = [r for r in records if "worker" in r]
    paths = {r["worker"]: r["path"] for r in tests}
    assert set(paths) == {"gw0", "gw1"}
    assert len(set(paths.values())) == 2
    for worker, path in paths.items():
        assert Path(path).parent.name == worker
        assert Path(path).parent.parent.parent.parent == coordination.tmp_root()
    # Each test starts from the empty template: it sees its own row and nobody else's.
    assert all(r["seen"] == [r["worker"]] for r in tests)
    assert not any(Path(path).exists() for path in paths.values())  # removed with the run
