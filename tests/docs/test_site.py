"""The documentation site: built strictly, served, and read in headless Chromium."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docs._browser import Browser, find_chromium
from worker_utils import plugin

ROOT = Path(__file__).resolve().parents[2]
#: The page's title, without the permalink sign after it.
H1 = "document.querySelector('article h1').firstChild.textContent"
QUIET = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about its successor


def _mkdocs(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", *args],
        cwd=cwd,
        env=QUIET,
        capture_output=True,
        text=True,
    )


def build_site() -> dict[str, Any]:
    """Build the site into site/ (once per run, through run_once)."""
    started = time.monotonic()
    result = _mkdocs()
    return {
        "returncode": result.returncode,
        "output": result.stderr,
        "seconds": round(time.monotonic() - started, 1),
        "dir": str(ROOT / "site"),
    }


@pytest.fixture(scope="session")
def site(run_once: Any) -> Path:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]' to build the site")
    built = run_once("docs-site", build_site)
    assert built["returncode"] == 0, built["output"]
    return Path(built["dir"])


def test_the_site_builds_strictly_with_a_page_for_every_doc(site: Path) -> None:
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")} - {"index"}
    assert sorted(p for p in pages if not (site / p / "index.html").exists()) == []
    assert (site / "adr" / "0016-documentation-site" / "index.html").exists()


def test_the_reference_renders_every_public_name_and_fixture(site: Path) -> None:
    import worker_utils

    html = (site / "reference" / "index.html").read_text()
    names = [f"worker_utils.{name}" for name in worker_utils.__all__]
    names += [
        f"{module.__name__}.{name}"
        for module in plugin.resource_plugins()
        for name, obj in vars(module).items()
        if hasattr(obj, "_fixture_function_marker") and not name.startswith("_")
    ]
    assert len(names) > 40
    assert [name for name in names if f'id="{name}"' not in html] == []


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\nSee [the guide](gude.md).\n")
    # The project's configuration, with its checks, on a one-page site.
    (tmp_path / "mkdocs.yml").write_text(
        f"INHERIT: {ROOT / 'mkdocs.yml'}\nnav: [index.md]\nhooks: []\n"
        "plugins: [search]\nexclude_docs: ''\n"
    )
    result = _mkdocs("-d", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "WARNING -  Doc file 'index.md' contains a link 'gude.md', but the target is not found "
        "among documentation files."
    ) in result.stderr


@pytest.fixture
def served(site: Path, worker_port: Any) -> Iterator[str]:
    """The built site over HTTP on a leased port of 127.0.0.1."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", worker_port()), functools.partial(Quiet, directory=str(site))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def browser() -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium): no browser test")
    chromium = Browser(binary)
    yield chromium
    chromium.close()


def test_the_pages_render_and_navigation_and_search_work(
    site: Path, served: str, browser: Browser
) -> None:
    shots = site / "screenshots"
    browser.open(served)
    assert browser.evaluate(H1) == "worker_utils"
    assert browser.evaluate("document.querySelectorAll('pre code').length") >= 3
    browser.screenshot(shots / "home.png")

    # The sidebar link to a resource page, clicked with the mouse.
    browser.click('.md-sidebar--primary a.md-nav__link[href$="redis/"]')
    browser.wait_for("location.pathname.endsWith('/redis/')")
    browser.wait_for("document.readyState === 'complete'")
    assert browser.evaluate(H1) == "Redis"
    browser.screenshot(shots / "redis.png")

    browser.open(served + "reference/")
    assert browser.evaluate(H1) == "API reference"
    browser.wait_for("!!document.getElementById('worker_utils.redis.plugin.worker_redis_url')")
    browser.screenshot(shots / "reference.png")

    # Search for a fixture by name: its resource page is among the results.
    browser.click(".md-search__input")
    browser.type("worker_redis_url")
    hrefs = browser.wait_for(
        "(() => { const links = [...document.querySelectorAll('.md-search-result__item a')]"
        ".map(a => a.getAttribute('href'));"
        " return links.some(h => h.includes('redis/')) && links; })()"
    )
    # The results fade in: shoot them once they are opaque.
    browser.wait_for(
        "getComputedStyle(document.querySelector('.md-search__output')).opacity === '1'"
    )
    browser.screenshot(shots / "search.png")
    assert any("reference/" in href for href in hrefs), hrefs
