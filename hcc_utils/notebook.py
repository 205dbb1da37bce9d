"""Small helpers the notebooks call so their code cells stay one to three lines; the only module that makes
IPython display objects.

Every notebook starts with::

    params, run = setup(params_file, run_dir)

and shows results with ``show_table`` and ``save_figure``. Both number and caption what they show from the registry
in ``hcc_utils.captions``: ``save_figure`` writes ``figures/NAME.png`` and ``.svg`` and shows the PNG with
"Figure N. what, on which patients" below it and a link to the SVG; ``show_table`` shows a table that has a
caption (its CSV name, or ``caption=`` naming a CSV a stage module wrote) with "Table N. ..." above it, a link to
the CSV and, for the paper's tables, the paper's style (``hcc_utils.paper_tables``). Links are relative to the
notebook (``notebooks/`` -> ``../tables/``, ``../figures/``), so they work in the run folder and in the book's
HTML site, which keeps the same layout.
"""

from __future__ import annotations

import base64
import html
import random
from pathlib import Path

import numpy as np
import pandas as pd

from hcc_utils import artifacts, captions, paper_tables, threads
from hcc_utils.config import Params, load_params
from hcc_utils.run_folder import RunFolder


def setup(params_file: str | Path, run_dir: str | Path) -> tuple[Params, RunFolder]:
    """Load the run's parameters, seed every generator, set this process's threads (``hcc_utils.threads``),
    plotting and display defaults.

    ``run_dir`` is created when it does not exist (stepping through in JupyterLab); when the runner executes the
    notebook it passes the run folder it made and ``params_file`` is that folder's ``params.yaml``.
    """
    import matplotlib.pyplot as plt

    params = load_params(params_file)
    run = RunFolder(Path(run_dir))
    run.root.mkdir(parents=True, exist_ok=True)
    random.seed(params.seed)
    np.random.seed(params.seed)  # noqa: NPY002 (libraries that still use the global generator)
    threads.configure(params.compute)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 130, "savefig.bbox": "tight",
                         "axes.spines.top": False, "axes.spines.right": False,
                         "svg.hashsalt": "hcc_2p5d"})
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.width", 160)
    pd.set_option("display.precision", 3)
    return params, run


NOTEBOOK_TO_RUN = "../"
"""From a notebook (``run/notebooks/``) to the run folder: the prefix of the CSV and SVG links."""


TABLE_STYLES = [
    {"selector": "", "props": "border-collapse: collapse; border-top: 2px solid; border-bottom: 2px solid; "
                               "margin: 0.4em 0;"},
    {"selector": "thead", "props": "border-bottom: 1px solid;"},
    {"selector": "th, td", "props": "padding: 0.25em 0.8em; text-align: left; vertical-align: top;"},
    {"selector": "th.col_heading.level0", "props": "text-align: left;"},
]
"""A three-rule table, as journals print them, with room between the columns (also in JupyterLab)."""
CAPTION_STYLE = ("text-align: left; font-size: 0.9em; font-style: normal; font-weight: normal; font-family: inherit; "
                 "color: inherit; margin: 0.4em 0;")
"""Book themes centre figure captions in a light, muted heading font; a report's caption reads as body text."""
PAPER_TABLE_STYLES = [*TABLE_STYLES, {"selector": "", "props": "font-size: 0.9em;"},
                      {"selector": "th, td", "props": "padding: 0.25em 0.5em;"}]
"""The paper-style tables: a little smaller and tighter, so Table 2's seven columns fit the book's text width."""
NOWRAP = '<span style="white-space: nowrap;">{}</span>'


def _link(artifact: artifacts.Artifact, name: str, text: str) -> str:
    href = html.escape(NOTEBOOK_TO_RUN + artifact.pattern.format(name=name), quote=True)
    return f'<a href="{href}">{text}</a>'


def _unbroken(cell) -> str:
    """A paper-style value as HTML that breaks, when the column is narrow, only before its interval: "0.84
    (0.74-0.94)" never splits inside either part (so wide tables fit a page and print whole); labels wrap freely."""
    text = html.escape(str(cell))
    head, sep, interval = text.partition(" (")
    if " " in head.strip():
        return text
    return NOWRAP.format(head) + (" " + NOWRAP.format("(" + interval) if sep else "")


def _caption_html(caption: captions.Caption | None, link: str) -> str:
    if caption is None:
        return link
    return f"<b>{html.escape(caption.label)}.</b> {html.escape(caption.text)} {link}"


