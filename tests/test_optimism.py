"""The optimism audit (hcc_utils.optimism, cnn_train's validation watch, cnn_cache; docs/method.md section 8): the
watch changes nothing of the main checkpoint, chooses its own epoch by the watched AUC, is cached under leak_free,
and the audit gives each shortcut's DL-MIL validation AUC on one tiny leak_free run.

Tiny ResNet18s at 32 px on blob images, one CPU thread; the whole file runs in well under a minute.
"""

from __future__ import annotations

import json
import shutil

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from _cnn_data import blob_slices, make_params

from hcc_utils import artifacts, cnn, cnn_cache, cnn_train, mil, modeling, optimism
from hcc_utils.config import params_from_dict
from hcc_utils.plots import optimism as optimism_plots
from hcc_utils.run_folder import RunFolder

matplotlib.use("Agg")
EPOCHS = 3


def _train(data, params, rows, watch_rows=None) -> cnn_train.TrainedCNN:
    cfg, seed = params.cnn, 11
    tensors = cnn_train.SliceTensors.from_stacks(data.images, data.patients["er"].to_numpy(), torch.device("cpu"))
    with cnn_train.torch_settings(cfg, torch.device("cpu")):
        torch.manual_seed(seed)
        model = cnn.build_model("resnet18", zero_init_residual=True)
        trained = cnn_train.train_architecture(model, "resnet18", tensors, rows["fit"], rows["select"], cfg, seed,
                                               watch_rows=watch_rows)
        trained.prob = cnn_train.predict_probabilities(model, tensors, np.arange(len(tensors.labels)), 32, cfg)
    return trained


@pytest.fixture(scope="module")
def watched():
    data = blob_slices(n_patients=16, offsets=(0, 1), seed=2)
    params = make_params(epochs={"resnet18": EPOCHS}, batch_size=8)
    split = np.repeat(data.patients["split"].to_numpy(), 2)
    train = np.flatnonzero(split == "train")
    rows = {"fit": train[:-4], "select": train[-4:], "watch": np.flatnonzero(split == "validation")}
    return data, params, rows, _train(data, params, rows), _train(data, params, rows, rows["watch"])


def test_watching_leaves_the_checkpoint_history_and_probabilities_bitwise_unchanged(watched):
    _, _, _, plain, watching = watched
    assert plain.best_epoch == watching.best_epoch
    assert plain.state_dict.keys() == watching.state_dict.keys()
    assert all(torch.equal(plain.state_dict[k], watching.state_dict[k]) for k in plain.state_dict)
    timing = ["seconds", "images_per_s"]
    pd.testing.assert_frame_equal(plain.history.drop(columns=timing), watching.history.drop(columns=timing))
    np.testing.assert_array_equal(plain.train_pass_prob, watching.train_pass_prob)
    np.testing.assert_array_equal(plain.prob, watching.prob)
    assert list(plain.history.columns) == cnn_train.HISTORY_COLUMNS  # no validation AUC in the shown history
    assert plain.watch_auc_by_epoch == [] and plain.watch_best_epoch is None and plain.watch_state_dict is None


def test_the_watch_keeps_the_epoch_of_the_best_watched_auc(watched):
    data, params, rows, _, watching = watched
    aucs = np.array(watching.watch_auc_by_epoch)
    assert len(aucs) == EPOCHS and np.isfinite(aucs).all()
    assert watching.watch_best_epoch == int(np.argmax(aucs)) + 1  # argmax: ties keep the earlier epoch
    labels = np.repeat(data.patients["er"].to_numpy(), 2)[rows["watch"]]
    tensors = cnn_train.SliceTensors.from_stacks(data.images, data.patients["er"].to_numpy(), torch.device("cpu"))
    model = cnn.build_model("resnet18")
    model.load_state_dict(watching.watch_state_dict)
    prob = cnn_train.predict_probabilities(model, tensors, rows["watch"], 32, params.cnn)
    assert cnn_train.safe_auc(labels, prob) == pytest.approx(aucs.max())
    logged = ~np.isnan(watching.watch_train_pass_prob)
    assert logged.any() and set(np.flatnonzero(logged)) <= set(rows["fit"])


# -- the cache (hcc_utils.cnn_cache) and a tiny leak_free run ---------------------------------------------------------

def _params(protocol: str = "leak_free"):
    cnn_cfg = {"architectures": ["resnet18"], "epochs": {"resnet18": EPOCHS}, "input_size": 32, "batch_size": 8,
               "num_threads": 1, "progress": False, "device": "cpu"}
    model = {"n_estimators": [5], "max_depth": [2], "min_samples_split": [2], "cv_folds": 3}
    return params_from_dict({"seed": 3, "protocol": protocol, "cohort": {"synthetic": {"n": 8}}, "cnn": cnn_cfg,
                             "model": model})


