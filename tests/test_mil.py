"""MIL features (hcc_utils.mil): PLH and BoW checked against hand-worked values and the TF-IDF formula."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hcc_utils import mil
from hcc_utils.config import params_from_dict
from hcc_utils.run_folder import RunFolder

EXPECTED_COLUMNS = ([f"PLH_{i:02d}" for i in range(11)] + ["PLH_0", "PLH_1"]
                    + [f"BoW_{i:02d}" for i in range(11)] + ["BoW_0", "BoW_1"])

# Hand-worked cohort: A and B train, C validation.
#   A: 0.02 0.12 0.14 0.61 0.97 -> bins 0.0 0.1 0.1 0.6 1.0, labels 0 0 0 1 1
#   B: 0.33 0.36 0.49 0.50      -> bins 0.3 0.4 0.5 0.5,     labels 0 0 0 1
#   C: 0.88 0.91 0.93           -> bins 0.9 0.9 0.9,         labels 1 1 1
HAND = {"A": [0.02, 0.12, 0.14, 0.61, 0.97], "B": [0.33, 0.36, 0.49, 0.50], "C": [0.88, 0.91, 0.93]}
HAND_BIN_COUNTS = {"A": {0: 1, 1: 2, 6: 1, 10: 1}, "B": {3: 1, 4: 1, 5: 2}, "C": {9: 3}}
HAND_LABEL_COUNTS = {"A": {0: 3, 1: 2}, "B": {0: 3, 1: 1}, "C": {1: 3}}


def _predictions(probs: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"patient_id": p, "offset": i, "prob": v}
                         for p, values in probs.items() for i, v in enumerate(values)])


def _tfidf_by_formula(counts: dict[str, dict[int, int]], n_terms: int, fit_on: list[str]) -> dict[str, np.ndarray]:
    """scikit-learn's default TF-IDF written out: tf * (ln((1 + n) / (1 + df)) + 1), then L2 per row."""
    df = [sum(1 for p in fit_on if counts[p].get(t, 0) > 0) for t in range(n_terms)]
    idf = [math.log((1 + len(fit_on)) / (1 + d)) + 1 for d in df]
    out = {}
    for patient, c in counts.items():
        row = np.array([c.get(t, 0) * idf[t] for t in range(n_terms)])
        out[patient] = row / math.sqrt(float((row ** 2).sum()))
    return out


def test_hand_worked_plh():
    features = mil.mil_features(_predictions(HAND), train_ids=["A", "B"])
    assert features.index.tolist() == ["A", "B", "C"]
    expected_a = {"PLH_00": 0.2, "PLH_01": 0.4, "PLH_06": 0.2, "PLH_10": 0.2, "PLH_0": 0.6, "PLH_1": 0.4}
    expected_b = {"PLH_03": 0.25, "PLH_04": 0.25, "PLH_05": 0.5, "PLH_0": 0.75, "PLH_1": 0.25}
    expected_c = {"PLH_09": 1.0, "PLH_1": 1.0}
    for patient, expected in (("A", expected_a), ("B", expected_b), ("C", expected_c)):
        row = features.loc[patient, mil.PLH_COLUMNS]
        for column in mil.PLH_COLUMNS:
            assert row[column] == pytest.approx(expected.get(column, 0.0)), (patient, column)


@pytest.mark.parametrize("idf_on, fit_on", [("train", ["A", "B"]), ("all", ["A", "B", "C"])])
def test_hand_worked_bow_matches_tfidf_formula(idf_on, fit_on):
    features = mil.mil_features(_predictions(HAND), train_ids=["A", "B"], idf_on=idf_on)
    prob_expected = _tfidf_by_formula(HAND_BIN_COUNTS, 11, fit_on)
    label_expected = _tfidf_by_formula(HAND_LABEL_COUNTS, 2, fit_on)
    for patient in HAND:
        np.testing.assert_allclose(features.loc[patient, mil.BOW_COLUMNS[:11]], prob_expected[patient], atol=1e-12)
        np.testing.assert_allclose(features.loc[patient, mil.BOW_COLUMNS[11:]], label_expected[patient], atol=1e-12)


