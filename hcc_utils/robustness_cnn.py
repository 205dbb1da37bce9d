"""Held-out slice probabilities for every patient of the cohort (notebook 09; docs/method.md section 10).

Notebook 03's networks learn on most training patients, so only the validation patients of the run's one split have
slice probabilities from a network that never saw them. Repeated splits and the validation across scanners need
that for every patient. ``held_out_probabilities`` splits the whole cohort into folds by patient (K folds
stratified by ER, ``robustness.cnn_folds``, seeded by ``robustness.seed``; or one fold per value of a column such as
the scanner or a centre) and, for each fold, trains the architecture notebook 03 chose on the other folds' slices,
with notebook 03's recipe, seed and chosen epoch count (``cnn_cross_fit.fold_network_probabilities``), then scores
the fold in eval mode. Every patient's probabilities thus come from a network that did not train on it; the fold
table records which network held out whom (``held_out_folds_<folding>.csv``).

What this does not guarantee: when these probabilities feed a patient-level model refitted on another split, a
training patient of that split can carry probabilities from a network that trained on one of that split's
validation patients. The validation patients' own labels never reach their own probabilities; the influence is
second-order (through the features of the training patients) and is stated in the notebook.

``split_network_probabilities`` (``robustness.retrain_cnn``, for a GPU) instead trains one network per repeated
split on that split's training patients and scores every slice, as notebook 03 does for the run's own split.

Example::

    >>> held = held_out_probabilities(params, run)                  # K = robustness.cnn_folds
    >>> by_scanner = held_out_probabilities(params, run, "scanner")  # one fold per scanner
    >>> held.predictions.head()    # patient_id, offset, architecture, prob, er, fold
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from hcc_utils import artifacts, cnn, cohort, slices
from hcc_utils.cnn_cross_fit import fold_network_probabilities
from hcc_utils.cnn_train import SliceTensors, safe_auc, torch_settings
from hcc_utils.config import Params
from hcc_utils.run_folder import RunFolder

HELD_OUT_VERSION = "1"  # bump when the fold networks' training or inference changes for the same inputs
PREDICTION_COLUMNS = list(artifacts.HELD_OUT_PREDICTION_COLUMNS)


class HeldOutError(ValueError):
    """Folds that cannot be drawn (too few patients of an outcome, a column missing); the message says why."""


@dataclass
class HeldOut:
    """Held-out slice probabilities of every patient (module docstring).

    Attributes:
        folding: ``k5`` (K stratified folds) or ``by_<column>``: the files' name.
        architecture: the display name of the networks' architecture; epochs: the epochs each trained.
        predictions: one row per slice (``PREDICTION_COLUMNS``): ``prob`` from the network of ``fold``.
        folds: patient_id, er, fold, group: each patient's fold (held out by that fold's network, trained on by
            every other fold's) and the column's value when folded by a column.
        table: per fold: group, patients trained on and held out (ER / NER), held-out slice AUC, seconds.
        note: how the folds were drawn.
    """

    folding: str
    architecture: str
    epochs: int
    predictions: pd.DataFrame
    folds: pd.DataFrame
    table: pd.DataFrame
    note: str


def cohort_folds(patients: pd.DataFrame, k: int, seed: int, groups: pd.Series | None = None) -> pd.Series:
    """The fold (1..K) of every patient, indexed by patient_id: K folds stratified by ER (shuffled, seeded), or
    one fold per value of ``groups`` (patient_id -> value; folds numbered in sorted order of the values).

    ``attrs["note"]`` says how the folds were drawn; ``attrs["groups"]`` maps fold -> value when grouped.

    Raises:
        HeldOutError: K above the smaller outcome group, a patient without a group value, or a single group.
    """
    ids, er = patients["patient_id"].astype(str).to_numpy(), patients["er"].astype(int).to_numpy()
    folds = pd.Series(0, index=pd.Index(ids, name="patient_id"), name="fold")
    if groups is not None:
        values = groups.reindex(ids)
        if values.isna().any():
            missing = values.index[values.isna()].tolist()
            raise HeldOutError(f"no {groups.name!r} value for patients {missing[:5]}; fill the column or fold "
                               "by K stratified folds (robustness.cnn_fold_column: null)")
        names = sorted(values.astype(str).unique())
        if len(names) < 2:
            raise HeldOutError(f"the cohort has a single {groups.name!r} ({names[0]!r}): nothing to hold out")
        folds[:] = values.astype(str).map({name: i for i, name in enumerate(names, 1)}).to_numpy()
        folds.attrs.update(note=f"one fold per {groups.name}: {len(names)} folds",
                           groups={i: name for i, name in enumerate(names, 1)})
        return folds
    smaller = int(min(er.sum(), len(er) - er.sum()))
    if k > smaller:
        raise HeldOutError(f"robustness.cnn_folds = {k}: the cohort holds {smaller} patients of its smaller "
                           f"outcome group, so K can be at most {smaller}")
    for fold, (_, held) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(ids, er), 1):
        folds.iloc[held] = fold
    sizes = folds.value_counts()
    folds.attrs.update(note=f"stratified by ER: {k} folds of {sizes.min()}-{sizes.max()} patients", groups={})
    return folds


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps([HELD_OUT_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:16]


def _main_network(params: Params, run: RunFolder, dataset) -> tuple[str, str, int]:
    """The chosen architecture, its checkpoint's cache key and chosen epoch (checked against these slices)."""
    images, patients, offsets = cnn.check_dataset(dataset)
    architecture = cnn.load_choice(run)["key"]
    key = cnn.checkpoint_key(architecture, params, cnn.dataset_hash(images, patients, offsets))
    meta = artifacts.read_json(run, artifacts.CNN_META, architecture=architecture)
    if meta.get("cache_key") != key:
        raise RuntimeError(f"the {cnn.ARCHITECTURE_NAMES[architecture]} checkpoint of this run was trained with "
                           "other parameters or slices; rerun notebook 03 first")
    return architecture, key, int(meta["best_epoch"])


