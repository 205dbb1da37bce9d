"""The rendered report: the book's sources in ``runs/NAME/book`` and jupyter-book's HTML build of them.

The executed notebooks are copied, never re-executed, and cleaned for publication (``publishable_notebook``):
the ``parameters`` and papermill's ``injected-parameters`` cells are dropped (they stay in ``notebooks/`` of the run,
with the machine's paths), every code cell is folded behind a "show code" toggle, Python warnings become one note
per message without the file path of the code that raised them, and no absolute path of this machine remains.
Around the notebooks the book has: the landing page (``landing.landing_page``: results at a glance), the model
card (when the run's bundle was written), Methods (``docs/method.md``, kept at ``docs/method.md`` in the book so
the notebooks' links to it work both in the repository and in the report), Provenance and the TRIPOD+AI
checklist. The run's ``tables/*.csv`` and ``figures/*`` are published beside the pages (``tables/``,
``figures/`` of the site), so the captions' CSV and SVG links resolve.

The build runs with ``-W``: a Sphinx warning fails it (the harmless ones are listed, with the reason, in
``book/_config.yml``'s ``suppress_warnings``).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nbformat
import yaml

from hcc_utils import artifacts
from hcc_utils.config import Params
from hcc_utils.run_folder import RunFolder

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BOOK_TEMPLATE_DIR = PROJECT_ROOT / "book"
METHOD_FILE = PROJECT_ROOT / "docs" / "method.md"
#: Book pages beside the notebooks: (page without suffix, title). Methods keeps its repository path.
METHODS_PAGE, METHODS_TITLE = "docs/method", "Methods"
MODEL_CARD_PAGE, MODEL_CARD_TITLE = "model_card", "Model card"
PROVENANCE_PAGE, PROVENANCE_TITLE = "provenance", "Provenance"
TRIPOD_PAGE, TRIPOD_TITLE = "tripod_ai", "TRIPOD+AI checklist"
PUBLISHED_FOLDERS = ("tables", "figures")
"""Run sub-folders copied into the HTML site as they are (``html_extra_path``), for the captions' links."""
EXTRA_DIR = "_published"
HIDDEN_CELL_TAGS = {"parameters", "injected-parameters"}

_WARNING_LINE = re.compile(r"^(?P<path>\S+\.py):\d+: (?P<category>\w+): (?P<message>.*)$")


class BookError(RuntimeError):
    """The report cannot be rendered; the message says why and where the log is."""


def table_of_contents(notebooks: list[tuple[str, str]], model_card: bool = False) -> dict:
    """The jupyter-book ``_toc.yml``: the landing page, the ordered notebooks, the model card (``model_card``: when
    the run has one), then Methods, Provenance and the TRIPOD+AI checklist."""
    card = [{"file": MODEL_CARD_PAGE}] if model_card else []
    after = [{"file": METHODS_PAGE}, {"file": PROVENANCE_PAGE}, {"file": TRIPOD_PAGE}]
    return {"format": "jb-book", "root": "intro",
            "chapters": [{"file": f"notebooks/{name}"} for name, _ in notebooks] + card + after}


def local_paths(run: RunFolder) -> dict[str, str]:
    """Absolute paths of this machine and what a published page shows instead, longest first: the run folder
    (as ``runs/NAME``), the project, the home directory (as ``~``)."""
    home = str(Path.home())
    found = {str(run.root): f"runs/{run.root.name}", str(PROJECT_ROOT): ".", home: "~"}
    return dict(sorted(((k, v) for k, v in found.items() if len(k) > 1), key=lambda kv: -len(kv[0])))


def _scrub(text: str, paths: dict[str, str]) -> str:
    for path, shown in paths.items():
        text = text.replace(path, shown)
    return text


def _note_output(messages: Counter) -> nbformat.NotebookNode:
    """One note (an admonition, as the theme draws them) listing each warning once, with how often it came."""
    items = "".join(f"<li>{html.escape(f'{category}: {message}')}{f' (x{count})' if count > 1 else ''}</li>"
                    for (category, message), count in messages.items())
    body = (f'<div class="admonition note"><p class="admonition-title">Note</p><ul class="simple">{items}</ul>'
            "</div>")
    return nbformat.v4.new_output("display_data", data={"text/html": body})


def _split_warnings(text: str) -> tuple[str, Counter]:
    """``text`` (a stderr stream) without Python's warning lines, and those warnings as (category, message)
    counts. A warning line is ``path.py:LINE: Category: message``, followed by the indented source line."""
    kept, warnings, skip_source = [], Counter(), False
    for line in text.splitlines(keepends=True):
        match = _WARNING_LINE.match(line.rstrip("\n"))
        if match:
            warnings[(match["category"], match["message"].strip())] += 1
            skip_source = True
            continue
        if skip_source and line.startswith("  "):
            skip_source = False
            continue
        skip_source = False
        kept.append(line)
    return "".join(kept), warnings


def _clean_outputs(outputs: list, paths: dict[str, str]) -> list:
    cleaned, warnings = [], Counter()
    for output in outputs:
        if output.get("output_type") == "stream":
            text = _scrub("".join(output["text"]) if isinstance(output["text"], list) else output["text"], paths)
            if output.get("name") == "stderr":
                text, found = _split_warnings(text)
                warnings.update(found)
            if text.strip():
                output["text"] = text
                cleaned.append(output)
            continue
        for mime, value in (output.get("data") or {}).items():
            if mime.startswith("text/") or mime == "image/svg+xml":
                output["data"][mime] = _scrub("".join(value) if isinstance(value, list) else value, paths)
        if output.get("output_type") == "error":
            output["traceback"] = [_scrub(line, paths) for line in output.get("traceback", [])]
        cleaned.append(output)
    return cleaned + ([_note_output(warnings)] if warnings else [])


