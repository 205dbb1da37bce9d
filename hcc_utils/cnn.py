"""Slice-level CNNs (docs/method.md section 3; paper Table 3, Fig. 3): model zoo, weights, the stage, its outputs.

Three torchvision architectures with a 2-class head (ResNet18, ResNet101, DenseNet121) are trained on the 2.5D
slices (:mod:`hcc_utils.cnn_train`), each slice carrying its patient's label. Patient-level discipline:

- ``leak_free`` (default): the training patients are split (stratified by ER, seeded, by patient) into an inner
  training set, on which the networks learn, and an inner validation set, on which the checkpoint (best epoch) and
  the architecture used downstream are chosen. Validation patients are only ever predicted.
- ``onekey_compat``: the networks learn on all training patients; checkpoint and architecture are chosen by the
  validation slice AUC, as the original tooling did (a leak).

Then an eval-mode pass of each chosen checkpoint over every slice gives the slice predictions for Table 3 and the
MIL step. Weights start random, or from a local torchvision state dict named in ``cnn.weights`` (nothing is ever
downloaded). Outputs in the run folder::

    predictions/slice_predictions.csv   patient_id, offset, split, architecture, prob, er, train_pass_prob
                                        (prob: eval-mode pass; train_pass_prob: the chosen epoch's logged
                                        training pass, empty for slices not in it; hcc_utils.mil.mil_inputs)
    models/<arch>.pt, <arch>.json       chosen checkpoint (state dict) and its metadata (cache key, best epoch)
    models/cnn_choice.json              the architecture used downstream and on what it was chosen
    models/cnn_inner_split.csv          patient_id, role (inner_train / inner_validation / train / validation)
    tables/table3_slice_cnn.csv         dataset, architecture, accuracy, auc, auc_low, auc_high, sens., spec.
    tables/cnn_history.csv              architecture, epoch, loss, train_auc, selection_auc, lr, seconds, img/s

A rerun with the same CNN parameters, protocol, seed and slice dataset reuses the saved checkpoints and
predictions (``cache/cnn/``, :mod:`hcc_utils.cnn_cache`) instead of retraining. Under ``leak_free`` training also
watches the validation slices' AUC per epoch, for the optimism audit only (:mod:`hcc_utils.optimism`): the epoch
they would have chosen is cached beside the checkpoint, and chooses nothing here. Who trains which network (the
inner split, the cross-fit folds) is :mod:`hcc_utils.cnn_roles`'s; the cross-fit of the downstream architecture
(``cnn.cross_fit_folds``), which runs after this stage, is :mod:`hcc_utils.cnn_cross_fit`'s.

Example::

    >>> data = slices.load_slice_dataset(run)
    >>> result = cnn.train_and_predict(data, params, run)
    >>> result.table3, result.choice["architecture"]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch
import torchvision

from hcc_utils import artifacts
from hcc_utils.cnn_cache import CACHE_VERSION, checkpoint_key, dataset_hash, load_cached, save_checkpoint
from hcc_utils.cnn_roles import CrossFitError, InnerSplitWarning, cross_fit_folds, patient_roles
from hcc_utils.cnn_train import SliceTensors, predict_probabilities, torch_settings, train_architecture
from hcc_utils.config import CNN_ARCHITECTURES, CNNConfig, Params
from hcc_utils.run_folder import RunFolder
from hcc_utils.stats import auc, auc_ci, classification_metrics, youden_threshold

ARCHITECTURE_NAMES = {"resnet18": "ResNet18", "resnet101": "ResNet101", "densenet121": "DenseNet121"}
HEAD_PREFIX = {"resnet18": "fc.", "resnet101": "fc.", "densenet121": "classifier."}
PREDICTION_COLUMNS = list(artifacts.SLICE_PREDICTION_COLUMNS)
TABLE3_COLUMNS = list(artifacts.TABLE3.columns)


class SliceDatasetLike(Protocol):
    """What the stage needs of ``slices.SliceDataset``: uint8 ``images`` (n_patients, n_offsets, S, S),
    ``patients`` (patient_id, er, split) aligned with the first axis, and ``offsets``."""

    images: np.ndarray
    patients: pd.DataFrame
    offsets: list[int]


@dataclass
class CNNResult:
    """The stage's results (also written to the run folder)."""

    predictions: pd.DataFrame
    history: pd.DataFrame
    table3: pd.DataFrame
    choice: dict


