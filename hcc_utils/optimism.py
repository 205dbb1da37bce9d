"""The optimism audit (docs/method.md section 8, "The optimism audit (notebook 09)"): on one ``leak_free`` run, the
DL-MIL validation AUC that each shortcut of the original tooling (``onekey_compat``) would have reported, alone and
all together, without training the CNNs twice.

Variants (rows of ``tables/robustness_optimism.csv``, ``artifacts.ROBUSTNESS_OPTIMISM``):

- ``leak_free``: the run's own DL-MIL validation AUC (``predictions/dl_mil_patients.csv``);
- ``checkpoint_on_validation``: the CNN epoch and architecture the validation patients' slice AUC would have chosen
  (watched during notebook 03's training, ``cnn_train.train_architecture(watch_rows=...)``), its eval-mode pass for
  every slice (computed here once, cached in ``cache/robustness/``), idf on training patients;
- ``idf_on_all``: the run's slice probabilities, BoW idf fitted on all patients;
- ``train_pass``: training patients' slices take the chosen epoch's logged training-pass probability;
- ``all_shortcuts``: the three together.

Each non-leak_free variant refits the notebook-05 recipe (``modeling.fit_recipe``, full grid of ``params.model``,
nothing written) on its MIL features; ``optimism`` is its validation AUC minus the leak_free one (fractions).
``fit_table`` gives each model's apparent, out-of-fold and validation AUC (``tables/robustness_fit.csv``).

Example::

    >>> audit = optimism.optimism_audit(params, run)
    >>> audit.table[["variant", "auc", "optimism"]], audit.notes
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hcc_utils import artifacts, cnn, cnn_cache, cnn_cross_fit, cohort, mil, model_registry, modeling, slices, stats
from hcc_utils.cnn_train import SliceTensors, predict_probabilities, torch_settings
from hcc_utils.config import Params
from hcc_utils.run_folder import RunFolder

NOT_REPRODUCED = ("not reproduced: onekey_compat's networks learn on all training patients, not the inner "
                  "training ones, and its radiomics ICC uses all patients (the DL-MIL model does not use it)")
DESCRIPTIONS = {
    "leak_free": "the run as it is: CNN epoch and architecture chosen on the inner validation patients, idf on the "
                 "training patients, training patients' slices from the run's own pass (notebook 04)",
    "checkpoint_on_validation": "CNN epoch and architecture chosen on the validation patients' slice AUC; its "
                                "eval-mode pass for every slice; idf on the training patients; " + NOT_REPRODUCED,
    "idf_on_all": "the run's slice probabilities; BoW idf fitted on all patients, validation patients included",
    "train_pass": "training patients' slices take the chosen epoch's logged training pass (augmented, train "
                  "mode) where they were in it; inner-validation patients keep the eval-mode pass (under "
                  "onekey_compat every training patient is in the pass)",
    "all_shortcuts": "the three together: validation-chosen epoch and architecture, its training pass for the "
                     "training patients, idf on all patients; " + NOT_REPRODUCED,
}
VARIANTS = tuple(DESCRIPTIONS)
TABLE_COLUMNS = list(artifacts.ROBUSTNESS_OPTIMISM.columns)
FIT_COLUMNS = list(artifacts.ROBUSTNESS_FIT.columns)
_KEY_OF = {name: key for key, name in cnn.ARCHITECTURE_NAMES.items()}


@dataclass
class OptimismAudit:
    """``table``: one row per variant (``TABLE_COLUMNS``; AUCs are fractions); ``fit_table``: per model, apparent,
    out-of-fold and validation AUC with CIs (``FIT_COLUMNS``); ``notes``: what was left out and why."""

    table: pd.DataFrame
    fit_table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    name: str = "Optimism audit"  # with ``notes``, what ``notebook.show_notes`` reads


def auc_with_ci(er: pd.Series, prob: pd.Series, level: float) -> tuple[float, float, float]:
    """(auc, low, high) by DeLong (``stats.auc_ci``); NaN where undefined (one class, constant score)."""
    try:
        return stats.auc_ci(er, prob, level)
    except ValueError:
        return math.nan, math.nan, math.nan


def fit_table(run: RunFolder, level: float) -> pd.DataFrame:
    """Per model of ``model_registry`` with a predictions file: apparent (``prob`` on train), out-of-fold
    (``prob_oof`` on train) and validation AUC, each with its ``level`` DeLong CI."""
    rows = []
    for model in model_registry.MODELS:
        if not artifacts.PATIENT_PREDICTIONS.path(run, slug=model.slug).is_file():
            continue
        frame = artifacts.read_patient_predictions(run, model.slug)
        train, validation = frame[frame["split"] == "train"], frame[frame["split"] == "validation"]
        row = {"model": model.name}
        for prefix, part, column in (("apparent", train, "prob"), ("out_of_fold", train, "prob_oof"),
                                     ("validation", validation, "prob")):
            values = auc_with_ci(part["er"], part[column], level)
            row.update(zip((f"{prefix}_auc", f"{prefix}_low", f"{prefix}_high"), values, strict=True))
        rows.append(row)
    return pd.DataFrame(rows, columns=FIT_COLUMNS)


def _validation_chosen(run: RunFolder, choice: dict, notes: list[str]) -> tuple[str, dict, dict, pd.DataFrame] | None:
    """(architecture key, meta, state dict, training pass) of the architecture whose validation-chosen epoch has
    the best validation slice AUC (ties: the first listed); None, with a note, when the caches predate the watch."""
    best, best_score = None, -math.inf
    for name in choice["selection_auc"]:
        found = cnn_cache.read_validation_chosen(run, _KEY_OF[name])
        if found is None:
            notes.append(f"{name}: the CNN cache predates the validation watch (no validation-chosen checkpoint); "
                         "the rows checkpoint_on_validation and all_shortcuts are left out. Rerun notebook 03 "
                         "with this version to get them")
            return None
        meta = found[0]
        aucs = cnn_cache.validation_auc_by_epoch(meta)
        score = aucs[meta["validation_chosen_epoch"] - 1]
        score = -math.inf if math.isnan(score) else score
        if best is None or score > best_score:
            best, best_score = (_KEY_OF[name], *found), score
    return best


def validation_chosen_slices(run: RunFolder, params: Params, architecture: str, meta: dict,
                             state: dict) -> pd.DataFrame:
    """patient_id, offset, prob: the validation-chosen checkpoint's eval-mode probability of every slice of the
    slice dataset; cached in ``cache/robustness/`` by the checkpoint's cache key."""
    names = {"architecture": architecture, "key": meta["cache_key"]}
    path = artifacts.ROBUSTNESS_VALIDATION_CHOSEN_SLICES.path(run, **names)
    if path.is_file():
        return artifacts.read_table(run, artifacts.ROBUSTNESS_VALIDATION_CHOSEN_SLICES, **names)
    images, patients, offsets = cnn.check_dataset(slices.load_slice_dataset(run))
    device = cnn.resolve_device(params.cnn)
    with torch_settings(params.cnn, device):
        data = SliceTensors.from_stacks(images, patients["er"].to_numpy(), device)
        model = cnn.build_model(architecture)
        model.load_state_dict(state)
        prob = predict_probabilities(model.to(device), data, np.arange(len(data.labels)), int(meta["input_size"]),
                                     params.cnn)
    table = cnn.slice_table(patients, offsets)[["patient_id", "offset"]].assign(prob=prob)
    artifacts.write_table(run, artifacts.ROBUSTNESS_VALIDATION_CHOSEN_SLICES, table, **names)
    return table


