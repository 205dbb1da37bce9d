"""Numbered captions (hcc_utils.captions), the paper's table style (hcc_utils.paper_tables), the captioned displays
of notebook.save_figure and show_table, and the colour-blind-safe palette (issue 17, items 3 and 4)."""

from __future__ import annotations

import ast
import base64
import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from hcc_utils import captions, clinical, model_registry, notebook, paper_tables
from hcc_utils.config import params_from_dict
from hcc_utils.palette import OKABE_ITO
from hcc_utils.plots import cnn as cnn_plots
from hcc_utils.plots import models as model_plots
from hcc_utils.plots import radiomics as radiomics_plots
from hcc_utils.run_folder import RunFolder

matplotlib.use("Agg")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
PAPER_NUMBERS = {"Table": {"2", "3", "4", "5"},
                 "Figure": {"2", "3a", "3b", "3c-d", "4a", "4b", "4c", "5a-b", "5c-d", "5e", "5f", "5g", "6"}}


# -- the registry against the notebooks ----------------------------------------------------------------------------

def _name(node: ast.expr) -> str | None:
    """A name argument as text: a string constant, or an f-string with each ``{...}`` as ``x``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
    return None


def _shown(path: Path) -> list[tuple[str, str, int]]:
    """(kind, name, cell) of every captioned call in a notebook, in order: ``save_figure``'s name, ``show_table``'s
    name (third argument or ``name=``) or ``caption=``, ``show_table_or_note``'s ``caption=``."""
    found = []
    for k, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "notebook"):
                continue
            keywords = {kw.arg: kw.value for kw in node.keywords}
            where = node.func.attr
            if where == "save_figure":
                arg = node.args[2] if len(node.args) > 2 else keywords.get("name")
                found.append(("Figure", _name(arg), k))
            elif where in ("show_table", "show_table_or_note"):
                arg = keywords.get("caption") or (node.args[2] if len(node.args) > 2 else keywords.get("name"))
                if arg is not None:
                    found.append(("Table", _name(arg), k))
    return found


SHOWN = [(path.stem, *item) for path in NOTEBOOKS for item in _shown(path)]


def test_the_notebooks_show_captioned_figures_and_tables():
    assert len([s for s in SHOWN if s[1] == "Figure"]) >= 30 and len([s for s in SHOWN if s[1] == "Table"]) >= 20


@pytest.mark.parametrize("notebook_name, kind, name, cell", SHOWN, ids=[f"{s[0]}:{s[2]}" for s in SHOWN])
def test_every_saved_figure_and_named_table_has_a_caption(notebook_name, kind, name, cell):
    assert name is not None, f"{notebook_name} cell {cell}: the name is not a string literal"
    assert captions.lookup(kind, name) is not None, (
        f"{notebook_name} cell {cell}: {kind.lower()} {name!r} has no caption in hcc_utils/captions.py")


def test_the_registry_is_in_book_order_and_has_nothing_the_book_does_not_show():
    shown = []
    for _, kind, name, _ in SHOWN:
        number = captions.lookup(kind, name).number
        entry = next(c for c in captions.CAPTIONS if c.kind == kind and c.number == number)
        if entry not in shown:
            shown.append(entry)
    assert [c.label for c in shown] == [c.label for c in captions.CAPTIONS]


def test_numbers_are_unique_and_supplementary_ones_consecutive():
    for kind in ("Figure", "Table"):
        numbers = [c.number for c in captions.CAPTIONS if c.kind == kind]
        assert len(numbers) == len(set(numbers)), kind
        supplementary = [n for n in numbers if n.startswith("S")]
        assert supplementary == [f"S{i}" for i in range(1, len(supplementary) + 1)], kind
        assert set(numbers) - set(supplementary) == PAPER_NUMBERS[kind]


