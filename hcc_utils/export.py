"""``python -m hcc_utils export``: a run's rendered report as one PDF and as a zipped static site (issue 17, item 7).

The PDF is Chromium's print of each page of the book in the table of contents' order (the landing page, then each
chapter), joined with pypdf, one bookmark per page. The zip holds the whole ``book/_build/html`` site with paths
relative to its root, so it unpacks onto any static host (GitHub Pages, a web server's folder, ...). Both go to a
new folder of the run, ``export/`` (``export-2/``, ... when it exists): a run's files are never overwritten.
"""

from __future__ import annotations

import io
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from hcc_utils.artifacts import EXPORT_FOLDER, EXPORT_LANDING, EXPORT_PDF, EXPORT_SITE

BOOK = "book"
SITE = Path(BOOK) / "_build" / "html"


class ExportError(ValueError):
    """A run folder that cannot be exported (no rendered book, a page missing, an output that exists)."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_report` wrote: the PDF, the zipped site, the landing page's screenshot, the pages
    printed (relative to the site root, in order), the PDF's page count and the wall time in seconds."""

    pdf: Path
    site_zip: Path
    pages: list[str]
    pdf_pages: int
    landing: Path
    seconds: float


def book_pages(run_dir: Path) -> list[str]:
    """The rendered pages of the run's book in reading order, relative to ``book/_build/html``: the table of
    contents' root, then each chapter's ``file`` (parts and nested sections included, depth first).

    Raises:
        ExportError: no rendered book, or a page of the table of contents that was not rendered.
    """
    run_dir = Path(run_dir)
    site, toc_file = run_dir / SITE, run_dir / BOOK / "_toc.yml"
    if not (site / "index.html").is_file() or not toc_file.is_file():
        raise ExportError(f"run '{run_dir.name}' has no rendered book ({SITE}/index.html and {BOOK}/_toc.yml); "
                          f"render it first: python -m hcc_utils run --params PARAMS --out {run_dir} --resume")
    toc = yaml.safe_load(toc_file.read_text(encoding="utf-8")) or {}
    if not toc.get("root"):
        raise ExportError(f"run '{run_dir.name}': {BOOK}/_toc.yml names no root page; render the book again")
    files = [toc["root"], *_toc_files(toc)]
    pages = [Path(f).with_suffix(".html").as_posix() if Path(f).suffix in (".md", ".ipynb")
             else f"{f}.html" for f in files]
    missing = [page for page in pages if not (site / page).is_file()]
    if missing:
        raise ExportError(f"run '{run_dir.name}': the table of contents lists pages that were not rendered "
                          f"({', '.join(missing)}); render the book again (see book_build.log in the run)")
    return pages


def _toc_files(entry: dict) -> list[str]:
    """The ``file`` of every chapter and section under ``entry`` (a toc, a part or a chapter), depth first."""
    files = []
    for key in ("parts", "chapters", "sections"):
        for child in entry.get(key) or []:
            if child.get("file"):
                files.append(str(child["file"]))
            files += _toc_files(child)
    return files


def export_folder(run_dir: Path) -> Path:
    """``run_dir/export``, or ``export-2``, ``export-3``, ... when it exists."""
    candidate, k = Path(run_dir) / EXPORT_FOLDER, 2
    while candidate.exists():
        candidate, k = Path(run_dir) / f"{EXPORT_FOLDER}-{k}", k + 1
    return candidate


def export_report(run_dir: Path, out: Path | None = None) -> ExportResult:
    """Write the run's report as ``report.pdf`` (every page of :func:`book_pages` printed by Chromium, in order,
    one bookmark per page), ``report_site.zip`` (the whole HTML site) and ``landing.png`` (the landing page's
    first screen) into ``out`` (default: :func:`export_folder`). ``out`` must be new or empty.

    Raises:
        ExportError: no rendered book, or ``out`` holds files.
        BrowserUnavailable: no Chromium to print with (its message says what to install).
    """
    from pypdf import PdfReader, PdfWriter

    from hcc_utils.browser import headless, print_pdf, screenshot

    start = time.perf_counter()
    run_dir = Path(run_dir)
    pages = book_pages(run_dir)
    site = run_dir / SITE
    out = Path(out) if out is not None else export_folder(run_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out '{out.name}' exists and is not an empty folder; choose a new one")
    out.mkdir(parents=True, exist_ok=True)
    writer = PdfWriter()
    with headless() as driver:
        landing = screenshot(site / pages[0], out / EXPORT_LANDING, driver=driver)
        for page in pages:
            printed = PdfReader(io.BytesIO(print_pdf(site / page, driver=driver)))
            writer.append(printed, outline_item=_title(driver.title, page))
    pdf = out / EXPORT_PDF
    with pdf.open("wb") as handle:
        writer.write(handle)
    pdf_pages = len(writer.pages)
    site_zip = zip_site(site, out / EXPORT_SITE)
    return ExportResult(pdf, site_zip, pages, pdf_pages, landing, round(time.perf_counter() - start, 1))


def zip_site(site: Path, out_zip: Path) -> Path:
    """Zip every file under ``site`` with paths relative to it (``index.html`` at the top), sorted, deflated."""
    with zipfile.ZipFile(out_zip, "x", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in site.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(site).as_posix())
    return out_zip


def _title(browser_title: str, page: str) -> str:
    """A page's bookmark: its HTML title without the book's name after the dash, else the page's file name."""
    for dash in (" — ", " | ", " - "):
        if dash in browser_title:
            browser_title = browser_title.rsplit(dash, 1)[0]
            break
    return browser_title.strip() or Path(page).stem
