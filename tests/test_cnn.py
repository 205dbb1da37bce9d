"""Slice-level CNNs (hcc_utils.cnn, cnn_train, gradcam): the trainer learns, selection is leak-free, runs repeat,
weights load only from local files, Table 3 has its rows, reruns reuse checkpoints.

Everything trains tiny networks on 32 px blob images on the CPU with one thread, so the file runs in about a minute.
"""

from __future__ import annotations

import json
from dataclasses import replace

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from _cnn_data import Slices, blob_slices, make_params

from hcc_utils import cnn, cnn_train, gradcam
from hcc_utils.config import ParamsError
from hcc_utils.plots import cnn as cnn_plots
from hcc_utils.run_folder import RunFolder
from hcc_utils.stats import auc_ci

matplotlib.use("Agg")


def poisoned(data: Slices, seed: int = 1) -> Slices:
    """Validation patients' images replaced by noise and their labels flipped; training patients untouched."""
    rng = np.random.default_rng(seed)
    images, patients = data.images.copy(), data.patients.copy()
    val = (patients["split"] == "validation").to_numpy()
    images[val] = rng.integers(0, 256, images[val].shape, dtype=np.uint8)
    patients.loc[val, "er"] = 1 - patients.loc[val, "er"]
    return replace(data, images=images, patients=patients)


@pytest.fixture(scope="module")
def learnt(tmp_path_factory):
    data, params = blob_slices(), make_params(epochs={"resnet18": 6}, batch_size=8)
    run = RunFolder(tmp_path_factory.mktemp("cnn_learnt"))
    return data, params, run, cnn.train_and_predict(data, params, run)