def test_a_caption_says_what_and_on_which_patients():
    for caption in captions.CAPTIONS:
        assert caption.text.endswith(".") and 40 < len(caption.text) < 400, caption.name
    assert captions.figure("fig5ab_roc").label == "Figure 5a-b"
    assert captions.table("table4_models").formatter is paper_tables.table4
    assert captions.table("held_out_cnn_by_scanner").name == "held_out_cnn_by_scanner"
    with pytest.raises(captions.CaptionMissing, match="hcc_utils/captions.py"):
        captions.figure("no_such_figure")
    assert captions.lookup("Table", "fig5ab_roc") is None


# -- paper_tables ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p, text", [(0.0004, "< 0.001"), (0.012, "0.012"), (0.0496, "0.050"), (0.34, "0.34"),
                                     (0.0996, "0.10"), (0.001, "0.001"), (1.0, "1.00"), (np.nan, "–"),
                                     (None, "–")])
def test_format_p(p, text):
    assert paper_tables.format_p(p) == text


def test_format_estimate():
    assert paper_tables.format_estimate(0.8412, 0.7391, 0.9433) == "0.84 (0.74-0.94)"
    assert paper_tables.format_estimate(-0.2213, -0.3562, -0.0801) == "-0.22 (-0.36 to -0.08)"
    assert paper_tables.format_estimate(0.5, np.nan, np.nan) == "0.50 (–)"
    assert paper_tables.format_estimate(np.nan, 0.1, 0.2) == "–"
    assert paper_tables.format_estimate(0.8412, 0.7391, 0.9433, digits=3) == "0.841 (0.739-0.943)"


def _performance_frame(who: str) -> pd.DataFrame:
    return pd.DataFrame({"dataset": ["train", "train", "validation", "validation"], who: ["A", "B", "A", "B"],
                         "accuracy": [0.8125, 0.6, 0.7414, 0.5], "auc": [0.8612, 0.7, 0.8412, 0.5],
                         "auc_low": [0.8004, 0.6, 0.7391, np.nan], "auc_high": [0.9231, 0.8, 0.9433, np.nan],
                         "sensitivity": [0.7143, 1.0, 0.8696, 0.0], "specificity": [0.8831, 0.0, 0.6571, 1.0]})


def test_table4_in_the_paper_style():
    shown = paper_tables.table4(_performance_frame("model"))
    assert list(shown.columns) == ["Model", "Set", "Accuracy", "AUC (95% CI)", "Sensitivity", "Specificity"]
    assert shown.values.tolist() == [
        ["A", "Training", "0.81", "0.86 (0.80-0.92)", "0.71", "0.88"],
        ["A", "Validation", "0.74", "0.84 (0.74-0.94)", "0.87", "0.66"],
        ["B", "Training", "0.60", "0.70 (0.60-0.80)", "1.00", "0.00"],
        ["B", "Validation", "0.50", "0.50 (–)", "0.00", "1.00"]]
    assert "DeLong" in shown.attrs["footnote"]


def test_table3_in_the_paper_style():
    shown = paper_tables.table3(_performance_frame("architecture"))
    assert list(shown.columns)[:2] == ["Architecture", "Set"] and shown.iloc[1, 3] == "0.84 (0.74-0.94)"


def test_table5_in_the_paper_style():
    frame = pd.DataFrame({"feature": ["BoW_01", "BoW_01", "BoW_1", "BoW_1"],
                          "indicator": ["MVI grade", "Ki-67", "MVI grade", "Ki-67"],
                          "r": [-0.2213, -0.08, 0.3021, np.nan], "r_low": [-0.3562, -0.22, 0.1611, np.nan],
                          "r_high": [-0.0801, 0.06, 0.4249, np.nan], "p": [0.0021, 0.263, 0.00004, np.nan],
                          "n": [191, 191, 191, 191]})
    shown = paper_tables.table5(frame)
    assert list(shown.columns) == [("", "Feature"), ("MVI grade", "r (95% CI)"), ("MVI grade", "p"),
                                   ("Ki-67", "r (95% CI)"), ("Ki-67", "p")]
    assert shown.values.tolist() == [["BoW_01", "-0.22 (-0.36 to -0.08)", "0.002", "-0.08 (-0.22 to 0.06)", "0.26"],
                                     ["BoW_1", "0.30 (0.16-0.42)", "< 0.001", "–", "–"]]
    assert "n = 191 patients in every cell" in shown.attrs["footnote"]
    uneven = paper_tables.table5(frame.assign(n=[191, 180, 191, 2]))
    assert ("Ki-67", "n") in uneven.columns and uneven[("Ki-67", "n")].tolist() == ["180", "2"]


