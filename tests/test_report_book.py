"""The report as published (hcc_utils.book, hcc_utils.landing): executed notebooks cleaned for the page, and the
landing page built from a run's files."""

import json
from pathlib import Path

import nbformat
import pandas as pd
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from hcc_utils import artifacts
from hcc_utils.book import local_paths, publishable_notebook
from hcc_utils.config import load_params
from hcc_utils.landing import landing_page
from hcc_utils.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]


def executed_notebook(run: RunFolder) -> Path:
    """A notebook as papermill leaves it: the parameters cell, the injected one with this machine's paths, a
    code cell whose stderr holds two copies of one warning and one of another, and a path in its output."""
    warning = (f"{ROOT}/hcc_utils/fold_selection.py:62: SelectionWarning: lasso: no feature survived\n"
               "  self.selection_ = select_features(X)\n")
    other = f"{ROOT}/hcc_utils/clinical.py:241: UserWarning: no clinical variable has p < 0.05\n  tests = x\n"
    cells = [new_markdown_cell("# Chapter"),
             new_code_cell('params_file = "params/default.yaml"', metadata={"tags": ["parameters"]}),
             new_code_cell(f'params_file = "{run.root}/params.yaml"\nrun_dir = "{run.root}"',
                           metadata={"tags": ["injected-parameters"]}),
             new_code_cell("fit()", outputs=[
                 new_output("stream", name="stderr", text=warning + warning + other),
                 new_output("stream", name="stdout", text=f"bundle written to {run.root}/model\n"),
                 new_output("display_data", data={"text/plain": f"{Path.home()}/x", "text/html": f"<p>{ROOT}</p>"})]),
             ]
    path = run.notebooks / "nb.ipynb"
    nbformat.write(new_notebook(cells=cells), path)
    return path


def test_published_notebook_drops_parameter_cells_folds_code_and_turns_warnings_into_notes(tmp_path):
    run = RunFolder(tmp_path / "runs" / "mine")
    nb = publishable_notebook(executed_notebook(run), run)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code"]
    code = nb.cells[1]
    assert "hide-input" in code.metadata["tags"]
    text = json.dumps(code.outputs)
    for local in (str(run.root), str(ROOT), str(Path.home())):
        assert local not in text, local
    assert "runs/mine/model" in text
    notes = [o for o in code.outputs if "admonition note" in o.get("data", {}).get("text/html", "")]
    assert len(notes) == 1
    html = notes[0]["data"]["text/html"]
    assert "SelectionWarning: lasso: no feature survived (x2)" in html and "UserWarning" in html
    assert "select_features" not in text and "fold_selection.py" not in text
    assert not [o for o in code.outputs if o.get("name") == "stderr"]


def test_local_paths_are_replaced_longest_first(tmp_path):
    run = RunFolder(tmp_path / "runs" / "mine")
    paths = local_paths(run)
    assert list(paths)[0] == str(run.root) and paths[str(run.root)] == "runs/mine"
    assert paths[str(Path.home())] == "~"


def fake_run(tmp_path) -> tuple[RunFolder, object]:
    """A run folder with only the files the landing page reads: the split, Table 4, DeLong, chapter 09's
    summaries, the ROC figure."""
    params = load_params(ROOT / "params" / "smoke.yaml")
    run = RunFolder(tmp_path / "runs" / "smoke")
    pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "er": [1, 0, 0, 1],
                  "split": ["train", "train", "validation", "validation"]}).to_csv(artifacts.SPLIT.path(run),
                                                                                  index=False)
    rows = [(d, m, 0.7, 0.81234, 0.70111, 0.92, 0.6, 0.8) for d in ("train", "validation")
            for m in ("DL-MIL", "Radiomics")]
    pd.DataFrame(rows, columns=["dataset", "model", "accuracy", "auc", "auc_low", "auc_high", "sensitivity",
                                "specificity"]).to_csv(artifacts.TABLE4.path(run), index=False)
    pd.DataFrame([("validation", "DL-MIL", "Radiomics", 0.81, 0.62, 2.1, 0.0004)],
                 columns=["dataset", "model_a", "model_b", "auc_a", "auc_b", "z", "p"]).to_csv(
        artifacts.DELONG.path(run), index=False)
    pd.DataFrame([("DL-MIL", 20, 0.7, 0.6, 0.8, 0.7, 0.7, 0.81, 60.0)],
                 columns=["model", "repeats", "median", "low", "high", "mean", "main_split_chain_auc",
                          "table4_auc", "table4_percentile"]).to_csv(
        artifacts.ROBUSTNESS_REPEATS_SUMMARY.path(run), index=False)
    pd.DataFrame([("DL-MIL", 49, 0.8, 0.8, 0.5, 0.1, 0.3, 0.7, 0.2)],
                 columns=["model", "permutations", "observed_auc", "table4_auc", "null_mean", "null_sd",
                          "null_low", "null_high", "p_value"]).to_csv(
        artifacts.ROBUSTNESS_PERMUTATION.path(run), index=False)
    for slug, probs in (("dl_mil", [0.8, 0.3, 0.4, 0.7]), ("radiomics", [0.6, 0.5, 0.55, 0.5])):
        pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "split": ["train", "train", "validation", "validation"],
                      "er": [1, 0, 0, 1], "prob": probs, "prob_oof": probs}).to_csv(
            artifacts.PATIENT_PREDICTIONS.path(run, slug=slug), index=False)
    return run, params


def test_landing_page_leads_with_the_cohort_table4_and_the_roc_figure(tmp_path):
    run, params = fake_run(tmp_path)
    page = landing_page(run, params, [("01_preprocessing", "Cohort")], [("notebooks/01_preprocessing", "Cohort")])
    first = page.index
    assert first("**Cohort.** 4 patients") < first('id="glance-table4"') < first('id="glance-roc"')
    assert "0.81 (0.70-0.92)" in page and 'href="tables/table4_models.csv"' in page
    assert "Radiomics (AUC 0.62) differ on the validation patients (DeLong p < 0.001)" in page
    assert "median validation AUC 0.70 (0.60-0.80) over 20 repeated splits; permutation p = 0.20" in page
    assert "not distinguishable from chance by the permutation test" in page
    assert "synthetic" in page and "1. [Cohort](notebooks/01_preprocessing.ipynb)" in page
    assert artifacts.figure_path(run, "glance_roc_validation").is_file()
    assert artifacts.figure_svg_path(run, "glance_roc_validation").is_file()
    html_block = page[page.index('<div class="hcc-glance-row">'):page.index("</figure>")]
    assert "\n\n" not in html_block, "a blank line would end MyST's raw HTML block"
    assert "{{" not in page


def test_landing_page_of_a_run_that_stopped_early_says_what_is_missing(tmp_path):
    params = load_params(ROOT / "params" / "smoke.yaml")
    run = RunFolder(tmp_path / "runs" / "early")
    page = landing_page(run, params, [], [])
    assert "chapter 01 did not finish" in page and "chapter 06 did not finish" in page
    assert "glance-roc" not in page
