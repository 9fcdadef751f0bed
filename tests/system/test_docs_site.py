"""The docs site builds strictly, and its API reference covers the public API.

``mkdocs build --strict`` (what ``python3 dev.py docs`` runs) fails on a broken link
or anchor, a cross-reference to nothing, a docstring reference that does not resolve
and a missing included file (CHANGELOG.md, CONTRIBUTING.md): any warning fails it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import bucket_logging
import bucket_logging.testing

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: The pages the site is organised in (others may be added; these stay).
PAGES = [
    "index.md",
    "getting-started.md",
    "tags-and-rules.md",
    "configuration.md",
    "delivery.md",
    "spool.md",
    "pipelines.md",
    "testing.md",
    "performance.md",
    "architecture.md",
    "contributing.md",
    "reference.md",
    "changelog.md",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return out


def test_every_page_is_built(site: Path) -> None:
    for page in PAGES:
        assert (DOCS / page).exists(), page
        built = site / ("index.html" if page == "index.md" else f"{page[:-3]}/index.html")
        assert built.exists(), page


def test_the_reference_documents_every_public_name(site: Path) -> None:
    text = (DOCS / "reference.md").read_text(encoding="utf-8")
    html = (site / "reference" / "index.html").read_text(encoding="utf-8")
    for name in bucket_logging.__all__:
        assert f"::: bucket_logging.{name}\n" in text, name
        assert f'id="bucket_logging.{name}"' in html, name
    for name in bucket_logging.testing.__all__:
        assert f'id="bucket_logging.testing.{name}"' in html, name


def test_docstring_roles_become_links_to_public_names(site: Path) -> None:
    html = (site / "reference" / "index.html").read_text(encoding="utf-8")
    # No reStructuredText role is left as text...
    assert not re.search(r":(class|func|meth|attr|mod|data|exc):`", html)
    # ... one naming a public object links to its public entry (BucketHandler.flush's
    # docstring names :meth:`BucketProcessor.flush <bucket_logging.BucketProcessor.flush>`) ...
    handler = html[html.index('id="bucket_logging.BucketHandler"') :]
    handler = handler[: handler.index('id="bucket_logging.BucketProcessor"')]
    assert 'href="#bucket_logging.BucketProcessor.flush"' in handler
    # ... and a literal block (``::``) is a code block, its colons said once.
    assert "::</p>" not in html


def test_changelog_and_contributing_are_included_not_copied(site: Path) -> None:
    changelog = (site / "changelog" / "index.html").read_text(encoding="utf-8")
    assert "Unreleased" in changelog
    assert (DOCS / "changelog.md").read_text(encoding="utf-8").count("\n") < 5
    contributing = (site / "contributing" / "index.html").read_text(encoding="utf-8")
    source = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    [title] = [line[2:].strip() for line in source.splitlines() if line.startswith("# ")][:1]
    assert f"{title}<" in contributing
    assert (DOCS / "contributing.md").read_text(encoding="utf-8").count("\n") < 10


def test_roles_link_public_names_and_literal_blocks_are_fenced() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import griffe_sphinx_roles as ext
    finally:
        sys.path.remove(str(ROOT / "tools"))
    public = {
        "bucket_logging._sender.BulkSender": "bucket_logging.BulkSender",
        "bucket_logging.BulkSender": "bucket_logging.BulkSender",
        "bucket_logging._sender.BulkSender.flush": "bucket_logging.BulkSender.flush",
        "bucket_logging.BulkSender.flush": "bucket_logging.BulkSender.flush",
    }
    module = SimpleNamespace(path="bucket_logging._sender", parent=None)
    method = SimpleNamespace(path="bucket_logging._sender.BulkSender.close", parent=None)
    method.parent = SimpleNamespace(path="bucket_logging._sender.BulkSender", parent=module)
    text = (
        ":class:`~bucket_logging._sender.BulkSender`, :meth:`flush`, "
        ":func:`~bucket_logging._tracker.claim`, :class:`Moved <bucket_logging._gone.BulkSender>`"
    )
    assert ext._roles(text, method, public) == (
        "[`BulkSender`][bucket_logging.BulkSender], "
        "[`flush`][bucket_logging.BulkSender.flush], "
        "`claim`, [`Moved`][bucket_logging.BulkSender]"
    )
    assert ext._literal_blocks("Like this::\n\n    f(1)\n\nor::\n\n    [ini]\n    a = 1\n") == (
        "Like this:\n\n```python\nf(1)\n```\n\nor:\n\n```text\n[ini]\na = 1\n```\n"
    )


def test_the_settings_table_shows_types_without_backslashes(site: Path) -> None:
    html = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    table = html[html.index("<table>") : html.index("</table>")]
    assert "\\|" not in table and "\\&#124;" not in table
    cells = re.findall(r"<td><code>(str (?:\||&#124;) None)</code></td>", table)
    assert len(cells) >= 3, table[:2000]  # tracking_key, base_url, api
    assert "<td><code>tracking_key</code></td>" in table


def test_names_in_tables_are_not_broken_mid_word(site: Path) -> None:
    html = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    [href] = re.findall(r'<link rel="stylesheet" href="([^"]*extra\.css)"', html)
    css = (site / "configuration" / href).resolve().read_text(encoding="utf-8")
    rule = css[css.index("table:not([class]) td > code") :]
    rule = rule[: rule.index("}")]
    assert "white-space: nowrap" in rule and "word-break: keep-all" in rule


def test_the_site_loads_nothing_from_a_third_party(site: Path) -> None:
    """No web fonts, scripts or styles from elsewhere: links to other sites are fine."""
    in_html = re.compile(
        r"""<(?:link|script|img|iframe|source)\b[^>]*\b(?:href|src)=["'](?:https?:)?//"""
        r"""|fonts\.googleapis|fonts\.gstatic""",
        re.IGNORECASE,
    )
    in_css = re.compile(r"""url\(\s*["']?(?:https?:)?//|@import\s+["'](?:https?:)?//""")
    found = []
    for path in site.rglob("*"):
        loads = {".html": in_html, ".css": in_css, ".js": in_html}.get(path.suffix)
        if loads is not None and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            found += [f"{path.relative_to(site)}: {m.group(0)}" for m in loads.finditer(text)]
    assert found == []


def test_getting_started_says_what_a_processor_adds_and_the_django_user_side(
    site: Path,
) -> None:
    html = (site / "getting-started" / "index.html").read_text(encoding="utf-8")
    assert "&quot;bucket_tracked&quot;: true" in html or '"bucket_tracked": true' in html
    django = html[html.index('id="django"') :]
    assert "request.user.pk" in django and "def user_id(self, request)" in django