def test_delong_in_words():
    frame = pd.DataFrame({"dataset": ["validation"], "model_a": ["DL-MIL"], "model_b": ["Radiomics"],
                          "auc_a": [0.8402], "auc_b": [0.6781], "z": [1.987], "p": [0.0469]})
    assert paper_tables.delong(frame).values.tolist() == [["Validation", "DL-MIL vs Radiomics", "0.84 vs 0.68",
                                                           "1.99", "0.047"]]


def _table2_cohort() -> pd.DataFrame:
    """Eight training patients (NER: 4, ER: 4) and four validation ones; age normal-looking, AFP skewed."""
    return pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(12)], "er": [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1],
        "split": ["train"] * 8 + ["validation"] * 4,
        "age": [50.0, 52, 54, 56, 40, 42, 44, 46, 50, 60, 40, 44],
        "afp": [10.0, 11, 12, 400, 100, 110, 120, 5000, 10, 20, 30, 40],
        "gender": ["M", "M", "M", "F", "M", "M", "M", "M", "F", "M", "M", "M"],
    })


def test_table2_in_the_paper_style():
    params = params_from_dict({"cohort": {"manifest": "unused.csv"},
                               "clinical": {"continuous": ["age", "afp"], "categorical": ["gender"]}})
    frame = clinical.table2(_table2_cohort(), params)
    frame.loc[frame["variable"] == "AFP", "test"] = "Mann-Whitney U"  # as Shapiro-Wilk would decide on more data
    frame.loc[frame["variable"] == "Age", "test"] = "t-test"
    shown = paper_tables.table2(frame)
    assert list(shown.columns) == [("", "Characteristic"),
                                   ("Training set (n=8)", "NER (n=4)"), ("Training set (n=8)", "ER (n=4)"),
                                   ("Training set (n=8)", "p"), ("Validation set (n=4)", "NER (n=2)"),
                                   ("Validation set (n=4)", "ER (n=2)"), ("Validation set (n=4)", "p")]
    rows = {r[0]: r[1:] for r in shown.values.tolist()}
    assert list(rows) == ["Age, mean ± SD", "AFP, median (IQR)", "Gender, n (%)", "\u2003Female", "\u2003Male"]
    # age NER training: mean 53, SD sqrt(20/3) = 2.58; ER: mean 43, same SD
    assert rows["Age, mean ± SD"][:2] == ["53.0 ± 2.6", "43.0 ± 2.6"]
    # AFP NER training 10, 11, 12, 400: median 11.5, quartiles 10.75 and 109; ER 100, 110, 120, 5000
    assert rows["AFP, median (IQR)"][:2] == ["11.5 (10.8-109.0)", "115 (108-1340)"]
    assert rows["\u2003Female"][:2] == ["1 (25.0%)", "0 (0.0%)"] and rows["\u2003Female"][2] == ""
    assert rows["Gender, n (%)"][:2] == ["", ""] and rows["Gender, n (%)"][2].startswith("1.00")
    age_p = frame.loc[(frame["variable"] == "Age") & (frame["set"] == "train"), "p"].iloc[0]
    assert rows["Age, mean ± SD"][2] == paper_tables.format_p(age_p) + "\u1d43"
    assert "\u1d43 t-test" in shown.attrs["footnote"] and "\u1d47 Mann-Whitney U" in shown.attrs["footnote"]


def test_table2_from_an_older_version_says_to_rerun():
    with pytest.raises(ValueError, match="rerun notebook 05_models"):
        paper_tables.table2(pd.DataFrame(columns=["variable", "set", "NER", "ER", "p", "test"]))


