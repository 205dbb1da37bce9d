"""SHAP explanation of the DL-MIL pipeline (hcc_utils.explain), on a small pipeline fitted here."""

from __future__ import annotations

import copy
import json
import warnings

import joblib
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from hcc_utils import artifacts, explain, modeling
from hcc_utils.config import params_from_dict
from hcc_utils.plots import shap as shap_plots
from hcc_utils.run_folder import RunFolder

MIL_COLUMNS = ([f"PLH_{i:02d}" for i in range(11)] + ["PLH_0", "PLH_1"]
               + [f"BoW_{i:02d}" for i in range(11)] + ["BoW_0", "BoW_1"])
SELECTED = ["BoW_02", "BoW_09", "BoW_1", "PLH_05"]


def _cohort(n: int = 90, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A MIL-shaped table (index patient_id) and predictions skeleton (patient_id, split, er)."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    features = pd.DataFrame(rng.uniform(0, 1, size=(n, len(MIL_COLUMNS))), columns=MIL_COLUMNS,
                            index=pd.Index(ids, name="patient_id"))
    logit = 8 * (features["BoW_09"] - features["BoW_02"]) + 6 * (features["BoW_1"] - 0.5)
    er = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit.to_numpy()))).astype(int)
    split = np.where(np.arange(n) % 3 == 0, "validation", "train")
    return features, pd.DataFrame({"patient_id": ids, "split": split, "er": er})


def _pipeline(estimator=None, named_selector: bool = True, smote: bool = True) -> Pipeline:
    """The DL-MIL recipe's shape: selected columns -> StandardScaler -> SMOTE -> ExtraTrees."""
    if named_selector:  # tables flow as DataFrames, as in hcc_utils.modeling
        select = ColumnTransformer([("selected", "passthrough", SELECTED)], remainder="drop",
                                   verbose_feature_names_out=False).set_output(transform="pandas")
        scale = StandardScaler().set_output(transform="pandas")
    else:  # a selector that cannot say its output names, numpy arrays throughout
        select, scale = FunctionTransformer(lambda table: table[SELECTED].to_numpy()), StandardScaler()
    if estimator is None:
        estimator = ExtraTreesClassifier(n_estimators=25, max_depth=None, random_state=0)
    sampler = SMOTE(random_state=0, k_neighbors=3) if smote else "passthrough"
    return Pipeline([("select", select), ("scale", scale), ("smote", sampler), ("model", estimator)])


@pytest.fixture(scope="module")
def fitted():
    features, predictions = _cohort()
    train = (predictions["split"] == "train").to_numpy()
    pipeline = _pipeline().fit(features[train], predictions.loc[train, "er"])
    predictions["prob"] = pipeline.predict_proba(features)[:, 1]
    predictions["prob_oof"] = predictions["prob"]
    return pipeline, features, predictions


@pytest.fixture(scope="module")
def result(fitted):
    pipeline, features, _ = fitted
    return explain.explain_model(pipeline, features, SELECTED)


def test_shap_values_plus_base_value_equal_the_predicted_probability(fitted, result):
    pipeline, features, _ = fitted
    values = result.explanation.values
    assert values.shape == (len(features), len(SELECTED))
    prob = pipeline.predict_proba(features)[:, 1]
    np.testing.assert_allclose(values.sum(axis=1) + result.explanation.base_values, prob, atol=1e-6)
    np.testing.assert_allclose(result.probability, prob)
    # the base value is the forest's expected P(ER) over its (SMOTE-balanced) training data
    assert 0.3 < float(result.explanation.base_values[0]) < 0.7


def test_features_are_explained_as_the_trees_see_them(fitted, result):
    pipeline, features, _ = fitted
    scaler = pipeline.named_steps["scale"]
    expected = (features[SELECTED].to_numpy() - scaler.mean_) / scaler.scale_
    np.testing.assert_allclose(result.explanation.data, expected)
    assert result.feature_names == SELECTED
    np.testing.assert_allclose(result.explanation.display_data, features[SELECTED].to_numpy())
    inputs = explain.model_input(pipeline, features)
    assert len(inputs) == len(features), "SMOTE must not resample at explanation time"
    assert list(inputs.index) == list(features.index)


