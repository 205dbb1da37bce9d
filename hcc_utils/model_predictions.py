"""The per-patient predictions of the models (stage 05's output), read and checked for the comparison.

Files: ``predictions/<slug>_patients.csv`` (``artifacts.PATIENT_PREDICTIONS``), one per model of
``hcc_utils.model_registry``, with columns ``patient_id, split, er, prob, prob_oof``. ``prob`` is the final
model's probability of ER (fitted on training patients only); for training patients it is apparent (the model
scoring the patients it was fitted on). ``prob_oof`` is the out-of-fold probability for training patients (every
step of the recipe, the feature selection included, fitted without the patient's CV fold: out-of-sample) and
``prob`` again for validation patients. Validation rows always use ``prob``; training rows use ``prob``
(apparent) or ``prob_oof``, by ``params.evaluation.train_predictions``; Youden's cut-off always uses
``prob_oof`` (``out_of_fold_scores``). A model without a file is left out with a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hcc_utils import artifacts, model_registry
from hcc_utils.cohort import SPLITS
from hcc_utils.run_folder import RunFolder

PREDICTION_COLUMNS = list(artifacts.PATIENT_PREDICTION_COLUMNS)
TRAIN_COLUMN = {"apparent": "prob", "out_of_fold": "prob_oof"}


def predictions_file(run: RunFolder, model: str) -> Path:
    """``predictions/<slug>_patients.csv`` of a model of the registry."""
    return artifacts.PATIENT_PREDICTIONS.path(run, slug=model_registry.spec(model).slug)


@dataclass
class ModelPredictions:
    """Per-patient predictions of the models that are present, and a note for each model that is not.

    ``frames[model]`` has the columns ``patient_id, split, er, prob, prob_oof``; ``train_column`` is the
    column used for training rows (``"prob"`` apparent or ``"prob_oof"`` out-of-fold).
    """

    frames: dict[str, pd.DataFrame]
    train_column: str = "prob"
    notes: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return list(self.frames)

    @property
    def train_label(self) -> str:
        """``"apparent"`` or ``"out-of-fold"``, for figure titles."""
        return "apparent" if self.train_column == "prob" else "out-of-fold"

    def scores(self, model: str, split: str) -> pd.DataFrame:
        """``patient_id, er, score`` of one model on one set (the column this set uses, renamed ``score``)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        frame = self.frames[model]
        column = self.train_column if split == "train" else "prob"
        rows = frame.loc[frame["split"] == split, ["patient_id", "er", column]]
        return rows.rename(columns={column: "score"}).reset_index(drop=True)

    def out_of_fold_scores(self, model: str) -> pd.DataFrame:
        """``patient_id, er, score`` of one model's training patients from ``prob_oof`` (whatever ``train_column``
        says): the out-of-fold predictions Youden's cut-off is chosen on (``comparison.thresholds_for``)."""
        frame = self.frames[model]
        rows = frame.loc[frame["split"] == "train", ["patient_id", "er", "prob_oof"]]
        values = pd.to_numeric(rows["prob_oof"], errors="coerce")
        bad = rows.loc[~np.isfinite(values) | (values < 0) | (values > 1), "patient_id"].tolist()
        if bad:
            file = artifacts.PATIENT_PREDICTIONS.pattern.format(slug=model_registry.spec(model).slug)
            raise ValueError(f"{file} ({model}): 'prob_oof' is missing or not a probability in [0, 1] for training "
                             f"patients {bad[:5]}; Youden's cut-off is chosen on the out-of-fold predictions: "
                             "re-run notebook 05, or set evaluation.threshold: fixed")
        return rows.assign(prob_oof=values).rename(columns={"prob_oof": "score"}).reset_index(drop=True)

    def describe(self) -> str:
        """Which models are compared, on how many patients, with which training predictions (markdown)."""
        kind = "apparent (`prob`)" if self.train_column == "prob" else "out-of-fold (`prob_oof`)"
        lines = [f"Training rows use {kind} predictions; validation rows use `prob` (final model)."]
        for model, frame in self.frames.items():
            er_by_set = frame.groupby("split")["er"].agg(["size", "sum"])
            counts = ", ".join(f"{d} {int(er_by_set.loc[d, 'size'])} ({int(er_by_set.loc[d, 'sum'])} ER)"
                               if d in er_by_set.index else f"{d} 0" for d in SPLITS)
            lines.append(f"- {model}: {counts}")
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)


def _read_predictions(run: RunFolder, model: str, train_column: str) -> pd.DataFrame:
    path = predictions_file(run, model)
    frame = artifacts.read_patient_predictions(run, model_registry.spec(model).slug)[PREDICTION_COLUMNS].copy()
    dupes = frame.loc[frame["patient_id"].duplicated(), "patient_id"].tolist()
    if dupes:
        raise ValueError(f"{path.name} ({model}): patients {dupes[:5]} appear more than once; one row per "
                         "patient")
    bad_split = frame.loc[~frame["split"].isin(SPLITS), "patient_id"].tolist()
    if bad_split:
        raise ValueError(f"{path.name} ({model}): split must be 'train' or 'validation'; patients "
                         f"{bad_split[:5]}")
    bad_er = frame.loc[~frame["er"].isin([0, 1]), "patient_id"].tolist()
    if bad_er:
        raise ValueError(f"{path.name} ({model}): er must be 0 or 1; patients {bad_er[:5]}")
    frame["er"] = frame["er"].astype(int)
    checks = [("prob", frame.index)]
    if train_column == "prob_oof":
        checks.append(("prob_oof", frame.index[frame["split"] == "train"]))
    for column, rows in checks:
        values = pd.to_numeric(frame.loc[rows, column], errors="coerce")
        bad = frame.loc[rows][~np.isfinite(values) | (values < 0) | (values > 1)]["patient_id"].tolist()
        if bad:
            raise ValueError(f"{path.name} ({model}): '{column}' is missing or not a probability in [0, 1] "
                             f"for patients {bad[:5]}; re-run notebook 05, or set "
                             "evaluation.train_predictions")
        frame.loc[rows, column] = values
    return frame


def load_predictions(run: RunFolder, train_predictions: str = "apparent") -> ModelPredictions:
    """Read the prediction files of the models present; a missing file becomes a note, not an error.

    Raises:
        ValueError: no prediction file at all, a malformed file, or patients whose outcome differs between
            files.
    """
    if train_predictions not in TRAIN_COLUMN:
        raise ValueError(f"train_predictions must be one of {list(TRAIN_COLUMN)}, got {train_predictions!r}")
    train_column = TRAIN_COLUMN[train_predictions]
    frames, notes = {}, []
    for model in model_registry.names():
        path = predictions_file(run, model)
        if not path.is_file():
            notes.append(f"{model}: no {path.name} in the run's predictions folder (model disabled or stage "
                         "05 not run); left out of the comparison")
            continue
        frames[model] = _read_predictions(run, model, train_column)
    if not frames:
        raise artifacts.ArtifactMissing(
            f"{run.predictions}: no per-patient prediction file of any model "
            f"({', '.join(predictions_file(run, m).name for m in model_registry.names())}); run notebook "
            f"{artifacts.PATIENT_PREDICTIONS.writer} first")
    labels = pd.concat([f.set_index("patient_id")["er"].rename(m) for m, f in frames.items()], axis=1)
    conflict = labels.index[labels.nunique(axis=1) > 1].tolist()
    if conflict:
        raise ValueError(f"patients {conflict[:5]} have different outcomes in different prediction files; "
                         "the files come from different cohorts or runs: re-run notebook 05")
    return ModelPredictions(frames=frames, train_column=train_column, notes=notes)
