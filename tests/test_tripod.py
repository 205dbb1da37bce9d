"""The TRIPOD+AI chapter (hcc_utils.tripod, hcc_utils.tripod_items): every item once, each linked or left to the
authors, every heading it names found in the project's own pages, and a book with it that Sphinx builds without a
warning, every anchor present."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _provenance_run import provenance_run
from markdown_it import MarkdownIt
from myst_parser.mdit_to_docutils.base import default_slugify

from hcc_utils.provenance_chapter import provenance_page
from hcc_utils.runner import NOTEBOOKS
from hcc_utils.tripod import SUPPLIED, missing_targets, page_headings, slugify, tripod_page
from hcc_utils.tripod_items import CARD, CHECKLIST, Item, Target

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = (["1", "2", "3a", "3b", "3c", "4", "5a", "5b", "6a", "6b", "6c", "7", "8a", "8b", "8c", "9a", "9b",
              "9c", "10", "11"] + [f"12{x}" for x in "abcdefg"] + ["13", "14", "15", "16", "17"]
             + [f"18{x}" for x in "abcdef"] + ["19", "20a", "20b", "20c", "21", "22", "23a", "23b", "24", "25", "26",
                                               "27a", "27b", "27c"])
"""TRIPOD+AI's items and sub-items as numbered in the statement (BMJ 2024;385:e078378, table 2)."""


@pytest.fixture
def book(tmp_path) -> Path:
    """A book folder as the runner lays it out: the project's (unexecuted) notebooks, docs/method.md (the
    Methods page, at the same path), an intro, and the Provenance page of a run; no model card (no bundle)."""
    folder = tmp_path / "book"
    shutil.copytree(ROOT / "notebooks", folder / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (folder / "docs").mkdir(parents=True)
    shutil.copy2(ROOT / "docs" / "method.md", folder / "docs" / "method.md")
    (folder / "intro.md").write_text("# Results at a glance\n\nThe landing page.\n", encoding="utf-8")
    (folder / "provenance.md").write_text(provenance_page(provenance_run(tmp_path)), encoding="utf-8")
    return folder


def rows(page: str) -> dict[str, str]:
    """Item number -> its table row."""
    found = {}
    for line in page.splitlines():
        match = re.match(r"^\| (\d+[a-g]?) \|", line)
        if match:
            assert match.group(1) not in found, f"item {match.group(1)} twice"
            found[match.group(1)] = line
    return found


def test_the_checklist_is_the_published_one():
    assert [item.number for item in CHECKLIST] == PUBLISHED
    assert len({re.sub("[a-g]$", "", n) for n in PUBLISHED}) == 27 and len(PUBLISHED) == 52


def test_an_item_is_either_answered_or_left_to_the_authors():
    with pytest.raises(ValueError, match="item 99"):
        Item("99", "Methods", "x", "y")
    with pytest.raises(ValueError, match="item 99"):
        Item("99", "Methods", "x", "y", (Target("docs/method.md"),), authors="z")


def test_page_has_every_item_once_linked_or_supplied(book):
    page = tripod_page(book)
    found = rows(page)
    assert list(found) == PUBLISHED
    for row in found.values():
        where = row.rsplit(" | ", 1)[1]
        linked, supplied = "](" in where, SUPPLIED in where
        assert linked != supplied, row
    answered = sum("](" in row.rsplit(" | ", 1)[1] for row in found.values())
    assert f"{answered} are answered in the report" in page and f"{52 - answered} are **{SUPPLIED}**" in page


def test_every_target_is_found_in_the_project_pages(book):
    assert missing_targets(book) == []


def test_a_heading_that_is_gone_links_the_page_and_is_listed(book):
    methods = book / "docs" / "method.md"
    methods.write_text(methods.read_text().replace("## 8. Protocols", "## 8. The protocols"))
    missing = missing_targets(book)
    assert missing and all("'8. Protocols'" in line for line in missing)
    assert "[Methods](docs/method.md)" in rows(tripod_page(book))["12a"]
    (book / "notebooks" / "07_shap.ipynb").unlink()
    (book / "notebooks" / "06_comparison.ipynb").unlink()
    assert any("page notebooks/06_comparison.ipynb is not in the book" in x for x in missing_targets(book))


def test_model_card_targets_are_headings_of_the_model_card():
    source = (ROOT / "hcc_utils" / "model_card.py").read_text()
    headings = {t.heading for item in CHECKLIST for t in item.targets if t.page == CARD}
    assert headings
    for heading in headings:
        assert f'"## {heading}"' in source, heading


def test_notebook_pages_are_the_books_notebooks():
    pages = {t.page for item in CHECKLIST for t in item.targets if t.page.startswith("notebooks/")}
    assert pages <= {f"notebooks/{name}.ipynb" for name, _ in NOTEBOOKS}


def markdown_it_titles(markdown: str) -> list[tuple[int, str]]:
    """Headings as MyST-Parser reads them: markdown-it's inline text and code children (compute_unique_slug)."""
    tokens = MarkdownIt("commonmark").parse(markdown)
    return [(int(tok.tag[1]), "".join(c.content for c in tokens[k + 1].children or []
                                      if c.type in ("text", "code_inline")))
            for k, tok in enumerate(tokens) if tok.type == "heading_open"]


def test_headings_and_slugs_are_mysts(book):
    for path in [book / "docs" / "method.md", book / "provenance.md", *sorted((book / "notebooks").glob("*.ipynb"))]:
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text())["cells"]
            expected = [heading for c in cells if c["cell_type"] == "markdown"
                        for heading in markdown_it_titles("".join(c["source"]))]
        else:
            expected = markdown_it_titles(path.read_text())
        assert page_headings(path) == expected, path.name
        for _, title in expected:
            assert slugify(title) == default_slugify(title)
    tricky = "The `prob_oof` of **DL-MIL** [link](x.md) \\* 5 & more"
    assert markdown_it_titles(f"## {tricky}\n") == [(2, "The prob_oof of DL-MIL link * 5 & more")]
    assert page_headings(_write(book / "t.md", f"## {tricky}\n```\n# not a heading\n```\n")) == \
        markdown_it_titles(f"## {tricky}\n")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow
def test_book_with_the_checklist_builds_without_warnings(book):
    """A jupyter-book build (-W -n) of the book with tripod.md: every link resolves and every anchor exists."""
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    assert config["sphinx"]["config"]["myst_heading_anchors"] == 3
    (book / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    for folder in ("_ext", "_static"):  # the config's local extension and styles, as hcc_utils.book copies them
        shutil.copytree(ROOT / "book" / folder, book / folder)
    chapters = [f"notebooks/{name}" for name, _ in NOTEBOOKS] + ["docs/method", "provenance", "tripod"]
    toc = {"format": "jb-book", "root": "intro", "chapters": [{"file": c} for c in chapters]}
    (book / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    (book / "tripod.md").write_text(tripod_page(book), encoding="utf-8")
    jb = Path(sys.executable).with_name("jupyter-book")
    done = subprocess.run([str(jb) if jb.exists() else "jupyter-book", "build", "-W", "-n", "--keep-going",
                           str(book), "--builder", "html"], capture_output=True, text=True, timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "WARNING" not in log, log[-4000:]
    html = book / "_build" / "html"
    page = (html / "tripod.html").read_text()
    hrefs = set(re.findall(r'href="((?:notebooks/|docs/)?[\w.-]+\.html)#([\w-]+)"', page))
    assert len(hrefs) > 30
    for page, anchor in hrefs:
        assert f'id="{anchor}"' in (html / page).read_text(), f"{page}#{anchor}"
