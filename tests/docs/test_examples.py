"""Every Python example of the docs is run, checked by the checker, or marked illustrative."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.postgres.conftest import URL as POSTGRES_URL
from worker_utils.check import check_source

DOCS = Path(__file__).resolve().parents[2] / "docs"
REDIS_URL = "redis://127.0.0.1:6379/0"  # noqa: WU202,WU602 the machine's server, as the other tests use

# A marker line, then the fence: `<!-- example: run -->`, `<!-- example: check WU101 -->`
# or `<!-- example: illustrative[, why] -->`; the fence may be indented in a list.
_BLOCK = re.compile(
    r"^(?P<marker>[ \t]*<!-- example: (?P<kind>\w+)(?P<args>[^>]*?)-->\n)?"
    r"(?P<indent>[ \t]*)```python\n(?P<code>.*?)^(?P=indent)```",
    re.MULTILINE | re.DOTALL,
)
_FILE = re.compile(r"^# (?P<name>[\w/]+\.py)\b.*$", re.MULTILINE)


@dataclass
class Example:
    page: str
    line: int
    kind: str  # run, check, illustrative, or "" when unmarked
    args: str
    code: str

    def __str__(self) -> str:
        return f"docs/{self.page}:{self.line}"


def examples(page: Path) -> list[Example]:
    """The ```python blocks of ``page``, each with the marker line before it."""
    text = page.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        code = textwrap.dedent(
            "\n".join(line.removeprefix(match["indent"]) for line in match["code"].splitlines())
        )
        line = text.count("\n", 0, match.start("indent")) + 1
        found.append(
            Example(page.name, line, match["kind"] or "", (match["args"] or "").strip(), code)
        )
    return found


PAGES = sorted(DOCS.glob("*.md"))
ALL = [example for page in PAGES for example in examples(page)]
RUN_PAGES = sorted({e.page for e in ALL if e.kind == "run"})


def test_every_python_block_is_found_and_marked() -> None:
    fences = sum(len(re.findall(r"^[ \t]*```python$", p.read_text(), re.MULTILINE)) for p in PAGES)
    assert len(ALL) == fences
    unmarked = [str(e) for e in ALL if e.kind not in ("run", "check", "illustrative")]
    assert unmarked == [], (
        "a ```python block needs <!-- example: run -->, <!-- example: check WU... --> "
        "or <!-- example: illustrative, why --> on the line before it"
    )
    assert len(RUN_PAGES) >= 5


@pytest.mark.parametrize("example", [e for e in ALL if e.kind != "run"], ids=str)
def test_an_example_that_is_not_run_compiles(example: Example) -> None:
    compile(example.code, str(example), "exec")


@pytest.mark.parametrize("example", [e for e in ALL if e.kind == "check"], ids=str)
def test_a_checker_example_shows_what_its_rule_finds(example: Example) -> None:
    codes = {finding.code for finding in check_source(example.code, "tests/test_example.py")}
    assert example.args in codes, f"{example}: {example.args} not among {sorted(codes)}"


def split_files(page: str, blocks: list[str]) -> dict[str, str]:
    """The files a page's run blocks make: a `# name.py` line starts one."""
    files: dict[str, str] = {}
    for number, block in enumerate(blocks):
        starts = list(_FILE.finditer(block))
        if not starts or starts[0].start() != 0:
            name = f"test_{Path(page).stem.replace('-', '_')}_{number}.py"
            starts_at = [(name, 0)]
        else:
            starts_at = []
        starts_at += [(m["name"], m.start()) for m in starts]
        for (name, start), following in zip(
            starts_at, [*(s for _, s in starts_at[1:]), len(block)], strict=True
        ):
            files[name] = files.get(name, "") + block[start:following]
    return files


def test_split_files_starts_a_file_at_each_name_line() -> None:
    assert split_files("p.md", ["# conftest.py\nA\n\n# test_a.py\nB\n", "C\n"]) == {
        "conftest.py": "# conftest.py\nA\n\n",
        "test_a.py": "# test_a.py\nB\n",
        "test_p_1.py": "C\n",
    }


#: Session fixtures a page overrides that a run builds once for all its tests.
RUN_WIDE_SETUPS = ("worker_postgres_setup", "worker_sqlite_setup")


def page_files(page: str) -> dict[str, str]:
    return split_files(page, [e.code for e in ALL if e.page == page and e.kind == "run"])


def run_groups(pages: list[str]) -> list[list[str]]:
    """Pages whose examples can share one run, each in a directory of its own.

    Two pages share a run unless both override the same run-wide setup (the run
    builds it once) or both make a file of the same name (pytest imports test
    modules by their name).
    """
    groups: list[tuple[list[str], set[str]]] = []
    for page in pages:
        files = page_files(page)
        code = "".join(files.values())
        claims = {setup for setup in RUN_WIDE_SETUPS if f"def {setup}(" in code}
        claims |= {name for name in files if name != "conftest.py"}
        for members, taken in groups:
            if not claims & taken:
                members.append(page)
                taken |= claims
                break
        else:
            groups.append(([page], claims))
    return [members for members, _ in groups]


@pytest.mark.parametrize("pages", run_groups(RUN_PAGES), ids="+".join)
def test_the_examples_of_each_page_pass_in_parallel(
    pages: list[str], pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_UTILS_POSTGRES_URL", POSTGRES_URL)
    monkeypatch.setenv("WORKER_UTILS_REDIS_URL", REDIS_URL)
    for page in pages:
        for name, code in page_files(page).items():
            path = pytester.path / Path(page).stem / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly", "-rp")
    outcomes = result.parseoutcomes()
    assert result.ret == 0, f"docs/{'+'.join(pages)}: {outcomes}"
    passed = [line.split()[1] for line in result.stdout.lines if line.startswith("PASSED ")]
    for page in pages:
        assert any(test.startswith(f"{Path(page).stem}/") for test in passed), f"docs/{page}"