def _labels_split(data):
    patients = data.patients.set_index("patient_id")
    return patients["er"], patients["split"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A leak_free run folder through notebooks 01-05's stage functions (DL-MIL only): split, slice dataset, CNN,
    MIL features, the recipe's predictions."""
    data, params = blob_slices(n_patients=30, offsets=(-1, 0, 1), seed=4), _params()
    run = RunFolder(tmp_path_factory.mktemp("optimism_run"))
    artifacts.write_split(run, data.patients)
    np.savez(artifacts.SLICE_ARRAYS.path(run), images=data.images, masks=data.masks, offsets=np.array(data.offsets))
    artifacts.write_table(run, artifacts.SLICE_PATIENTS, data.patients)
    cnn.train_and_predict(data, params, run)
    mil.build_mil_table(mil.mil_inputs(cnn.downstream_predictions(run), params), data.patients, params, run)
    labels, split = _labels_split(data)
    modeling.fit_recipe(mil.load_mil_table(run), labels, split, params, "DL-MIL", run)
    return data, params, run


@pytest.fixture
def cohort_of(monkeypatch):
    """``cohort.load_cohort`` answers the run's split (the tiny run has no manifest)."""
    monkeypatch.setattr(optimism.cohort, "load_cohort", lambda params, run: artifacts.read_split(run))


def test_leak_free_training_caches_the_validation_chosen_epoch_and_a_cache_without_it_is_a_miss(tiny_run, tmp_path,
                                                                                                monkeypatch):
    data, params, run = tiny_run
    meta = json.loads(artifacts.CNN_META.path(run, architecture="resnet18").read_text())
    aucs = cnn_cache.validation_auc_by_epoch(meta)
    assert len(aucs) == EPOCHS and meta["validation_chosen_epoch"] == int(np.nanargmax(aucs)) + 1
    assert artifacts.CNN_VALIDATION_CHOSEN_STATE.path(run, architecture="resnet18").is_file()
    train_pass = artifacts.read_table(run, artifacts.CNN_VALIDATION_CHOSEN_TRAIN_PASS, architecture="resnet18")
    assert len(train_pass) == data.images.shape[0] * data.images.shape[1]
    history = pd.read_csv(run.tables / "cnn_history.csv")
    assert list(history.columns) == cnn_train.HISTORY_COLUMNS  # notebook 03's history shows no validation AUC

    key = meta["cache_key"]
    assert cnn_cache.load_cached(run, "resnet18", key, "leak_free") is not None
    old = RunFolder(tmp_path / "old")
    shutil.copytree(run.root, old.root, dirs_exist_ok=True)
    artifacts.CNN_VALIDATION_CHOSEN_STATE.path(old, architecture="resnet18").unlink()
    assert cnn_cache.load_cached(old, "resnet18", key, "leak_free") is None
    assert cnn_cache.load_cached(old, "resnet18", key, "onekey_compat") is not None  # nothing new there
    stale = {k: v for k, v in meta.items() if k not in cnn_cache.WATCH_KEYS}
    artifacts.CNN_META.path(old, architecture="resnet18").write_text(json.dumps(stale))
    shutil.copy(artifacts.CNN_VALIDATION_CHOSEN_STATE.path(run, architecture="resnet18"),
                artifacts.CNN_VALIDATION_CHOSEN_STATE.path(old, architecture="resnet18"))
    assert cnn_cache.load_cached(old, "resnet18", key, "leak_free") is None

    def retrained(*args, **kwargs):
        raise RuntimeError("retrained")

    monkeypatch.setattr(cnn, "train_architecture", retrained)
    with pytest.raises(RuntimeError, match="retrained"):
        cnn.train_and_predict(data, params, old)
    cnn.train_and_predict(data, params, run)  # the complete cache: no training


def test_the_validation_chosen_pass_reproduces_the_watched_auc_and_is_cached(tiny_run, monkeypatch):
    data, params, run = tiny_run
    meta, state, _ = cnn_cache.read_validation_chosen(run, "resnet18")
    table = optimism.validation_chosen_slices(run, params, "resnet18", meta, state)
    slices = cnn.slice_table(data.patients, data.offsets)
    validation = (slices["split"] == "validation").to_numpy()
    watched = cnn_cache.validation_auc_by_epoch(meta)[meta["validation_chosen_epoch"] - 1]
    assert cnn_train.safe_auc(slices["er"][validation], table["prob"][validation]) == pytest.approx(watched)
    monkeypatch.setattr(optimism.slices, "load_slice_dataset", lambda run: pytest.fail("not cached"))
    pd.testing.assert_frame_equal(optimism.validation_chosen_slices(run, params, "resnet18", meta, state), table)


def test_leak_free_features_never_read_validation_patients_in_the_idf(tiny_run):
    data, params, run = tiny_run
    inputs = optimism.variant_inputs(params, run)
    _, split = _labels_split(data)
    train = split.index[split == "train"]
    leak_free, _, _, _ = inputs["leak_free"]
    own = mil.mil_features(leak_free, train, "train")
    pd.testing.assert_frame_equal(own, mil.load_mil_table(run), check_names=False)  # notebook 04's features
    alone = mil.mil_features(leak_free[leak_free["split"] == "train"], train, "train")
    pd.testing.assert_frame_equal(own.loc[train], alone.loc[train])  # validation slices do not move them
    table, idf_on, _, _ = inputs["idf_on_all"]
    assert idf_on == "all"
    on_all = mil.mil_features(table, train, idf_on)
    plh = [c for c in mil.FEATURE_COLUMNS if c.startswith("PLH_")]
    pd.testing.assert_frame_equal(on_all.loc[train, plh], own.loc[train, plh])  # the idf is the only difference
    assert not np.allclose(on_all.loc[train, mil.BOW_COLUMNS], own.loc[train, mil.BOW_COLUMNS])


def test_the_audit_gives_each_shortcuts_validation_auc_on_a_leak_free_run(tiny_run, cohort_of):
    data, params, run = tiny_run
    audit = optimism.optimism_audit(params, run)
    table = audit.table
    assert list(table["variant"]) == list(optimism.VARIANTS) and list(table.columns) == optimism.TABLE_COLUMNS
    assert np.isfinite(table["auc"]).all() and table["auc"].between(0, 1).all()
    np.testing.assert_allclose(table["optimism"], table["auc"] - table["auc"].iloc[0])
    own = artifacts.read_patient_predictions(run, "dl_mil").query("split == 'validation'")
    assert table["auc"].iloc[0] == pytest.approx(cnn_train.safe_auc(own["er"], own["prob"]))
    assert table["description"].str.contains("not reproduced").sum() == 2
    watched = table.set_index("variant").loc[["checkpoint_on_validation", "all_shortcuts"], "epoch"]
    meta = json.loads(artifacts.CNN_META.path(run, architecture="resnet18").read_text())
    assert (watched == meta["validation_chosen_epoch"]).all()
    saved = artifacts.read_table(run, artifacts.ROBUSTNESS_OPTIMISM)
    assert list(saved["variant"]) == list(optimism.VARIANTS)
    fit = artifacts.read_table(run, artifacts.ROBUSTNESS_FIT)
    assert list(fit["model"]) == ["DL-MIL"] and list(fit.columns) == optimism.FIT_COLUMNS
    assert fit["validation_auc"].iloc[0] == pytest.approx(table["auc"].iloc[0])
    assert optimism_plots.optimism_figure(table).axes and optimism_plots.fit_figure(audit.fit_table).axes


def test_a_run_without_the_watch_or_under_onekey_compat_says_so(tiny_run, cohort_of, tmp_path):
    data, params, run = tiny_run
    old = RunFolder(tmp_path / "old")
    shutil.copytree(run.root, old.root, dirs_exist_ok=True)
    artifacts.CNN_VALIDATION_CHOSEN_STATE.path(old, architecture="resnet18").unlink()
    audit = optimism.optimism_audit(params, old)
    assert list(audit.table["variant"]) == ["leak_free", "idf_on_all", "train_pass"]
    assert any("predates the validation watch" in note for note in audit.notes)
    compat = optimism.optimism_audit(_params("onekey_compat"), old)
    assert list(compat.table["variant"]) == ["onekey_compat"] and compat.table["optimism"].iloc[0] == 0
    assert any("needs a leak_free run" in note for note in compat.notes)



def test_the_audit_can_be_turned_off(tiny_run, cohort_of, monkeypatch):
    """``robustness.optimism: false``: the run's own row only, with a note; no variant is refitted."""
    data, params, run = tiny_run
    off = params.model_copy(deep=True)
    off.robustness.optimism = False
    monkeypatch.setattr(optimism.modeling, "fit_recipe", lambda *a, **k: pytest.fail("refitted"))
    audit = optimism.optimism_audit(off, run)
    assert list(audit.table["variant"]) == ["leak_free"]
    assert any("robustness.optimism: false" in note for note in audit.notes)