def build_model(architecture: str, weights: Path | str | None = None,
                zero_init_residual: bool = False) -> torch.nn.Module:
    """A torchvision ``architecture`` with a 2-class head: random weights, or a local state dict.

    ``zero_init_residual`` (ResNets) zeroes the last batch-norm scale of each residual block, so every block
    starts as the identity; it stabilises training from random weights.

    The file is read with ``torch.load(weights_only=True)`` (tensors only, no code). A head of another size (the
    1000-class ImageNet head) is dropped and a new 2-class head initialised; every other weight must match.

    Raises:
        FileNotFoundError: ``weights`` names no file (nothing is downloaded at run time).
        ValueError: unknown architecture, or a file that is not a state dict of this architecture.
    """
    if architecture not in ARCHITECTURE_NAMES:
        raise ValueError(f"unknown architecture {architecture!r}; use one of {list(ARCHITECTURE_NAMES)}")
    options = {"zero_init_residual": zero_init_residual} if architecture.startswith("resnet") else {}
    model = getattr(torchvision.models, architecture)(weights=None, num_classes=2, **options)
    if weights is None:
        return model
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"cnn.weights.{architecture}: weights file {path} not found. Nothing is downloaded at run time: give "
            f"the path of a local torchvision {ARCHITECTURE_NAMES[architecture]} state dict (e.g. saved on a "
            f"machine with internet with torch.save(torchvision.models.{architecture}(weights='DEFAULT')"
            ".state_dict(), 'file.pt')), or remove the entry to start from random weights.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cnn.weights.{architecture}: {path} could not be read as a state dict with "
                         f"torch.load(weights_only=True): {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"cnn.weights.{architecture}: {path} holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own, head = model.state_dict(), HEAD_PREFIX[architecture]
    dropped = [k for k in state if k.startswith(head) and (k not in own or state[k].shape != own[k].shape)]
    if dropped:
        warnings.warn(f"{architecture}: the {tuple(state[dropped[0]].shape)[0]}-class head of {path.name} was "
                      "dropped; a new 2-class head starts from random weights", stacklevel=2)
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in dropped},
                                                strict=False)
    missing = [k for k in missing if not k.startswith(head)]
    if missing or unexpected:
        raise ValueError(f"cnn.weights.{architecture}: {path} does not fit torchvision's "
                         f"{ARCHITECTURE_NAMES[architecture]} ({len(missing)} missing keys, e.g. {missing[:3]}; "
                         f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}); is it another architecture's?")
    return model


def last_conv_block(model: torch.nn.Module, architecture: str) -> torch.nn.Module:
    """The last convolutional block (Grad-CAM target, paper Fig. 3c,d): ResNet ``layer4[-1]``, DenseNet
    ``features[-1]`` (the normalised output of dense block 4)."""
    return model.layer4[-1] if architecture.startswith("resnet") else model.features[-1]