def test_hand_worked_bow_literal_value():
    # B's label document "y0 y0 y0 y1", idf on {A, B}: both terms in both documents, idf = ln(3/3) + 1 = 1,
    # so BoW_0, BoW_1 = (3, 1) / sqrt(10).
    features = mil.mil_features(_predictions(HAND), train_ids=["A", "B"])
    assert features.loc["B", "BoW_0"] == pytest.approx(3 / math.sqrt(10))
    assert features.loc["B", "BoW_1"] == pytest.approx(1 / math.sqrt(10))
    # C's only probability term is bin 0.9, unseen in training: its row is the unit vector on BoW_09.
    assert features.loc["C", "BoW_09"] == pytest.approx(1.0)


def test_columns_always_present_and_ordered():
    features = mil.mil_features(_predictions({"x": [0.5, 0.5], "y": [0.52]}), train_ids=["x"])
    assert features.columns.tolist() == EXPECTED_COLUMNS == mil.FEATURE_COLUMNS
    assert features.index.name == "patient_id"
    assert all(pd.api.types.is_float_dtype(t) for t in features.dtypes)
    empty = [c for c in EXPECTED_COLUMNS if c not in ("PLH_05", "PLH_1", "BoW_05", "BoW_1")]
    assert (features[empty] == 0).all().all()


def test_rounding_is_numpy_half_to_even():
    probs = np.array([0.0, 0.04, 0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.949, 0.95, 1.0])
    assert mil.probability_bin(probs).tolist() == [0, 0, 0, 2, 2, 4, 4, 6, 9, 10, 10]
    np.testing.assert_array_equal(mil.probability_bin(probs), np.round(probs, 1) * 10)
    np.testing.assert_array_equal(mil.probability_bin(probs), (pd.Series(probs).round(1) * 10).round().astype(int))
    features = mil.mil_features(_predictions({"a": [0.25, 0.35]}), train_ids=["a"])
    assert features.loc["a", "PLH_02"] == 0.5 and features.loc["a", "PLH_04"] == 0.5


def test_label_threshold():
    preds = _predictions({"a": [0.5, 0.49, 0.7]})
    assert mil.mil_features(preds, ["a"]).loc["a", "PLH_1"] == pytest.approx(2 / 3)
    assert mil.mil_features(preds, ["a"], label_threshold=0.6).loc["a", "PLH_1"] == pytest.approx(1 / 3)


