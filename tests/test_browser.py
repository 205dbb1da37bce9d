"""The report in a real browser (headless Chromium) and its export (issue 17, items 6 and 7).

Tiny hand-written sites check that :func:`hcc_utils.browser.check_site` reports each kind of problem and nothing
on a clean site; a tiny fake book checks ``export``; the session's smoke book (``smoke_run``, tests/conftest.py)
is checked as a reader's browser shows it. Without Chromium the tests skip with the reason, unless
``HCC_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where they fail.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from hcc_utils.__main__ import main
from hcc_utils.browser import BrowserUnavailable, check_site, find_binaries, first_screen, screenshot
from hcc_utils.export import ExportError, book_pages, export_report

needs_browser = pytest.mark.usefixtures("browser")

LANDING_IDS = ["glance-table4", "glance-roc"]
"""The landing page's Table 4 and validation ROC figure, which must show without scrolling (issue 17)."""


@pytest.fixture(scope="session")
def browser():
    """Chromium and chromedriver, or a skip (a failure under ``HCC_REQUIRE_BROWSER=1``) naming what is missing.

    Session-scoped so that it is set up before ``smoke_run``: without a browser, no smoke book is built for it."""
    try:
        binaries = find_binaries()
        try:
            import selenium  # noqa: F401
        except ImportError as err:
            raise BrowserUnavailable(f"selenium is not installed ({err}); pip install -r requirements.txt") from None
        return binaries
    except BrowserUnavailable as err:
        if os.environ.get("HCC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"HCC_REQUIRE_BROWSER=1 but {err}")
        pytest.skip(str(err))


def _page(body: str, title: str = "page") -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>{body}</body></html>"


def _png(path: Path, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 120, 200)).save(path)


def _clean_site(root: Path) -> Path:
    """Two pages linking to each other (with anchors), an image, external links; assets that must be skipped."""
    (root / "notebooks").mkdir(parents=True)
    _png(root / "_images" / "roc.png")
    (root / "index.html").write_text(_page(
        "<h1 id='top'>Report</h1><img src='_images/roc.png' alt='ROC'>"
        "<a href='notebooks/ch1.html#results'>chapter 1</a> <a href='#top'>top</a> <a href='notebooks/'>folder</a>"
        "<a href='https://example.org/x.html'>web</a> <a href='mailto:a@b.c'>mail</a> <a href='#'>nothing</a>"))
    (root / "notebooks" / "index.html").write_text(_page("<p>folder index</p>"))
    (root / "notebooks" / "ch1.html").write_text(_page(
        "<h2 id='results'>Results</h2><img src='../_images/roc.png'><a href='../index.html'>home</a>"))
    for skipped in ("_static/broken.html", "_sources/broken.html", "genindex.html", "search.html"):
        (root / skipped).parent.mkdir(parents=True, exist_ok=True)
        (root / skipped).write_text(_page("<img src='missing.png'><a href='missing.html'>x</a>"))
    return root


@needs_browser
def test_a_clean_site_has_no_problems(tmp_path):
    report = check_site(_clean_site(tmp_path / "site"))
    assert [page.page for page in report.pages] == ["index.html", "notebooks/ch1.html", "notebooks/index.html"]
    assert all(page.loaded for page in report.pages)
    assert report.problems == []


@needs_browser
def test_each_kind_of_problem_is_reported(tmp_path):
    site = _clean_site(tmp_path / "site")
    (site / "corrupt.png").write_bytes(b"not a png")
    (site / "broken.html").write_text(_page(
        "<img src='missing.png'><img src='corrupt.png'>"
        "<a href='nope.html'>gone</a> <a href='notebooks/ch1.html#nowhere'>anchor</a> <a href='#absent'>here</a>"
        "<a href='../outside.html'>out</a> <a href='/abs/page.html'>abs</a>"
        "<script>console.error('something broke')</script>"))
    problems = check_site(site).problems
    own = [line for line in problems if line.startswith("broken.html: ")]
    assert own == problems, "only the broken page has problems"
    for expected in ("image missing.png has zero size", "image corrupt.png has zero size",
                     "link nope.html: nope.html does not exist",
                     "link notebooks/ch1.html#nowhere: no anchor 'nowhere' in notebooks/ch1.html",
                     "link #absent: no anchor 'absent' in broken.html", "link ../outside.html: points outside the site",
                     "link /abs/page.html: an absolute path"):
        assert any(expected in line for line in own), f"{expected!r} not in {own}"
    console = [line for line in own if "console error" in line]
    assert any("something broke" in line for line in console)
    assert not any(str(site) in line for line in problems), "pages are named relative to the site"


@needs_browser
def test_an_uncaught_script_error_is_a_console_error(tmp_path):
    (tmp_path / "index.html").write_text(_page("<script>const A = 1;</script><script>const A = 2;</script>"))
    problems = check_site(tmp_path).problems
    assert len(problems) == 1 and "index.html: console error:" in problems[0] and "'A'" in problems[0]