def test_trainer_learns_a_strong_image_signal(learnt):
    data, params, run, result = learnt
    table3 = pd.read_csv(run.tables / "table3_slice_cnn.csv")
    validation = table3[table3["dataset"] == "validation"].iloc[0]
    assert validation["auc"] > 0.75, table3
    assert list(table3.columns) == cnn.TABLE3_COLUMNS and len(table3) == 2
    saved = pd.read_csv(run.predictions / "slice_predictions.csv", dtype={"patient_id": str})
    assert list(saved.columns) == cnn.PREDICTION_COLUMNS
    assert len(saved) == data.images.shape[0] * data.images.shape[1] and saved["prob"].between(0, 1).all()
    split = data.patients.set_index("patient_id")["split"]
    assert (saved["split"] == saved["patient_id"].map(split)).all()
    history = pd.read_csv(run.tables / "cnn_history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4, 5, 6] and history["lr"].is_monotonic_decreasing
    choice = json.loads((run.models / "cnn_choice.json").read_text())
    assert choice["architecture"] == "ResNet18" and choice["selected_on"] == "inner_validation"
    downstream = cnn.downstream_predictions(run)
    assert len(downstream) == len(saved) and set(downstream.columns) >= {"patient_id", "offset", "split", "prob",
                                                                          "er"}
    assert cnn.load_trained_model(run, "ResNet18").fc.out_features == 2


def test_the_chosen_epochs_training_pass_is_logged_for_the_slices_it_saw(learnt):
    data, params, run, result = learnt
    saved = pd.read_csv(run.predictions / "slice_predictions.csv", dtype={"patient_id": str})
    roles = pd.read_csv(run.models / "cnn_inner_split.csv", dtype={"patient_id": str}).set_index("patient_id")
    role = saved["patient_id"].map(roles["role"])
    logged = saved["train_pass_prob"].notna()
    assert not logged[role != "inner_train"].any()  # selection and validation slices are never in the pass
    fit = int((role == "inner_train").sum())
    batch = params.cnn.batch_size
    assert logged.sum() == fit // batch * batch  # all but the epoch's dropped last batch
    assert saved.loc[logged, "train_pass_prob"].between(0, 1).all()
    assert not np.allclose(saved.loc[logged, "train_pass_prob"], saved.loc[logged, "prob"])  # another pass


def test_patients_never_cross_roles():
    data = blob_slices(n_patients=40)
    roles = cnn.patient_roles(data.patients, "leak_free", 0.25, seed=0)
    split = data.patients.set_index("patient_id")["split"]
    assert set(roles[split == "validation"]) == {"validation"}
    assert set(roles[split == "train"]) == {"inner_train", "inner_validation"}
    inner = data.patients.set_index("patient_id")["er"][roles == "inner_validation"]
    assert 0 < inner.mean() < 1, "the inner split is stratified by ER"
    assert set(cnn.patient_roles(data.patients, "onekey_compat", 0.25, 0)[split == "train"]) == {"train"}


def _few_er(data: Slices, n_er: int) -> Slices:
    """The same slices with only ``n_er`` ER patients among the training patients (too few to stratify)."""
    patients = data.patients.copy()
    train_er = patients.index[(patients["split"] == "train") & (patients["er"] == 1)]
    patients.loc[train_er[n_er:], "er"] = 0
    return replace(data, patients=patients)


def test_an_inner_split_that_cannot_be_stratified_says_so(tmp_path):
    data = _few_er(blob_slices(n_patients=16), n_er=1)
    params = make_params(epochs={"resnet18": 1}, batch_size=4)
    roles = cnn.patient_roles(data.patients, "leak_free", params.cnn.inner_validation_fraction, params.seed)
    note = roles.attrs["inner_split_note"]
    assert "NOT stratified by ER" in note and "1 ER and" in note and "least populated class" in note
    label = roles.attrs["inner_split"]
    assert label.startswith("NOT stratified by ER (random): 1 ER and") and "inner validation set has" in label
    plan = cnn.training_plan(data, params).set_index("role")
    assert plan.loc[["inner_train", "inner_validation"], "inner_split"].tolist() == [label, label]
    assert plan.loc["validation", "inner_split"] is None and plan.attrs["inner_split_note"] == note
    with pytest.warns(cnn.InnerSplitWarning, match="NOT stratified by ER"):
        cnn.train_and_predict(data, params, RunFolder(tmp_path / "run"))


def test_a_stratified_inner_split_says_so_and_onekey_compat_has_none():
    data, params = blob_slices(n_patients=40), make_params()
    assert cnn.patient_roles(data.patients, "leak_free", 0.25, seed=0).attrs["inner_split_note"] == ""
    plan = cnn.training_plan(data, params).set_index("role")
    assert plan.loc[["inner_train", "inner_validation"], "inner_split"].tolist() == ["stratified by ER"] * 2
    compat = cnn.training_plan(data, make_params("onekey_compat"))
    assert "inner_split" not in compat.columns and compat.attrs["inner_split_note"] == ""


def _selection(run: RunFolder, result) -> tuple:
    return (result.choice["architecture"], result.choice["best_epoch"],
            result.history[["architecture", "epoch", "loss", "train_auc", "selection_auc"]])


def test_leak_free_selection_never_reads_validation_rows(tmp_path, monkeypatch):
    data = blob_slices(n_patients=24, offsets=(0, 1), seed=5)
    two = {"architectures": ["resnet18", "densenet121"], "epochs": {"resnet18": 2, "densenet121": 2}}
    seen_rows = []
    real_train = cnn.train_architecture

    def spy(model, architecture, slices, fit_rows, select_rows, *args, **kwargs):
        seen_rows.append(np.concatenate([fit_rows, select_rows]))
        return real_train(model, architecture, slices, fit_rows, select_rows, *args, **kwargs)

    monkeypatch.setattr(cnn, "train_architecture", spy)
    results = {}
    for protocol in ("leak_free", "onekey_compat"):
        for name, dataset in (("clean", data), ("poisoned", poisoned(data))):
            run = RunFolder(tmp_path / f"{protocol}_{name}")
            results[protocol, name] = (run, cnn.train_and_predict(dataset, make_params(protocol, **two), run))
    n_offsets = len(data.offsets)
    val_rows = np.flatnonzero(np.repeat((data.patients["split"] == "validation").to_numpy(), n_offsets))
    assert not np.isin(np.concatenate(seen_rows[:4]), val_rows).any(), "leak_free training saw validation slices"

    clean, dirty = (_selection(*results["leak_free", k]) for k in ("clean", "poisoned"))
    assert clean[:2] == dirty[:2]
    pd.testing.assert_frame_equal(clean[2], dirty[2])
    train_rows = lambda r: r.predictions[r.predictions["split"] == "train"].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(train_rows(results["leak_free", "clean"][1]),
                                  train_rows(results["leak_free", "poisoned"][1]))

    compat = [results["onekey_compat", k][1] for k in ("clean", "poisoned")]
    assert compat[0].choice["selected_on"] == "validation"
    assert not np.allclose(compat[0].history["selection_auc"], compat[1].history["selection_auc"]), \
        "onekey_compat should select on the validation rows"
    assert len(compat[0].table3) == 4


def test_two_cpu_runs_with_one_seed_give_the_same_probabilities(learnt, tmp_path):
    data, params, _, first = learnt
    again = cnn.train_and_predict(data, params, RunFolder(tmp_path))
    np.testing.assert_array_equal(first.predictions["prob"].to_numpy(), again.predictions["prob"].to_numpy())
    other_seed = cnn.train_and_predict(data, params.model_copy(update={"seed": 4}), RunFolder(tmp_path / "s4"))
    assert not np.array_equal(first.predictions["prob"].to_numpy(), other_seed.predictions["prob"].to_numpy())


def test_rerun_reuses_saved_checkpoints(learnt, monkeypatch):
    data, params, run, first = learnt

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although nothing changed")

    monkeypatch.setattr(cnn, "train_architecture", no_training)
    again = cnn.train_and_predict(data, params, run)
    pd.testing.assert_frame_equal(first.predictions, again.predictions)
    pd.testing.assert_frame_equal(first.table3, again.table3)


def test_missing_weights_file_gives_a_clear_error(tmp_path):
    missing = tmp_path / "resnet18_imagenet.pt"
    with pytest.raises(FileNotFoundError) as err:
        cnn.build_model("resnet18", missing)
    message = str(err.value)
    assert "resnet18" in message and str(missing) in message and "Nothing is downloaded" in message
    params = make_params(weights={"resnet18": str(missing)})
    with pytest.raises(FileNotFoundError, match="cnn.weights.resnet18"):
        cnn.train_and_predict(blob_slices(n_patients=8), params, RunFolder(tmp_path / "run"))


def test_imagenet_state_dict_loads_without_its_head(tmp_path):
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18(num_classes=1000)
    torch.save(imagenet.state_dict(), tmp_path / "r18.pt")
    with pytest.warns(UserWarning, match="1000-class head"):
        model = cnn.build_model("resnet18", tmp_path / "r18.pt")
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight) and model.fc.out_features == 2
    torch.save(torchvision.models.densenet121(num_classes=2).state_dict(), tmp_path / "dense.pt")
    with pytest.raises(ValueError, match="does not fit torchvision's ResNet18"):
        cnn.build_model("resnet18", tmp_path / "dense.pt")


