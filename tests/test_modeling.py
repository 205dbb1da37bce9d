"""The shared recipe (hcc_utils.modeling.fit_recipe) and its figures (hcc_utils.plots.models)."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from hcc_utils import artifacts, mil, model_registry, modeling  # noqa: E402
from hcc_utils.config import params_from_dict  # noqa: E402
from hcc_utils.plots import models as model_plots  # noqa: E402
from hcc_utils.run_folder import RunFolder  # noqa: E402
from hcc_utils.selection import SelectionWarning, univariate_tests  # noqa: E402

SMALL = {"model": {"n_estimators": [5, 20], "max_depth": [2, None], "min_samples_split": [2], "cv_folds": 3},
         "selection": {"lasso_n_alphas": 20, "lasso_folds": 5}}


def _params(tmp_path, **overrides):
    data = {"cohort": {"manifest": str(tmp_path / "cohort.csv")}, **SMALL}
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    return params_from_dict(data)


def _cohort(seed: int = 0, n: int = 60, er_share: float = 0.4):
    """MIL features from synthetic slice predictions whose level follows ER; a stratified 2:1 split."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    er = pd.Series((np.arange(n) < round(er_share * n)).astype(int), index=ids)
    er = er.sample(frac=1, random_state=seed).set_axis(ids)
    rows = []
    for patient in ids:
        level = rng.normal(0.62 if er[patient] else 0.4, 0.1)
        rows += [{"patient_id": patient, "prob": float(np.clip(level + rng.normal(0, 0.12), 0, 1))}
                 for _ in range(11)]
    split = pd.Series("train", index=ids)
    for group in (0, 1):
        members = er.index[er == group]
        split[members[::3]] = "validation"
    features = mil.mil_features(pd.DataFrame(rows), split.index[split == "train"])
    return features, er, split


class SpySMOTE(modeling.SMOTE):
    """SMOTE that records the patient ids of every table it is fitted on (the pipeline passes DataFrames)."""

    seen: list[list[str]] = []

    def fit_resample(self, X, y, **params):
        SpySMOTE.seen.append([str(i) for i in X.index])
        return super().fit_resample(X, y, **params)


def test_smote_never_sees_validation_or_held_out_rows(tmp_path, monkeypatch):
    features, er, split = _cohort()
    params = _params(tmp_path)
    monkeypatch.setattr(modeling, "SMOTE", SpySMOTE)
    SpySMOTE.seen = []
    result = modeling.fit_recipe(features, er, split, params, "DL-MIL")
    assert isinstance(result.pipeline.named_steps["smote"], SpySMOTE)
    train = set(split.index[split == "train"])
    held_out = [set(fold) for fold in result.cv_folds]
    assert set().union(*held_out) == train and sum(map(len, held_out)) == len(train)
    # the steps before the trees are fitted once per fold (cached for the grid's candidates and the out-of-fold
    # refit) and once on all training patients
    assert len(SpySMOTE.seen) == len(held_out) + 1
    for ids in SpySMOTE.seen:
        seen = set(ids)
        assert len(seen) == len(ids) and seen <= train  # no validation patient, ever
        if seen != train:  # a CV fit: exactly the training patients minus one held-out fold
            assert any(seen == train - fold for fold in held_out)
    assert sum(set(ids) == train for ids in SpySMOTE.seen) == 1  # only the final refit sees all of train


def test_validation_rows_do_not_influence_the_fit(tmp_path):
    features, er, split = _cohort(seed=1)
    params = _params(tmp_path)
    first = modeling.fit_recipe(features, er, split, params, "DL-MIL")
    scrambled = features.copy()
    validation = split.index[split == "validation"]
    rng = np.random.default_rng(9)
    scrambled.loc[validation] = rng.permutation(scrambled.loc[validation].to_numpy(), axis=1)
    second = modeling.fit_recipe(scrambled, er, split, params, "DL-MIL")
    assert second.features == first.features and second.best_params == first.best_params
    pd.testing.assert_frame_equal(first.grid, second.grid)
    train_rows = first.predictions["split"] == "train"
    pd.testing.assert_frame_equal(first.predictions[train_rows], second.predictions[train_rows])
    assert not np.allclose(first.predictions.loc[~train_rows, "prob"], second.predictions.loc[~train_rows, "prob"])


def test_predictions_and_saved_model(tmp_path):
    features, er, split = _cohort(seed=2)
    run = RunFolder(tmp_path / "run")
    result = modeling.fit_recipe(features, er, split, _params(tmp_path), "DL-MIL", run)
    pred = result.predictions
    assert pred.columns.tolist() == modeling.PREDICTION_COLUMNS
    assert pred["patient_id"].tolist() == features.index.tolist()
    assert pred["prob"].between(0, 1).all() and pred["prob_oof"].between(0, 1).all()
    validation = pred["split"] == "validation"
    np.testing.assert_array_equal(pred.loc[validation, "prob"], pred.loc[validation, "prob_oof"])
    assert not np.allclose(pred.loc[~validation, "prob"], pred.loc[~validation, "prob_oof"])
    assert (pred["er"].to_numpy() == er.loc[pred["patient_id"]].to_numpy()).all()

    pipeline = artifacts.read_pipeline(run, "dl_mil")
    selected = artifacts.read_model_summary(run, "dl_mil")["features"]
    assert selected == result.features and selected
    shuffled = features[features.columns[::-1]].assign(extra=1.0)  # the raw table, any column order
    np.testing.assert_allclose(pipeline.predict_proba(shuffled)[:, 1], pred["prob"])
    saved = artifacts.read_patient_predictions(run, "dl_mil")
    pd.testing.assert_frame_equal(saved, pred, check_dtype=False)
    meta = json.loads((run.models / "dl_mil_features.json").read_text())
    assert meta["model"] == "DL-MIL" and meta["best_params"] == result.best_params
    for table in ("dl_mil_selection.csv", "dl_mil_grid.csv"):
        assert (run.tables / table).is_file()
    assert len(result.grid) == 4 and result.cv_auc == pytest.approx(result.grid["mean_auc"].max())


