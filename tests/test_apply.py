"""Notebook 10's module (``hcc_utils.apply``): the new patients, and the tables made from predict's output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _bundle_run import new_manifest

from hcc_utils import apply, artifacts, stats
from hcc_utils.config import ParamsError, load_params, params_from_dict
from hcc_utils.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
BASE = {"name": "t", "cohort": {"synthetic": {"n": 20, "seed": 7, "image_size": 64, "image_signal": 2.0}}}


def test_the_new_synthetic_cohort_is_the_run_s_population_with_another_seed_and_n():
    params = params_from_dict({**BASE, "apply": {"synthetic_n": 12}})
    new = apply.new_synthetic_settings(params)
    assert (new.n, new.seed) == (12, 7 + apply.SEED_OFFSET)
    own = params.cohort.synthetic.model_dump()
    assert {k: v for k, v in new.model_dump().items() if k not in ("n", "seed")} == \
        {k: v for k, v in own.items() if k not in ("n", "seed")}
    assert new.cache_key() != params.cohort.synthetic.cache_key()
    chosen = params_from_dict({**BASE, "apply": {"synthetic_seed": 3}})
    assert apply.new_synthetic_settings(chosen).seed == 3


def test_the_run_s_own_seed_is_refused_naming_the_key(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**BASE, "apply": {"synthetic_seed": 7}}))
    with pytest.raises(ParamsError, match=r"key 'apply' .*synthetic_seed 7 is the run's own cohort\.synthetic\.seed"):
        load_params(path)


def test_shipped_params_apply_blocks():
    assert load_params(ROOT / "params" / "smoke.yaml").apply.synthetic_n == 16
    assert load_params(ROOT / "params" / "default.yaml").apply.synthetic_n == 40


def test_a_manifest_cohort_without_apply_manifest_has_no_new_patients(tmp_path):
    params = params_from_dict({"name": "t", "cohort": {"manifest": str(tmp_path / "cohort.csv")}})
    assert apply.new_patients(params) is None
    applied = apply.apply_model(params, RunFolder(tmp_path / "run"))
    assert applied.note and "apply.manifest" in applied.summary
    assert apply.auc_table(applied) is None and apply.roc_table(applied) is None
    assert apply.excluded_table(applied) is None
    with pytest.raises(apply.ApplyError, match="set apply.manifest"):
        apply.new_synthetic_settings(params)


def test_a_missing_apply_manifest_says_so(tmp_path):
    params = params_from_dict({**BASE, "apply": {"manifest": str(tmp_path / "new.csv")}})
    with pytest.raises(apply.ApplyError, match=r"apply.manifest .*new\.csv not found"):
        apply.new_patients(params)


def _applied(n: int = 30, seed: int = 0) -> apply.Applied:
    """predict's table for ``n`` patients (the last excluded), two models; ER known for all but the first."""
    rng = np.random.default_rng(seed)
    er = rng.integers(0, 2, n)
    ids = [f"N{i:02d}" for i in range(n)]
    table = pd.DataFrame({"patient_id": ids, "status": "scored",
                          "a_prob": np.clip(er * 0.3 + rng.random(n) * 0.7, 0, 1), "b_prob": rng.random(n),
                          "flags": ""})
    table.loc[n - 1, ["status", "a_prob", "b_prob", "flags"]] = ["excluded", np.nan, np.nan, "patient N29: gone"]
    table.loc[3, "b_prob"] = np.nan  # a patient model b could not score
    for slug in ("a", "b"):
        table[f"{slug}_class"] = (table[f"{slug}_prob"] >= 0.5).astype("Int64").mask(table[f"{slug}_prob"].isna())
    labels = pd.Series(er[1:], index=ids[1:], name="er")
    return apply.Applied(table, labels, {"a": "DL-MIL", "b": "Clinical"}, {"a": 0.5, "b": 0.4})


def test_auc_table_gives_each_model_s_auc_and_delong_ci_on_the_labelled_scored_patients(tmp_path):
    applied = _applied()
    table = apply.auc_table(applied, 0.9)
    assert table["model"].tolist() == ["DL-MIL", "Clinical"]
    known = applied.predictions.iloc[1:-1]
    y = known["patient_id"].map(applied.labels)
    assert table["n"].tolist() == [len(known), len(known) - 1]
    assert table.at[0, "auc"] == pytest.approx(stats.auc(y, known["a_prob"]))
    assert (table.at[0, "auc_low"], table.at[0, "auc_high"]) == pytest.approx(stats.auc_ci(y, known["a_prob"],
                                                                                           0.9)[1:])
    sens = stats.classification_metrics(y, known["a_prob"], 0.5)["sensitivity"]
    assert table.at[0, "sensitivity"] == pytest.approx(sens)
    run = RunFolder(tmp_path)
    apply.auc_table(applied, 0.9, run)
    written = artifacts.read_table(run, artifacts.APPLIED_AUC)
    assert written["model"].tolist() == ["DL-MIL", "Clinical"]
    roc = apply.roc_table(applied)
    assert set(roc["model"]) == {"DL-MIL", "Clinical"} and roc["tpr"].between(0, 1).all()