@needs_browser
def test_first_screen_is_what_shows_without_scrolling(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(_page(
        "<div id='top' style='height:40px;width:200px'>top</div><div id='empty'></div>"
        "<div id='far' style='position:absolute;top:3000px;height:40px;width:200px'>far</div>"))
    assert first_screen(page, ["top", "far", "empty", "missing"]) == {
        "top": True, "far": False, "empty": False, "missing": False}


@needs_browser
def test_screenshot_is_the_first_screen(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(_page("<h1>Landing</h1>"))
    out = screenshot(page, tmp_path / "shots" / "landing.png")
    with Image.open(out) as image:
        assert image.width == 1366 and 600 < image.height <= 900, "the viewport of a 1366 x 900 window"


def _fake_book(run: Path) -> Path:
    """A run folder with a rendered two-chapter book: ``_toc.yml`` and ``_build/html``."""
    html = run / "book" / "_build" / "html"
    (html / "notebooks").mkdir(parents=True)
    (run / "book" / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n- file: notebooks/01_first\n- file: methods\n")
    (html / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=intro.html" />')
    (html / "intro.html").write_text(_page("<h1>Results at a glance</h1>", "Results — Book"))
    (html / "notebooks" / "01_first.html").write_text(_page("<p>x</p>" * 400, "01 · First — Book"))
    (html / "methods.html").write_text(_page("<h1>Methods</h1>", "Methods — Book"))
    _png(html / "_images" / "fig.png")
    return run


@needs_browser
def test_export_writes_the_pdf_the_site_zip_and_the_landing_screenshot(tmp_path):
    from pypdf import PdfReader

    run = _fake_book(tmp_path / "run")
    result = export_report(run)
    assert result.pdf.parent == run / "export"
    assert result.pages == ["intro.html", "notebooks/01_first.html", "methods.html"]
    reader = PdfReader(result.pdf)
    assert result.pdf_pages == len(reader.pages) > len(result.pages), "chapter 01 spans several pages"
    assert [item.title for item in reader.outline] == ["Results", "01 · First", "Methods"]
    with zipfile.ZipFile(result.site_zip) as archive:
        names = archive.namelist()
    assert "index.html" in names and "notebooks/01_first.html" in names and "_images/fig.png" in names
    assert result.landing.stat().st_size > 0
    assert export_report(run).pdf.parent == run / "export-2", "an export is never overwritten"


def test_export_of_a_run_without_a_book_says_to_render_it(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    with pytest.raises(ExportError, match="no rendered book.*render it first"):
        export_report(tmp_path / "run")
    assert main(["export", "--run", str(tmp_path / "run")]) == 2
    assert "error: run 'run' has no rendered book" in capsys.readouterr().err


@needs_browser
def test_export_command_prints_what_it_wrote(tmp_path, capsys):
    run = _fake_book(tmp_path / "run")
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "report.pdf (" in out and "PDF pages" in out and "report_site.zip" in out
    assert (tmp_path / "out" / "report.pdf").is_file() and not (run / "export").exists()
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "out")]) == 2, "an --out with files"


def test_a_page_listed_but_not_rendered_is_named(tmp_path):
    run = _fake_book(tmp_path / "run")
    (run / "book" / "_build" / "html" / "methods.html").unlink()
    with pytest.raises(ExportError, match="methods.html"):
        book_pages(run)


@pytest.mark.slow  # the session's smoke book (tests/conftest.py)
@needs_browser
def test_the_smoke_report_has_no_problems_in_the_browser(smoke_run):
    html = smoke_run.run_dir / "book" / "_build" / "html"
    landing = screenshot(html / book_pages(smoke_run.run_dir)[0], smoke_run.run_dir / "book" / "landing.png")
    assert landing.stat().st_size > 0
    report = check_site(html)
    assert len(report.pages) >= 12
    assert report.problems == [], "\n".join(report.problems)


@pytest.mark.slow
@needs_browser
def test_landing_first_screen(smoke_run):
    """The landing page shows Table 4 and the validation ROC figure without scrolling (issue 17, done when)."""
    html = smoke_run.run_dir / "book" / "_build" / "html"
    shown = first_screen(html / book_pages(smoke_run.run_dir)[0], LANDING_IDS)
    assert shown == dict.fromkeys(LANDING_IDS, True), shown


@pytest.mark.slow
@needs_browser
def test_the_smoke_report_exports(smoke_run, tmp_path):
    from pypdf import PdfReader

    result = export_report(smoke_run.run_dir, out=tmp_path / "export")
    assert result.pdf_pages == len(PdfReader(io.BytesIO(result.pdf.read_bytes())).pages) > 10
    assert len(result.pages) >= 12
    with zipfile.ZipFile(result.site_zip) as archive:
        assert "index.html" in archive.namelist()
