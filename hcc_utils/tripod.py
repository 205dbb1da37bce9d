"""The book's TRIPOD+AI chapter (``tripod.md``): the reporting checklist a journal asks for, mapped onto this report.

TRIPOD+AI (Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement: updated guidance for reporting clinical
prediction models that use regression or machine learning methods. BMJ 2024;385:e078378) has 27 items, 52 with
their sub-items (``CHECKLIST``; each paraphrased here, see the statement for the wording). Each item is either
answered in this report, as one or more targets (a page of the book and a heading on it), or is to be supplied by
the authors (ethics, funding, registration, ...: what no analysis run can know).

Links are MyST links relative to the book root, ``[06 · Table 4: the models](notebooks/06_comparison.ipynb#slug)``,
the slug computed from the heading as MyST-Parser does with ``myst_heading_anchors: 3`` (headings of level 1-3
get anchors; ``slugify``, ``page_anchors``). A heading must be found in the book's sources (the markdown cells of
the notebooks, the ``.md`` pages); when it is not, the link goes to the page alone, never to a missing anchor, and
``missing_targets`` lists the fallback. The model card and Provenance pages are optional: targets on them are
left out when the book has no such page.

Example::

    >>> (book / "tripod.md").write_text(tripod_page(book))   # after the other pages are in book/
    >>> missing_targets(book)
    []
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from hcc_utils.tripod_items import CHECKLIST, INTRO, METHODS, Item, Target

OPTIONAL_PAGES = ("model_card.md", "provenance.md")
"""Pages a book may lack (no model bundle written; an older runner): their targets are left out silently."""
PAGE_LABELS = {METHODS: "Methods", "model_card.md": "Model card", "provenance.md": "Provenance",
               INTRO: "Landing page"}
SUPPLIED = "to be supplied by the authors"
ANCHOR_LEVELS = 3
"""``myst_heading_anchors`` of the book's ``_config.yml``: headings of level 1 to this get a slug."""
CITATION = ("Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement: updated guidance for reporting clinical "
            "prediction models that use regression or machine learning methods. BMJ 2024;385:e078378.")

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SLUG_CLEAN = re.compile(r"[^\w\u4e00-\u9fff\- ]")


@dataclass(frozen=True)
class Link:
    """One resolved target: the text shown, the href relative to the book root, and whether the heading was
    found (``False``: the href is the page alone)."""

    text: str
    href: str
    found: bool


def slugify(title: str) -> str:
    """MyST-Parser's default heading slug (``myst_parser.mdit_to_docutils.base.default_slugify``): lower case,
    spaces to hyphens, every character but letters, digits, ``_`` and ``-`` dropped."""
    return _SLUG_CLEAN.sub("", title.lower().replace(" ", "-"))


def heading_title(inline: str) -> str:
    """The text MyST slugs for a heading's inline Markdown: the text and code spans, without markup (links keep
    their text; images and inline math are dropped)."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", inline)
    text = re.sub(r"\$[^$]+\$", "", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(`+)(.+?)\1", lambda m: m.group(2).strip() if m.group(2).strip() else m.group(2), text)
    text = re.sub(r"(\*{1,3})(\S(?:.*?\S)?)\1", r"\2", text)
    text = re.sub(r"(?<!\w)(_{1,3})(\S(?:.*?\S)?)\1(?!\w)", r"\2", text)
    text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)
    return html.unescape(text).strip()


def markdown_headings(markdown: str) -> list[tuple[int, str]]:
    """The ATX headings (level, title) of a Markdown text, outside fenced code blocks."""
    found, fence = [], None
    for line in markdown.splitlines():
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            continue
        match = _ATX.match(line)
        if match:
            found.append((len(match.group(1)), heading_title(match.group(2) or "")))
    return found


def page_headings(path: Path) -> list[tuple[int, str]]:
    """The headings of a book page: a ``.md`` file, or the markdown cells of an ``.ipynb`` in order."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        found = []
        for cell in cells:
            if cell.get("cell_type") == "markdown":
                source = cell.get("source", "")
                found += markdown_headings(source if isinstance(source, str) else "".join(source))
        return found
    return markdown_headings(path.read_text(encoding="utf-8"))


def page_anchors(path: Path, levels: int = ANCHOR_LEVELS) -> dict[str, str]:
    """Heading title -> its MyST anchor on the page (the first heading of that title; a repeated slug gets
    ``-1``, ``-2``, ... as MyST numbers it)."""
    anchors, slugs = {}, set()
    for level, title in page_headings(path):
        if level > levels:
            continue
        slug = base = slugify(title)
        k = 1
        while slug in slugs:
            slug = f"{base}-{k}"
            k += 1
        slugs.add(slug)
        anchors.setdefault(title, slug)
    return anchors