def resolve_device(cfg: CNNConfig) -> torch.device:
    """``cnn.device``: ``auto`` is the GPU when torch sees one, else the CPU."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("cnn.device is 'cuda' but torch sees no CUDA GPU; set cnn.device to 'auto' or 'cpu'")
    return torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")


def architecture_seed(seed: int, architecture: str) -> int:
    """A seed per architecture that does not depend on the order of ``cnn.architectures``."""
    return seed * 1000 + CNN_ARCHITECTURES.index(architecture)


def check_dataset(dataset: SliceDatasetLike) -> tuple[np.ndarray, pd.DataFrame, list[int]]:
    images, patients, offsets = dataset.images, dataset.patients.reset_index(drop=True), list(dataset.offsets)
    missing = {"patient_id", "er", "split"} - set(patients.columns)
    if missing:
        raise ValueError(f"slice dataset: patients table lacks column(s) {sorted(missing)}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:2] != (len(patients), len(offsets)) \
            or images.shape[2] != images.shape[3]:
        raise ValueError(f"slice dataset: expected uint8 images (n_patients={len(patients)}, n_offsets="
                         f"{len(offsets)}, S, S), got {images.dtype} {images.shape}; rebuild it (notebook 02)")
    if not set(patients["split"]) <= {"train", "validation"} or (patients["split"] == "train").sum() < 2:
        raise ValueError("slice dataset: split must be 'train' or 'validation', with at least 2 training patients")
    return images, patients, offsets


def slice_table(patients: pd.DataFrame, offsets: list[int]) -> pd.DataFrame:
    """One row per slice, in the data's order (row ``i``: patient ``i // n_offsets``): patient_id, offset, split,
    er."""
    n_offsets = len(offsets)
    return pd.DataFrame({"patient_id": np.repeat(patients["patient_id"].astype(str).to_numpy(), n_offsets),
                         "offset": np.tile(np.asarray(offsets, dtype=int), len(patients)),
                         "split": np.repeat(patients["split"].to_numpy(), n_offsets),
                         "er": np.repeat(patients["er"].astype(int).to_numpy(), n_offsets)})


def _train_one(architecture: str, data: SliceTensors, slices: pd.DataFrame, roles: pd.Series, params: Params,
               run: RunFolder, key: str) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    cfg = params.cnn
    role = slices["patient_id"].map(roles).to_numpy()
    fit_rows = np.flatnonzero(np.isin(role, ["inner_train", "train"]))
    select_rows = np.flatnonzero(role == ("inner_validation" if params.protocol == "leak_free" else "validation"))
    watch_rows = np.flatnonzero(role == "validation") if params.protocol == "leak_free" else None  # the audit's
    seed = architecture_seed(params.seed, architecture)
    torch.manual_seed(seed)
    model = build_model(architecture, cfg.weights.get(architecture), cfg.zero_init_residual).to(data.images.device)
    trained = train_architecture(model, architecture, data, fit_rows, select_rows, cfg, seed,
                                 desc=ARCHITECTURE_NAMES[architecture], watch_rows=watch_rows)
    prob = predict_probabilities(model, data, np.arange(len(slices)), cfg.size_of(architecture), cfg)
    if not np.isfinite(prob).all():
        raise RuntimeError(f"{ARCHITECTURE_NAMES[architecture]}: training diverged (non-finite probabilities); "
                           "lower cnn.lr, or raise cnn.batch_size or the input size")
    predictions = slices.assign(architecture=ARCHITECTURE_NAMES[architecture], prob=prob,
                                train_pass_prob=trained.train_pass_prob)[PREDICTION_COLUMNS]
    weights = cfg.weights.get(architecture)
    meta = {"architecture": architecture, "cache_key": key, "best_epoch": trained.best_epoch,
            "selection_auc": trained.selection_auc, "epochs": cfg.epochs[architecture],
            "input_size": cfg.size_of(architecture), "initialisation": Path(weights).name if weights else "random",
            "device": data.images.device.type, "seconds": float(trained.history["seconds"].sum())}
    meta = save_checkpoint(run, trained, meta, predictions, params.protocol)
    return meta, predictions, trained.history


def choose_architecture(metas: dict[str, dict], params: Params) -> dict:
    """The architecture used downstream: ``cnn.downstream_architecture``, or the best selection AUC (inner
    validation under leak_free, validation under onekey_compat); ties go to the first listed."""
    selected_on = "inner_validation" if params.protocol == "leak_free" else "validation"
    aucs = {a: m["selection_auc"] for a, m in metas.items()}
    if params.cnn.downstream_architecture != "auto":
        chosen, selected_on = params.cnn.downstream_architecture, "params"
    else:
        chosen = max(metas, key=lambda a: -np.inf if np.isnan(aucs[a]) else aucs[a])
    return {"architecture": ARCHITECTURE_NAMES[chosen], "key": chosen, "selected_on": selected_on,
            "protocol": params.protocol, "selection_auc": {ARCHITECTURE_NAMES[a]: v for a, v in aucs.items()},
            "best_epoch": {ARCHITECTURE_NAMES[a]: m["best_epoch"] for a, m in metas.items()}}


def choice_table(choice: dict) -> pd.DataFrame:
    """One row per architecture: chosen epoch, its selection AUC, and whether it is used downstream."""
    return pd.DataFrame({"architecture": list(choice["selection_auc"]),
                         "best_epoch": list(choice["best_epoch"].values()),
                         f"{choice['selected_on']}_auc": list(choice["selection_auc"].values()),
                         "downstream": [a == choice["architecture"] for a in choice["selection_auc"]]})


def training_plan(dataset: SliceDatasetLike, params: Params) -> pd.DataFrame:
    """Patients, slices and ER share (a fraction) per role (who trains, who picks the checkpoint, who is only
    predicted). Under ``leak_free`` the column ``inner_split`` says, on the inner roles' rows, whether the inner
    split is stratified by ER, or why not (``patient_roles``); ``attrs["inner_split_note"]`` gives the reason."""
    _, patients, offsets = check_dataset(dataset)
    roles = patient_roles(patients, params.protocol, params.cnn.inner_validation_fraction, params.seed)
    table = patients.assign(role=patients["patient_id"].astype(str).map(roles).to_numpy())
    use = {"inner_train": "fits the weights", "train": "fits the weights",
           "inner_validation": "chooses epoch and architecture",
           "validation": "chooses epoch and architecture" if params.protocol != "leak_free" else "predicted only"}
    summary = table.groupby("role", sort=False).agg(patients=("patient_id", "size"), er_fraction=("er", "mean"))
    summary.insert(1, "slices", summary["patients"] * len(offsets))
    summary = summary.reset_index().assign(use=lambda t: t["role"].map(use))
    if params.protocol == "leak_free":
        inner = summary["role"].str.startswith("inner_")
        summary["inner_split"] = np.where(inner, roles.attrs["inner_split"], None)
    summary.attrs["inner_split_note"] = roles.attrs["inner_split_note"]
    return summary


def slice_metrics_table(predictions: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Table 3: accuracy, AUC (DeLong 95% CI), sensitivity, specificity per architecture on train and validation
    slices. The threshold is ``evaluation.fixed_threshold``, or Youden's J on each architecture's training slices.

    The CI treats slices as independent, which they are not (11 slices per patient): it is too narrow.
    """
    ev = params.evaluation
    thresholds = {}
    for architecture, group in predictions.groupby("architecture", sort=False):
        thresholds[architecture] = ev.fixed_threshold
        if ev.threshold == "youden":
            train = group[group["split"] == "train"]
            try:
                thresholds[architecture] = youden_threshold(train["er"], train["prob"])
            except ValueError as exc:
                warnings.warn(f"Table 3, {architecture}: no Youden threshold ({exc}); using "
                              f"{ev.fixed_threshold}", stacklevel=2)
    rows = []
    for dataset in ("train", "validation"):
        for architecture, group in predictions.groupby("architecture", sort=False):
            part = group[group["split"] == dataset]
            row = dict.fromkeys(TABLE3_COLUMNS[2:], float("nan"))
            try:
                metrics = classification_metrics(part["er"], part["prob"], thresholds[architecture])
                row.update({k: metrics[k] for k in ("accuracy", "sensitivity", "specificity")})
                row["auc"] = auc(part["er"], part["prob"])
                row["auc"], row["auc_low"], row["auc_high"] = auc_ci(part["er"], part["prob"], ev.ci_level)
            except ValueError as exc:  # one class only (no metrics), or a constant score (AUC 0.5, no CI)
                warnings.warn(f"Table 3, {architecture} on {dataset} slices: {exc}", stacklevel=2)
            rows.append({"dataset": dataset, "architecture": architecture, **row})
    return pd.DataFrame(rows, columns=TABLE3_COLUMNS)


