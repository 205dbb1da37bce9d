"""The rendered report as a reader's browser shows it: headless Chromium driven by Selenium (issue 17, item 6).

:func:`check_site` opens every page of a jupyter-book HTML site and reports what a reader would meet: a page that
does not load, an image that shows nothing, a link that leads nowhere, an error in the browser's console.
:func:`first_screen` says whether elements are visible without scrolling, :func:`screenshot` saves the first
screen and :func:`print_pdf` prints a page (``export.py`` joins the printed pages into the report's PDF).

Chromium and chromedriver come from the system (Debian: ``apt-get install chromium chromium-driver``) or from
``HCC_CHROMIUM`` / ``HCC_CHROMEDRIVER``; the driver's path is always given to Selenium, so Selenium Manager never
runs and nothing is downloaded. Pages are opened as ``file://`` URLs; the site is never served or modified.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

WINDOW = (1366, 900)
"""The browser window in CSS pixels (width, height), a laptop's; headless Chromium 156 keeps the space of its
toolbars, so the page's viewport (``window.innerHeight``, the first screen) is 1366 x 757."""

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)
INSTALL = "apt-get install chromium chromium-driver"

SKIPPED_DIRS = ("_static", "_sources", "_images", "_downloads")
"""Folders of a site that hold assets, not pages."""
SKIPPED_PAGES = ("genindex.html", "search.html")
"""Sphinx's generated index and search pages: no content of the report."""

IGNORED_SCHEMES = ("http", "https", "mailto", "javascript", "tel", "data")
"""Link schemes not checked: external sites and non-navigation links."""

PAGE_TIMEOUT_S = 60
IMAGE_TIMEOUT_S = 15

_WAIT_FOR_IMAGES = """
const done = arguments[arguments.length - 1];
const deadline = Date.now() + arguments[0] * 1000;
const images = Array.from(document.images);
images.forEach(img => { if (img.loading === 'lazy') img.loading = 'eager'; });
(function poll() {
  if (document.readyState === 'complete' && images.every(img => img.complete)) return done(true);
  if (Date.now() > deadline) return done(false);
  setTimeout(poll, 50);
})();
"""

_PAGE_FACTS = """
return {
  ready: document.readyState,
  images: Array.from(document.images).map(img => ({
    src: img.getAttribute('src') || '', complete: img.complete, w: img.naturalWidth, h: img.naturalHeight})),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => ({raw: a.getAttribute('href'), href: a.href})),
};
"""

_FORGET_VISIT = "try { localStorage.clear(); sessionStorage.clear(); } catch (e) {}"
"""Run after each page, so that every page is checked as a reader's first page of the site (themes keep state)."""

_FIRST_SCREEN = """
window.scrollTo(0, 0);
return arguments[0].map(id => {
  const el = document.getElementById(id);
  if (!el) return [id, false];
  const r = el.getBoundingClientRect();
  return [id, r.top >= 0 && r.top < window.innerHeight && r.width > 0 && r.height > 0];
});
"""


class BrowserUnavailable(RuntimeError):
    """Chromium, chromedriver or Selenium is missing or cannot start; the message says what to install."""


@dataclass(frozen=True)
class Binaries:
    """The Chromium executable and its chromedriver."""

    chromium: Path
    chromedriver: Path


def find_binaries() -> Binaries:
    """Chromium and chromedriver: ``HCC_CHROMIUM`` / ``HCC_CHROMEDRIVER`` when set, else the first of
    :data:`CHROMIUM_NAMES` and :data:`DRIVER_NAMES` on ``PATH``.

    Raises:
        BrowserUnavailable: naming what is missing and how to install it.
    """
    found = {}
    for what, env, names in (("chromium", "HCC_CHROMIUM", CHROMIUM_NAMES),
                             ("chromedriver", "HCC_CHROMEDRIVER", DRIVER_NAMES)):
        given = os.environ.get(env)
        if given:
            path = shutil.which(given)
            if path is None:
                raise BrowserUnavailable(f"{env}={given} is not an executable file; point it at {what} or unset "
                                         "it to search PATH")
        else:
            path = next((p for p in map(shutil.which, names) if p), None)
            if path is None:
                raise BrowserUnavailable(f"{what} not found on PATH (looked for {', '.join(names)}); install it "
                                         f"with `{INSTALL}` or set {env} to its path")
        found[what] = Path(path)
    return Binaries(**found)


