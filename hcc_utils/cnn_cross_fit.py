"""Cross-fitted slice probabilities of the downstream CNN for the MIL model's training patients (docs/method.md
sections 3, 4 and 8).

Why: under ``leak_free`` the main checkpoint learns on the inner training patients (about 80% of the training
patients) and one eval-mode pass scores every slice. Four fifths of the training patients then carry probabilities
from a network that fitted them (overconfident), the others and every validation patient held-out ones, and the
DL-MIL model learns PLH/BoW histograms of another distribution than the one it meets at validation.

What ``cnn.cross_fit_folds = K`` does (``leak_free`` only; under ``onekey_compat`` the key is ignored with a note,
``CrossFitIgnored``):

- the training patients are split into K folds (``cnn_roles.cross_fit_folds``: by patient, stratified by ER,
  seeded by ``seed``);
- for each fold k a network of the downstream architecture (``models/cnn_choice.json``) learns on the slices of
  the other folds with the main networks' recipe and seed (``cnn.architecture_seed``: the same initial weights;
  ``cnn_train.train_architecture``: the same parameters and input size) for the epoch count the main checkpoint
  chose: the first ``best_epoch`` epochs of the same ``cnn.epochs`` cosine schedule, so the learning rate follows
  the main run's curve up to its chosen epoch. Nothing is chosen on held-out patients. The network then scores fold
  k in eval mode, so every training patient's probabilities come from a network that never saw it;
- validation patients keep the main checkpoint's probabilities (``predictions/slice_predictions.csv``).

With K = 5 and ``cnn.inner_validation_fraction`` 0.2, each fold network learns on as many patients as the main
checkpoint. Cost: K x ``best_epoch`` extra epochs of the downstream architecture, each on (K - 1) / K of the
training slices, plus K eval passes over one fold.

Outputs (``hcc_utils.artifacts``)::

    predictions/slice_predictions_cross_fit.csv  patient_id, offset, split, architecture, prob, er, fold
                                                 (the training patients' slices; prob from fold's network)
    models/cnn_cross_fit_folds.csv               patient_id, er, fold: held out by that fold's network,
                                                 trained on by every other fold's
    tables/cnn_cross_fit.csv                     per fold: patients trained on and held out (ER / NER), epochs,
                                                 held-out slice AUC, the main checkpoint's AUC on the same
                                                 slices, seconds; the row "all" pools the folds
    cache/cnn/cross_fit/                         per fold: cache key, held-out probabilities, history

A rerun with the same main checkpoint (its cache key: parameters, protocol, seed, slices; and its chosen epoch), K
and folds reuses the cached fold predictions. The fold networks' weights are not kept: they only score their
held-out fold.

Example::

    >>> result = cnn.train_and_predict(data, params, run)
    >>> cross = cnn_cross_fit.cross_fit_predictions(data, params, run)   # None when off
    >>> cnn_cross_fit.load_cross_fit(run, params)                        # notebook 04's input
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from hcc_utils import artifacts, cnn
from hcc_utils.cnn_roles import CrossFitError, cross_fit_folds
from hcc_utils.cnn_train import SliceTensors, predict_probabilities, safe_auc, torch_settings, train_architecture
from hcc_utils.config import Params
from hcc_utils.run_folder import RunFolder

CROSS_FIT_VERSION = "1"  # bump when the fold networks' training or inference changes for the same inputs
PREDICTION_COLUMNS = list(artifacts.CROSS_FIT_PREDICTION_COLUMNS)
TABLE_COLUMNS = list(artifacts.CROSS_FIT_TABLE_COLUMNS)


class CrossFitIgnored(UserWarning):
    """``cnn.cross_fit_folds`` is set under ``onekey_compat``, which has no cross-fit (docs/method.md section 8)."""


@dataclass
class CrossFitResult:
    """The cross-fit's results (also written to the run folder, module docstring).

    Attributes:
        architecture: the downstream architecture's display name ("ResNet18").
        predictions: one row per training patient's slice (``PREDICTION_COLUMNS``): ``prob`` from the network of
            ``fold``, which did not train on that patient.
        folds: ``patient_id, er, fold`` of every training patient.
        table: per fold and pooled (``TABLE_COLUMNS``).
        epochs: the epochs each fold network trained (the main checkpoint's chosen epoch).
        note: how the folds were drawn.
    """

    architecture: str
    predictions: pd.DataFrame
    folds: pd.DataFrame
    table: pd.DataFrame
    epochs: int
    note: str


def status(params: Params) -> str:
    """One sentence on whether the cross-fit runs, and where the training patients' probabilities come from."""
    if params.cross_fit_k:
        return (f"Cross-fit on: {params.cross_fit_k} folds of the training patients (cnn.cross_fit_folds); each "
                "training patient's slices are scored by a network that did not train on it.")
    if params.cnn.cross_fit_folds:
        return (f"Cross-fit off: cnn.cross_fit_folds = {params.cnn.cross_fit_folds} is ignored under "
                "onekey_compat, which reproduces the original tooling (training patients' probabilities from the "
                "chosen epoch's training pass; docs/method.md section 8).")
    return ("Cross-fit off (cnn.cross_fit_folds not set): the training patients' probabilities come from the main "
            "checkpoint, which trained on most of them.")


def _folds_hash(folds: pd.Series) -> str:
    return hashlib.sha256(folds.sort_index().to_csv().encode()).hexdigest()[:16]


def fold_key(main_key: str, k: int, fold: int, epochs: int, folds_hash: str) -> str:
    """Everything that changes a fold network's predictions: the main checkpoint's cache key (the CNN parameters,
    protocol, seed and slice dataset), its chosen epoch, K, the fold and the fold assignment."""
    payload = {"v": CROSS_FIT_VERSION, "main": main_key, "k": k, "fold": fold, "epochs": epochs,
               "folds": folds_hash}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _load_fold(run: RunFolder, architecture: str, fold: int, key: str) -> tuple[dict, pd.DataFrame] | None:
    names = {"architecture": architecture, "fold": str(fold)}
    meta_file = artifacts.CROSS_FIT_META.path(run, **names)
    if not (meta_file.is_file() and artifacts.CROSS_FIT_CACHED_SLICES.path(run, **names).is_file()):
        return None
    meta = json.loads(meta_file.read_text())
    if meta.get("cache_key") != key:
        return None
    return meta, artifacts.read_table(run, artifacts.CROSS_FIT_CACHED_SLICES, {"split": str}, **names)


def fold_network_probabilities(architecture: str, data: SliceTensors, fit_rows: np.ndarray, held_out: np.ndarray,
                               params: Params, epochs: int, desc: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Train one network of ``architecture`` on the slice rows ``fit_rows`` and score the rows ``held_out``.

    The main network's recipe and seed (``cnn.architecture_seed``: the same initial weights;
    ``cnn_train.train_architecture``: the same parameters and input size), for the first ``epochs`` epochs of the
    ``cnn.epochs`` cosine schedule, keeping the last: nothing is chosen on held-out rows. Shared by the cross-fit
    (this module) and notebook 09's held-out folds over the whole cohort (``hcc_utils.robustness_cnn``).

    Returns:
        The eval-mode ER probability of each ``held_out`` row (0-1) and the training history.

    Raises:
        RuntimeError: training diverged (non-finite probabilities).
    """
    cfg = params.cnn
    seed = cnn.architecture_seed(params.seed, architecture)
    torch.manual_seed(seed)
    model = cnn.build_model(architecture, cfg.weights.get(architecture), cfg.zero_init_residual)
    model = model.to(data.images.device)
    trained = train_architecture(model, architecture, data, fit_rows, np.array([], dtype=np.int64), cfg, seed,
                                 desc=desc, stop_after=epochs)
    prob = predict_probabilities(model, data, held_out, cfg.size_of(architecture), cfg)
    if not np.isfinite(prob).all():
        raise RuntimeError(f"{desc}: training diverged (non-finite probabilities); lower cnn.lr, or raise "
                           "cnn.batch_size or the input size")
    return prob, trained.history


def _train_fold(architecture: str, fold: int, data: SliceTensors, slices: pd.DataFrame, fold_of: np.ndarray,
                params: Params, run: RunFolder, key: str, epochs: int) -> tuple[dict, pd.DataFrame]:
    """Train fold ``fold``'s network on the other folds' slices and score its own (module docstring)."""
    cfg, name = params.cnn, cnn.ARCHITECTURE_NAMES[architecture]
    fit_rows, held_out = np.flatnonzero((fold_of > 0) & (fold_of != fold)), np.flatnonzero(fold_of == fold)
    start = time.perf_counter()
    prob, history = fold_network_probabilities(architecture, data, fit_rows, held_out, params, epochs,
                                               f"{name} fold {fold}")
    predictions = slices.iloc[held_out].assign(architecture=name, prob=prob, fold=fold)[PREDICTION_COLUMNS]
    n_offsets = int(slices["patient_id"].value_counts().iloc[0])
    meta = {"architecture": architecture, "fold": fold, "cache_key": key, "epochs": epochs,
            "schedule_epochs": cfg.epochs[architecture], "trained_on": len(fit_rows) // n_offsets,
            "held_out": len(held_out) // n_offsets, "device": data.images.device.type,
            "seconds": time.perf_counter() - start}
    names = {"architecture": architecture, "fold": str(fold)}
    artifacts.write_table(run, artifacts.CROSS_FIT_CACHED_SLICES, predictions, **names)
    history.to_csv(artifacts.CROSS_FIT_CACHED_HISTORY.path(run, **names), index=False)
    artifacts.write_json(run, artifacts.CROSS_FIT_META, meta, **names)
    return meta, predictions


def _main_checkpoint(run: RunFolder, architecture: str, key: str) -> dict:
    """The main checkpoint's metadata, checked to belong to these parameters and slices."""
    try:
        meta = artifacts.read_json(run, artifacts.CNN_META, architecture=architecture)
    except artifacts.ArtifactMissing:
        meta = {}
    if meta.get("cache_key") != key:
        raise RuntimeError(f"cross-fit: the main {cnn.ARCHITECTURE_NAMES[architecture]} checkpoint of this run is "
                           "missing or was trained with other parameters or slices; run cnn.train_and_predict "
                           "(notebook 03) with these parameters first")
    return meta


def _table(predictions: pd.DataFrame, folds: pd.Series, metas: list[dict], main: pd.DataFrame,
           name: str) -> pd.DataFrame:
    """Per fold and pooled: patients, held-out slice AUC, the main checkpoint's AUC on the same slices."""
    main_prob = main.set_index(["patient_id", "offset"])["prob"]
    rows = []
    for meta in metas:
        part = predictions[predictions["fold"] == meta["fold"]]
        rows.append({"fold": str(meta["fold"]), "trained_on": meta["trained_on"], "held_out": meta["held_out"],
                     "seconds": meta["seconds"], "part": part})
    rows.append({"fold": "all", "trained_on": np.nan, "held_out": len(folds),
                 "seconds": sum(m["seconds"] for m in metas), "part": predictions})
    table = []
    for row in rows:
        part = row.pop("part")
        er = part.groupby("patient_id")["er"].first()
        same = main_prob.reindex(pd.MultiIndex.from_frame(part[["patient_id", "offset"]])).to_numpy()
        table.append({**row, "architecture": name, "held_out_er": int(er.sum()),
                      "held_out_ner": int(len(er) - er.sum()), "epochs": metas[0]["epochs"],
                      "held_out_auc": safe_auc(part["er"].to_numpy(), part["prob"].to_numpy()),
                      "main_auc": safe_auc(part["er"].to_numpy(), same)})
    return pd.DataFrame(table)[TABLE_COLUMNS].astype({"trained_on": "Int64"})  # empty on the pooled row


def cross_fit_predictions(dataset: cnn.SliceDatasetLike, params: Params, run: RunFolder) -> CrossFitResult | None:
    """Cross-fit the downstream architecture over the training patients and write the outputs (module docstring).

    Runs after ``cnn.train_and_predict`` (it needs the run's ``cnn_choice.json`` and the main checkpoint's chosen
    epoch). Returns None when the cross-fit is off (``cnn.cross_fit_folds`` 0 or unset), and under
    ``onekey_compat``, where a set ``cnn.cross_fit_folds`` is ignored with a ``CrossFitIgnored`` warning. Cached
    folds are reused (module docstring).

    Raises:
        CrossFitError: K does not fit the training patients (``cnn_roles.cross_fit_folds``).
        RuntimeError: the main checkpoint is missing or belongs to other parameters or slices.
    """
    k = params.cross_fit_k
    if not k:
        if params.cnn.cross_fit_folds:
            warnings.warn(status(params), CrossFitIgnored, stacklevel=2)
        return None
    images, patients, offsets = cnn.check_dataset(dataset)
    folds = cross_fit_folds(patients, k, params.seed)
    architecture = cnn.load_choice(run)["key"]
    name = cnn.ARCHITECTURE_NAMES[architecture]
    main_key = cnn.checkpoint_key(architecture, params, cnn.dataset_hash(images, patients, offsets))
    epochs = int(_main_checkpoint(run, architecture, main_key)["best_epoch"])
    slices = cnn.slice_table(patients, offsets)
    fold_of = slices["patient_id"].map(folds).fillna(0).astype(int).to_numpy()
    cfg, folds_hash = params.cnn, _folds_hash(folds)
    device, data = cnn.resolve_device(cfg), None
    metas, parts = [], []
    with torch_settings(cfg, device):
        for fold in range(1, k + 1):
            key = fold_key(main_key, k, fold, epochs, folds_hash)
            cached = _load_fold(run, architecture, fold, key)
            if cached is None:
                if data is None:
                    data = SliceTensors.from_stacks(images, patients["er"].to_numpy(), device)
                cached = _train_fold(architecture, fold, data, slices, fold_of, params, run, key, epochs)
            metas.append(cached[0])
            parts.append(cached[1])
    predictions = pd.concat(parts, ignore_index=True)
    members = pd.DataFrame({"patient_id": folds.index, "er": patients.set_index(
        patients["patient_id"].astype(str))["er"].loc[folds.index].astype(int).to_numpy(), "fold": folds.to_numpy()})
    main = cnn.downstream_predictions(run)
    table = _table(predictions, folds, metas, main, name)
    artifacts.write_table(run, artifacts.CROSS_FIT_PREDICTIONS, predictions)
    artifacts.write_table(run, artifacts.CROSS_FIT_FOLDS, members)
    artifacts.write_table(run, artifacts.CROSS_FIT_TABLE, table)
    return CrossFitResult(architecture=name, predictions=predictions, folds=members, table=table, epochs=epochs,
                          note=folds.attrs["note"])


def fold_table(result: CrossFitResult | None) -> pd.DataFrame | None:
    """The per-fold table of a cross-fit (``tables/cnn_cross_fit.csv``), None when the cross-fit is off."""
    return None if result is None else result.table


def load_cross_fit(run: RunFolder, params: Params) -> pd.DataFrame | None:
    """The run's cross-fitted slice probabilities (``predictions/slice_predictions_cross_fit.csv``), the MIL
    step's input for the training patients (``mil.mil_inputs``); None when the cross-fit is off for ``params``."""
    return artifacts.read_cross_fit_predictions(run) if params.cross_fit_k else None


__all__ = ["CrossFitError", "CrossFitIgnored", "CrossFitResult", "cross_fit_predictions", "fold_key",
           "fold_network_probabilities", "fold_table", "load_cross_fit", "status"]
