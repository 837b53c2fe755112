"""Every Python example of the docs runs: in a run of its page, or through the checker.

The line before a ```python block says how:

- ``<!-- example: run -->``: the page's run blocks are written to files (a
  ``# name.py`` first line names one; another block is a test module of its own)
  and run together with ``pytest -n 2`` against the real servers;
  ``... run with PATH ...`` adds the files of PATH (a file or a directory under
  ``tests/docs/examples``, from the repository root) to that run: the
  application an example imports and the tests that show what it does; a file
  of the same name as a block's is appended to it. A ```ini block marked ``run``
  joins the run too (``# pytest.ini``).
- ``... run as script ...``: run with ``python`` in the page's directory, before
  its tests, as code outside pytest runs.
- ``... run under DIST ...``: needs DIST, a plugin the dev environment must not
  load into every interpreter of the suite; run in a venv of its own with the
  release tests (``make dist-check``).
- ``<!-- example: check WU101 -->``: the checker finds WU101 in the ``# bad``
  part and not in the ``# good`` part, each written to the paths its comment
  names (``# bad: tests/conftest.py and tests/api/conftest.py``).
- ``<!-- example: included -->``: the block is ``--8<--`` lines that include
  files of an example application which ``tests/test_examples.py`` runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import tomllib

from tests.postgres.conftest import URL as POSTGRES_URL
from tests.test_examples import APPS
from worker_utils.check import check_paths

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SUPPORT = ROOT / "tests" / "docs" / "examples"
REDIS_URL = "redis://127.0.0.1:6379/0"  # noqa: WU202,WU602 the machine's server, as the other tests use

# A marker line, then the fence: `<!-- example: run -->`, `<!-- example: check WU101 -->`...;
# the fence may be indented in a list. ```ini blocks count only when marked to run.
_BLOCK = re.compile(
    r"^(?P<marker>[ \t]*<!-- example: (?P<kind>\w+)(?P<args>[^>]*?)-->\n)?"
    r"(?P<indent>[ \t]*)```(?P<lang>python|ini)\n(?P<code>.*?)^(?P=indent)```",
    re.MULTILINE | re.DOTALL,
)
_FILE = re.compile(r"^# (?P<name>[\w/]+\.(?:py|ini))\b.*$", re.MULTILINE)
_RUN_ARGS = re.compile(
    r"^(?P<script>as script)?\s*(?:under (?P<under>\S+))?\s*(?:with (?P<with>.+))?$"
)
_PART = re.compile(r"^# (?P<part>bad|good)\b(?P<where>.*)$", re.MULTILINE)
_INCLUDE = re.compile(r'^--8<-- "(?P<path>[^"]+)"$')
_TEST = re.compile(r"^(?:async )?def test_", re.MULTILINE)


@dataclass
class Example:
    page: str
    line: int
    kind: str  # run, check, included, or "" when unmarked
    args: str
    code: str
    lang: str = "python"

    def __str__(self) -> str:
        return f"docs/{self.page}:{self.line}"

    @property
    def run_args(self) -> re.Match[str] | None:
        return _RUN_ARGS.match(self.args) if self.kind == "run" else None

    @property
    def script(self) -> bool:
        return bool(self.run_args and self.run_args["script"])

    @property
    def under(self) -> str | None:
        return self.run_args["under"] if self.run_args else None

    @property
    def support(self) -> list[Path]:
        found = self.run_args["with"] if self.run_args else None
        return [ROOT / path for path in found.split()] if found else []


def examples(page: Path) -> list[Example]:
    """The ```python blocks of ``page``, and its ```ini blocks marked run, each with its marker."""
    text = page.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        if match["lang"] == "ini" and match["kind"] != "run":
            continue
        code = textwrap.dedent(
            "\n".join(line.removeprefix(match["indent"]) for line in match["code"].splitlines())
        )
        line = text.count("\n", 0, match.start("indent")) + 1
        found.append(
            Example(
                page.name,
                line,
                match["kind"] or "",
                (match["args"] or "").strip(),
                code + "\n",
                match["lang"],
            )
        )
    return found


PAGES = sorted(DOCS.glob("*.md"))
ALL = [example for page in PAGES for example in examples(page)]
RUNS = sorted({(e.page, e.under) for e in ALL if e.kind == "run"}, key=lambda r: (r[0], r[1] or ""))


def test_every_python_block_is_found_and_marked() -> None:
    fences = sum(len(re.findall(r"^[ \t]*```python$", p.read_text(), re.MULTILINE)) for p in PAGES)
    assert len([e for e in ALL if e.lang == "python"]) == fences
    unmarked = [str(e) for e in ALL if e.kind not in ("run", "check", "included")]
    assert unmarked == [], (
        "a ```python block needs <!-- example: run -->, <!-- example: check WU... --> "
        "or <!-- example: included --> on the line before it"
    )
    assert len({page for page, _ in RUNS}) >= 5


@pytest.mark.parametrize("example", [e for e in ALL if e.kind == "run"], ids=str)
def test_a_run_marker_names_files_of_the_doc_examples(example: Example) -> None:
    assert example.run_args, f"{example}: cannot read {example.args!r}"
    assert example.under in (None, *UNDER), f"{example}: no venv is known for {example.under}"
    for path in example.support:
        assert path.is_relative_to(SUPPORT), f"{example}: {path} is not in {SUPPORT}"
        assert path.exists(), f"{example}: {path} does not exist"


@pytest.mark.parametrize("example", [e for e in ALL if e.kind == "check"], ids=str)
def test_a_checker_example_shows_what_its_rule_finds(example: Example, tmp_path: Path) -> None:
    parts = list(_PART.finditer(example.code))
    assert [part["part"] for part in parts] == ["bad", "good"], example
    for part, following in zip(parts, [*(p.start() for p in parts[1:]), None], strict=True):
        # A file of its own per path named ("tests/conftest.py and tests/api/conftest.py").
        paths = re.findall(r"[\w/]+\.py", part["where"]) or ["tests/test_example.py"]
        directory = tmp_path / part["part"]
        for path in paths:
            (directory / path).parent.mkdir(parents=True, exist_ok=True)
            (directory / path).write_text(example.code[part.start() : following])
        codes = {finding.code for finding in check_paths([directory])}
        shown = example.args in codes
        assert shown == (part["part"] == "bad"), f"{example} {part['part']}: {sorted(codes)}"


@pytest.mark.parametrize("example", [e for e in ALL if e.kind == "included"], ids=str)
def test_an_included_example_is_a_file_the_suite_runs(example: Example) -> None:
    lines = example.code.strip().splitlines()
    paths = [m["path"] for m in map(_INCLUDE.match, lines) if m]
    assert paths, f"{example}: no --8<-- line"
    assert len(paths) == len(lines), f"{example}: only --8<-- lines"
    for path in paths:
        assert (ROOT / path).is_file(), f"{example}: {path}"
        assert any(Path(path).is_relative_to(f"examples/{app}") for app in APPS), (
            f"{example}: {path} is in no example application tests/test_examples.py runs"
        )


def split_files(page: str, blocks: list[Example], support_root: Path = SUPPORT) -> dict[str, str]:
    """The files a page's run blocks make, with the files they run with.

    A `# name.py` line starts a file; a block without one is a test module of its
    own (or a script, not collected). The files of a block's support paths follow
    it, at their paths below their page's directory of ``support_root``.
    """
    files: dict[str, str] = {}
    copied: set[Path] = set()
    stem = Path(page).stem.replace("-", "_")
    for number, block in enumerate(blocks):
        starts = list(_FILE.finditer(block.code))
        if not starts or starts[0].start() != 0:
            default = f"{stem}_{number}.py" if block.script else f"test_{stem}_{number}.py"
            starts_at = [(default, 0)]
        else:
            starts_at = []
        starts_at += [(m["name"], m.start()) for m in starts]
        for (name, start), following in zip(
            starts_at, [*(s for _, s in starts_at[1:]), len(block.code)], strict=True
        ):
            files[name] = files.get(name, "") + block.code[start:following]
        for support in block.support:
            base = support_root / support.relative_to(support_root).parts[0]
            found = sorted(support.rglob("*")) if support.is_dir() else [support]
            for path in found:
                if path.is_file() and "__pycache__" not in path.parts and path not in copied:
                    copied.add(path)
                    name = str(path.relative_to(base))
                    files[name] = files.get(name, "") + path.read_text()
    return files


def test_split_files_starts_a_file_at_each_name_line_and_adds_the_support(tmp_path: Path) -> None:
    (tmp_path / "p" / "pkg").mkdir(parents=True)
    (tmp_path / "p" / "test_a.py").write_text("D\n")
    (tmp_path / "p" / "pkg" / "m.py").write_text("E\n")
    blocks = [
        Example("p.md", 1, "run", "", "# conftest.py\nA\n\n# test_a.py\nB\n"),
        Example("p.md", 9, "run", f"with {tmp_path / 'p' / 'pkg'}", "C\n"),
        Example("p.md", 20, "run", f"as script with {tmp_path / 'p'}", "F\n"),
    ]
    assert split_files("p.md", blocks, tmp_path) == {
        "conftest.py": "# conftest.py\nA\n\n",
        "test_a.py": "# test_a.py\nB\nD\n",
        "test_p_1.py": "C\n",
        "pkg/m.py": "E\n",  # once, though two blocks name it
        "p_2.py": "F\n",
    }


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if text.startswith("#!"):
            path.chmod(0o755)


def page_blocks(page: str) -> list[Example]:
    return [e for e in ALL if e.page == page and e.kind == "run" and e.under is None]


#: Session fixtures a page may override that a run builds once for all its tests.
RUN_WIDE_SETUPS = ("worker_postgres_setup", "worker_sqlite_setup")


def run_groups(pages: list[str]) -> list[list[str]]:
    """The pages whose tests run together, each page in a directory of its own.

    A page runs alone if it has scripts or a pytest.ini (both are the run's own).
    Two pages share a run unless both override the same run-wide setup (a run
    builds one), call ``run_once`` with the same key, or make modules of the same
    name (pytest imports test modules, and Python any module, by that name).
    """
    groups: list[tuple[list[str], set[str]]] = []
    for page in pages:
        blocks = page_blocks(page)
        files = split_files(page, blocks)
        code = "".join(files.values())
        claims = {setup for setup in RUN_WIDE_SETUPS if f"def {setup}(" in code}
        claims |= {f"run_once {key}" for key in re.findall(r"run_once\(\s*[\"']([^\"']+)", code)}
        for name in files:
            path = Path(name)
            if path.name != "conftest.py":
                claims |= {path.parts[0].removesuffix(".py"), path.stem}
        if any(block.script for block in blocks) or "pytest.ini" in files:
            groups.append(([page], set()))
            continue
        for members, taken in groups:
            if taken and not claims & taken:
                members.append(page)
                taken |= claims
                break
        else:
            groups.append(([page], claims))
    return [members for members, _ in groups]


@pytest.mark.parametrize(
    "pages", run_groups([page for page, under in RUNS if under is None]), ids="+".join
)
def test_the_examples_of_each_page_pass_in_parallel(
    pages: list[str], pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_UTILS_POSTGRES_URL", POSTGRES_URL)
    monkeypatch.setenv("WORKER_UTILS_REDIS_URL", REDIS_URL)
    # A page alone runs at the top, as a reader lays it out; pages that share a run
    # each get a directory of their own.
    directories = {
        page: pytester.path / (Path(page).stem if len(pages) > 1 else "") for page in pages
    }
    with_tests = []
    configures_django = False
    for page in pages:
        blocks = page_blocks(page)
        files = split_files(page, blocks)
        write_files(directories[page], files)
        configures_django |= "django.setup()" in "".join(files.values())
        stem = Path(page).stem.replace("-", "_")
        for number, block in enumerate(blocks):
            if block.script:
                script = _FILE.match(block.code)
                result = pytester.runpython(
                    directories[page] / (script["name"] if script else f"{stem}_{number}.py")
                )
                assert result.ret == 0, f"{block}:\n{result.stdout.str()}\n{result.stderr.str()}"
        if any(_TEST.search(text) for name, text in files.items() if name.endswith(".py")):
            with_tests.append(page)
    if not with_tests:
        return
    # The controller in this process, unless it may configure Django's settings: they
    # are configured once per process, and for good.
    run = pytester.runpytest_subprocess if configures_django else pytester.runpytest
    result = run("-n", "2", "-p", "no:randomly", "-rp")
    outcomes = result.parseoutcomes()
    assert result.ret == 0, f"docs/{'+'.join(pages)}: {outcomes}"
    passed = [line.split()[1] for line in result.stdout.lines if line.startswith("PASSED ")]
    for page in with_tests:
        where = directories[page].relative_to(pytester.path).as_posix()
        found = [test for test in passed if where == "." or test.startswith(f"{where}/")]
        assert found, f"docs/{page}: no test passed"


#: The venv a block marked `run under DIST` runs in: what to install besides DIST
#: (the version DIST has in pyproject.toml's extras) and the arguments of its run.
UNDER = {
    "pytest-postgresql": (
        ["psycopg[binary]"],
        lambda: [
            f"--postgresql-host={urlsplit(POSTGRES_URL).hostname}",
            f"--postgresql-port={urlsplit(POSTGRES_URL).port or 5432}",
            f"--postgresql-user={urlsplit(POSTGRES_URL).username or 'postgres'}",
            f"--postgresql-password={urlsplit(POSTGRES_URL).password or ''}",
            # A database of this run's own: another run on the server may be at it too.
            f"--postgresql-dbname=docs_{uuid.uuid4().hex[:12]}",
        ],
    ),
}


def requirement(dist: str) -> str:
    """DIST as pyproject.toml's extras require it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    found = [
        req
        for reqs in extras.values()
        for req in reqs
        if re.match(rf"{re.escape(dist)}\b(?![-\w])", req)
    ]
    assert found, f"{dist} is in no extra of pyproject.toml"
    return found[0]


@pytest.mark.release
@pytest.mark.parametrize(("page", "dist"), [run for run in RUNS if run[1] is not None])
def test_the_examples_of_a_page_that_need_another_plugin_pass_in_its_own_venv(
    page: str, dist: str, tmp_path: Path
) -> None:
    packages, arguments = UNDER[dist]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", requirement(dist), *packages],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    blocks = [e for e in ALL if e.page == page and e.kind == "run" and e.under == dist]
    project = tmp_path / "project"
    write_files(project, split_files(page, blocks))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "WORKER_UTILS_"))}
    result = subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", *arguments()],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout.splitlines()[-1], result.stdout