def test_the_recipe_pipeline_with_selection_inside_is_explained_on_what_its_trees_see():
    """fit_recipe's pipeline (FeatureSelector -> StandardScaler -> SMOTE -> ExtraTrees): the trees see the
    selected columns, z-scored with the training statistics; SHAP adds up to P(ER)."""
    features, predictions = _cohort()
    ids = predictions.set_index("patient_id")
    params = params_from_dict({"cohort": {"manifest": "/nowhere/cohort.csv"},
                               "model": {"n_estimators": [25], "max_depth": [None], "min_samples_split": [2],
                                         "cv_folds": 3},
                               "selection": {"lasso_n_alphas": 20, "lasso_folds": 5}})
    recipe = modeling.fit_recipe(features, ids["er"], ids["split"], params, "DL-MIL")
    pipeline = recipe.pipeline
    inputs = explain.model_input(pipeline, features)  # names from the steps' get_feature_names_out
    assert list(inputs.columns) == recipe.features == pipeline.named_steps["select"].selected_
    assert "BoW_09" in recipe.features and len(recipe.features) < features.shape[1]  # an outcome feature
    scaler = pipeline.named_steps["scale"]
    np.testing.assert_allclose(inputs.to_numpy(), (features[recipe.features].to_numpy() - scaler.mean_)
                               / scaler.scale_)
    result = explain.explain_model(pipeline, features, recipe.features)
    assert result.additivity_gap() < 1e-6
    np.testing.assert_allclose(result.probability, recipe.predictions.set_index("patient_id").loc[
        result.patient_ids, "prob"], atol=1e-12)


def test_nameless_selector_takes_names_from_the_selected_list(fitted):
    _, features, predictions = fitted
    train = (predictions["split"] == "train").to_numpy()
    pipeline = _pipeline(named_selector=False, smote=False).fit(features[train], predictions.loc[train, "er"])
    inputs = explain.model_input(pipeline, features, SELECTED)
    assert list(inputs.columns) == SELECTED
    result = explain.explain_model(pipeline, features, SELECTED)
    np.testing.assert_allclose(result.explanation.values.sum(axis=1) + result.explanation.base_values,
                               pipeline.predict_proba(features)[:, 1], atol=1e-6)
    with pytest.raises(ValueError, match="cannot name the 4 model inputs"):
        explain.model_input(pipeline, features)


def test_a_model_not_explained_on_the_probability_scale_is_refused(fitted):
    _, features, predictions = fitted
    train = (predictions["split"] == "train").to_numpy()
    boosted = _pipeline(GradientBoostingClassifier(n_estimators=10, random_state=0))
    boosted.fit(features[train], predictions.loc[train, "er"])
    with pytest.raises(RuntimeError, match="do not add up to P\\(ER\\)"):
        explain.explain_model(boosted, features, SELECTED)


def test_default_patient_is_the_validation_patient_nearest_the_median_risk(fitted):
    _, _, predictions = fitted
    chosen = explain.choose_patient(predictions)
    validation = predictions[predictions["split"] == "validation"]
    distance = (validation["prob"] - validation["prob"].median()).abs()
    assert chosen in set(validation["patient_id"])
    assert distance[validation["patient_id"] == chosen].iloc[0] == pytest.approx(distance.min())
    # training patients are never the default, even when one sits exactly on the validation median
    shifted = predictions.copy()
    first_train = shifted.index[shifted["split"] == "train"][0]
    shifted.loc[first_train, "prob"] = validation["prob"].median()
    assert explain.choose_patient(shifted) in set(validation["patient_id"])


def test_a_named_patient_is_used_and_an_unknown_one_is_refused(fitted):
    _, _, predictions = fitted
    assert explain.choose_patient(predictions, "P004") == "P004"
    with pytest.raises(ValueError, match="'nobody' has no DL-MIL prediction"):
        explain.choose_patient(predictions, "nobody")