def test_a_model_with_one_outcome_keeps_its_row_with_the_reason():
    applied = _applied()
    applied.labels[:] = 1
    table = apply.auc_table(applied)
    assert table["auc"].isna().all() and table["note"].str.startswith("not assessed").all()
    assert apply.roc_table(applied) is None


def test_no_outcome_known_gives_no_auc():
    applied = _applied()
    applied.labels = applied.labels.iloc[:0]
    assert apply.auc_table(applied) is None and apply.roc_table(applied) is None
    assert "er" not in apply.predictions_table(applied).columns


def test_predictions_excluded_and_the_example_report(tmp_path):
    applied = _applied()
    shown = apply.predictions_table(applied)
    assert len(shown) == 29 and shown["er"].isna().sum() == 1 and "status" not in shown.columns
    excluded = apply.excluded_table(applied)
    assert excluded.to_dict("records") == [{"patient_id": "N29", "reason": "patient N29: gone"}]
    run = RunFolder(tmp_path)
    assert apply.example_report(applied, run) is None
    for pid in ("N29", "N05", "N02"):  # an excluded patient's report is never the example
        artifacts.APPLIED_REPORT.path(run, patient=pid).write_text("<html></html>")
    assert apply.example_report(applied, run).parent.name == "N02"


def test_the_applied_folder_holds_predict_s_table():
    assert artifacts.APPLIED_PREDICTIONS.pattern.endswith("/" + artifacts.NEW_PREDICTIONS)


@pytest.mark.slow  # the session's smoke book (tests/conftest.py)
def test_the_run_s_labelled_validation_patients_as_apply_manifest_give_table4_s_aucs(smoke_run, tmp_path):
    """apply.manifest = the run's own validation patients with their outcome: notebook 10 scores them from a copy
    of the bundle alone and finds each model's Table 4 validation AUC and CI again."""
    import shutil

    source = smoke_run.run_dir
    run = RunFolder(tmp_path / "run")  # the shared run is only read: the bundle and Table 4 are copied
    shutil.copytree(source / artifacts.BUNDLE_DIR, run.root / artifacts.BUNDLE_DIR)
    shutil.copy(artifacts.TABLE4.path(RunFolder(source)), artifacts.TABLE4.path(run))
    params = load_params(source / artifacts.PARAMS.pattern)
    params.apply = params.apply.model_copy(update={"manifest": new_manifest(source, tmp_path / "in", outcome=True)})
    applied = apply.apply_model(params, run)
    assert (applied.predictions["status"] == "scored").all(), applied.predictions["flags"].tolist()
    table = apply.auc_table(applied, params.evaluation.ci_level, run).set_index("model")
    table4 = artifacts.read_table(run, artifacts.TABLE4).query("dataset == 'validation'").set_index("model")
    assert list(table.index) == ["DL-MIL", "Radiomics", "Clinical"]
    for column in ("auc", "auc_low", "auc_high"):
        assert (table[column] - table4.loc[table.index, column]).abs().max() < 1e-9, column
    assert (table["auc"] == table["run_validation_auc"]).all()
    assert artifacts.APPLIED_PREDICTIONS.path(run).is_file() and artifacts.APPLIED_AUC.path(run).is_file()


def test_the_report_is_shown_in_a_frame_or_a_note(tmp_path):
    from hcc_utils import notebook

    page = tmp_path / "P1" / "report.html"
    page.parent.mkdir()
    page.write_text('<html><body><h1 class="x">P1 & "summary"</h1></body></html>', encoding="utf-8")
    shown = notebook.show_html_page(page, "none").data
    assert shown.startswith("<p><code>P1/report.html</code></p><iframe srcdoc=")
    assert "&lt;h1 class=&quot;x&quot;&gt;P1 &amp; &quot;summary&quot;" in shown and "<h1" not in shown
    assert notebook.show_html_page(None, "No report.").data == "*No report.*"
