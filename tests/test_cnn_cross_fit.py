"""Cross-fitted CNN probabilities (hcc_utils.cnn_cross_fit, cnn_roles, mil): under leak_free with
``cnn.cross_fit_folds``, no training patient's probability in the MIL features comes from a network that trained on
it; validation patients keep the main checkpoint's; reruns reuse the folds; K is checked.

A tiny blob cohort at 32 px, 2 epochs, K = 3, on one CPU thread: the file runs in well under a minute.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _cnn_data import blob_slices, make_params

from hcc_utils import artifacts, cnn, cnn_cross_fit, cnn_roles, cnn_train, mil
from hcc_utils.config import ParamsError, params_from_dict
from hcc_utils.run_folder import RunFolder

K = 3


@pytest.fixture(scope="module")
def cross_fitted(tmp_path_factory):
    """Main training, then the cross-fit, with every call to the cross-fit's trainer recorded."""
    data = blob_slices(n_patients=30, offsets=(-1, 0, 1), seed=2)
    params = make_params(epochs={"resnet18": 2}, batch_size=8, cross_fit_folds=K)
    run = RunFolder(tmp_path_factory.mktemp("cross_fit"))
    calls = []
    real = cnn_cross_fit.train_architecture

    def spy(model, architecture, slices, fit_rows, select_rows, *args, **kwargs):
        calls.append({"fit_rows": np.asarray(fit_rows), "select_rows": np.asarray(select_rows),
                      "stop_after": kwargs.get("stop_after")})
        return real(model, architecture, slices, fit_rows, select_rows, *args, **kwargs)

    main = cnn.train_and_predict(data, params, run)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cnn_cross_fit, "train_architecture", spy)
        result = cnn_cross_fit.cross_fit_predictions(data, params, run)
    return data, params, run, main, result, calls


def test_no_training_patient_is_scored_by_a_network_that_trained_on_it(cross_fitted):
    data, params, run, main, result, calls = cross_fitted
    slices = cnn.slice_table(data.patients, data.offsets)
    assert len(calls) == K
    trained_on = {fold: set(slices["patient_id"].iloc[call["fit_rows"]]) for fold, call in enumerate(calls, 1)}
    saved = artifacts.read_cross_fit_predictions(run)
    assert len(saved) == (data.patients["split"] == "train").sum() * len(data.offsets)
    assert (saved["split"] == "train").all() and saved["prob"].between(0, 1).all()
    for row in saved.itertuples():
        assert row.patient_id not in trained_on[row.fold], f"{row.patient_id} scored by a network it trained"
    validation = set(data.patients.loc[data.patients["split"] == "validation", "patient_id"])
    assert not any(seen & validation for seen in trained_on.values()), "a fold network trained on validation"

    folds = artifacts.read_cross_fit_folds(run).set_index("patient_id")["fold"]
    train_ids = set(data.patients.loc[data.patients["split"] == "train", "patient_id"])
    assert set(folds.index) == train_ids and sorted(folds.unique()) == list(range(1, K + 1))
    for fold in range(1, K + 1):  # the artifact says exactly who each network trained on
        assert trained_on[fold] == set(folds.index[folds != fold])
    assert (saved["fold"] == saved["patient_id"].map(folds)).all()

    epoch = main.choice["best_epoch"]["ResNet18"]
    assert all(c["stop_after"] == epoch and len(c["select_rows"]) == 0 for c in calls), "nothing chosen on folds"
    assert result.epochs == epoch and (result.table["epochs"] == epoch).all()


def test_mil_features_use_cross_fitted_training_and_main_validation_probabilities(cross_fitted):
    data, params, run, main, result, calls = cross_fitted
    assert mil.training_source(params) == "cross_fit"
    downstream = cnn.downstream_predictions(run)
    inputs = mil.mil_inputs(downstream, params, cnn_cross_fit.load_cross_fit(run, params))
    train = inputs["split"] == "train"
    assert (inputs.loc[train, "prob_source"] == "cross_fit").all()
    assert (inputs.loc[~train, "prob_source"] == "eval").all()
    np.testing.assert_array_equal(inputs.loc[~train, "prob"], downstream.loc[~train, "prob"])  # the main model's
    cross = result.predictions.set_index(["patient_id", "offset"])["prob"]
    keys = pd.MultiIndex.from_frame(inputs.loc[train, ["patient_id", "offset"]])
    np.testing.assert_allclose(inputs.loc[train, "prob"], cross.loc[keys], rtol=0, atol=1e-12)

    cohort = data.patients.assign(patient_id=data.patients["patient_id"].astype(str))
    features = mil.build_mil_table(inputs, cohort, params, run)
    train_ids = cohort.loc[cohort["split"] == "train", "patient_id"].tolist()
    expected = mil.mil_features(pd.concat([result.predictions, downstream[~train]]), train_ids)
    pd.testing.assert_frame_equal(features, expected)
    sources = mil.source_table(inputs).set_index(["split", "prob_source"])
    assert sources.loc[("train", "cross_fit"), "patients"] == len(train_ids)
    assert mil.prediction_overview(inputs)["cross_fit_slices"].sum() == train.sum()