def _cached_or_trained(run: RunFolder, names: dict, key: str, train) -> tuple[np.ndarray, float]:
    """The cached probabilities of one network under ``key``, or ``train()``'s, written to the cache."""
    meta_file = artifacts.HELD_OUT_META.path(run, **names)
    prob_file = artifacts.HELD_OUT_CACHED_PROBS.path(run, **names)
    if meta_file.is_file() and prob_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("cache_key") == key:
            return np.load(prob_file)["prob"], float(meta["seconds"])
    start = time.perf_counter()
    prob = train()
    seconds = time.perf_counter() - start
    np.savez(prob_file, prob=prob)
    meta_file.write_text(json.dumps({"cache_key": key, "seconds": seconds}))
    return prob, seconds


def held_out_probabilities(params: Params, run: RunFolder, column: str | None = None,
                           dataset: cnn.SliceDatasetLike | None = None) -> HeldOut:
    """Every patient's slice probabilities from the network of its fold, which did not train on it (module
    docstring); folds: ``robustness.cnn_folds`` stratified by ER, or one per value of ``column`` (a cohort column).
    ``dataset``: the slice dataset (default: the run's, notebook 02). Written to the run folder
    (HELD_OUT_PREDICTIONS, HELD_OUT_FOLDS, HELD_OUT_TABLE); cached networks are reused."""
    cfg = params.robustness
    dataset = dataset if dataset is not None else slices.load_slice_dataset(run)
    images, patients, offsets = cnn.check_dataset(dataset)
    groups = None
    if column is not None:
        table = cohort.load_cohort(params, run)
        if column not in table.columns:
            raise HeldOutError(f"the cohort has no column {column!r}; add it to the manifest or change the "
                               "robustness parameters")
        groups = table.set_index(table["patient_id"].astype(str))[column].rename(column)
    folds = cohort_folds(patients, cfg.cnn_folds, cfg.seed, groups)
    folding = f"by_{column}" if column else f"k{cfg.cnn_folds}"
    architecture, main_key, epochs = _main_network(params, run, dataset)
    name = cnn.ARCHITECTURE_NAMES[architecture]
    slice_rows = cnn.slice_table(patients, offsets)
    fold_of = slice_rows["patient_id"].map(folds).to_numpy()
    folds_hash = hashlib.sha256(folds.sort_index().to_csv().encode()).hexdigest()[:16]
    device, data, parts, rows = cnn.resolve_device(params.cnn), None, [], []
    with torch_settings(params.cnn, device):
        for fold in sorted(folds.unique()):
            fit, held = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)

            def train(fit=fit, held=held, fold=fold):
                nonlocal data
                if data is None:
                    data = SliceTensors.from_stacks(images, patients["er"].to_numpy(), device)
                return fold_network_probabilities(architecture, data, fit, held, params, epochs,
                                                  f"{name} held-out fold {fold}")[0]

            names = {"folding": folding, "fold": str(fold)}
            prob, seconds = _cached_or_trained(run, names, _key(main_key, folding, fold, epochs, folds_hash), train)
            part = slice_rows.iloc[held].assign(architecture=name, prob=prob, fold=fold)
            parts.append(part)
            er = part.groupby("patient_id")["er"].first()
            rows.append({"fold": fold, "group": folds.attrs["groups"].get(fold, ""),
                         "trained_on": int(len(fit) // len(offsets)), "held_out": len(er),
                         "held_out_er": int(er.sum()), "held_out_ner": int(len(er) - er.sum()),
                         "held_out_slice_auc": safe_auc(part["er"].to_numpy(), part["prob"].to_numpy()),
                         "epochs": epochs, "seconds": seconds})
    predictions = pd.concat(parts, ignore_index=True)[PREDICTION_COLUMNS]
    members = pd.DataFrame({"patient_id": folds.index, "er": patients["er"].astype(int).to_numpy(),
                            "fold": folds.to_numpy(),
                            "group": folds.map(folds.attrs["groups"]).fillna("").to_numpy()})
    table = pd.DataFrame(rows)
    artifacts.write_table(run, artifacts.HELD_OUT_PREDICTIONS, predictions, folding=folding)
    artifacts.write_table(run, artifacts.HELD_OUT_FOLDS, members, folding=folding)
    artifacts.write_table(run, artifacts.HELD_OUT_TABLE, table, folding=folding)
    return HeldOut(folding=folding, architecture=name, epochs=epochs, predictions=predictions, folds=members,
                   table=table, note=folds.attrs["note"])


def split_network_probabilities(params: Params, run: RunFolder, split: pd.Series, tag: str,
                                dataset: cnn.SliceDatasetLike | None = None) -> pd.DataFrame:
    """``robustness.retrain_cnn``: the chosen architecture trained on the training patients of ``split``
    (patient_id -> train / validation) for notebook 03's chosen epoch count, then every slice scored in eval mode
    (training patients by a network that trained on them, as in notebook 03). Cached under ``tag``."""
    dataset = dataset if dataset is not None else slices.load_slice_dataset(run)
    images, patients, offsets = cnn.check_dataset(dataset)
    architecture, main_key, epochs = _main_network(params, run, dataset)
    slice_rows = cnn.slice_table(patients, offsets)
    train = np.flatnonzero(slice_rows["patient_id"].map(split).to_numpy() == "train")
    device = cnn.resolve_device(params.cnn)
    split_hash = hashlib.sha256(split.sort_index().to_csv().encode()).hexdigest()[:16]

    def fit():
        data = SliceTensors.from_stacks(images, patients["er"].to_numpy(), device)
        return fold_network_probabilities(architecture, data, train, np.arange(len(slice_rows)), params, epochs,
                                          f"{cnn.ARCHITECTURE_NAMES[architecture]} {tag}")[0]

    with torch_settings(params.cnn, device):
        prob, _ = _cached_or_trained(run, {"folding": "retrained", "fold": tag}, _key(main_key, tag, split_hash), fit)
    return slice_rows.assign(architecture=cnn.ARCHITECTURE_NAMES[architecture], prob=prob, fold=0)[PREDICTION_COLUMNS]


__all__ = ["HeldOut", "HeldOutError", "cohort_folds", "held_out_probabilities", "split_network_probabilities"]