def _take(table: pd.DataFrame, values: pd.DataFrame, column: str, training_only: bool) -> pd.DataFrame:
    """``table`` with ``prob`` replaced by ``values[column]`` matched on (patient_id, offset), where present (and,
    with ``training_only``, on training patients' slices only)."""
    keyed = values.assign(patient_id=values["patient_id"].astype(str)).set_index(["patient_id", "offset"])[column]
    where = pd.MultiIndex.from_arrays([table["patient_id"].astype(str), table["offset"]])
    new = keyed.reindex(where).to_numpy()
    use = ~np.isnan(new) & ((table["split"] == "train").to_numpy() if training_only else True)
    out = table.copy()
    out.loc[use, "prob"] = new[use]
    return out


def _train_pass(table: pd.DataFrame, params: Params) -> pd.DataFrame:
    """``mil.mil_inputs`` with ``mil.training_predictions: train_pass`` (``params`` is not changed)."""
    copied = params.model_copy(deep=True)
    copied.mil = copied.mil.model_copy(update={"training_predictions": "train_pass"})
    return mil.mil_inputs(table, copied)


def _row(variant: str, architecture: str, epoch: int, values: tuple[float, float, float]) -> dict:
    return {"variant": variant, "description": DESCRIPTIONS.get(variant, "the run as it is"),
            "architecture": architecture, "epoch": epoch, "auc": values[0], "auc_low": values[1],
            "auc_high": values[2]}


