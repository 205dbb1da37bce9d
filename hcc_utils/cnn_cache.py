"""The cache of notebook 03's CNN checkpoints (docs/method.md section 3, "Caching and speed"; section 8, the optimism
audit): which parameters key a checkpoint, and the files one checkpoint leaves in the run folder.

Per architecture (``hcc_utils.artifacts``): the chosen checkpoint and its metadata (``CNN_STATE``, ``CNN_META``: the
cache key, best epoch, selection AUC, epochs, input size, seconds), its slice predictions and training history
(``CNN_CACHED_SLICES``, ``CNN_CACHED_HISTORY``). Under ``leak_free`` also what the validation patients would have
chosen, watched during training for the optimism audit (``hcc_utils.optimism``) and never used by the book's own
models:

- ``CNN_VALIDATION_CHOSEN_STATE``: the weights of the epoch with the best validation slice AUC;
- ``CNN_VALIDATION_CHOSEN_TRAIN_PASS``: that epoch's training-pass probability per slice (patient_id, offset,
  train_pass_prob; empty for slices outside the pass);
- in the metadata, ``validation_chosen_epoch`` and ``validation_auc_by_epoch`` (one AUC per epoch, a fraction;
  null where undefined).

A leak_free cache without these (made before the audit existed) is a miss, so the rerun trains again.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hcc_utils import artifacts
from hcc_utils.cnn_train import TrainedCNN
from hcc_utils.config import Params
from hcc_utils.run_folder import RunFolder

CACHE_VERSION = "3"  # bump when training or inference changes for the same parameters (3: the validation watch)
WATCH_KEYS = ("validation_chosen_epoch", "validation_auc_by_epoch")
"""Metadata keys a leak_free checkpoint must have (the optimism audit's validation watch)."""


def dataset_hash(images: np.ndarray, patients: pd.DataFrame, offsets: list[int]) -> str:
    """SHA-256 of the slice arrays, the patients' ids, labels and split, and the offsets."""
    digest = hashlib.sha256(np.ascontiguousarray(images).data)
    digest.update(patients[["patient_id", "er", "split"]].to_csv(index=False).encode())
    digest.update(json.dumps(offsets).encode())
    return digest.hexdigest()


def checkpoint_key(architecture: str, params: Params, data_hash: str) -> str:
    """Everything that changes this architecture's checkpoint: its training parameters, weights file, the
    protocol, seed and slice dataset (not threads, progress bars or the device)."""
    cfg = params.cnn.model_dump(mode="json", exclude={"architectures", "epochs", "input_size", "weights",
                                                      "num_threads", "progress", "device",
                                                      "downstream_architecture", "eval_batch_size",
                                                      "cross_fit_folds"})
    weights = params.cnn.weights.get(architecture)
    weights_id = None
    if weights is not None and Path(weights).is_file():
        weights_id = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    payload = {"v": CACHE_VERSION, "arch": architecture, "cfg": cfg, "epochs": params.cnn.epochs[architecture],
               "size": params.cnn.size_of(architecture), "weights": weights_id, "protocol": params.protocol,
               "seed": params.seed, "inner": params.cnn.inner_validation_fraction, "data": data_hash}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def watches_validation(protocol: str) -> bool:
    """Whether training watches the validation patients (``leak_free`` only: under ``onekey_compat`` the main
    checkpoint is already chosen on them)."""
    return protocol == "leak_free"


def cache_files(run: RunFolder, architecture: str, protocol: str) -> dict[str, Path]:
    """The files of one architecture's cached checkpoint under ``protocol``."""
    files = {"meta": artifacts.CNN_META.path(run, architecture=architecture),
             "state": artifacts.CNN_STATE.path(run, architecture=architecture),
             "slices": artifacts.CNN_CACHED_SLICES.path(run, architecture=architecture),
             "history": artifacts.CNN_CACHED_HISTORY.path(run, architecture=architecture)}
    if watches_validation(protocol):
        files["watch_state"] = artifacts.CNN_VALIDATION_CHOSEN_STATE.path(run, architecture=architecture)
        files["watch_train_pass"] = artifacts.CNN_VALIDATION_CHOSEN_TRAIN_PASS.path(run, architecture=architecture)
    return files


def load_cached(run: RunFolder, architecture: str, key: str,
                protocol: str) -> tuple[dict, pd.DataFrame, pd.DataFrame] | None:
    """(meta, slice predictions, history) of a cached checkpoint with this key; None on a miss (a file missing,
    another key, or under leak_free no validation watch)."""
    files = cache_files(run, architecture, protocol)
    if not all(p.is_file() for p in files.values()):
        return None
    meta = json.loads(files["meta"].read_text())
    if meta.get("cache_key") != key or (watches_validation(protocol) and not all(k in meta for k in WATCH_KEYS)):
        return None
    slices = artifacts.read_table(run, artifacts.CNN_CACHED_SLICES, {"split": str}, architecture=architecture)
    return meta, slices, pd.read_csv(files["history"])


def save_checkpoint(run: RunFolder, trained: TrainedCNN, meta: dict, predictions: pd.DataFrame,
                    protocol: str) -> dict:
    """Write one trained architecture's cache (module docstring); returns ``meta`` with the watch's keys added
    when the validation patients were watched."""
    architecture = trained.architecture
    files = cache_files(run, architecture, protocol)
    if "watch_state" in files:
        if trained.watch_state_dict is None:
            raise ValueError(f"{architecture}: under {protocol} training must watch the validation slices")
        aucs = [None if math.isnan(a) else float(a) for a in trained.watch_auc_by_epoch]
        meta = {**meta, "validation_chosen_epoch": trained.watch_best_epoch, "validation_auc_by_epoch": aucs}
        torch.save(trained.watch_state_dict, files["watch_state"])
        train_pass = predictions[["patient_id", "offset"]].assign(train_pass_prob=trained.watch_train_pass_prob)
        artifacts.write_table(run, artifacts.CNN_VALIDATION_CHOSEN_TRAIN_PASS, train_pass, architecture=architecture)
    torch.save(trained.state_dict, files["state"])
    predictions.to_csv(files["slices"], index=False)
    trained.history.to_csv(files["history"], index=False)
    files["meta"].write_text(json.dumps(meta, indent=2))
    return meta


def validation_auc_by_epoch(meta: dict) -> list[float]:
    """A checkpoint's watched validation slice AUC per epoch (NaN where undefined); empty without a watch."""
    return [float("nan") if a is None else float(a) for a in meta.get("validation_auc_by_epoch") or []]


def read_validation_chosen(run: RunFolder, architecture: str) -> tuple[dict, dict, pd.DataFrame] | None:
    """(meta, state dict, training-pass table) of the validation-chosen epoch of ``architecture``'s leak_free
    checkpoint; None when the run's cache predates the watch (or is not leak_free's)."""
    files = cache_files(run, architecture, "leak_free")
    if not all(p.is_file() for p in files.values()):
        return None
    meta = json.loads(files["meta"].read_text())
    if not all(k in meta for k in WATCH_KEYS):
        return None
    state = torch.load(files["watch_state"], map_location="cpu", weights_only=True)
    train_pass = artifacts.read_table(run, artifacts.CNN_VALIDATION_CHOSEN_TRAIN_PASS, architecture=architecture)
    return meta, state, train_pass