def test_same_params_same_numbers(tmp_path):
    features, er, split = _cohort(seed=3)
    params = _params(tmp_path)
    a = modeling.fit_recipe(features, er, split, params, "Radiomics")
    b = modeling.fit_recipe(features, er, split, params, "Radiomics")
    pd.testing.assert_frame_equal(a.predictions, b.predictions)


def test_small_cohort_reduces_folds_and_smote_k(tmp_path):
    features, er, split = _cohort(seed=4, n=24, er_share=0.25)  # 4 ER patients in training
    params = _params(tmp_path, model={"cv_folds": 5, "smote_k_neighbors": 5})
    with pytest.warns(SelectionWarning, match="4-fold"):
        result = modeling.fit_recipe(features, er, split, params, "Clinical")
    assert len(result.cv_folds) == 4
    assert result.smote_k_neighbors == 2  # a training fold holds 3 ER patients
    assert any("4-fold" in note for note in result.notes) and any("k_neighbors" in note for note in result.notes)
    with pytest.warns(SelectionWarning):
        off = modeling.fit_recipe(features, er, split, _params(tmp_path, model={"smote": False}), "Clinical")
    assert off.smote_k_neighbors is None and off.pipeline.named_steps["smote"] == "passthrough"


def test_bad_inputs_name_patients(tmp_path):
    features, er, split = _cohort(seed=5, n=30)
    params = _params(tmp_path)
    with pytest.raises(modeling.RecipeError, match="P004"):
        modeling.fit_recipe(features, er.drop("P004"), split, params, "DL-MIL")
    broken = features.copy()
    broken.loc["P010", "BoW_05"] = np.nan
    with pytest.raises(modeling.RecipeError, match=r"BoW_05.*P010"):
        modeling.fit_recipe(broken, er, split, params, "DL-MIL")
    with pytest.raises(modeling.RecipeError, match="split"):
        modeling.fit_recipe(features, er, split.replace("validation", "test"), params, "DL-MIL")


def test_default_grid_and_slugs():
    params = params_from_dict({"cohort": {"manifest": "/nowhere/cohort.csv"}})
    grid = modeling.param_grid(params.model)
    assert np.prod([len(v) for v in grid.values()]) == 32
    assert [model_registry.slug(n) for n in ("DL-MIL", "Radiomics", "Clinical", "My Model 2")] == [
        "dl_mil", "radiomics", "clinical", "my_model_2"]


def test_recipe_metrics_hand_example():
    pred = pd.DataFrame({"patient_id": list("abcdef"), "split": ["train"] * 4 + ["validation"] * 2,
                         "er": [1, 1, 0, 0, 1, 0], "prob": [0.9, 0.4, 0.3, 0.6, 0.7, 0.2],
                         "prob_oof": [0.8, 0.3, 0.1, 0.2, 0.7, 0.2]})
    table = modeling.recipe_metrics(pred).set_index("dataset")
    assert table.loc["train (apparent)", "accuracy"] == 0.5
    assert table.loc["train (apparent)", "auc"] == 0.75
    assert table.loc["train (out-of-fold)", "sensitivity"] == 0.5
    assert table.loc["train (out-of-fold)", "specificity"] == 1.0
    assert table.loc["validation", "auc"] == 1.0


def test_figures(tmp_path):
    features, er, split = _cohort(seed=6)
    result = modeling.fit_recipe(features, er, split, _params(tmp_path), "DL-MIL")
    train = split.index[split == "train"]
    tests = univariate_tests(features.loc[train], er.loc[train], _params(tmp_path).selection)
    figures = [model_plots.plh_heatmap(features, er),
               model_plots.feature_distributions(features.loc[train], er.loc[train], tests),
               model_plots.selection_funnel(result.selection), model_plots.lasso_figure(result.selection),
               model_plots.feature_weights(result.selection), model_plots.grid_search_heatmap(result.grid)]
    assert [len(f.axes) for f in figures] == [2, 2, 1, 2, 1, 2]  # heatmaps carry a colour-bar axis
    lasso_axes = figures[3].axes
    assert len(lasso_axes[1].get_lines()) >= len(result.selection.lasso)  # one path per Lasso input
    assert len(figures[4].axes[0].patches) == len(result.features)
    for fig in figures:
        fig.savefig(tmp_path / "f.png")
        matplotlib.pyplot.close(fig)