def test_table3_has_two_rows_per_architecture():
    rng = np.random.default_rng(0)
    n = 60
    er, split = rng.integers(0, 2, n), np.where(np.arange(n) < 40, "train", "validation")
    predictions = pd.concat([pd.DataFrame({"patient_id": np.arange(n).astype(str), "offset": 0, "split": split,
                                           "architecture": name, "prob": np.clip(0.3 * er + rng.random(n) * .7, 0, 1),
                                           "er": er}) for name in cnn.ARCHITECTURE_NAMES.values()])
    table3 = cnn.slice_metrics_table(predictions, make_params())
    assert len(table3) == 6 and list(table3.columns) == cnn.TABLE3_COLUMNS
    assert set(zip(table3["dataset"], table3["architecture"], strict=True)) == {
        (d, a) for d in ("train", "validation") for a in ("ResNet18", "ResNet101", "DenseNet121")}
    assert (table3["auc_low"] <= table3["auc"]).all() and (table3["auc"] <= table3["auc_high"]).all()
    part = predictions[(predictions["architecture"] == "ResNet18") & (predictions["split"] == "validation")]
    row = table3[(table3["architecture"] == "ResNet18") & (table3["dataset"] == "validation")].iloc[0]
    assert np.allclose(row[["auc", "auc_low", "auc_high"]].astype(float), auc_ci(part["er"], part["prob"]))
    constant = predictions.assign(prob=np.where(predictions["architecture"] == "ResNet101", 0.9,
                                                predictions["prob"]))
    with pytest.warns(UserWarning) as caught:
        table3 = cnn.slice_metrics_table(constant, make_params())
    assert sorted(str(w.message).split(" slices")[0] for w in caught) == [
        "Table 3, ResNet101 on train", "Table 3, ResNet101 on validation"]
    row = table3[table3["architecture"] == "ResNet101"].iloc[0]
    assert row["auc"] == 0.5 and np.isnan(row["auc_low"]) and row["sensitivity"] == 1 and row["specificity"] == 0


