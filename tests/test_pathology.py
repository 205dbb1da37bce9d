"""Pearson correlation of MIL features with pathology, Table 5 and its heatmap (hcc_utils.pathology)."""

from __future__ import annotations

import json
import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hcc_utils import artifacts, pathology
from hcc_utils.cohort import load_manifest, split_patients
from hcc_utils.config import params_from_dict
from hcc_utils.plots.pathology import correlation_heatmap, reference_heatmap
from hcc_utils.run_folder import RunFolder
from hcc_utils.synth.truth import GroundTruthIgnored

INDICATOR_NAMES = ["MVI grade", "Ki-67", "Edmondson-Steiner grade"]


def _patients(n: int = 60, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Selected MIL features and pathology, both indexed by patient_id; BoW_09 follows MVI grade closely."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"P{i:03d}" for i in range(n)], name="patient_id")
    mvi = rng.choice([0, 1, 2], size=n, p=[0.6, 0.2, 0.2]).astype(float)
    ki67 = np.clip(rng.normal(0.23, 0.2, size=n), 0, 1)
    edmondson = rng.choice([1, 2, 3, 4], size=n).astype(float)
    mvi[[3, 7]] = np.nan          # missing pathology, left out pair by pair
    ki67[[7, 11, 12]] = np.nan
    features = pd.DataFrame({"BoW_02": rng.uniform(size=n),
                             "BoW_09": np.nan_to_num(mvi, nan=1.0) + 0.3 * rng.normal(size=n),
                             "BoW_1": rng.uniform(size=n)}, index=ids)
    cohort = pd.DataFrame({"mvi_grade": mvi, "ki67": ki67, "edmondson": edmondson,
                           "split": np.where(np.arange(n) % 3 == 0, "validation", "train")}, index=ids)
    return features, cohort


def test_hand_worked_example():
    # x = 1..5, y = 2, 1, 4, 3, 5: deviations (-2, -1, 0, 1, 2) and (-1, -2, 1, 0, 2),
    # sum of products 8, sums of squares 10 and 10, so r = 8 / 10 = 0.8.
    # t = r sqrt(n - 2) / sqrt(1 - r^2) = 0.8 sqrt(3) / 0.6, so t / sqrt(3) = 4/3; with 3 degrees of freedom the
    # two-sided p is 1 - (2/pi) (u / (1 + u^2) + atan(u)) with u = 4/3, i.e. 1 - (2/pi) (12/25 + atan(4/3)).
    # Fisher z: atanh(0.8) = ln 3, se = 1 / sqrt(5 - 3); 95%: tanh(ln 3 -+ 1.959964 / sqrt(2)).
    res = pathology.pearson_cell([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    half = 1.959963984540054 / math.sqrt(2)
    assert res.n == 5
    assert res.r == pytest.approx(0.8, abs=1e-12)
    assert res.p == pytest.approx(1 - (2 / math.pi) * (12 / 25 + math.atan(4 / 3)), abs=1e-9)
    assert res.low == pytest.approx(math.tanh(math.log(3) - half), abs=1e-9)
    assert res.high == pytest.approx(math.tanh(math.log(3) + half), abs=1e-9)
    assert (round(res.low, 3), round(res.high, 3), round(res.p, 4)) == (-0.280, 0.986, 0.1041)


@pytest.mark.parametrize("level", [0.95, 0.90])
def test_every_cell_agrees_with_scipy_on_the_complete_pairs(level):
    features, cohort = _patients()
    corr = pathology.correlate_with_pathology(features, cohort, level=level)
    for row in corr.table.itertuples():
        column = {v: k for k, v in pathology.INDICATORS.items()}[row.indicator]
        both = pd.concat([features[row.feature], cohort[column]], axis=1).dropna()
        ref = stats.pearsonr(both.iloc[:, 0], both.iloc[:, 1])
        ci = ref.confidence_interval(confidence_level=level)
        assert (row.r, row.r_low, row.r_high, row.p) == pytest.approx(
            (ref.statistic, ci.low, ci.high, ref.pvalue), abs=1e-12)
        # and the interval is the textbook Fisher-z one
        half = stats.norm.ppf(0.5 + level / 2) / math.sqrt(len(both) - 3)
        assert row.r_low == pytest.approx(math.tanh(math.atanh(row.r) - half), abs=1e-9)
        assert row.r_high == pytest.approx(math.tanh(math.atanh(row.r) + half), abs=1e-9)
        assert corr.n.loc[row.feature, row.indicator] == len(both)
    assert corr.n.loc["BoW_02", "MVI grade"] == 58
    assert corr.n.loc["BoW_02", "Ki-67"] == 57
    assert corr.n.loc["BoW_02", "Edmondson-Steiner grade"] == 60


def test_table5_has_one_row_per_feature_and_indicator(tmp_path):
    features, cohort = _patients()
    corr = pathology.correlate_with_pathology(features, cohort)
    assert list(corr.table.columns) == ["feature", "indicator", "r", "r_low", "r_high", "p"]
    assert len(corr.table) == 3 * 3
    assert set(zip(corr.table["feature"], corr.table["indicator"], strict=True)) == {
        (f, i) for f in features.columns for i in INDICATOR_NAMES}
    assert list(corr.n.columns) == INDICATOR_NAMES and list(corr.n.index) == list(features.columns)
    shown = corr.with_n()
    assert list(shown.columns[-1:]) == ["n"] and len(shown) == 9
    run = RunFolder(tmp_path / "run")
    pathology.write_table5(corr, run)
    written = pd.read_csv(run.tables / "table5_pathology.csv")
    assert list(written.columns) == ["feature", "indicator", "r", "r_low", "r_high", "p"]
    strong = corr.table.set_index(["feature", "indicator"]).loc[("BoW_09", "MVI grade")]
    assert strong["r"] > 0.8 and strong["p"] < 1e-6 and strong["r_low"] < strong["r"] < strong["r_high"]


def test_a_constant_feature_warns_and_leaves_empty_cells(tmp_path):
    features, cohort = _patients()
    features["BoW_10"] = 0.25
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", stats.ConstantInputWarning)
        corr = pathology.correlate_with_pathology(features, cohort)
    messages = [str(w.message) for w in caught if issubclass(w.category, pathology.PathologyWarning)]
    assert messages == ["BoW_10 is 0.25 for all 60 patients, so its correlations are undefined; its Table 5 "
                        "cells are left empty"]
    assert not [w for w in caught if not issubclass(w.category, pathology.PathologyWarning)]
    empty = corr.table[corr.table["feature"] == "BoW_10"]
    assert len(empty) == 3 and empty[["r", "r_low", "r_high", "p"]].isna().all().all()
    assert corr.table[corr.table["feature"] != "BoW_10"][["r", "p"]].notna().all().all()
    assert (corr.n.loc["BoW_10"] > 0).all()
    run = RunFolder(tmp_path / "run")
    pathology.write_table5(corr, run)
    lines = (run.tables / "table5_pathology.csv").read_text().splitlines()
    assert "BoW_10,MVI grade,,,," in lines
    assert "nan" not in "\n".join(lines).lower()


def test_a_constant_indicator_or_too_few_pairs_is_named():
    features, cohort = _patients()
    with pytest.warns(pathology.PathologyWarning) as caught:
        corr = pathology.correlate_with_pathology(features, cohort.assign(edmondson=3.0))
    assert [str(w.message).split(":")[0] for w in caught] == [  # one per feature: the indicator is constant
        f"{f} vs Edmondson-Steiner grade" for f in features.columns]
    assert "Edmondson-Steiner grade is constant over the 60 patients" in str(caught[0].message)
    assert corr.table.loc[corr.table["indicator"] == "Edmondson-Steiner grade", "r"].isna().all()
    assert corr.table.loc[corr.table["indicator"] != "Edmondson-Steiner grade", "r"].notna().all()
    with pytest.warns(pathology.PathologyWarning, match="BoW_02 vs Edmondson-Steiner grade: "
                      "Edmondson-Steiner grade is constant"):
        res = pathology.pearson_cell([0.1, 0.5, 0.2, 0.9], [2, 2, 2, 2], label="BoW_02 vs Edmondson-Steiner grade")
    assert math.isnan(res.r) and res.n == 4
    with pytest.warns(pathology.PathologyWarning, match="only 3 patient"):
        res = pathology.pearson_cell([0.1, 0.5, 0.2, 0.9, None], [1, 2, np.nan, 0, 2], label="BoW_1 vs MVI grade")
    assert math.isnan(res.p) and res.n == 3


def test_significance_stars():
    assert [pathology.significance_stars(p) for p in (0.0009, 0.001, 0.009, 0.01, 0.049, 0.05, np.nan)] == [
        "***", "**", "**", "*", "*", "", ""]


def test_patient_sets_and_inputs():
    features, cohort = _patients()
    cohort_table = cohort.reset_index()
    mil = features.assign(PLH_00=0.0).drop(index="P005")          # P005 excluded earlier: no MIL features
    selected = ["BoW_09", "BoW_02"]
    for patients, expected in (("all", 59), ("train", 39), ("validation", 20)):
        feats, path = pathology.pathology_inputs(mil, selected, cohort_table, patients)
        assert list(feats.columns) == selected and len(feats) == expected
        assert list(path.index) == list(feats.index)
        assert patients == "all" or set(path["split"]) == {patients}
    with pytest.raises(KeyError, match="BoW_99"):
        pathology.pathology_inputs(mil, ["BoW_99"], cohort_table)
    with pytest.raises(ValueError, match="'test'"):
        pathology.pathology_inputs(mil, selected, cohort_table, "test")


def _manifest(tmp_path, cohort: pd.DataFrame):
    table = cohort.reset_index().assign(image="img.nii.gz", mask="mask.nii.gz")
    table["er"] = np.arange(len(table)) % 2  # both outcomes: a manifest of one outcome is refused
    path = tmp_path / "cohort.csv"
    table.to_csv(path, index=False)
    return path


def test_load_inputs_from_the_run_folder_and_manifest(tmp_path):
    features, cohort = _patients()
    params = params_from_dict({"cohort": {"manifest": str(_manifest(tmp_path, cohort)), "split_column": "split"},
                               "pathology": {"patients": "validation"}})
    run = RunFolder(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="04_mil_features"):
        pathology.load_inputs(run, params)
    full = features.reindex(columns=artifacts.MIL_FEATURE_COLUMNS, fill_value=0.0)
    full.reset_index().to_csv(run.tables / "mil_features.csv", index=False)
    with pytest.raises(FileNotFoundError, match="05_models"):
        pathology.load_inputs(run, params)
    (run.models / "dl_mil_features.json").write_text(json.dumps(["BoW_1", "BoW_09"]))
    with pytest.raises(FileNotFoundError, match="run 01_preprocessing first"):
        pathology.load_inputs(run, params)
    table = load_manifest(params.cohort.manifest)
    artifacts.write_split(run, table.assign(split=split_patients(table, params.cohort).to_numpy()))  # notebook 01
    feats, path = pathology.load_inputs(run, params)
    assert list(feats.columns) == ["BoW_1", "BoW_09"] and len(feats) == 20
    np.testing.assert_allclose(path["mvi_grade"], cohort.loc[feats.index, "mvi_grade"])
    assert pathology.latent_reference(params) is None
    reference = pathology.reference_correlation(params, path)
    assert reference.correlation is None and reference.with_n() is None
    assert reference.note == pathology.NO_GROUND_TRUTH and reference_heatmap(reference) is None


def test_latent_reference_on_a_synthetic_cohort(tmp_path, monkeypatch):
    features, cohort = _patients()
    folder = tmp_path / "synthetic"
    folder.mkdir()
    truth = pd.DataFrame({"patient_id": cohort.index, "invasiveness": cohort["mvi_grade"].fillna(0) + 0.1,
                          "proliferation": cohort["ki67"].fillna(0.2), "er_probability": 0.4})
    truth.to_csv(folder / "ground_truth.csv", index=False)
    monkeypatch.setattr("hcc_utils.cohort.synthetic_dir", lambda cfg: folder)
    params = params_from_dict({"cohort": {"synthetic": {"n": 20}}})
    latent = pathology.latent_reference(params, cohort.index[:30])
    assert list(latent.columns) == ["latent invasiveness", "latent proliferation"] and len(latent) == 30
    reference = pathology.reference_correlation(params, cohort.iloc[:30])
    cells = reference.correlation.table.set_index(["feature", "indicator"])["r"]
    assert cells[("latent invasiveness", "MVI grade")] == pytest.approx(1.0)
    assert cells[("latent proliferation", "Ki-67")] == pytest.approx(1.0)
    assert reference.note == "" and len(reference.with_n()) == 6
    truth.rename(columns={"proliferation": "latent_proliferation"}).to_csv(folder / "ground_truth.csv", index=False)
    note = ("ground_truth.csv beside the manifest does not describe this cohort (column proliferation missing): "
            "ignored; there is no latent reference.")
    with pytest.warns(GroundTruthIgnored) as caught:
        assert pathology.latent_reference(params) is None
    assert [str(w.message) for w in caught] == [note]
    reference = pathology.reference_correlation(params, cohort.iloc[:30])
    assert reference.correlation is None and reference.note == note and reference_heatmap(reference) is None


def test_a_stale_ground_truth_beside_a_users_manifest_is_ignored_with_a_note(tmp_path):
    features, cohort = _patients()
    folder = tmp_path / "PID123_DOE"
    folder.mkdir()
    params = params_from_dict({"cohort": {"manifest": str(_manifest(folder, cohort))}})
    truth = pd.DataFrame({"patient_id": cohort.index, "invasiveness": cohort["mvi_grade"].fillna(0),
                          "proliferation": cohort["ki67"].fillna(0.2)}).reset_index(drop=True)
    truth.drop(index=[4, 9]).to_csv(folder / "ground_truth.csv", index=False)
    note = ("ground_truth.csv beside the manifest does not describe this cohort (patients P004, P009 missing): "
            "ignored; there is no latent reference.")
    reference = pathology.reference_correlation(params, cohort)
    assert reference.correlation is None and reference.note == note
    with pytest.warns(GroundTruthIgnored, match=r"patients P004, P009 missing"):
        assert pathology.latent_reference(params, cohort.index) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(pathology.latent_reference(params)) == 58  # no patients asked for: only the columns count
        assert len(pathology.latent_reference(params, cohort.index[10:20])) == 10
    truth.to_csv(folder / "ground_truth.csv", index=False)
    assert pathology.reference_correlation(params, cohort).correlation is not None


def test_heatmap_shows_r_stars_and_n():
    features, cohort = _patients()
    features["BoW_10"] = 0.25
    with pytest.warns(pathology.PathologyWarning):
        corr = pathology.correlate_with_pathology(features, cohort)
    fig = correlation_heatmap(corr)
    assert isinstance(fig, plt.Figure)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 4 * 3
    strong = corr.table.set_index(["feature", "indicator"]).loc[("BoW_09", "MVI grade"), "r"]
    assert f"{strong:.2f}***\nn=58" in texts
    assert "–\nn=58" in texts
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == INDICATOR_NAMES
    plt.close(fig)


def test_pathology_summary_counts_known_and_missing_values():
    _, cohort = _patients()
    summary = pathology.pathology_summary(cohort).set_index("indicator")
    assert list(summary.index) == INDICATOR_NAMES
    assert summary.loc["MVI grade", "n"] == 58 and summary.loc["MVI grade", "missing"] == 2
    assert summary.loc["Ki-67", "mean"] == pytest.approx(cohort["ki67"].mean())
