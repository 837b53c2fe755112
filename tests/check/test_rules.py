"""Every rule against the corpus: the findings are exactly the lines marked ``# expect: CODE``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from worker_utils.check import RULES, Finding, Settings, check_paths, check_source

CORPUS = Path(__file__).parent / "corpus"
_EXPECT = re.compile(r"# expect: (?P<codes>[A-Z0-9, ]+)$")


def expected_in(path: Path) -> set[tuple[str, int]]:
    expected = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _EXPECT.search(line)
        if match:
            expected |= {(code.strip(), number) for code in match["codes"].split(",")}
    return expected


def found_in(findings: list[Finding], path: Path) -> set[tuple[str, int]]:
    return {(finding.code, finding.line) for finding in findings if finding.path == str(path)}


@pytest.fixture(scope="module")
def corpus_findings() -> list[Finding]:
    return check_paths([CORPUS], Settings(root=CORPUS))


CORPUS_FILES = sorted(path.relative_to(CORPUS).as_posix() for path in CORPUS.rglob("*.py"))


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_it_reports_exactly_the_marked_lines(corpus_findings: list[Finding], name: str) -> None:
    path = CORPUS / name
    assert found_in(corpus_findings, path) == expected_in(path)


def test_every_rule_is_proven_by_the_corpus() -> None:
    marked = {code for name in CORPUS_FILES for code, _ in expected_in(CORPUS / name)}
    assert marked == set(RULES) - {"WU000", "WU001"}


def test_it_never_checks_files_that_are_not_tests(corpus_findings: list[Finding]) -> None:
    assert not found_in(corpus_findings, CORPUS / "sub" / "helpers.py")


def test_it_names_the_first_definition_of_a_duplicate_autouse_fixture(
    corpus_findings: list[Finding],
) -> None:
    duplicates = [finding.format() for finding in corpus_findings if finding.code == "WU502"]
    conftest = CORPUS / "conftest.py"
    assert duplicates == [
        f"{CORPUS}/sub/conftest.py:6:1: WU502 autouse fixture 'start_database' already defined "
        f"at {conftest}:11 (keep one definition in the conftest.py shared by both)",
        f"{CORPUS}/sub/conftest.py:11:1: WU502 autouse fixture 'reset_cache' already defined "
        f"at {conftest}:6 (keep one definition in the conftest.py shared by both)",
        f"{CORPUS}/test_autouse.py:23:1: WU502 autouse fixture 'reset_cache' already defined "
        f"at {conftest}:6 (keep one definition in the conftest.py shared by both)",
    ]


def format_one(source: str, path: str = "test_x.py") -> list[str]:
    return [finding.format() for finding in check_source(source, path)]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "import os\nos.environ['A'] = '1'\n",
            "test_x.py:2:1: WU101 os.environ item set outside monkeypatch "
            "(use monkeypatch.setenv())",
        ),
        (
            "import os\ndel os.environ['A']\n",
            "test_x.py:2:5: WU102 os.environ item deleted outside monkeypatch "
            "(use monkeypatch.delenv())",
        ),
        (
            "import os\nos.environ.update(A='1')\n",
            "test_x.py:2:1: WU103 os.environ.update() changes the environment outside "
            "monkeypatch (use monkeypatch.setenv() or monkeypatch.delenv())",
        ),
        (
            "import os\nos.unsetenv('A')\n",
            "test_x.py:2:1: WU104 os.unsetenv() changes the environment outside monkeypatch "
            "(use monkeypatch.setenv() or monkeypatch.delenv())",
        ),
        (
            "from unittest import mock\nmock.patch.dict('os.environ', A='1')\n",
            "test_x.py:2:1: WU105 patch.dict() of os.environ instead of monkeypatch "
            "(use monkeypatch.setenv() or monkeypatch.delenv())",
        ),
        (
            "sock.bind(('127.0.0.1', 8080))\n",
            "test_x.py:1:25: WU201 hard-coded port 8080 passed to bind() "
            "(use the worker_port fixture or worker_utils.lease_port())",
        ),
        (
            "URL = 'redis://127.0.0.1:6379'\n",  # noqa: WU202
            "test_x.py:1:7: WU202 hard-coded port 6379 in 'redis://127.0.0.1:6379' "  # noqa: WU202
            "(use the worker_redis_url or worker_redis fixture)",
        ),
        (
            "import redis\nredis.Redis(port=6379)\n",
            "test_x.py:2:18: WU201 hard-coded port 6379 passed to Redis() "
            "(use the worker_redis_url or worker_redis fixture)",
        ),
        (
            "import psycopg\npsycopg.connect(host='db', port=5432)\n",
            "test_x.py:2:33: WU201 hard-coded port 5432 passed to connect() "
            "(use the worker_postgres_dsn or worker_postgres_url fixture)",
        ),
        (
            "URL = 'postgresql://db:5433/app'\n",  # noqa: WU202
            "test_x.py:1:7: WU202 hard-coded port 5433 in 'postgresql://db:5433' "  # noqa: WU202
            "(use the worker_postgres_dsn or worker_postgres_url fixture)",
        ),
        (
            "import os\nname = os.getenv('PYTEST_XDIST_WORKER')\n",
            "test_x.py:2:8: WU301 PYTEST_XDIST_WORKER read from the environment by hand "
            "(use worker_utils.get_worker_id(), get_worker_num() or get_worker_count())",
        ),
        (
            "n = worker_id.replace('gw', '')\n",
            "test_x.py:1:5: WU302 worker id parsed by hand (use worker_utils.get_worker_num())",
        ),
        (
            "port = worker_num * 100\n",
            "test_x.py:1:8: WU303 resource number computed from the worker number "
            "(use the worker_port fixture or worker_utils.lease_port())",
        ),
        (
            "SOCKET = '/tmp/app.sock'\n",  # noqa: WU401
            "test_x.py:1:10: WU401 fixed temporary path '/tmp/app.sock' "  # noqa: WU401
            "(use tmp_path, worker_tmp_path or run_tmp_path)",
        ),
        (
            "import pytest\n@pytest.fixture(autouse=True, scope='session')\ndef db(): pass\n",
            "test_x.py:3:1: WU501 session-scoped autouse fixture 'db' in a test module "
            "(move it to conftest.py or make it function-scoped)",
        ),
        (
            "import pytest\n"
            "@pytest.fixture(autouse=True)\ndef db(): pass\n"
            "class TestA:\n    @pytest.fixture(autouse=True)\n    def db(self): pass\n",
            "test_x.py:6:5: WU502 autouse fixture 'db' already defined at test_x.py:3 "
            "(rename the method, or keep one definition)",
        ),
        (
            "import redis\nredis.StrictRedis(host='cache', db=15)\n",
            "test_x.py:2:36: WU601 hard-coded Redis database 15 passed to StrictRedis() "
            "(use the worker_redis_url or worker_redis_db fixture)",
        ),
        (
            "URL = 'redis://cache/15'\n",  # noqa: WU602
            "test_x.py:1:7: WU602 hard-coded Redis database 15 in 'redis://cache/15' "  # noqa: WU602
            "(use the worker_redis_url or worker_redis_db fixture)",
        ),
        (
            "def test_it(redis_client):\n    redis_client.execute_command('SELECT', 15)\n",
            "test_x.py:2:5: WU603 SELECT 15 switches to a hard-coded Redis database "
            "(use the worker_redis_url or worker_redis_db fixture)",
        ),
    ],
)
def test_it_formats_each_rule_with_its_message_and_hint(source: str, expected: str) -> None:
    assert format_one(source) == [expected]


def test_it_allows_broad_autouse_fixtures_in_conftest() -> None:
    source = "import pytest\n@pytest.fixture(autouse=True, scope='session')\ndef db(): pass\n"
    assert format_one(source, "conftest.py") == []


def test_it_reports_a_syntax_error_as_a_finding() -> None:
    assert format_one("def broken(:\n    pass\n") == [
        "test_x.py:1:12: WU000 syntax error: invalid syntax (the file was not checked)"
    ]


def test_it_reports_a_nul_byte_as_a_syntax_error() -> None:
    [finding] = check_source(b"x = 1\0\n", "test_x.py")
    assert (finding.code, finding.line, finding.col) == ("WU000", 1, 1)
    assert finding.message.startswith("syntax error: source code")
    assert finding.message.endswith("cannot contain null bytes")


def test_it_reports_an_unreadable_file_and_checks_the_others(tmp_path: Path) -> None:
    (tmp_path / "test_gone.py").symlink_to(tmp_path / "missing.py")
    (tmp_path / "test_bad.py").write_text("P = '/tmp/x'\n")  # noqa: WU401
    findings = check_paths([tmp_path], Settings(root=tmp_path))
    assert [(Path(finding.path).name, finding.code) for finding in findings] == [
        ("test_bad.py", "WU401"),
        ("test_gone.py", "WU001"),
    ]
    assert findings[1].message.startswith("cannot read the file: [Errno 2] No such file")


def test_it_ignores_noqa_for_other_codes_and_honours_listed_ones() -> None:
    source = (
        "import os\n"
        "os.environ['A'] = '1'  # noqa: WU102, WU101\n"
        "os.putenv('A', 'b')  # noqa: WU101\n"
    )
    assert [finding.code for finding in check_source(source, "test_x.py")] == ["WU104"]


@pytest.mark.parametrize(
    ("select", "ignore", "codes"),
    [
        (("WU",), (), ["WU101", "WU201", "WU401"]),
        (("WU1", "WU4"), (), ["WU101", "WU401"]),
        (("WU",), ("WU2",), ["WU101", "WU401"]),
        (("WU201",), ("WU2",), ["WU201"]),
        (("WU",), ("WU",), []),
    ],
)
def test_it_selects_by_the_most_specific_prefix(
    select: tuple[str, ...], ignore: tuple[str, ...], codes: list[str]
) -> None:
    source = "import os\nos.environ['A'] = '1'\nbind(8080)\nP = '/tmp/x'\n"  # noqa: WU401
    settings = Settings(select=select, ignore=ignore)
    assert [finding.code for finding in check_source(source, "test_x.py", settings)] == codes


def test_it_always_reports_syntax_errors_whatever_the_selection() -> None:
    settings = Settings(select=("WU1",), ignore=("WU0",))
    assert [finding.code for finding in check_source("(", "test_x.py", settings)] == ["WU000"]


def test_walking_only_marked_lines_finds_what_a_full_walk_finds(
    corpus_findings: list[Finding], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker_utils.check._Plan.lines", lambda self, text: None)
    assert check_paths([CORPUS], Settings(root=CORPUS)) == corpus_findings


def test_it_reports_a_redis_database_only_in_a_file_that_names_redis() -> None:
    source = "def test_it(client):\n    client.open(db=3)\n    client.select(2)\n"
    assert format_one(source) == []
    assert [finding.code for finding in check_source(f"import redis\n{source}")] == [
        "WU601",
        "WU603",
    ]


def test_it_resolves_a_database_held_by_a_base_class_in_another_statement() -> None:
    source = (
        "import redis\n"
        "class Base:\n"
        "    DB = 9\n"
        "class TestCache(Base):\n"
        "    def test_it(self):\n"
        "        redis.Redis(db=self.DB)\n"
    )
    assert format_one(source) == [
        "test_x.py:6:24: WU601 hard-coded Redis database 9 passed to Redis() "
        "(use the worker_redis_url or worker_redis_db fixture)"
    ]


@pytest.mark.parametrize("expression", ["-" * 200_000 + "1", "+".join(["1"] * 200_000)])
def test_it_reports_a_file_too_deeply_nested_to_parse_and_checks_the_others(
    tmp_path: Path, expression: str
) -> None:
    (tmp_path / "test_deep.py").write_text(f"x = {expression}\n")
    (tmp_path / "test_bad.py").write_text("P = '/tmp/x'\n")  # noqa: WU401
    findings = check_paths([tmp_path], Settings(root=tmp_path))
    assert [(Path(finding.path).name, finding.code) for finding in findings] == [
        ("test_bad.py", "WU401"),
        ("test_deep.py", "WU000"),
    ]
    assert (findings[1].line, findings[1].col) == (1, 1)


def test_it_reports_an_unknown_coding_cookie_at_column_one() -> None:
    [finding] = check_source(b"# coding: nonexistent-codec\nimport os\n", "test_x.py")
    assert (finding.code, finding.line, finding.col) == ("WU000", 1, 1)
    assert finding.message == "syntax error: unknown encoding: nonexistent-codec"


@pytest.mark.parametrize(
    "source",
    [
        "import os\ns = 'ééééé'; os.environ['A'] = '1'\n".encode(),
        "# -*- coding: latin-1 -*-\nimport os\ns = 'ééééé'; os.environ['A'] = '1'\n".encode(
            "latin-1"
        ),
        "import os\ns = 'ééééé'; os.environ['A'] = '1'\n",
    ],
)
def test_it_counts_columns_in_characters(source: str | bytes) -> None:
    [finding] = check_source(source, "test_x.py")
    assert (finding.code, finding.col) == ("WU101", 14)


def test_it_skips_a_fifo_in_a_walked_directory(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "test_fifo.py")
    (tmp_path / "test_bad.py").write_text("P = '/tmp/x'\n")  # noqa: WU401
    findings = check_paths([tmp_path], Settings(root=tmp_path))
    assert [(Path(finding.path).name, finding.code) for finding in findings] == [
        ("test_bad.py", "WU401")
    ]


def test_it_reports_a_fifo_named_on_the_command_line_as_unreadable(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "test_fifo.py")
    [finding] = check_paths([tmp_path / "test_fifo.py"], Settings(root=tmp_path))
    assert finding.format() == (
        f"{tmp_path}/test_fifo.py:1:1: WU001 cannot read the file: not a regular file: "
        f"{tmp_path}/test_fifo.py (the file was not checked)"
    )


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"])
def test_it_checks_files_whatever_their_line_endings(newline: str) -> None:
    source = newline.join(
        ["import os", "def test_a():", "    x = 1", "    os.environ['A'] = '1'", ""]
    )
    assert [(finding.code, finding.line) for finding in check_source(source)] == [("WU101", 4)]


@pytest.mark.parametrize("separator", ["\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
def test_it_numbers_noqa_lines_as_ast_does(separator: str) -> None:
    source = (
        f"import os\nS = 'a{separator}b'  # {separator}\n"
        "def test_a():\n"
        "    os.environ['A'] = '1'  # noqa: WU101\n"
        "    os.environ['B'] = '1'\n"
    )
    assert [(finding.code, finding.line) for finding in check_source(source)] == [("WU101", 5)]


def test_it_reads_noqa_on_lines_ended_by_a_carriage_return() -> None:
    source = "import os\rdef test_a():\r    os.environ['A'] = '1'  # noqa: WU101\r    x = 1\r"
    assert check_source(source) == []


def test_it_ignores_noqa_inside_a_string_literal() -> None:
    source = "import os\nx = '# noqa'; os.environ['A'] = '1'\n"
    assert [finding.code for finding in check_source(source)] == ["WU101"]


@pytest.mark.parametrize(
    ("comment", "silenced"),
    [
        ("# noqa", True),
        ("# NOQA:WU101", True),
        ("# noqa:WU101 because the test owns the process", True),
        ("# noqa : WU101", True),
        ("# type: ignore  # noqa: WU101", True),
        ("# noqa: WU1", False),
        ("# noqa: E501", False),
        ("# noqa: WU-101", False),
        ("# noqa: see below", False),
        ("# noqa:", False),
    ],
)
def test_a_noqa_comment_silences_only_the_codes_it_lists(comment: str, silenced: bool) -> None:
    source = f"import os\nos.environ['A'] = '1'  {comment}\n"
    assert [finding.code for finding in check_source(source)] == ([] if silenced else ["WU101"])


def codes_and_lines(source: str, path: str = "test_x.py") -> list[tuple[str, int]]:
    return [(finding.code, finding.line) for finding in check_source(source, path)]


def test_a_port_ends_at_a_non_word_character() -> None:
    source = "LABEL = 'localhost:6379_a1b2c3d4'\nURL = 'http://localhost:8080/x'\n"  # noqa: WU202
    assert codes_and_lines(source) == [("WU202", 2)]


def test_it_finds_a_bare_ipv4_address_with_a_port_on_a_line_of_its_own() -> None:
    source = "import os\nA = '10.0.0.5:6379'\nD = ['192.168.1.20:11211']\nV = '1.2.3'\n"  # noqa: WU202
    assert codes_and_lines(source) == [("WU202", 2), ("WU202", 3)]


def test_it_allows_tmp_as_a_parent_or_a_prefix() -> None:
    source = (
        "import tempfile\n"  # noqa: WU401
        "d = tempfile.mkdtemp(dir='/tmp')\n"
        "f = tempfile.NamedTemporaryFile(dir='/tmp')\n"
        "ok = path.startswith('/tmp')\n"
        "ok = path.startswith(('/tmp', '/var/tmp'))\n"
        "p = os.path.join('/tmp', 'cache')\n"
        "q = tempfile.mkdtemp(prefix='/tmp/x')\n"
    )
    assert codes_and_lines(source) == [("WU401", 6), ("WU401", 7)]


def test_it_finds_environment_writes_through_merges_bytes_and_unpacking() -> None:
    source = (
        "import os\n"
        "os.environ |= {'A': '1'}\n"
        "os.environb[b'E'] = b'1'\n"
        "a, os.environ['X'] = 1, '2'\n"
        "[b, *os.environ['Y']] = 1, '2'\n"
        "for os.environ['I'] in ['a']: pass\n"
        "with open('x') as os.environ['J']: pass\n"
        "env = os.environ | {'A': '1'}\n"
    )
    assert codes_and_lines(source) == [("WU101", line) for line in range(2, 8)]


def test_a_worker_id_keeps_its_taint_through_or() -> None:
    source = (
        "import os\n"
        "def test_x():\n"
        "    wid = os.environ.get('PYTEST_XDIST_WORKER') or 'gw0'\n"
        "    num = int(wid[2:])\n"
        "    port = 8000 + num * 10\n"
    )
    assert codes_and_lines(source) == [("WU301", 3), ("WU302", 4), ("WU303", 5)]


def test_it_reports_select_only_on_what_looks_like_a_redis_client() -> None:
    source = (
        "import redis\n"
        "import sqlalchemy as sa\n"
        "def test_it(redis_client, client, conn, selector, query):\n"
        "    r = redis.Redis()\n"
        "    r.select(3)\n"
        "    redis_client.select(4)\n"
        "    client.select(5)\n"
        "    conn.select(6)\n"
        "    redis.Redis().select(7)\n"
        "    sa.select(1)\n"
        "    selector.select(5)\n"
        "    query.select(2)\n"
        "    sa.select(1).select(2)\n"
    )
    assert codes_and_lines(source) == [("WU603", line) for line in range(5, 10)]


def test_a_name_holds_a_worker_number_only_in_its_own_function() -> None:
    source = (
        "N = int(worker_id[2:])\n"
        "def test_a(worker_id):\n"
        "    n = int(worker_id[2:])\n"
        "    assert n * 2\n"
        "def test_b(items):\n"
        "    n = len(items)\n"
        "    assert n * 2 == 4\n"
        "    total = n % 3\n"
        "    port = N * 10\n"
        "def test_c(N):\n"
        "    port = N * 10\n"
    )
    assert codes_and_lines(source) == [("WU302", 1), ("WU302", 3), ("WU303", 4), ("WU303", 9)]


AUTOUSE = "@pytest.fixture(autouse=True)\ndef setup(): ...\n"
AUTOUSE_METHOD = "    @pytest.fixture(autouse=True)\n    def setup(self): ...\n"


def test_autouse_methods_of_different_classes_never_meet() -> None:
    source = f"import pytest\nclass TestA:\n{AUTOUSE_METHOD}class TestB:\n{AUTOUSE_METHOD}"
    assert codes_and_lines(source) == []


def test_an_autouse_method_twice_in_one_class_or_in_a_nested_class_is_reported() -> None:
    source = (
        "import pytest\n"
        f"class TestA:\n{AUTOUSE_METHOD}{AUTOUSE_METHOD}"
        f"class TestB:\n{AUTOUSE_METHOD}"
        "    class TestInner:\n"
        "        @pytest.fixture(autouse=True)\n"
        "        def setup(self): ...\n"
    )
    assert codes_and_lines(source) == [("WU502", 6), ("WU502", 12)]


def test_autouse_fixtures_of_sibling_modules_never_meet(tmp_path: Path) -> None:
    for name in ("test_a.py", "test_b.py"):
        (tmp_path / name).write_text(f"import pytest\n{AUTOUSE}")
    assert check_paths([tmp_path], Settings(root=tmp_path)) == []


def test_an_autouse_fixture_overriding_a_conftest_one_above_it_is_reported(
    tmp_path: Path,
) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "sub" / "conftest.py").write_text(f"import pytest\n{AUTOUSE}")
    (tmp_path / "sub" / "deeper" / "test_a.py").write_text(f"import pytest\n{AUTOUSE}")
    (tmp_path / "sub" / "test_b.py").write_text(f"import pytest\nclass TestB:\n{AUTOUSE_METHOD}")
    (tmp_path / "other" / "conftest.py").write_text(f"import pytest\n{AUTOUSE}")
    findings = check_paths([tmp_path], Settings(root=tmp_path))
    conftest = tmp_path / "sub" / "conftest.py"
    assert [finding.format() for finding in findings] == [
        f"{tmp_path}/sub/deeper/test_a.py:3:1: WU502 autouse fixture 'setup' already defined "
        f"at {conftest}:3 (keep one definition in the conftest.py shared by both)",
        f"{tmp_path}/sub/test_b.py:4:5: WU502 autouse fixture 'setup' already defined "
        f"at {conftest}:3 (rename the method, or keep one definition)",
    ]