def publishable_notebook(source: Path, run: RunFolder) -> nbformat.NotebookNode:
    """An executed notebook as the report shows it (module docstring): no parameters cells, code folded,
    warnings as notes, no absolute path of this machine."""
    nb = nbformat.read(source, as_version=4)
    paths = local_paths(run)
    kept = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & HIDDEN_CELL_TAGS:
            continue
        if cell.cell_type == "code":
            cell.metadata["tags"] = sorted(tags | {"hide-input"})
            cell.outputs = _clean_outputs(cell.get("outputs", []), paths)
        kept.append(cell)
    nb.cells = kept
    nb.metadata.pop("papermill", None)
    return nb


def _publish_run_files(run: RunFolder, book: Path) -> None:
    extra = book / EXTRA_DIR
    shutil.rmtree(extra, ignore_errors=True)
    for folder in PUBLISHED_FOLDERS:
        source = run.root / folder
        if source.is_dir():
            shutil.copytree(source, extra / folder)
        else:
            (extra / folder).mkdir(parents=True)


def _write_config(book: Path) -> None:
    for folder in ("_static", "_ext"):
        shutil.copytree(BOOK_TEMPLATE_DIR / folder, book / folder, dirs_exist_ok=True)
    config = yaml.safe_load((BOOK_TEMPLATE_DIR / "_config.yml").read_text(encoding="utf-8"))
    config.setdefault("sphinx", {}).setdefault("config", {})["html_extra_path"] = [EXTRA_DIR]
    config["exclude_patterns"] = sorted(set(config.get("exclude_patterns", [])) | {EXTRA_DIR, "_build"})
    (book / "_config.yml").write_text(
        "# Written by hcc_utils.book from the project's book/_config.yml (see the comments there)\n"
        + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def _chapter_pages(run: RunFolder, params: Params, book: Path, notebooks: list[tuple[str, str]],
                   method_file: Path) -> bool:
    """Methods, the model card (when the bundle wrote one) and Provenance; returns whether the model card is in
    the book."""
    from hcc_utils.provenance_chapter import provenance_page

    if not Path(method_file).is_file():
        raise BookError(f"{method_file} not found: the book's Methods chapter is docs/method.md of the project")
    (book / f"{METHODS_PAGE}.md").parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(method_file, book / f"{METHODS_PAGE}.md")
    card = artifacts.BUNDLE_CARD.path(run)
    (book / f"{MODEL_CARD_PAGE}.md").unlink(missing_ok=True)
    if card.is_file():
        shutil.copy2(card, book / f"{MODEL_CARD_PAGE}.md")
    (book / f"{PROVENANCE_PAGE}.md").write_text(provenance_page(run), encoding="utf-8")
    return card.is_file()


def chapter_titles(notebooks: list[tuple[str, str]], model_card: bool) -> list[tuple[str, str]]:
    """(page, title) of every chapter after the landing page, in the book's order."""
    pages = [(f"notebooks/{name}", title) for name, title in notebooks]
    pages += [(MODEL_CARD_PAGE, f"{MODEL_CARD_TITLE}: intended use, validation, limitations")] if model_card else []
    return pages + [(METHODS_PAGE, f"{METHODS_TITLE}: every step, the paper's values and our choices"),
                    (PROVENANCE_PAGE, f"{PROVENANCE_TITLE}: parameters, software, machine, times"),
                    (TRIPOD_PAGE, f"{TRIPOD_TITLE}: where this report answers each item")]


def write_book_sources(run: RunFolder, notebooks: list[tuple[str, str]], params: Params,
                       method_file: Path = METHOD_FILE) -> Path:
    """The book's sources in ``run/book`` (module docstring); returns the book folder."""
    from hcc_utils.landing import landing_page
    from hcc_utils.tripod import tripod_page

    book = run.root / "book"
    (book / "notebooks").mkdir(parents=True, exist_ok=True)
    for name, _ in notebooks:
        nbformat.write(publishable_notebook(run.notebooks / f"{name}.ipynb", run),
                       book / "notebooks" / f"{name}.ipynb")
    _write_config(book)
    has_card = _chapter_pages(run, params, book, notebooks, method_file)
    chapters = chapter_titles(notebooks, has_card)
    (book / "intro.md").write_text(landing_page(run, params, notebooks, chapters), encoding="utf-8")
    (book / f"{TRIPOD_PAGE}.md").write_text(tripod_page(book), encoding="utf-8")  # last: it links the others
    _publish_run_files(run, book)  # after the landing page drew its figure
    toc = table_of_contents(notebooks, model_card=has_card)
    (book / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False), encoding="utf-8")
    return book


def build_book(run: RunFolder, notebooks: list[tuple[str, str]], params: Params) -> Path:
    """Render the book's sources into ``run/book/_build/html`` with ``-W`` (a warning fails the build; the log is
    ``book_build.log``); returns index.html."""
    book = write_book_sources(run, notebooks, params)
    jb = Path(sys.executable).with_name("jupyter-book")
    command = [str(jb) if jb.exists() else "jupyter-book", "build", str(book), "--builder", "html", "-W",
               "--keep-going"]
    done = subprocess.run(command, capture_output=True, text=True)
    log = artifacts.BOOK_LOG.path(run)
    log.write_text(done.stdout + done.stderr, encoding="utf-8")
    index = book / "_build" / "html" / "index.html"
    if done.returncode != 0 or not index.exists():
        warnings = [line for line in (done.stdout + done.stderr).splitlines() if "WARNING" in line or "ERROR" in line]
        shown = "\n".join(f"  {line}" for line in warnings[:10])
        raise BookError(f"jupyter-book could not render the report without warnings (see {log}):\n{shown}")
    return index