def train_and_predict(dataset: SliceDatasetLike, params: Params, run: RunFolder) -> CNNResult:
    """Train every architecture of ``params.cnn``, predict every slice, choose the downstream architecture and
    write the stage's outputs (module docstring). Reuses cached checkpoints when nothing changed.

    Raises:
        CrossFitError: ``cnn.cross_fit_folds`` is set (leak_free) but does not fit the training patients; raised
            before any training, although the cross-fit itself runs afterwards (``hcc_utils.cnn_cross_fit``).
    """
    images, patients, offsets = check_dataset(dataset)
    cfg = params.cnn
    for architecture in cfg.architectures:  # fail before hours of training, not after
        weights = cfg.weights.get(architecture)
        if weights is not None and not Path(weights).expanduser().is_file():
            build_model(architecture, weights)
    if params.cross_fit_k:
        cross_fit_folds(patients, params.cross_fit_k, params.seed)
    roles = patient_roles(patients, params.protocol, cfg.inner_validation_fraction, params.seed)
    if roles.attrs["inner_split_note"]:
        warnings.warn(f"CNN training: {roles.attrs['inner_split_note']}", InnerSplitWarning, stacklevel=2)
    artifacts.write_table(run, artifacts.CNN_ROLES, roles.rename_axis("patient_id").reset_index())
    slices = slice_table(patients, offsets)
    data_hash = dataset_hash(images, patients, offsets)
    metas, predictions, histories = {}, [], []
    device, data = resolve_device(cfg), None
    with torch_settings(cfg, device):
        for architecture in cfg.architectures:
            key = checkpoint_key(architecture, params, data_hash)
            cached = load_cached(run, architecture, key, params.protocol)
            if cached is None:
                if data is None:
                    data = SliceTensors.from_stacks(images, patients["er"].to_numpy(), device)
                cached = _train_one(architecture, data, slices, roles, params, run, key)
            metas[architecture] = cached[0]
            predictions.append(cached[1])
            histories.append(cached[2])
    predictions = pd.concat(predictions, ignore_index=True)
    history = pd.concat(histories, ignore_index=True)
    history["architecture"] = history["architecture"].map(ARCHITECTURE_NAMES)
    choice = choose_architecture(metas, params)
    artifacts.write_slice_predictions(run, predictions)
    artifacts.write_table(run, artifacts.CNN_HISTORY, history)
    artifacts.write_cnn_choice(run, choice)
    table3 = slice_metrics_table(predictions, params)
    artifacts.write_table(run, artifacts.TABLE3, table3)
    return CNNResult(predictions=predictions, history=history, table3=table3, choice=choice)


