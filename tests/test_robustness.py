"""Notebook 09's engine (hcc_utils.robustness_cnn, robustness_chain, robustness): held-out CNN probabilities never
come from a network that trained on the patient; the permutation and split helpers do what they say; on a cohort
with no signal the permutation nulls and the repeated splits sit at AUC 0.5 for every model; the scanner table has
one row per scanner and model.

The null-cohort test runs notebooks 01-05 and 09 of a 300-patient synthetic cohort with ``image_signal: 0`` and
``clinical_signal: 0`` at 64 px, one small CNN and radiomics of the original image only (a few minutes on 2 cores).
Why 300: the repeated splits' mean AUC is unbiased over null cohorts, but for one cohort it moves with that
cohort's chance differences between the outcome groups (SD about 0.047 per model at 150 patients with pure-noise
features, 0.03 at 300); at 300 the +-0.08 band is about 2.5 SD wide. The permutation null's mean is far tighter.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _cnn_data import blob_slices, make_params

from hcc_utils import artifacts, cnn, cnn_cross_fit, robustness, robustness_cnn
from hcc_utils.run_folder import RunFolder
from hcc_utils.runner import NOTEBOOKS, run_book

ROOT = Path(__file__).resolve().parents[1]

# -- the held-out networks -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _recording_trainer(calls: list):
    """The fold networks' trainer, recording the slice rows each network trains on."""
    real = cnn_cross_fit.train_architecture

    def spy(model, architecture, slices, fit_rows, select_rows, *args, **kwargs):
        calls.append(np.asarray(fit_rows))
        return real(model, architecture, slices, fit_rows, select_rows, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cnn_cross_fit, "train_architecture", spy)
        yield


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Notebook 03 on a blob cohort, then the held-out folds with every call to the trainer recorded."""
    data = blob_slices(n_patients=30, offsets=(-1, 0, 1), seed=4)
    params = make_params(epochs={"resnet18": 2}, batch_size=8)
    params.robustness.cnn_folds = 3
    run = RunFolder(tmp_path_factory.mktemp("held_out"))
    cnn.train_and_predict(data, params, run)
    calls = []
    with _recording_trainer(calls):
        result = robustness_cnn.held_out_probabilities(params, run, dataset=data)
    return data, params, run, result, calls


def test_no_patient_is_scored_by_a_network_that_trained_on_it(held_out):
    data, params, run, result, calls = held_out
    slices = cnn.slice_table(data.patients, data.offsets)
    assert len(calls) == 3
    trained_on = {fold: set(slices["patient_id"].iloc[rows]) for fold, rows in enumerate(calls, 1)}
    saved = artifacts.read_table(run, artifacts.HELD_OUT_PREDICTIONS, folding="k3")
    assert len(saved) == len(slices) and saved["prob"].between(0, 1).all()
    for row in saved.itertuples():
        assert row.patient_id not in trained_on[row.fold], f"{row.patient_id} scored by a network it trained"
    members = artifacts.read_table(run, artifacts.HELD_OUT_FOLDS, folding="k3").set_index("patient_id")["fold"]
    assert set(members.index) == set(data.patients["patient_id"])  # every patient, validation ones included
    for fold in range(1, 4):  # the recorded membership says exactly who each network trained on
        assert trained_on[fold] == set(members.index[members != fold])
    assert (result.table["trained_on"] + result.table["held_out"] == len(data.patients)).all()


def test_held_out_networks_are_cached(held_out):
    data, params, run, first, _ = held_out
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cnn_cross_fit, "train_architecture", lambda *a, **k: pytest.fail("retrained"))
        again = robustness_cnn.held_out_probabilities(params, run, dataset=data)
    pd.testing.assert_frame_equal(first.predictions, again.predictions)


def test_retrained_network_learns_on_the_split_training_patients_only(held_out):
    data, params, run, _, _ = held_out
    ids = data.patients["patient_id"].astype(str)
    split = pd.Series(np.where(np.arange(len(ids)) < 20, "train", "validation"), index=ids.to_numpy())
    calls = []
    with _recording_trainer(calls):
        table = robustness_cnn.split_network_probabilities(params, run, split, "repeat1", dataset=data)
    slices = cnn.slice_table(data.patients, data.offsets)
    assert set(slices["patient_id"].iloc[calls[0]]) == set(split.index[split == "train"])
    assert len(table) == len(slices) and table["prob"].between(0, 1).all()


def test_folds_by_a_column_hold_out_each_value():
    patients = pd.DataFrame({"patient_id": [f"P{i}" for i in range(9)], "er": [0, 1] * 4 + [0]})
    groups = pd.Series(list("AAABBBCCC"), index=patients["patient_id"], name="scanner")
    folds = robustness_cnn.cohort_folds(patients, 5, 0, groups)
    assert folds.attrs["groups"] == {1: "A", 2: "B", 3: "C"}
    assert folds.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    with pytest.raises(robustness_cnn.HeldOutError, match="single"):
        robustness_cnn.cohort_folds(patients, 5, 0, groups.map(lambda _: "A"))
    with pytest.raises(robustness_cnn.HeldOutError, match="at most 4"):
        robustness_cnn.cohort_folds(patients, 5, 0)


# -- the split and permutation helpers -------------------------------------------------------------------------------


def test_permuted_labels_shuffle_training_patients_only():
    er = pd.Series([1, 0, 1, 0, 1, 0, 0, 1], index=[f"P{i}" for i in range(8)])
    split = pd.Series(["train"] * 5 + ["validation"] * 3, index=er.index)
    shuffled = robustness.permuted_labels(er, split, seed=0, permutation=1)
    assert shuffled[split == "validation"].equals(er[split == "validation"])
    assert sorted(shuffled[split == "train"]) == sorted(er[split == "train"])
    assert shuffled.equals(robustness.permuted_labels(er, split, seed=0, permutation=1))  # seeded
    draws = {tuple(robustness.permuted_labels(er, split, 0, p)) for p in range(1, 20)}
    assert len(draws) > 1


def test_permutation_p_value_by_hand():
    # 2 of 9 null values reach 0.8: p = (1 + 2) / (9 + 1)
    null = np.array([0.5, 0.4, 0.8, 0.6, 0.9, 0.3, 0.55, 0.45, np.nan, 0.5])
    assert robustness.permutation_p_value(0.8, null) == pytest.approx(0.3)
    assert robustness.permutation_p_value(0.95, null) == pytest.approx(0.1)
    assert np.isnan(robustness.permutation_p_value(np.nan, null))


def test_repeated_splits_are_stratified_and_seeded():
    patients = pd.DataFrame({"patient_id": [f"P{i}" for i in range(40)], "er": [1] * 16 + [0] * 24})
    splits = robustness.repeat_splits(patients, 0.3, seed=1, repeats=5)
    again = robustness.repeat_splits(patients, 0.3, seed=1, repeats=5)
    assert all(a.equals(b) for a, b in zip(splits, again, strict=True))
    assert len({tuple(s) for s in splits}) == 5
    for split in splits:
        validation = patients.set_index("patient_id").loc[split.index[split == "validation"], "er"]
        assert len(validation) == 12 and validation.sum() in (4, 5)


def test_paired_differences_by_hand():
    aucs = pd.DataFrame({"repeat": [0, 0, 1, 1, 2, 2, 3, 3], "model": ["DL-MIL", "Clinical"] * 4,
                         "auc": [0.9, 0.1, 0.7, 0.6, 0.5, 0.6, 0.8, 0.5]})
    table = robustness.paired_differences(aucs)
    row = table.iloc[0]
    assert row["comparison"] == "DL-MIL - Clinical" and row["repeats"] == 3  # repeat 0 left out
    assert row["median"] == pytest.approx(0.1) and row["share_dl_mil_wins"] == pytest.approx(2 / 3)


# -- a cohort with no signal ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def null_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("null")
    settings = yaml.safe_load((ROOT / "params" / "radiomics_smoke.yaml").read_text(encoding="utf-8"))
    settings["imageType"] = {"Original": {}}  # the original image only: half the smoke bank's cost
    settings["featureClass"]["glcm"].remove("MCC")  # its eigenvalues are the slowest feature
    (folder / "radiomics.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    params = {
        "name": "null", "seed": 0, "protocol": "leak_free",
        "cohort": {"synthetic": {"n": 300, "seed": 11, "image_size": 64, "image_signal": 0.0,
                                 "clinical_signal": 0.0}, "validation_fraction": 0.3, "split_seed": 5},
        "slices": {"size": 32},
        "cnn": {"architectures": ["resnet18"], "epochs": {"resnet18": 1}, "input_size": 32, "batch_size": 32},
        "model": {"n_estimators": [50], "max_depth": [3], "min_samples_split": [2]},
        "radiomics": {"settings": "radiomics.yaml", "icc_max_patients": 12},
        "robustness": {"repeats": 20, "permutations": 40, "cnn_folds": 3, "min_site_patients": 8},
        "comparators": {"abmil": {"epochs": 60, "patience": 20}, "cnn3d": {"size": 8, "epochs": 2}},
    }
    (folder / "null.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    chapters = [nb for nb in NOTEBOOKS if nb[0][:2] in ("01", "02", "03", "04", "05", "09", "11")]
    result = run_book(folder / "null.yaml", out=folder / "run", build=False, notebooks=chapters, echo=print,
                      cell_timeout=900)
    return RunFolder(result.run_dir)


@pytest.mark.book
def test_null_cohort_permutation_nulls_and_repeats_sit_at_one_half(null_run):
    permutation = artifacts.read_table(null_run, artifacts.ROBUSTNESS_PERMUTATION).set_index("model")
    repeats = artifacts.read_table(null_run, artifacts.ROBUSTNESS_REPEATS)
    models = ["DL-MIL", "Radiomics", "Clinical"]
    assert sorted(permutation.index) == sorted(models)
    for model in models:
        null_mean = permutation.at[model, "null_mean"]
        repeat_mean = repeats.loc[(repeats["model"] == model) & (repeats["repeat"] > 0), "auc"].mean()
        assert permutation.at[model, "permutations"] >= 35, model
        assert abs(null_mean - 0.5) <= 0.08, (model, null_mean)
        assert abs(repeat_mean - 0.5) <= 0.08, (model, repeat_mean)


@pytest.mark.book
def test_null_cohort_scanner_table_has_one_row_per_scanner_and_model(null_run):
    sites = artifacts.read_table(null_run, artifacts.ROBUSTNESS_SITES)
    cohort = artifacts.read_table(null_run, artifacts.HELD_OUT_FOLDS, folding="by_scanner")
    scanners = set(cohort["group"])
    assert len(scanners) == 3 and set(sites["site"]) == scanners
    assert len(sites) == 3 * 3 and not sites.duplicated(["site", "model"]).any()
    counts = cohort.groupby("group").size()
    assert all(sites.loc[sites["site"] == s, "n"].iloc[0] == counts[s] for s in scanners)


def _toy_inputs(n: int = 60, seed: int = 0):
    """A cohort whose MIL feature PLH_10 follows ER closely and whose clinical variables are noise."""
    from hcc_utils.robustness_chain import ChainInputs

    rng = np.random.default_rng(seed)
    ids = [f"T{i:03d}" for i in range(n)]
    er = rng.permutation(np.arange(n) % 2)
    split = np.where(rng.permutation(n) < int(0.3 * n), "validation", "train")
    clinical = {name: rng.normal(50, 10, n) for name in ("age", "bmi", "hbsag", "afp", "alb", "ast", "alt")}
    cohort = pd.DataFrame({"patient_id": ids, "er": er, "split": split, **clinical,
                           "gender": rng.choice(["M", "F"], n), "alcohol": rng.integers(0, 2, n)})
    features = pd.DataFrame(rng.uniform(0, 1, (n, len(artifacts.MIL_FEATURE_COLUMNS))), index=ids,
                            columns=list(artifacts.MIL_FEATURE_COLUMNS))
    features["PLH_10"] = er + rng.normal(0, 0.3, n)
    return ChainInputs(cohort=cohort, mil_table=features)


def test_a_strong_signal_gives_a_small_permutation_p_value(tmp_path):
    params = make_params()
    params.robustness.permutations = 49
    result = robustness.permutation_test(_toy_inputs(), params, RunFolder(tmp_path))
    table = result.table.set_index("model")
    assert table.at["DL-MIL", "observed_auc"] > 0.9
    assert table.at["DL-MIL", "p_value"] == pytest.approx(1 / 50)  # no permutation reaches the observed AUC
    assert abs(table.at["DL-MIL", "null_mean"] - 0.5) < 0.1
    assert table.at["Clinical", "p_value"] > 0.05  # the clinical variables are noise here
    saved = artifacts.read_table(RunFolder(tmp_path), artifacts.ROBUSTNESS_NULL)
    assert len(saved) == 49 * 2


@pytest.mark.book
def test_null_cohort_comparators_sit_at_one_half(null_run):
    """Notebook 11 on a cohort with no signal: no comparator finds any (about 90 validation patients: the AUC's
    standard error is about 0.06; the comparators share one CNN, so their mean moves with it)."""
    table = artifacts.read_table(null_run, artifacts.COMPARATORS)
    assert len(table) >= 10
    assert abs(table["auc"].mean() - 0.5) <= 0.08, table[["comparator", "auc"]]  # they share one CNN
    assert (abs(table["auc"] - 0.5) <= 0.2).all(), table[["comparator", "auc"]]
