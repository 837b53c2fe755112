"""MkDocs hooks: links that work both on a code host and on the site."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# The pages link to the records as ../adr/..., which resolves in the repository;
# the site holds them under docs/adr (a link to ../adr).
_ADR_LINK = re.compile(r"\]\(\.\./adr/")


def on_config(config: Any) -> Any:
    """List every design decision record under the nav's section, after its index."""
    records = sorted(Path(config.docs_dir, "adr").glob("[0-9][0-9][0-9][0-9]-*.md"))
    for item in config.nav:
        if isinstance(item, dict) and "Design decisions" in item:
            item["Design decisions"] = ["adr/README.md", *(f"adr/{r.name}" for r in records)]
    return config


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri.count("/") == 0:
        return _ADR_LINK.sub("](adr/", markdown)
    return markdown


# Docstrings use Sphinx roles (:func:`run_once`), which Markdown renders as the
# role's name followed by the code: keep the code.
_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):(?=<code>)")


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    return _ROLE.sub("", html)
