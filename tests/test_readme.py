"""The README's 30-second example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.postgres.conftest import URL

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_example_conftest_and_test_pass_in_parallel(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    conftest, test_file = _python_blocks()[:2]
    assert conftest.startswith("# conftest.py")
    assert test_file.startswith("# test_items.py")
    monkeypatch.setenv("WORKER_UTILS_POSTGRES_URL", URL)
    pytester.makeconftest(conftest)
    # Run the example test several times per worker: its rows must never be seen twice.
    pytester.makepyfile(
        test_items=test_file.replace(
            "def test_insert(",
            "import pytest\n\n\n@pytest.mark.parametrize('n', range(6))\ndef test_insert(n, ",
        )
    )
    pytester.runpytest("-n", "2").assert_outcomes(passed=6)