def _random_predictions(seed: int, n: int = 30) -> tuple[pd.DataFrame, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    ids = [f"P{i:02d}" for i in range(n)]
    rows = [{"patient_id": p, "offset": o, "prob": float(rng.beta(2, 2))} for p in ids for o in range(11)]
    return pd.DataFrame(rows), ids[: n * 2 // 3], ids[n * 2 // 3:]


@pytest.mark.parametrize("idf_on", ["train", "all"])
def test_idf_leak(idf_on):
    preds, train, validation = _random_predictions(3)
    before = mil.mil_features(preds, train, idf_on=idf_on)
    changed = preds.copy()
    changed.loc[changed["patient_id"].isin(validation), "prob"] = 0.97  # every validation slice in bin 1.0
    after = mil.mil_features(changed, train, idf_on=idf_on)
    pd.testing.assert_frame_equal(before.loc[train, mil.PLH_COLUMNS], after.loc[train, mil.PLH_COLUMNS])
    if idf_on == "train":
        pd.testing.assert_frame_equal(before.loc[train], after.loc[train])
    else:
        diff = (before.loc[train, mil.BOW_COLUMNS] - after.loc[train, mil.BOW_COLUMNS]).abs().to_numpy().max()
        assert diff > 1e-3  # validation documents changed the idf, hence training patients' BoW


def test_idf_on_for_protocols():
    assert mil.idf_on_for("leak_free") == "train"
    assert mil.idf_on_for("onekey_compat") == "all"
    with pytest.raises(ValueError, match="protocol"):
        mil.idf_on_for("other")


def test_bad_inputs_name_the_problem():
    with pytest.raises(mil.MILError, match="P7"):
        mil.mil_features(_predictions({"P1": [0.2], "P7": [1.3]}), ["P1"])
    with pytest.raises(mil.MILError, match="P7"):
        mil.mil_features(_predictions({"P1": [0.2], "P7": [np.nan]}), ["P1"])
    with pytest.raises(mil.MILError, match="prob"):
        mil.mil_features(pd.DataFrame({"patient_id": ["a"], "p": [0.1]}), ["a"])
    with pytest.raises(mil.MILError, match="training"):
        mil.mil_features(_predictions({"a": [0.1]}), ["zz"])
    two = _predictions({"a": [0.1, 0.2]}).assign(architecture=["resnet18", "densenet121"])
    with pytest.raises(mil.MILError, match="architectures"):
        mil.mil_features(two, ["a"])
    with pytest.raises(ValueError, match="idf_on"):
        mil.mil_features(_predictions({"a": [0.1]}), ["a"], idf_on="validation")


def test_build_and_load_table(tmp_path):
    preds, train, validation = _random_predictions(5, n=12)
    cohort = pd.DataFrame({"patient_id": train + validation, "split": ["train"] * len(train)
                           + ["validation"] * len(validation)})
    run = RunFolder(tmp_path / "run")
    for protocol, idf_on in (("onekey_compat", "all"), ("leak_free", "train")):
        params = params_from_dict({"protocol": protocol, "cohort": {"manifest": str(tmp_path / "c.csv")}})
        table = mil.build_mil_table(preds, cohort, params, run)
        pd.testing.assert_frame_equal(table, mil.mil_features(preds, train, idf_on=idf_on))
    loaded = mil.load_mil_table(run)
    pd.testing.assert_frame_equal(loaded, table, check_exact=False, rtol=1e-12)
    with pytest.raises(mil.MILError, match="not in the cohort"):
        mil.build_mil_table(preds, cohort.iloc[1:], params)


def _logged_predictions() -> pd.DataFrame:
    """Two training patients (one slice left out of the logged pass) and one validation patient."""
    return pd.DataFrame({"patient_id": ["t1", "t1", "t2", "t2", "v1", "v1"],
                         "split": ["train"] * 4 + ["validation"] * 2,
                         "prob": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                         "train_pass_prob": [0.9, np.nan, 0.7, 0.8, np.nan, np.nan]})


@pytest.mark.parametrize("protocol, chosen, source", [("leak_free", "protocol", "eval"),
                                                      ("onekey_compat", "protocol", "train_pass"),
                                                      ("leak_free", "train_pass", "train_pass"),
                                                      ("onekey_compat", "eval", "eval")])
def test_mil_inputs_take_the_training_pass_only_for_training_slices_it_logged(protocol, chosen, source):
    params = params_from_dict({"protocol": protocol, "mil": {"training_predictions": chosen},
                               "cohort": {"synthetic": {"n": 8}}})
    assert mil.training_source(params) == source
    preds = _logged_predictions()
    used = mil.mil_inputs(preds, params)
    if source == "eval":
        assert used["prob"].tolist() == preds["prob"].tolist() and set(used["prob_source"]) == {"eval"}
    else:
        assert used["prob"].tolist() == [0.9, 0.2, 0.7, 0.8, 0.5, 0.6]  # unlogged and validation slices: eval
        assert used["prob_source"].tolist() == ["train_pass", "eval", "train_pass", "train_pass", "eval", "eval"]
    assert preds["prob"].tolist() == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]  # the input is not modified
    overview = mil.prediction_overview(used.assign(er=[1, 1, 0, 0, 1, 1]))
    assert overview["train_pass_slices"].sum() == (3 if source == "train_pass" else 0)


def test_mil_inputs_ask_for_notebook_03_when_the_training_pass_was_not_logged():
    params = params_from_dict({"protocol": "onekey_compat", "cohort": {"synthetic": {"n": 8}}})
    with pytest.raises(mil.MILError, match="rerun notebook 03"):
        mil.mil_inputs(_logged_predictions().drop(columns="train_pass_prob"), params)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(0, 1), min_size=1, max_size=11), min_size=2, max_size=8))
def test_invariants(slices):
    probs = {f"p{i}": values for i, values in enumerate(slices)}
    features = mil.mil_features(_predictions(probs), train_ids=["p0"])
    assert features.columns.tolist() == EXPECTED_COLUMNS and len(features) == len(probs)
    np.testing.assert_allclose(features[mil.PLH_COLUMNS[:11]].sum(axis=1), 1.0)
    np.testing.assert_allclose(features[mil.PLH_COLUMNS[11:]].sum(axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(features[mil.BOW_COLUMNS[:11]], axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(features[mil.BOW_COLUMNS[11:]], axis=1), 1.0)
    assert (features >= 0).all().all()
