"""Notebook 11's run: every comparator of ``params.comparators.run`` on the run's split, evaluated and saved.

The comparators, the cut-offs and the leakage rules are ``hcc_utils.comparators``' (docs/method.md section 12);
this module gathers their inputs (the slice probabilities, the MIL table, the cached slices, the extra slices and
3D boxes of ``comparators_inputs``), fits the learned ones (``comparators_abmil``, ``comparators_3d``) and writes
``tables/comparators.csv``, ``predictions/comparators_patients.csv``, ABMIL's attention weights
(``tables/comparators_abmil_attention.csv``) and each learned comparator's fitted and selection patients
(``models/comparators_<name>.json``).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from hcc_utils import artifacts, cnn, mil, slices, threads
from hcc_utils.cnn_train import SliceTensors, predict_probabilities
from hcc_utils.comparators import (
    BOW_COLUMNS,
    PLH_COLUMNS,
    Comparator,
    ComparatorsResult,
    evaluate,
    offset_label,
    patients_table,
    pooled_scores,
    predictions_long,
    recipe_comparator,
    reference_comparator,
    score_comparator,
    slice_probabilities,
)
from hcc_utils.comparators_inputs import ComparatorInputs, extra_offsets, load_inputs
from hcc_utils.config import Params
from hcc_utils.run_folder import RunFolder

SEED_OFFSET = {"abmil": 101, "cnn3d": 103}  # per comparator, so adding one does not move another's seed


def _roles_masks(patients: pd.DataFrame, ids: list[str], protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``ids`` a learned comparator fits (inner training) and chooses its epoch on (inner
    validation); under onekey_compat all training patients, and the validation patients choose."""
    role = patients.set_index("patient_id").loc[ids, "role"].to_numpy()
    if protocol == "leak_free":
        return role == "inner_train", role == "inner_validation"
    return role == "train", role == "validation"


def _chosen_cnn(run: RunFolder, device: torch.device) -> tuple[str, torch.nn.Module]:
    key = cnn.load_choice(run)["key"]
    return key, cnn.load_trained_model(run, key, device)


def _extra_probabilities(params: Params, run: RunFolder, patients: pd.DataFrame, inputs: ComparatorInputs,
                         device: torch.device) -> pd.DataFrame:
    """The chosen checkpoint's eval-mode probability of every extra slice: patient_id, offset, prob."""
    key, model = _chosen_cnn(run, device)
    er = patients.set_index("patient_id").loc[inputs.patients, "er"].to_numpy()
    data = SliceTensors.from_stacks(inputs.slices, er, device)
    prob = predict_probabilities(model, data, np.arange(len(data.labels)), params.cnn.size_of(key), params.cnn)
    return pd.DataFrame({"patient_id": np.repeat(inputs.patients, len(inputs.offsets)),
                         "offset": np.tile(inputs.offsets, len(inputs.patients)), "prob": prob})


def offsets_comparators(params: Params, run: RunFolder, patients: pd.DataFrame, probs: pd.DataFrame,
                        inputs: ComparatorInputs | None, device: torch.device) -> list[Comparator]:
    """The DL-MIL recipe on each offset set: MIL features of those slices (idf on training patients under
    leak_free), then ``fit_recipe``. Cached offsets keep DL-MIL's probabilities; the others are new slices."""
    cached = sorted(probs["offset"].unique().tolist())
    extra = _extra_probabilities(params, run, patients, inputs, device) if inputs and inputs.offsets else None
    train_ids = patients.loc[patients["split"] == "train", "patient_id"].tolist()
    out = []
    for offsets in params.comparators.offset_sets:
        start, notes = time.perf_counter(), []
        missing = [o for o in offsets if o not in cached]
        part = probs[probs["offset"].isin(offsets)][["patient_id", "offset", "prob"]]
        if missing:
            part = pd.concat([part[part["patient_id"].isin(inputs.patients)],
                              extra[extra["offset"].isin(missing)]], ignore_index=True)
            notes.append(f"offsets {missing}: new slices cut from the same stack plan, scored by the chosen "
                         "checkpoint in eval mode")
            if mil.training_source(params) != "eval":
                notes.append(f"offsets {missing}: the training patients' new slices have eval-mode probabilities, "
                             f"their other slices the {mil.training_source(params)} pass DL-MIL uses")
        features = mil.mil_features(part, train_ids, mil.idf_on_for(params.protocol), params.mil.label_threshold)
        name = f"Offsets {offset_label(offsets)} ({len(offsets)} slices)"
        comp = recipe_comparator(name, "offsets", features, patients, params)
        comp.seconds, comp.notes = time.perf_counter() - start, notes + comp.notes
        out.append(comp)
    return out


