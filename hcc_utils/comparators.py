"""Notebook 11, beyond the paper: does each choice of the paper's design earn its place on this cohort?
docs/method.md section 12.

The comparators of ``params.comparators.run``, each a patient-level score on the run's split:

- ``central_slice``: the chosen CNN's probability on the central slice (offset 0) alone.
- ``pooling``: the mean, the maximum and the noisy-OR ``1 - prod_k (1 - p_k)`` of the slice probabilities.
- ``plh_only`` / ``bow_only``: the DL-MIL recipe (``modeling.fit_recipe``) on the 13 PLH or the 13 BoW features.
- ``abmil``: gated attention MIL over the slices' frozen CNN embeddings (``comparators_abmil``).
- ``offsets``: the DL-MIL recipe (MIL features, then ``fit_recipe``) on the slices of each of
  ``comparators.offset_sets``; slices the 2.5D cache lacks are cut from the same plan (``comparators_inputs``).
- ``cnn3d``: a 3D ResNet on the tumour's box (``comparators_3d``).

The slice probabilities are the ones DL-MIL's features come from (``mil.mil_inputs``: the chosen checkpoint's
eval-mode pass, or the cross-fitted / training pass for training patients when the protocol says so); slices the
cache lacks get the chosen checkpoint's eval-mode pass. Every fitted thing sees training patients only: the recipe
as in notebook 05; ABMIL and the 3D network fit the CNN's inner-training patients and choose their epoch on its
inner-validation patients (``models/cnn_inner_split.csv``; under ``onekey_compat`` on the validation patients,
as the original tooling chose the CNN's).

Evaluation as Table 4 (``hcc_utils.comparison``): the validation AUC with its DeLong CI, and accuracy,
sensitivity and specificity at a cut-off chosen by Youden's J on training patients only: for the recipe models
on the out-of-fold probabilities (``prob_oof``, as Table 4); for the other scores on the training patients no
fitted step of the score saw: under ``leak_free`` the inner-validation patients (the CNN, ABMIL and the 3D
network were fitted on the others), under ``onekey_compat`` all training patients. DeLong's test against DL-MIL
(``predictions/dl_mil_patients.csv``) on the validation patients both scored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hcc_utils import artifacts, cnn, cnn_cross_fit, mil, modeling, stats
from hcc_utils.cohort import load_cohort
from hcc_utils.comparators_inputs import ComparatorInputs
from hcc_utils.config import Params
from hcc_utils.run_folder import RunFolder

FAMILIES = {"reference": "the paper's design", "central_slice": "single slice", "pooling": "simple pooling",
            "plh_only": "one MIL feature family", "bow_only": "one MIL feature family",
            "abmil": "attention MIL", "offsets": "slice offsets", "cnn3d": "3D CNN"}
PLH_COLUMNS = [c for c in mil.FEATURE_COLUMNS if c.startswith("PLH_")]
BOW_COLUMNS = [c for c in mil.FEATURE_COLUMNS if c.startswith("BoW_")]
TABLE_COLUMNS = list(artifacts.COMPARATORS_COLUMNS)


@dataclass
class Comparator:
    """One comparator's scores: ``scores`` has patient_id, split, er, score (P(ER) or a monotone score) and
    ``cut_score`` / ``cut_rows``: the score the cut-off is chosen on and the training rows it is chosen on."""

    name: str
    family: str
    scores: pd.DataFrame
    cut_on: str
    seconds: float
    notes: list[str] = field(default_factory=list)


@dataclass
class ComparatorsResult:
    """Notebook 11's results: every comparator (DL-MIL first), the table, and the learned comparators' fits."""

    comparators: list[Comparator]
    table: pd.DataFrame
    abmil: object | None = None
    abmil_offsets: list[int] = field(default_factory=list)
    cnn3d: object | None = None
    inputs: ComparatorInputs | None = None
    notes: list[str] = field(default_factory=list)
    name: str = "Comparators"


def offset_label(offsets: list[int]) -> str:
    """``[-2, -1, 0, 1, 2]`` -> ``"0, ±1, ±2"``; every slice from -k to k -> ``"every slice within ±k"``."""
    offsets = sorted(offsets)
    k = max(abs(o) for o in offsets)
    if k > 2 and offsets == list(range(-k, k + 1)):
        return f"every slice within ±{k}"
    if offsets == sorted({-o for o in offsets}):
        return ", ".join(["0"] * (0 in offsets) + [f"±{o}" for o in offsets if o > 0])
    return ", ".join(f"{o:+d}" if o else "0" for o in offsets)


def pooled_scores(slices: pd.DataFrame) -> pd.DataFrame:
    """Per patient (index patient_id): ``central`` (the offset-0 slice's probability), ``mean``, ``max`` and
    ``noisy_or`` = 1 - prod(1 - p) of its slices' probabilities ``prob`` (0..1)."""
    if not (slices["offset"] == 0).any():
        raise ValueError("no slice at offset 0 (the central slice): slices.offsets must include 0")
    groups = slices.groupby("patient_id", sort=True)["prob"]
    central = slices[slices["offset"] == 0].set_index("patient_id")["prob"]
    with np.errstate(divide="ignore"):  # a slice with p = 1 gives log(0) = -inf: the patient's noisy-OR is 1
        log_not = np.log1p(-slices["prob"].clip(upper=1.0))
    survival = slices.assign(log_not=log_not).groupby("patient_id")["log_not"]
    return pd.DataFrame({"central": central, "mean": groups.mean(), "max": groups.max(),
                         "noisy_or": -np.expm1(survival.sum())}).rename_axis("patient_id")


def patients_table(params: Params, run: RunFolder) -> pd.DataFrame:
    """The slice dataset's patients with their files, outcome, split and CNN role."""
    cohort = load_cohort(params, run)
    kept = artifacts.read_slice_patients(run)["patient_id"].astype(str)
    roles = artifacts.read_table(run, artifacts.CNN_ROLES).set_index("patient_id")["role"]
    table = cohort[cohort["patient_id"].astype(str).isin(set(kept))].copy()
    table["patient_id"] = table["patient_id"].astype(str)
    table["role"] = table["patient_id"].map(roles)
    return table.set_index("patient_id").loc[kept.tolist()].reset_index()


def _cut_rows(patients: pd.DataFrame, protocol: str) -> pd.Series:
    """The training patients a non-recipe score's cut-off is chosen on (module docstring)."""
    if protocol == "leak_free":
        return patients["role"] == "inner_validation"
    return patients["split"] == "train"


def score_comparator(name: str, family: str, score: pd.Series, patients: pd.DataFrame, protocol: str,
                     seconds: float = 0.0, notes: list[str] | None = None) -> Comparator:
    """A comparator from a score per patient (index patient_id); the cut-off rows follow the protocol."""
    table = patients[["patient_id", "split", "er"]].assign(score=patients["patient_id"].map(score).to_numpy())
    table = table[table["score"].notna()].reset_index(drop=True)
    rows = _cut_rows(patients.set_index("patient_id").loc[table["patient_id"]].reset_index(), protocol)
    table = table.assign(cut_score=table["score"], cut_rows=rows.to_numpy())
    cut_on = "inner-validation patients" if protocol == "leak_free" else "training patients"
    return Comparator(name, family, table, cut_on, seconds, list(notes or []))


def recipe_comparator(name: str, family: str, features: pd.DataFrame, patients: pd.DataFrame,
                      params: Params) -> Comparator:
    """The DL-MIL recipe (notebook 05's ``fit_recipe``: selection, SMOTE + ExtraTrees grid) on ``features``."""
    start = time.perf_counter()
    labels, split = patients.set_index("patient_id")["er"], patients.set_index("patient_id")["split"]
    fit = modeling.fit_recipe(features, labels, split, params, name)
    table = fit.predictions.rename(columns={"prob": "score", "prob_oof": "cut_score"})
    table = table.assign(cut_rows=table["split"] == "train")[["patient_id", "split", "er", "score", "cut_score",
                                                             "cut_rows"]]
    notes = [f"{name}: {note}" for note in fit.notes]
    notes.append(f"{name}: {len(fit.features)} selected feature(s) ({', '.join(fit.features)}); "
                 f"trees {fit.best_params}")
    return Comparator(name, family, table, "out-of-fold training predictions", time.perf_counter() - start, notes)


def reference_comparator(run: RunFolder) -> Comparator:
    """DL-MIL itself (notebook 05's predictions), evaluated the same way."""
    table = artifacts.read_patient_predictions(run, "dl_mil")
    table = table.rename(columns={"prob": "score", "prob_oof": "cut_score"}).assign(
        cut_rows=lambda t: t["split"] == "train")
    return Comparator("DL-MIL (the paper's design)", "reference",
                      table[["patient_id", "split", "er", "score", "cut_score", "cut_rows"]],
                      "out-of-fold training predictions", 0.0)


def evaluate(comparators: list[Comparator], ci_level: float) -> pd.DataFrame:
    """One row per comparator (``tables/comparators.csv``): validation AUC (DeLong CI), accuracy, sensitivity
    and specificity at the Youden cut-off from training rows, DeLong's z and p against the first comparator
    (DL-MIL) on the validation patients both scored, and wall seconds. ``attrs["notes"]`` says what was odd."""
    reference = comparators[0].scores.query("split == 'validation'").set_index("patient_id")["score"]
    rows, notes = [], []
    for comp in comparators:
        train = comp.scores[comp.scores["cut_rows"]]
        valid = comp.scores[comp.scores["split"] == "validation"]
        row = dict.fromkeys(TABLE_COLUMNS, np.nan) | {"comparator": comp.name, "family": FAMILIES[comp.family],
                                                       "n_validation": len(valid), "seconds": comp.seconds}
        try:
            row["threshold"] = stats.youden_threshold(train["er"], train["cut_score"])
        except ValueError as exc:
            notes.append(f"{comp.name}: no Youden cut-off on the {comp.cut_on} ({exc}); 0.5 used")
            row["threshold"] = 0.5
        try:
            row["auc"], row["auc_low"], row["auc_high"] = stats.auc_ci(valid["er"], valid["score"], ci_level)
        except stats.DegenerateScoreError as exc:  # a constant score: AUC 0.5 without an interval, as Table 4
            row["auc"] = stats.auc(valid["er"], valid["score"])
            notes.append(f"{comp.name}, validation: {exc}; interval left empty")
        except ValueError as exc:
            notes.append(f"{comp.name}: no validation AUC ({exc})")
        try:
            metrics = stats.classification_metrics(valid["er"], valid["score"], row["threshold"])
            row.update({k: v for k, v in metrics.items() if k != "threshold"})
        except ValueError as exc:
            notes.append(f"{comp.name}: no validation accuracy, sensitivity or specificity ({exc})")
        if comp is not comparators[0]:
            pair = valid.set_index("patient_id")[["er", "score"]].join(reference.rename("reference"), how="inner")
            try:
                row["delong_z"], row["delong_p"] = stats.delong_test(pair["er"], pair["score"], pair["reference"])
            except ValueError as exc:
                notes.append(f"{comp.name} vs DL-MIL: no DeLong test ({exc})")
            if len(pair) < len(valid):
                notes.append(f"{comp.name} vs DL-MIL: compared on the {len(pair)} validation patients both scored")
        rows.append(row)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table.attrs["notes"] = notes
    return table


def predictions_long(comparators: list[Comparator]) -> pd.DataFrame:
    """``predictions/comparators_patients.csv``: patient_id, split, er, comparator, score (one row each)."""
    parts = [c.scores[["patient_id", "split", "er", "score"]].assign(comparator=c.name) for c in comparators]
    return pd.concat(parts, ignore_index=True)[list(artifacts.COMPARATOR_PREDICTIONS.columns)]


def roc_table(comparators: list[Comparator]) -> pd.DataFrame:
    """Validation ROC points per comparator: comparator, fpr, tpr (for the ROC figure)."""
    from sklearn.metrics import roc_curve

    parts = []
    for comp in comparators:
        valid = comp.scores[comp.scores["split"] == "validation"]
        if valid["er"].nunique() == 2:
            fpr, tpr, _ = roc_curve(valid["er"], valid["score"])
            parts.append(pd.DataFrame({"comparator": comp.name, "fpr": fpr, "tpr": tpr}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["comparator", "fpr", "tpr"])


def slice_probabilities(params: Params, run: RunFolder) -> pd.DataFrame:
    """The slice probabilities DL-MIL's features come from (``mil.mil_inputs``): patient_id, offset, split, er,
    prob, prob_source."""
    return mil.mil_inputs(cnn.downstream_predictions(run), params, cnn_cross_fit.load_cross_fit(run, params))


def summary_of(table: pd.DataFrame) -> str:
    """One line: the best comparator by validation AUC beside DL-MIL's."""
    reference, others = table.iloc[0], table.iloc[1:].dropna(subset=["auc"])
    if others.empty:
        return f"DL-MIL validation AUC {reference['auc']:.3f}; no comparator gave a validation AUC"
    best = others.loc[others["auc"].idxmax()]
    return (f"DL-MIL validation AUC {reference['auc']:.3f}; the best of {len(others)} comparators: "
            f"{best['comparator']}, AUC {best['auc']:.3f} (DeLong p = {best['delong_p']:.2g} against DL-MIL)")
