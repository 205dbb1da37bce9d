"""hcc_utils.combined (the Combined model), plots.nomogram, and the fourth model where the registry is read."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from hcc_utils import artifacts, combined, model_predictions, model_registry, optimism, robustness
from hcc_utils.config import params_from_dict
from hcc_utils.plots import nomogram as nomogram_plots
from hcc_utils.robustness_chain import ChainInputs
from hcc_utils.run_folder import RunFolder

matplotlib.use("Agg")

PARAMS = params_from_dict({"cohort": {"synthetic": {"n": 20, "image_size": 64}}})
VARIABLES = ["afp", "gender"]


def make_inputs(n: int = 80, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A cohort (er, split, every clinical column; a few AFP values missing) and DL-MIL's predictions: 56 training
    and 24 validation patients; apparent ``prob`` nearly separating, ``prob_oof`` informative but noisy."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    er = np.tile([0, 1, 0, 0], n // 4)
    split = np.where(np.arange(n) < int(0.7 * n), "train", "validation")
    cohort = pd.DataFrame({"patient_id": ids, "er": er, "split": split,
                           "age": rng.normal(55, 10, n), "bmi": rng.normal(24, 3, n), "hbsag": rng.integers(0, 2, n),
                           "afp": np.exp(rng.normal(3 + 0.8 * er, 1.2, n)), "alb": rng.normal(40, 4, n),
                           "ast": rng.normal(40, 10, n), "alt": rng.normal(40, 10, n),
                           "gender": np.where(rng.uniform(size=n) < 0.3 + 0.3 * er, "M", "F"),
                           "alcohol": rng.integers(0, 2, n)})
    cohort.loc[[3, n - 20], "afp"] = np.nan
    prob = expit(4 * (er - 0.5) + rng.normal(0, 0.5, n))
    oof = np.where(split == "train", expit(1.5 * (er - 0.5) + rng.normal(0, 1, n)), prob)
    dl_mil = pd.DataFrame({"patient_id": ids, "split": split, "er": er, "prob": prob, "prob_oof": oof})
    return cohort, dl_mil


def fit(cohort, dl_mil, variables=VARIABLES):
    return combined.fit_combined(cohort, dl_mil, variables, PARAMS)


def test_predictions_have_the_shared_format():
    model = fit(*make_inputs())
    pred = model.predictions
    assert list(pred.columns) == list(artifacts.PATIENT_PREDICTION_COLUMNS) and len(pred) == 80
    assert pred[["prob", "prob_oof"]].stack().between(0, 1).all()
    validation, train = pred[pred["split"] == "validation"], pred[pred["split"] == "train"]
    assert (validation["prob"] == validation["prob_oof"]).all()
    assert not np.allclose(train["prob"], train["prob_oof"])
    assert model.terms == [combined.SCORE_TERM, "afp", "gender"] and model.n_folds == 5
    assert list(model.coefficients.columns) == list(artifacts.COMBINED_COEFFICIENTS.columns)


def test_only_training_rows_reach_the_fit():
    """Validation patients' clinical values and DL-MIL probability changed: the fit (coefficients, training
    predictions) is the same, and only the validation predictions move."""
    cohort, dl_mil = make_inputs()
    before = fit(cohort, dl_mil)
    validation = cohort["split"] == "validation"
    cohort.loc[validation, "afp"] = 1e5
    cohort.loc[validation, "gender"] = "M"
    dl_mil.loc[validation, ["prob", "prob_oof"]] = 0.99
    after = fit(cohort, dl_mil)
    pd.testing.assert_frame_equal(before.coefficients, after.coefficients)
    train = before.predictions["split"] == "train"
    pd.testing.assert_frame_equal(before.predictions[train], after.predictions[train])
    assert not np.allclose(before.predictions.loc[~train, "prob"], after.predictions.loc[~train, "prob"])


def test_training_patients_use_the_out_of_fold_dl_mil_probability():
    cohort, dl_mil = make_inputs()
    model = fit(cohort, dl_mil)
    train = dl_mil[dl_mil["split"] == "train"].set_index("patient_id")
    score = model.inputs.loc[train.index, combined.SCORE_TERM]
    np.testing.assert_allclose(score, logit(train["prob_oof"].clip(combined.EPS, 1 - combined.EPS)))
    apparent_changed = dl_mil.assign(prob=np.where(dl_mil["split"] == "train", 0.5, dl_mil["prob"]))
    pd.testing.assert_frame_equal(model.coefficients, fit(cohort, apparent_changed).coefficients)
    oof_changed = dl_mil.assign(prob_oof=np.where(dl_mil["split"] == "train", dl_mil["prob"], dl_mil["prob_oof"]))
    assert not np.allclose(model.coefficients["coefficient"], fit(cohort, oof_changed).coefficients["coefficient"])


def test_raw_coefficients_reproduce_the_predictions_and_the_maximum_likelihood_fit():
    model = fit(*make_inputs())
    lp = model.intercept + model.inputs[model.terms].to_numpy() @ model.raw.to_numpy()
    np.testing.assert_allclose(expit(lp), model.predictions["prob"], rtol=1e-8)
    table = model.coefficients.set_index("term")
    assert table.loc[combined.INTERCEPT_TERM, "coefficient"] == pytest.approx(model.intercept)
    assert table[["or_low", "or_high", "p"]].notna().all().all() and model.notes == []
    assert (table["or_low"] < table["odds_ratio"]).all() and (table["odds_ratio"] < table["or_high"]).all()
    assert table.loc[combined.SCORE_TERM, "coefficient"] > 0  # the score carries the signal


def test_missing_afp_is_filled_with_the_training_median():
    cohort, dl_mil = make_inputs()
    model = fit(cohort, dl_mil)
    median = cohort.loc[cohort["split"] == "train", "afp"].median()
    assert model.inputs.loc["P003", "afp"] == pytest.approx(median)
    assert model.inputs.loc["P060", "afp"] == pytest.approx(median)  # a validation patient, training median


def test_separable_training_patients_give_finite_coefficients_and_a_note():
    cohort, dl_mil = make_inputs()
    dl_mil["prob_oof"] = np.where(dl_mil["er"] == 1, 0.9, 0.1)
    model = fit(cohort, dl_mil)
    assert np.isfinite(model.coefficients["coefficient"]).all()
    assert model.coefficients["p"].isna().all() and any("intervals and p left empty" in n for n in model.notes)


def test_no_clinical_variable_leaves_the_score_alone():
    model = fit(*make_inputs(), variables=[])
    assert model.terms == [combined.SCORE_TERM] and len(model.coefficients) == 2


def test_fit_from_run_writes_the_files_and_the_comparison_reads_four_models(tmp_path):
    cohort, dl_mil = make_inputs()
    run = RunFolder(tmp_path / "run")
    for slug in ("dl_mil", "radiomics", "clinical"):
        artifacts.write_patient_predictions(run, slug, dl_mil)
    artifacts.write_model_summary(run, "clinical", {"model": "Clinical", "features": VARIABLES})
    model = combined.fit_from_run(cohort, PARAMS, run)
    written = artifacts.read_patient_predictions(run, "combined")
    np.testing.assert_allclose(written["prob_oof"], model.predictions["prob_oof"])
    assert len(artifacts.read_table(run, artifacts.COMBINED_COEFFICIENTS)) == 4
    assert artifacts.read_model_summary(run, "combined")["features"] == model.terms
    preds = model_predictions.load_predictions(run)
    assert preds.models == ["DL-MIL", "Radiomics", "Clinical", "Combined"] and preds.notes == []
    assert optimism.fit_table(run, 0.95)["model"].tolist() == preds.models
    assert set(robustness.table4_aucs(run)) == set(preds.models)


def test_the_registry_has_four_models_and_the_chain_fits_three():
    assert model_registry.names() == ["DL-MIL", "Radiomics", "Clinical", "Combined"]
    colours = [m.colour for m in model_registry.MODELS]
    assert len(set(colours)) == 4
    assert ChainInputs(cohort=pd.DataFrame()).models == ["DL-MIL", "Clinical"]
    assert ChainInputs(cohort=pd.DataFrame(), reader1=pd.DataFrame()).models == ["DL-MIL", "Radiomics", "Clinical"]


def test_nomogram_points_give_the_model_probability():
    """A patient's points on each axis, added up and read on the probability axis, give the model's prob."""
    model = fit(*make_inputs())
    axes = model.nomogram_axes()
    scale = nomogram_plots.points_scale(axes, model.intercept)
    assert scale["max_points"].max() == pytest.approx(100)
    train = model.training_inputs()
    points = sum(100 * b * (train[t] - ref) / scale["R"]
                 for t, b, ref in zip(axes["term"], axes["coefficient"], scale["ref"], strict=True))
    assert points.between(-1e-9, scale["total_max"] + 1e-9).all()
    prob = expit(scale["base"] + points * scale["R"] / 100)
    train_prob = model.predictions.set_index("patient_id").loc[train.index, "prob"]
    np.testing.assert_allclose(prob, train_prob, rtol=1e-8)


def test_nomogram_draws_for_a_small_fitted_model():
    model = fit(*make_inputs(n=40))
    fig = nomogram_plots.nomogram(model.nomogram_axes(), model.intercept)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"Points", "Total points", "Probability of ER", "DL-MIL score (logit P)", "AFP", "Gender", "Male",
            "Female"} <= texts
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="no predictor"):
        nomogram_plots.points_scale(pd.DataFrame({"coefficient": [0.0], "low": [0.0], "high": [1.0]}), 0.0)
