"""Small helpers the notebooks call so their code cells stay one to three lines; the only module that makes
IPython display objects.

Every notebook starts with::

    params, run = setup(params_file, run_dir)

and shows results with ``show_table`` and ``save_figure`` (which writes ``run_dir/figures/NAME.png`` and returns the
figure so Jupyter displays it).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd

from hcc_utils import artifacts
from hcc_utils.config import Params, load_params
from hcc_utils.run_folder import RunFolder


def setup(params_file: str | Path, run_dir: str | Path) -> tuple[Params, RunFolder]:
    """Load the run's parameters, seed every generator, set plotting and display defaults.

    ``run_dir`` is created when it does not exist (stepping through in JupyterLab); when the runner executes the
    notebook it passes the run folder it made and ``params_file`` is that folder's ``params.yaml``.
    """
    import matplotlib.pyplot as plt

    params = load_params(params_file)
    run = RunFolder(Path(run_dir))
    run.root.mkdir(parents=True, exist_ok=True)
    random.seed(params.seed)
    np.random.seed(params.seed)  # noqa: NPY002 (libraries that still use the global generator)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 130, "savefig.bbox": "tight",
                         "axes.spines.top": False, "axes.spines.right": False})
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.width", 160)
    pd.set_option("display.precision", 3)
    return params, run


def save_figure(fig, run: RunFolder, name: str):
    """Save ``fig`` as ``figures/NAME.png`` in the run folder and return it (so the notebook shows it once);
    ``None`` (nothing to draw for this cohort) saves nothing."""
    import matplotlib.pyplot as plt

    if fig is None:
        return None
    fig.savefig(artifacts.figure_path(run, name))
    plt.close(fig)
    return fig


def show_table(table: pd.DataFrame, run: RunFolder | None = None, name: str | None = None,
               precision: int = 3):
    """Return a styled table for display; with ``run`` and ``name`` also write ``tables/NAME.csv``."""
    if run is not None and name is not None:
        table.to_csv(artifacts.table_path(run, name), index=False)
    return table.style.format(precision=precision, na_rep="–").hide(axis="index")


def show_table_or_note(table: pd.DataFrame | None, note: str):
    """``show_table(table)``, or ``note`` in italics when there is no table for this cohort."""
    return show_markdown(f"*{note}*") if table is None else show_table(table)


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