def test_patient_table_and_importance(result, fitted):
    _, features, predictions = fitted
    table = explain.patient_table(result, "P004")
    body = table.iloc[:-2]
    assert set(body["feature"]) == set(SELECTED)
    assert body["shap"].abs().is_monotonic_decreasing
    np.testing.assert_allclose(body.set_index("feature").loc[SELECTED, "value"], features.loc["P004", SELECTED])
    assert table["shap"].iloc[-1] == pytest.approx(result.probability[result.patient_ids.index("P004")], abs=1e-6)
    importance = explain.importance_table(result)
    assert importance["mean_abs_shap"].is_monotonic_decreasing
    # the outcome was generated from BoW_09 - BoW_02 and BoW_1; PLH_05 is noise
    assert importance["feature"].iloc[-1] == "PLH_05"
    validation = result.subset(explain.patients_in(predictions, "validation"))
    assert len(validation.patient_ids) == (predictions["split"] == "validation").sum()
    assert validation.explanation.values.shape == (len(validation.patient_ids), len(SELECTED))


def test_shap_plots_are_matplotlib_figures(result):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warnings leak into the report
        figures = [shap_plots.beeswarm_figure(result), shap_plots.importance_figure(result),
                   shap_plots.waterfall_figure(result, "P004"), shap_plots.force_figure(result, "P004")]
    for fig in figures:
        assert isinstance(fig, plt.Figure)
        assert fig.axes
    assert any("P004" in ax.get_title() for ax in figures[2].axes)
    plt.close("all")


def test_load_dl_mil_reads_the_run_folder_layout(tmp_path, fitted):
    pipeline, features, predictions = fitted
    run = RunFolder(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="run 05_models first"):
        explain.load_dl_mil(run)
    joblib.dump(pipeline, run.models / "dl_mil.joblib")
    (run.models / "dl_mil_features.json").write_text(json.dumps(SELECTED))
    predictions.to_csv(run.predictions / "dl_mil_patients.csv", index=False)
    features.iloc[::-1].reset_index().to_csv(run.tables / "mil_features.csv", index=False)
    model = explain.load_dl_mil(run)
    assert model.selected == SELECTED
    assert list(model.features.index) == list(predictions["patient_id"])
    loaded = explain.explain_model(model.pipeline, model.features, model.selected)
    np.testing.assert_allclose(loaded.probability, predictions["prob"], atol=1e-12)
    (run.models / "dl_mil_features.json").write_text(json.dumps({"features": SELECTED[:2]}))
    assert artifacts.read_model_summary(run, "dl_mil")["features"] == SELECTED[:2]


def test_saved_predictions_from_another_fit_are_flagged(result, fitted):
    _, _, predictions = fitted
    assert result.additivity_gap() < 1e-6
    assert explain.check_predictions(result, predictions) < 1e-12
    stale = predictions.assign(prob=predictions["prob"] * 0.9)
    with pytest.warns(UserWarning, match="different fits"):
        explain.check_predictions(result, stale)
    line = explain.describe_patient(result, predictions, "P004")
    assert line.startswith("Patient P004 (train set, observed: ") and "P(ER) = " in line


def test_force_plot_of_a_patient_at_the_base_value_finishes(result):
    """SHAP's force layout never returns when the total effect is 0; the figure says so instead."""
    at_base = copy.deepcopy(result)
    at_base.explanation.values = np.zeros_like(result.explanation.values)
    fig = shap_plots.force_figure(at_base, "P004")
    assert "base value" in fig.axes[0].texts[0].get_text()
    plt.close("all")


def test_force_plot_with_every_feature_on_one_side_draws_no_empty_shading(result):
    """All SHAP values of one sign: SHAP's zero-width shading of the empty side (which hung the book) is gone."""
    one_sided = copy.deepcopy(result)
    one_sided.explanation.values = np.abs(result.explanation.values) + 1e-3
    fig = shap_plots.force_figure(one_sided, "P004")
    extents = [image.get_extent() for ax in fig.axes for image in ax.images]
    assert extents and all(left != right and bottom != top for left, right, bottom, top in extents)
    plt.close("all")