def page_label(book_dir: Path, page: str) -> str:
    """A page's name in link text: its label, or a notebook's number (``06``)."""
    if page in PAGE_LABELS:
        return PAGE_LABELS[page]
    return Path(page).stem.split("_")[0]


def page_title(book_dir: Path, page: str) -> str:
    """A page's H1 (a notebook's ``06 · Model comparison``), else its label."""
    for level, title in page_headings(book_dir / page):
        if level == 1:
            return title
    return page_label(book_dir, page)


def _escape(text: str) -> str:
    return re.sub(r"([\[\]|])", r"\\\1", text)


class _Book:
    """The book's pages as read once: which exist, and each page's anchors."""

    def __init__(self, book_dir: Path) -> None:
        self.dir = Path(book_dir)
        self._anchors: dict[str, dict[str, str]] = {}

    def exists(self, page: str) -> bool:
        return (self.dir / page).is_file()

    def anchors(self, page: str) -> dict[str, str]:
        if page not in self._anchors:
            self._anchors[page] = page_anchors(self.dir / page)
        return self._anchors[page]

    def link(self, target: Target) -> Link:
        if target.heading is None:
            return Link(page_title(self.dir, target.page), target.page, True)
        slug = self.anchors(target.page).get(target.heading)
        if slug is None:
            return Link(page_title(self.dir, target.page), target.page, False)
        return Link(f"{page_label(self.dir, target.page)} · {target.heading}", f"{target.page}#{slug}", True)


def item_links(item: Item, book: _Book) -> tuple[list[Link], list[str]]:
    """An item's links in this book, and what could not be linked as asked (for ``missing_targets``)."""
    links, missing = [], []
    for target in item.targets:
        if not book.exists(target.page):
            if target.page not in OPTIONAL_PAGES:
                missing.append(f"item {item.number}: page {target.page} is not in the book")
            continue
        link = book.link(target)
        if not link.found:
            missing.append(f"item {item.number}: no heading {target.heading!r} (level 1-{ANCHOR_LEVELS}) in "
                           f"{target.page}; linked to the page")
        if link.href not in (x.href for x in links):
            links.append(link)
    return links, missing


def missing_targets(book_dir: Path) -> list[str]:
    """Every target that ``tripod_page`` could not link as asked: a heading not found (the page linked instead),
    or a page the book lacks that it always has (a notebook, the Methods chapter)."""
    book = _Book(book_dir)
    return [line for item in CHECKLIST for line in item_links(item, book)[1]]


def where_answered(item: Item, book: _Book) -> str:
    """The table's last cell: the links, or "to be supplied by the authors" with what is needed."""
    links = item_links(item, book)[0] if item.targets else []
    if not links:
        return f"**{SUPPLIED}**" + (f": {item.authors}" if item.authors else "")
    text = "; ".join(f"[{_escape(link.text)}]({link.href})" for link in links)
    return text + (f" ({_escape(item.note)})" if item.note else "")


def tripod_page(book_dir: Path) -> str:
    """The TRIPOD+AI chapter's Markdown for the book in ``book_dir`` (module docstring); write it after every other
    page is in place, so that its links are checked against them."""
    book = _Book(book_dir)
    rows = [(item, where_answered(item, book)) for item in CHECKLIST]
    supplied = sum(cell.startswith(f"**{SUPPLIED}") for _, cell in rows)
    answered, items = len(CHECKLIST) - supplied, len({item.number.rstrip("abcdefg") for item in CHECKLIST})
    lines = ["# TRIPOD+AI checklist", "",
             "TRIPOD+AI, the reporting guideline for studies that develop or evaluate a clinical prediction model "
             f"(reference below), has {items} items, {len(CHECKLIST)} with their sub-items. Each is paraphrased "
             f"here, with where this report answers it: {answered} are answered in the report (follow the links), "
             f"{supplied} are **{SUPPLIED}**, because no analysis run can know them (the clinical background, "
             "ethics, funding, registration, data and code availability, ...). A journal checks against the "
             "statement's own wording.", "", f"Reference: {CITATION}", ""]
    section = None
    for item, cell in rows:
        if item.section != section:
            section = item.section
            lines += ["", f"## {section}", "", "| item | topic | what it asks for | where it is answered |",
                      "| --- | --- | --- | --- |"]
        lines.append(f"| {item.number} | {_escape(item.topic)} | {_escape(item.asks)} | {cell} |")
    return "\n".join(lines) + "\n"