@contextmanager
def headless(window: tuple[int, int] = WINDOW) -> Iterator:
    """A headless Chromium WebDriver of ``window`` CSS pixels with the browser console recorded (level ALL);
    ``--no-sandbox`` when running as root. Quits the browser on exit.

    Raises:
        BrowserUnavailable: Selenium, Chromium or chromedriver missing, or the browser did not start.
    """
    binaries = find_binaries()
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        raise BrowserUnavailable(f"selenium is not installed ({err}); install the pinned requirements with "
                                 "`pip install -r requirements.txt`") from None
    options = webdriver.ChromeOptions()
    options.binary_location = str(binaries.chromium)
    for arg in ("--headless=new", f"--window-size={window[0]},{window[1]}", "--hide-scrollbars",
                "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(binaries.chromedriver)))
    except WebDriverException as err:
        reason = " ".join(str(err.msg or err).split())[:400]
        raise BrowserUnavailable(f"{binaries.chromium} did not start through {binaries.chromedriver}: {reason}; "
                                 f"check that both are the same version (`{INSTALL}` installs a matching pair)"
                                 ) from None
    try:
        driver.set_page_load_timeout(PAGE_TIMEOUT_S)
        driver.set_script_timeout(IMAGE_TIMEOUT_S + 5)
        yield driver
    finally:
        driver.quit()


@contextmanager
def _driver(driver) -> Iterator:
    """``driver`` itself when given (left running), else a fresh :func:`headless` one."""
    if driver is not None:
        yield driver
        return
    with headless() as own:
        yield own


def open_page(driver, page: Path) -> bool:
    """Open ``page`` (an HTML file) and wait for the load and every image; ``True`` when all images finished."""
    driver.get(Path(page).resolve().as_uri())
    return bool(driver.execute_async_script(_WAIT_FOR_IMAGES, IMAGE_TIMEOUT_S))


@dataclass
class PageReport:
    """What one page showed: ``page`` relative to the site root, and each kind of problem as readable text."""

    page: str
    loaded: bool = False
    load_error: str = ""
    zero_size_images: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """One line per problem, each starting with the page."""
        why = f" ({self.load_error})" if self.load_error else ""
        lines = [] if self.loaded else [f"{self.page}: the page did not finish loading{why}"]
        lines += [f"{self.page}: image {src} has zero size" for src in self.zero_size_images]
        lines += [f"{self.page}: link {text}" for text in self.broken_links]
        lines += [f"{self.page}: console error: {text}" for text in self.console_errors]
        return lines


@dataclass
class SiteReport:
    """:func:`check_site`'s findings: one :class:`PageReport` per page checked, in path order."""

    root: Path
    pages: list[PageReport]

    @property
    def problems(self) -> list[str]:
        """Every problem of every page as one readable line; empty when the site is clean."""
        return [line for page in self.pages for line in page.problems]


def site_pages(html_dir: Path) -> list[Path]:
    """The pages of a site: every ``.html`` file under ``html_dir`` except assets (:data:`SKIPPED_DIRS`) and
    Sphinx's index and search pages (:data:`SKIPPED_PAGES`), sorted by path."""
    html_dir = Path(html_dir)
    return sorted(p for p in html_dir.rglob("*.html")
                  if p.relative_to(html_dir).parts[0] not in SKIPPED_DIRS and p.name not in SKIPPED_PAGES)


def check_site(html_dir: Path, driver=None) -> SiteReport:
    """Open every page of the site ``html_dir`` (:func:`site_pages`) in headless Chromium and record what fails:
    the page not loading, images of zero natural size once loaded, relative links whose file is missing or
    outside the site or whose ``#fragment`` is no id of the target page, and console messages of level SEVERE.
    Each page is opened as a first visit (the site's local storage cleared), as a reader arriving from a search.

    ``driver``: a running WebDriver to reuse (default: one started and stopped here).

    Raises:
        FileNotFoundError: ``html_dir`` is not a folder.
        BrowserUnavailable: no browser to check with.
    """
    html_dir = Path(html_dir).resolve()
    if not html_dir.is_dir():
        raise FileNotFoundError(2, "no rendered site here; build the book first", str(html_dir))
    ids = _IdCache()
    reports = []
    with _driver(driver) as drv:
        for page in site_pages(html_dir):
            report = PageReport(page.relative_to(html_dir).as_posix())
            drv.get_log("browser")
            try:
                open_page(drv, page)
                facts = drv.execute_script(_PAGE_FACTS)
            except Exception as err:  # a page that hangs or crashes the tab is a finding, not the end of the check
                report.load_error = " ".join(str(getattr(err, "msg", None) or err).split())[:300]
                reports.append(report)
                continue
            report.loaded = facts["ready"] == "complete"
            report.zero_size_images = [img["src"] for img in facts["images"]
                                       if not img["complete"] or not (img["w"] and img["h"])]
            report.broken_links = [problem for link in facts["links"]
                                   if (problem := _link_problem(link["raw"], link["href"], html_dir, ids))]
            report.console_errors = [_site_relative(entry["message"], html_dir) for entry in drv.get_log("browser")
                                     if entry.get("level") == "SEVERE"]
            drv.execute_script(_FORGET_VISIT)
            reports.append(report)
    return SiteReport(html_dir, reports)


def first_screen(page: Path, element_ids: list[str], driver=None) -> dict[str, bool]:
    """For each id, whether that element of ``page`` shows in the first screen (the window of :data:`WINDOW`,
    scrolled to the top, images loaded): its top edge lies in ``[0, window.innerHeight)`` and it has a non-zero
    width and height. An id not on the page is ``False``."""
    with _driver(driver) as drv:
        open_page(drv, page)
        return dict(drv.execute_script(_FIRST_SCREEN, list(element_ids)))


def screenshot(page: Path, out_png: Path, driver=None) -> Path:
    """Save the first screen of ``page`` (images loaded) as the PNG ``out_png``; returns ``out_png``."""
    with _driver(driver) as drv:
        open_page(drv, page)
        drv.execute_script("window.scrollTo(0, 0);")
        Path(out_png).parent.mkdir(parents=True, exist_ok=True)
        Path(out_png).write_bytes(drv.get_screenshot_as_png())
    return Path(out_png)


def print_pdf(page: Path, driver=None) -> bytes:
    """``page`` printed to PDF as Chromium prints it: A4 portrait, 1 cm margins, backgrounds on."""
    from selenium.webdriver.common.print_page_options import PrintOptions

    options = PrintOptions()
    options.page_width, options.page_height = 21.0, 29.7
    options.margin_top = options.margin_bottom = options.margin_left = options.margin_right = 1.0
    options.background = True
    with _driver(driver) as drv:
        open_page(drv, page)
        return base64.b64decode(drv.print_page(options))


class _IdParser(HTMLParser):
    """The ``id`` attributes (and ``<a name>`` anchors) of one HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if value and (key == "id" or (tag == "a" and key == "name")):
                self.ids.add(value)


class _IdCache:
    """Ids of the site's files, each file parsed once."""

    def __init__(self) -> None:
        self._ids: dict[Path, set[str]] = {}

    def __call__(self, path: Path) -> set[str]:
        if path not in self._ids:
            parser = _IdParser()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            self._ids[path] = parser.ids
        return self._ids[path]


def _link_problem(raw: str, href: str, html_dir: Path, ids: _IdCache) -> str | None:
    """Why the link ``raw`` (as written; ``href`` as the browser resolved it) does not resolve, or ``None``."""
    raw = (raw or "").strip()
    scheme = urlsplit(raw).scheme.lower()
    if not raw or raw == "#" or scheme in IGNORED_SCHEMES:
        return None
    if scheme == "file" or raw.startswith("/"):
        return f"{raw}: an absolute path, which no other machine or host has; make it relative"
    target = urlsplit(href)
    path = Path(unquote(target.path))
    try:
        shown = path.relative_to(html_dir).as_posix()
    except ValueError:
        return f"{raw}: points outside the site"
    if path.is_dir():
        path = path / "index.html"
    if not path.is_file():
        return f"{raw}: {shown} does not exist"
    fragment = unquote(target.fragment)
    if fragment and path.suffix == ".html" and fragment not in ids(path):
        return f"{raw}: no anchor '{fragment}' in {shown}"
    return None


def _site_relative(message: str, html_dir: Path) -> str:
    """A console message with the site's ``file://`` URL prefix removed (pages named relative to the site)."""
    return " ".join(message.replace(html_dir.as_uri() + "/", "").split())