def load_choice(run: RunFolder) -> dict:
    """``models/cnn_choice.json`` of the run (written by notebook 03)."""
    return artifacts.read_cnn_choice(run)


def downstream_predictions(run: RunFolder) -> pd.DataFrame:
    """Slice predictions of the architecture chosen for the MIL step: patient_id, offset, split,
    architecture, prob, er (one row per slice)."""
    choice = load_choice(run)
    table = artifacts.read_slice_predictions(run)
    return table[table["architecture"] == choice["architecture"]].reset_index(drop=True)


def load_trained_model(run: RunFolder, architecture: str, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The chosen checkpoint of ``architecture`` (key or display name) in eval mode on ``device``."""
    key = {v: k for k, v in ARCHITECTURE_NAMES.items()}.get(architecture, architecture)
    model = build_model(key)
    state = artifacts.CNN_STATE.require(run, architecture=key)
    model.load_state_dict(torch.load(state, map_location="cpu", weights_only=True))
    return model.to(device).eval()


__all__ = ["ARCHITECTURE_NAMES", "CACHE_VERSION", "CNNResult", "CrossFitError", "InnerSplitWarning", "build_model",
           "check_dataset", "checkpoint_key", "choice_table", "choose_architecture", "dataset_hash",
           "downstream_predictions", "last_conv_block", "load_choice", "load_trained_model", "patient_roles",
           "resolve_device", "slice_table", "slice_metrics_table", "train_and_predict", "training_plan"]