class FigureDisplay:
    """A saved figure as the notebook and the book show it: the PNG with its numbered caption below (HTML, the
    image embedded as a ``data:`` URI) and the PNG alone for front ends without HTML."""

    def __init__(self, png: bytes, name: str, caption: captions.Caption | None):
        self.png, self.name, self.caption = png, name, caption

    def _repr_html_(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        alt = html.escape(f"{self.caption.label}: {self.caption.text}" if self.caption else self.name, quote=True)
        caption = _caption_html(self.caption, _link(artifacts.FIGURE_SVG, self.name, "SVG"))
        return (f'<figure class="hcc-figure" style="margin: 1em 0;"><img src="data:image/png;base64,{data}" '
                f'alt="{alt}" style="max-width: 100%; height: auto;">'
                f'<figcaption style="{CAPTION_STYLE}">{caption}</figcaption></figure>')

    def _repr_png_(self) -> bytes:
        return self.png

    def __repr__(self) -> str:
        return f"{self.caption.label}. {self.caption.text}" if self.caption else f"figure {self.name}"


def save_figure(fig, run: RunFolder, name: str) -> FigureDisplay | None:
    """Save ``fig`` as ``figures/NAME.png`` and ``figures/NAME.svg`` in the run folder, close it, and return it for
    display with its caption (``captions.figure(name)``; a name without one shows no number); ``None`` (nothing
    to draw for this cohort) saves nothing."""
    import matplotlib.pyplot as plt

    if fig is None:
        return None
    png = artifacts.figure_path(run, name)
    fig.savefig(png)
    fig.savefig(artifacts.figure_svg_path(run, name), metadata={"Date": None})
    plt.close(fig)
    return FigureDisplay(png.read_bytes(), name, captions.lookup("Figure", name))


def _styled(table: pd.DataFrame, precision: int):
    """The plain display: ``precision`` decimals, p-values as journals print them, missing as a dash."""
    p_columns = [c for c in table.columns if str(c) in ("p", "p_value")]
    return (table.style.format(precision=precision, na_rep=paper_tables.MISSING, escape="html")
            .format(lambda p: html.escape(paper_tables.format_p(p)), subset=p_columns).hide(axis="index")
            .set_table_styles(TABLE_STYLES))


def show_table(table: pd.DataFrame, run: RunFolder | None = None, name: str | None = None,
               precision: int = 3, caption: str | None = None):
    """Return ``table`` for display; with ``run`` and ``name`` also write ``tables/NAME.csv``.

    A table with a caption (``name``, or ``caption``: the name of a CSV a stage module wrote, e.g.
    ``"table4_models"``) is shown as an HTML figure: "Table N. text CSV" above it (``captions.table``), in the
    paper's style when the registry names a ``paper_tables`` formatter. ``caption`` without an entry raises
    ``captions.CaptionMissing``; a ``name`` without one shows the table as it is.
    """
    from IPython.display import HTML

    if run is not None and name is not None:
        table.to_csv(artifacts.table_path(run, name), index=False)
    found = captions.table(caption) if caption is not None else captions.lookup("Table", name) if name else None
    if found is None:
        return _styled(table, precision)
    shown = found.formatter(table) if found.formatter is not None else table
    styled = (shown.style.format(_unbroken).set_table_styles(PAPER_TABLE_STYLES) if found.formatter is not None
              else _styled(shown, precision))
    body = styled.format_index(escape="html", axis=1).hide(axis="index").set_uuid(found.name).to_html()
    note = shown.attrs.get("footnote") if found.formatter is not None else None
    note_html = (f'<p class="hcc-table-note" style="font-size: 0.85em; margin: 0.2em 0;">{html.escape(note)}</p>'
                 if note else "")
    caption_html = _caption_html(found, _link(artifacts.TABLE, found.name, "CSV"))
    return HTML(f'<figure class="hcc-table" style="margin: 1em 0; overflow-x: auto;">'
                f'<figcaption style="{CAPTION_STYLE}">{caption_html}</figcaption>{body}{note_html}</figure>')


def show_table_or_note(table: pd.DataFrame | None, note: str, caption: str | None = None):
    """``show_table(table, caption=caption)``, or ``note`` in italics when there is no table for this cohort."""
    return show_markdown(f"*{note}*") if table is None else show_table(table, caption=caption)


def show_markdown(text: str):
    """``text`` rendered as Markdown in the notebook and the book."""
    from IPython.display import Markdown

    return Markdown(text)


def show_notes(result):
    """A fitted model's warnings and reductions (``result.name``, ``result.notes``: a ``modeling.RecipeResult``,
    ``RadiomicsModel`` or ``ClinicalModel``) as a Markdown block; nothing to report says so."""
    if not result.notes:
        return show_markdown(f"*{result.name}: no fallback or reduction was needed.*")
    lines = "\n".join(f"- {note}" for note in result.notes)
    return show_markdown(f"**{result.name}: notes and warnings**\n\n{lines}")


def show_html_page(path: Path | None, note: str, height: int = 900):
    """The HTML page at ``path`` (a self-contained report), under its folder and file name, in a frame of the
    notebook and the book (``srcdoc``: nothing to link to); ``note`` in italics when there is none."""
    import html

    from IPython.display import HTML

    if path is None:
        return show_markdown(f"*{note}*")
    path = Path(path)
    page = html.escape(path.read_text(encoding="utf-8"), quote=True)
    name = html.escape(f"{path.parent.name}/{path.name}")
    return HTML(f'<p><code>{name}</code></p><iframe srcdoc="{page}" style="width: 100%; height: {height}px; '
                'border: 1px solid #ccc;"></iframe>')