def abmil_comparator(params: Params, run: RunFolder, patients: pd.DataFrame, device: torch.device
                     ) -> tuple[Comparator, object, list[int], pd.DataFrame]:
    """ABMIL on the chosen CNN's embeddings of the cached slices; its attention weights per patient and offset."""
    from hcc_utils.comparators_abmil import slice_embeddings, train_abmil

    start = time.perf_counter()
    dataset = slices.load_slice_dataset(run)
    ids = dataset.patients["patient_id"].astype(str).tolist()
    key, model = _chosen_cnn(run, device)
    embeddings = slice_embeddings(model, key, dataset.images, params.cnn.size_of(key),
                                  params.cnn.eval_batch_size, device)
    fit, select = _roles_masks(patients, ids, params.protocol)
    labels = patients.set_index("patient_id").loc[ids, "er"].to_numpy()
    with threads.worker_threads(1 if device.type == "cpu" else None):  # a tiny full-batch net: more threads
        result = train_abmil(embeddings, labels, fit, select, params.comparators.abmil,  # only wait on each other
                             params.seed * 1000 + SEED_OFFSET["abmil"], device)
    _record_fit(run, "abmil", ids, fit, select, result)
    weights = pd.DataFrame({"patient_id": np.repeat(ids, len(dataset.offsets)),
                            "split": np.repeat(patients.set_index("patient_id").loc[ids, "split"].to_numpy(),
                                               len(dataset.offsets)),
                            "offset": np.tile(dataset.offsets, len(ids)), "weight": result.weights.ravel()})
    comp = score_comparator("ABMIL (gated attention)", "abmil", pd.Series(result.prob, index=ids), patients,
                            params.protocol, time.perf_counter() - start, [f"ABMIL: {n}" for n in result.notes])
    return comp, result, list(dataset.offsets), weights


def cnn3d_comparator(params: Params, run: RunFolder, patients: pd.DataFrame, inputs: ComparatorInputs,
                     device: torch.device) -> tuple[Comparator, object]:
    """The 3D CNN on the tumour boxes of ``inputs``."""
    from hcc_utils.comparators_3d import train_cnn3d

    start = time.perf_counter()
    ids = list(inputs.patients)
    fit, select = _roles_masks(patients, ids, params.protocol)
    labels = patients.set_index("patient_id").loc[ids, "er"].to_numpy()
    result = train_cnn3d(inputs.volumes, labels, ids, fit, select, params.comparators.cnn3d, params.cnn,
                         params.seed * 1000 + SEED_OFFSET["cnn3d"], device)
    _record_fit(run, "cnn3d", ids, fit, select, result)
    size = params.comparators.cnn3d.size
    name = f"3D CNN ({size}³ voxels)"
    comp = score_comparator(name, "cnn3d", pd.Series(result.prob, index=ids), patients, params.protocol,
                            time.perf_counter() - start, [f"{name}: {n}" for n in result.notes])
    return comp, result


def _record_fit(run: RunFolder, name: str, ids: list[str], fit: np.ndarray, select: np.ndarray, result) -> None:
    """``models/comparators_<name>.json``: who fitted the weights, who chose the epoch, which epoch."""
    content = {"fit_ids": [i for i, f in zip(ids, fit, strict=True) if f],
               "select_ids": [i for i, s in zip(ids, select, strict=True) if s],
               "best_epoch": int(result.best_epoch), "selection_auc": float(result.selection_auc),
               "seconds": float(result.seconds), "history": result.history.to_dict(orient="records")}
    artifacts.write_json(run, artifacts.COMPARATOR_FIT, content, name=name)