# -- the displays ------------------------------------------------------------------------------------------------

def _figure():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    return fig


def test_save_figure_writes_png_and_svg_and_shows_the_caption_below(tmp_path):
    run = RunFolder(tmp_path)
    shown = notebook.save_figure(_figure(), run, "fig5ab_roc")
    png, svg = tmp_path / "figures" / "fig5ab_roc.png", tmp_path / "figures" / "fig5ab_roc.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and svg.read_text().lstrip().startswith("<?xml")
    assert shown._repr_png_() == png.read_bytes()
    page = shown._repr_html_()
    assert page.startswith('<figure class="hcc-figure"')
    image = re.search(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert image and base64.b64decode(image.group(1)) == png.read_bytes()
    assert page.index("<img") < page.index("<figcaption")
    assert "<b>Figure 5a-b.</b> ROC curves of the models on the training (a) and validation (b) patients" in page
    assert '<a href="../figures/fig5ab_roc.svg">SVG</a>' in page and str(tmp_path) not in page
    assert notebook.save_figure(None, run, "fig5ab_roc") is None


def test_save_figure_of_an_unregistered_name_shows_it_without_a_number(tmp_path):
    page = notebook.save_figure(_figure(), RunFolder(tmp_path), "scratch")._repr_html_()
    assert "<b>" not in page and '<a href="../figures/scratch.svg">SVG</a>' in page


def test_show_table_with_a_caption_above_in_the_paper_style(tmp_path):
    page = notebook.show_table(_performance_frame("model"), caption="table4_models").data
    assert page.startswith('<figure class="hcc-table"') and "<b>Table 4.</b> Performance of the models" in page
    assert '<a href="../tables/table4_models.csv">CSV</a>' in page
    assert page.index("</figcaption>") < page.index("<table")
    text = re.sub(r"<[^>]+>", "", page)
    assert "0.84 (0.74-0.94)" in text and "AUC (95% CI)" in text and "auc_low" not in text
    assert '0.84</span> <span style="white-space: nowrap;">(0.74-0.94)</span>' in page
    assert '<p class="hcc-table-note"' in page and page.index("</table>") < page.index("hcc-table-note")


def test_show_table_by_name_writes_the_csv_and_formats_p(tmp_path):
    run = RunFolder(tmp_path)
    table = pd.DataFrame({"variable": ["age", "afp"], "p": [0.0004, 0.34]})
    page = notebook.show_table(table, run, "clinical_tests").data
    assert pd.read_csv(tmp_path / "tables" / "clinical_tests.csv").equals(table)
    assert "<b>Table S" in page and '<a href="../tables/clinical_tests.csv">CSV</a>' in page
    assert "&lt; 0.001" in page and "0.34" in page


def test_show_table_without_a_caption_stays_a_plain_table(tmp_path):
    shown = notebook.show_table(pd.DataFrame({"a": [1.23456]}), RunFolder(tmp_path), "scratch_table")
    assert isinstance(shown, pd.io.formats.style.Styler) and (tmp_path / "tables" / "scratch_table.csv").is_file()
    with pytest.raises(captions.CaptionMissing, match="no_such_table"):
        notebook.show_table(pd.DataFrame({"a": [1]}), caption="no_such_table")
    assert notebook.show_table_or_note(None, "nothing", caption="applied_auc").data == "*nothing*"


# -- the palette -------------------------------------------------------------------------------------------------

def test_models_and_architectures_use_distinct_okabe_ito_colours():
    palette = set(OKABE_ITO.values())
    for group in ([m.colour for m in model_registry.MODELS], list(cnn_plots.ARCHITECTURE_COLOURS.values()),
                  list(model_plots.GROUP_COLOURS.values()), list(radiomics_plots.FAMILY_COLOURS.values())):
        assert set(group) <= palette and len(set(group)) == len(group), group
    assert all(c == c.lower() for c in palette)