def test_the_fold_table_and_the_main_checkpoint_on_the_same_patients(cross_fitted):
    data, params, run, main, result, calls = cross_fitted
    table = artifacts.read_table(run, artifacts.CROSS_FIT_TABLE)
    assert list(table.columns) == cnn_cross_fit.TABLE_COLUMNS
    assert table["fold"].astype(str).tolist() == [*map(str, range(1, K + 1)), "all"]
    per_fold = table.iloc[:K]
    n_train = int((data.patients["split"] == "train").sum())
    assert (per_fold["trained_on"] + per_fold["held_out"] == n_train).all()
    assert table["held_out"].iloc[-1] == n_train and (per_fold["held_out_er"] > 0).all()
    assert table[["held_out_auc", "main_auc"]].iloc[-1].between(0, 1).all()
    assert cnn_cross_fit.fold_table(result) is result.table and cnn_cross_fit.fold_table(None) is None


def test_a_rerun_reuses_the_cached_folds(cross_fitted, monkeypatch):
    data, params, run, main, result, calls = cross_fitted

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although nothing changed")

    monkeypatch.setattr(cnn, "train_architecture", no_training)
    monkeypatch.setattr(cnn_cross_fit, "train_architecture", no_training)
    cnn.train_and_predict(data, params, run)
    again = cnn_cross_fit.cross_fit_predictions(data, params, run)
    pd.testing.assert_frame_equal(again.predictions, result.predictions)
    pd.testing.assert_frame_equal(again.folds, result.folds)
    off = params.model_copy(update={"cnn": params.cnn.model_copy(update={"cross_fit_folds": None})})
    assert cnn.checkpoint_key("resnet18", off, "h") == cnn.checkpoint_key("resnet18", params, "h"), \
        "K must not retrain the main checkpoints"
    other_seed = params.model_copy(update={"seed": params.seed + 1})
    with pytest.raises(RuntimeError, match="other parameters or slices"):  # the main model must be retrained first
        cnn_cross_fit.cross_fit_predictions(data, other_seed, run)


def test_cross_fit_folds_are_stratified_and_refuse_a_k_the_cohort_cannot_hold():
    data = blob_slices(n_patients=40)
    folds = cnn_roles.cross_fit_folds(data.patients, 4, seed=0)
    train = data.patients[data.patients["split"] == "train"].set_index("patient_id")
    assert set(folds.index) == set(train.index) and folds.attrs["note"].startswith("stratified by ER: 4 folds")
    er_per_fold = train["er"].groupby(folds).agg(["sum", "size"])
    assert (er_per_fold["sum"] > 0).all() and (er_per_fold["sum"] < er_per_fold["size"]).all()
    pd.testing.assert_series_equal(folds, cnn_roles.cross_fit_folds(data.patients, 4, seed=0))
    n_er = int(train["er"].sum())
    minority = min(n_er, len(train) - n_er)
    with pytest.raises(cnn_roles.CrossFitError, match=rf"{n_er} ER and .* K can be at most {minority}"):
        cnn_roles.cross_fit_folds(data.patients, minority + 1, seed=0)
    with pytest.raises(cnn_roles.CrossFitError, match="K >= 2"):
        cnn_roles.cross_fit_folds(data.patients, 1, seed=0)