def test_batch_augmentation_matches_its_definition():
    generator = torch.Generator().manual_seed(0)
    boxes = cnn_train.random_crop_boxes(500, 64, (0.5, 1.0), (3 / 4, 4 / 3), generator)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64 + 1e-4).all()
    area = width * height / 64**2
    assert area.min() >= 0.5 - 1e-4 and area.max() <= 1 + 1e-4
    slices = torch.randint(0, 256, (4, 1, 64, 64), dtype=torch.uint8)
    assert torch.equal(cnn_train.resize_slices(slices, 64), slices.float())
    full = torch.tensor([[0.0, 0.0, 64.0, 64.0]]).expand(4, 4)
    assert torch.allclose(cnn_train.resize_slices(slices, 64, full), slices.float(), atol=1e-3)
    half = cnn_train.resize_slices(slices, 32)
    expected = torch.nn.functional.avg_pool2d(slices.float(), 2)
    assert torch.allclose(half, expected, atol=1e-3), "shrinking averages the pixels of each output cell"
    normalised = cnn_train.network_input(torch.full((1, 1, 2, 2), 255.0))
    assert normalised.shape == (1, 3, 2, 2)
    assert torch.allclose(normalised[0, :, 0, 0], (1 - torch.tensor(cnn_train.IMAGENET_MEAN))
                          / torch.tensor(cnn_train.IMAGENET_STD))


def test_gradcam_and_figures(learnt):
    data, params, run, result = learnt
    examples = gradcam.representative_examples(data, params, run)
    assert [e.er for e in examples] == [1, 0]
    assert all(e.cam.shape == (32, 32) and 0 <= e.cam.min() and e.cam.max() <= 1 for e in examples)
    assert "Validation ER patient, highest probability" in examples[0].title
    figures = [cnn_plots.roc_curves(result.predictions, result.table3, "validation"),
               cnn_plots.training_curves(result.history, result.choice),
               cnn_plots.gradcam_figure(examples, "ResNet18")]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figures)


def test_cnn_params_are_checked_per_architecture():
    with pytest.raises(ParamsError, match="at least 1 epoch for listed architecture 'densenet121'"):
        make_params(architectures=["resnet18", "densenet121"], epochs={"resnet18": 2})
    with pytest.raises(ParamsError, match="input_size for 'resnet18' is 16"):
        make_params(input_size={"resnet18": 16})
    with pytest.raises(ParamsError, match="downstream_architecture"):
        make_params(downstream_architecture="resnet101")
    assert make_params(input_size={"resnet18": 48}).cnn.size_of("resnet18") == 48