def optimism_audit(params: Params, run: RunFolder) -> OptimismAudit:
    """The optimism audit of a ``leak_free`` run (module docstring); writes ``tables/robustness_optimism.csv`` and
    ``tables/robustness_fit.csv``. Under ``onekey_compat``, or with ``robustness.optimism: false``, only the run's
    own row, with a note."""
    level, notes = params.evaluation.ci_level, []
    patients = cohort.load_cohort(params, run).set_index("patient_id")
    labels, split = patients["er"], patients["split"]
    own = artifacts.read_patient_predictions(run, model_registry.DL_MIL.slug)
    own = own[own["split"] == "validation"]
    choice = artifacts.read_cnn_choice(run)
    chosen = choice["architecture"]
    rows = [_row(params.protocol, chosen, choice["best_epoch"][chosen], auc_with_ci(own["er"], own["prob"], level))]
    if params.protocol != "leak_free":
        notes.append(f"this run's protocol is {params.protocol}: the optimism audit needs a leak_free run (it "
                     "measures what the onekey_compat shortcuts add to a leak-free result)")
    elif not params.robustness.optimism:
        notes.append("the shortcuts were not refitted (robustness.optimism: false); only the run's own row")
    else:
        rows += _shortcut_rows(params, run, labels, split, notes)
    table = pd.DataFrame(rows).assign(optimism=lambda t: t["auc"] - t["auc"].iloc[0])[TABLE_COLUMNS]
    fits = fit_table(run, level)
    artifacts.write_table(run, artifacts.ROBUSTNESS_OPTIMISM, table)
    artifacts.write_table(run, artifacts.ROBUSTNESS_FIT, fits)
    return OptimismAudit(table=table, fit_table=fits, notes=notes)


def variant_inputs(params: Params, run: RunFolder, notes: list[str] | None = None) -> dict[str, tuple]:
    """Per variant: (slice probabilities for ``mil.mil_features``, idf_on, CNN architecture, epoch). ``leak_free``'s
    are notebook 04's inputs (the audit reads its AUC from the run; they are here for checks). The
    validation-chosen variants are left out, with a note, when the run's CNN cache predates the watch."""
    notes = [] if notes is None else notes
    choice = artifacts.read_cnn_choice(run)
    chosen = choice["architecture"]
    epoch = choice["best_epoch"][chosen]
    all_slices = artifacts.read_slice_predictions(run)
    main = all_slices[all_slices["architecture"] == chosen].reset_index(drop=True)
    base = mil.mil_inputs(main, params, cnn_cross_fit.load_cross_fit(run, params))
    if mil.training_source(params) != "eval":
        notes.append(f"the run's training patients take the {mil.training_source(params)} pass; idf_on_all keeps "
                     "it, checkpoint_on_validation uses the eval-mode pass of its own checkpoint")
    inputs = {"leak_free": (base, "train", chosen, epoch), "idf_on_all": (base, "all", chosen, epoch),
              "train_pass": (_train_pass(main, params), "train", chosen, epoch)}
    found = _validation_chosen(run, choice, notes)
    if found is None:
        return inputs
    key, meta, state, train_pass = found
    name, watch_epoch = cnn.ARCHITECTURE_NAMES[key], int(meta["validation_chosen_epoch"])
    own = all_slices[all_slices["architecture"] == name].reset_index(drop=True)
    if watch_epoch != meta["best_epoch"]:
        own = _take(own, validation_chosen_slices(run, params, key, meta, state), "prob", training_only=False)
    inputs["checkpoint_on_validation"] = (own, "train", name, watch_epoch)
    inputs["all_shortcuts"] = (_take(own, train_pass, "train_pass_prob", training_only=True), "all", name,
                               watch_epoch)
    return inputs


def _shortcut_rows(params: Params, run: RunFolder, labels: pd.Series, split: pd.Series,
                   notes: list[str]) -> list[dict]:
    """The refitted variants' rows: MIL features, the notebook-05 recipe (nothing written), validation AUC."""
    inputs = variant_inputs(params, run, notes)
    rows = []
    for variant in VARIANTS[1:]:
        if variant not in inputs:
            continue
        table, idf_on, architecture, epoch = inputs[variant]
        features = mil.mil_features(table, split.index[split == "train"], idf_on, params.mil.label_threshold)
        fitted = modeling.fit_recipe(features, labels, split, params, model_registry.DL_MIL.name)
        validation = fitted.predictions[fitted.predictions["split"] == "validation"]
        values = auc_with_ci(validation["er"], validation["prob"], params.evaluation.ci_level)
        rows.append(_row(variant, architecture, epoch, values))
    return rows