def test_a_k_too_large_stops_before_any_training(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained although K cannot work")

    monkeypatch.setattr(cnn, "train_architecture", no_training)
    data = blob_slices(n_patients=16)
    with pytest.raises(cnn.CrossFitError, match="cannot all hold patients of both outcomes"):
        cnn.train_and_predict(data, make_params(cross_fit_folds=12), RunFolder(tmp_path))


def test_the_parameter_is_checked():
    with pytest.raises(ParamsError, match=r"cnn.*at least 2 folds"):
        make_params(cross_fit_folds=1)
    with pytest.raises(ParamsError, match="cross_fit_folds"):
        make_params(cross_fit_folds=-1)
    cohort = {"synthetic": {"n": 8}}
    with pytest.raises(ParamsError, match="cnn.cross_fit_folds is not set"):
        params_from_dict({"cohort": cohort, "mil": {"training_predictions": "cross_fit"}})
    with pytest.raises(ParamsError, match="onekey_compat, which has no cross-fit"):
        params_from_dict({"cohort": cohort, "protocol": "onekey_compat", "cnn": {"cross_fit_folds": 3},
                          "mil": {"training_predictions": "cross_fit"}})
    for off in (0, None):
        params = make_params(cross_fit_folds=off)
        assert params.cross_fit_k == 0 and mil.training_source(params) == "eval"
    explicit = params_from_dict({"cohort": cohort, "cnn": {"cross_fit_folds": 3}, "mil": {"training_predictions":
                                                                                         "eval"}})
    assert explicit.cross_fit_k == 3 and mil.training_source(explicit) == "eval"


def test_onekey_compat_ignores_the_cross_fit_with_a_note(tmp_path):
    params = make_params("onekey_compat", cross_fit_folds=3)
    assert params.cross_fit_k == 0 and mil.training_source(params) == "train_pass"
    assert "ignored under onekey_compat" in cnn_cross_fit.status(params)
    with pytest.warns(cnn_cross_fit.CrossFitIgnored, match="ignored under onekey_compat"):
        assert cnn_cross_fit.cross_fit_predictions(blob_slices(n_patients=8), params, RunFolder(tmp_path)) is None
    assert cnn_cross_fit.load_cross_fit(RunFolder(tmp_path), params) is None
    assert "off" in cnn_cross_fit.status(make_params())


def test_mil_inputs_refuse_missing_cross_fitted_probabilities():
    params = make_params(cross_fit_folds=3)
    preds = pd.DataFrame({"patient_id": ["t1", "t1", "t2", "v1"], "offset": [0, 1, 0, 0],
                          "split": ["train", "train", "train", "validation"], "architecture": "ResNet18",
                          "prob": [0.1, 0.2, 0.3, 0.4]})
    with pytest.raises(mil.MILError, match="rerun notebook 03"):
        mil.mil_inputs(preds, params)
    partial = preds.iloc[:2].assign(prob=[0.7, 0.8], fold=1)
    with pytest.raises(mil.MILError, match=r"training patients \['t2'\]"):
        mil.mil_inputs(preds, params, partial)
    with pytest.raises(mil.MILError, match="DenseNet121"):
        mil.mil_inputs(preds, params, preds.iloc[:3].assign(architecture="DenseNet121"))
    used = mil.mil_inputs(preds, params, preds.iloc[:3].assign(prob=[0.7, 0.8, 0.9]))
    assert used["prob"].tolist() == [0.7, 0.8, 0.9, 0.4] and preds["prob"].tolist() == [0.1, 0.2, 0.3, 0.4]


def test_stop_after_follows_the_full_schedule():
    data = blob_slices(n_patients=12, side=32)
    tensors = cnn_train.SliceTensors.from_stacks(data.images, data.patients["er"].to_numpy(), "cpu")
    cfg = make_params(epochs={"resnet18": 3}, batch_size=8).cnn
    rows, histories = np.arange(24), []
    for stop in (None, 2):
        model = cnn.build_model("resnet18", zero_init_residual=True)
        trained = cnn_train.train_architecture(model, "resnet18", tensors, rows, np.array([], dtype=int), cfg, 0,
                                               stop_after=stop)
        histories.append(trained.history)
    assert len(histories[0]) == 3 and len(histories[1]) == 2
    np.testing.assert_allclose(histories[1]["lr"], histories[0]["lr"].iloc[:2])  # the 3-epoch cosine, cut
    with pytest.raises(ValueError, match="stop_after = 4"):
        cnn_train.train_architecture(cnn.build_model("resnet18"), "resnet18", tensors, rows, rows[:0], cfg, 0,
                                     stop_after=4)