def run_comparators(params: Params, run: RunFolder, progress: bool = True) -> ComparatorsResult:
    """Every comparator of ``params.comparators.run``, DL-MIL first; the table and files written."""
    cfg, device = params.comparators, cnn.resolve_device(params.cnn)
    patients = patients_table(params, run)
    probs = slice_probabilities(params, run)
    result = ComparatorsResult(comparators=[reference_comparator(run)], table=pd.DataFrame())
    extra = extra_offsets(cfg.offset_sets, sorted(probs["offset"].unique().tolist())) if "offsets" in cfg.run else []
    if extra or "cnn3d" in cfg.run:
        result.inputs = load_inputs(patients, params, run, extra, "cnn3d" in cfg.run, progress)
        result.notes.append(f"notebook 11's inputs ({'extra slices at offsets ' + str(extra) if extra else ''}"
                            f"{' and ' if extra and 'cnn3d' in cfg.run else ''}"
                            f"{'3D tumour boxes' if 'cnn3d' in cfg.run else ''}) took "
                            f"{result.inputs.seconds:.0f} s for {len(result.inputs.patients)} patients")
        for row in result.inputs.excluded.itertuples(index=False):
            result.notes.append(f"left out of the new-slice and 3D comparators: {row.message}")
    pooled = pooled_scores(probs)
    for name in cfg.run:
        start = time.perf_counter()
        if name == "central_slice":
            result.comparators.append(score_comparator("Central slice only", name, pooled["central"], patients,
                                                       params.protocol, time.perf_counter() - start))
        elif name == "pooling":
            for column, label in (("mean", "mean"), ("max", "max"), ("noisy_or", "noisy-OR")):
                result.comparators.append(score_comparator(f"Pooling: {label}", name, pooled[column], patients,
                                                           params.protocol, time.perf_counter() - start))
        elif name in ("plh_only", "bow_only"):
            columns, label = (PLH_COLUMNS, "PLH only") if name == "plh_only" else (BOW_COLUMNS, "BoW only")
            features = mil.load_mil_table(run)[columns]
            result.comparators.append(recipe_comparator(label, name, features, patients, params))
        elif name == "offsets":
            result.comparators += offsets_comparators(params, run, patients, probs, result.inputs, device)
        elif name == "abmil":
            comp, result.abmil, result.abmil_offsets, weights = abmil_comparator(params, run, patients, device)
            artifacts.write_table(run, artifacts.COMPARATOR_ATTENTION, weights)
            result.comparators.append(comp)
        elif name == "cnn3d":
            comp, result.cnn3d = cnn3d_comparator(params, run, patients, result.inputs, device)
            result.comparators.append(comp)
    result.table = evaluate(result.comparators, params.evaluation.ci_level)
    result.notes += [n for c in result.comparators for n in c.notes] + result.table.attrs["notes"]
    artifacts.write_table(run, artifacts.COMPARATORS, result.table)
    artifacts.write_table(run, artifacts.COMPARATOR_PREDICTIONS, predictions_long(result.comparators))
    return result


def attention_table(run: RunFolder) -> pd.DataFrame:
    """ABMIL's saved attention weights (``tables/comparators_abmil_attention.csv``)."""
    return artifacts.read_table(run, artifacts.COMPARATOR_ATTENTION)


def attention_arrays(result: ComparatorsResult) -> tuple[np.ndarray | None, list[int], np.ndarray | None]:
    """ABMIL's attention weights (n_patients, K), the offsets and each patient's split, for
    ``plots.comparators.attention_by_offset``; (None, [], None) when ABMIL did not run."""
    if result.abmil is None:
        return None, [], None
    comp = next(c for c in result.comparators if c.family == "abmil")
    return result.abmil.weights, result.abmil_offsets, comp.scores["split"].to_numpy()


def cnn3d_history(result: ComparatorsResult) -> tuple[pd.DataFrame | None, int | None]:
    """The 3D CNN's per-epoch history and kept epoch, for ``plots.comparators.cnn3d_history``."""
    if result.cnn3d is None:
        return None, None
    return result.cnn3d.history, int(result.cnn3d.best_epoch)
