"""The synthetic cohort's ground truth: the file the generator writes beside its manifest, and its reader.

``ground_truth.csv`` holds, per patient, what the images and the outcome were drawn from (docs/method.md section 1
for the cohort it stands in for; ``hcc_utils.synth.generator`` for the generative model): the latent invasiveness
and proliferation (standard normal, no unit), the true ER probability (a fraction), the lesion phenotype (mm, HU,
fractions), what the renderer measured (volume in mL, central slice index, reader-2 Dice) and the oracle AUC. It is
for checking the method only: the modelling code never reads it; the oracle comparisons do, through
:func:`read_ground_truth` and the column names below, never by guessing::

    >>> from hcc_utils.synth import truth
    >>> table = truth.read_ground_truth(manifest, columns=[truth.PATIENT_ID, truth.PROBABILITY_COLUMN])
    >>> table[truth.PROBABILITY_COLUMN]      # the true P(ER) of each patient
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

MANIFEST_FILE = "cohort.csv"
"""The manifest the generator writes (the cohort's patients, images and masks), beside ``GROUND_TRUTH_FILE``."""
GROUND_TRUTH_FILE = "ground_truth.csv"
"""The ground truth the generator writes beside its manifest."""

PATIENT_ID = "patient_id"
PROBABILITY_COLUMN = "er_probability"
"""The true probability of early recurrence (fraction) from which each patient's ``er`` was drawn."""
INVASIVENESS_COLUMN = "invasiveness"
"""Latent invasiveness (standard normal): drives MVI grade, the lesion's margin, satellites, capsule and ER."""
PROLIFERATION_COLUMN = "proliferation"
"""Latent proliferation (standard normal): drives Ki-67, heterogeneity, necrosis, enhancement and ER."""
LATENT_COLUMNS = (INVASIVENESS_COLUMN, PROLIFERATION_COLUMN)
ORACLE_AUC_COLUMN = "oracle_auc"
"""AUC of the true probability against ``er`` over the whole cohort (the same value on every row)."""

GROUND_TRUTH_COLUMNS = [
    PATIENT_ID, INVASIVENESS_COLUMN, PROLIFERATION_COLUMN, PROBABILITY_COLUMN, "er", "mvi_grade", "ki67", "edmondson",
    "afp", "gender", "scanner", "lesion_diameter_mm", "lesion_irregularity", "lesion_heterogeneity_hu",
    "lesion_necrosis_share", "lesion_capsule", "lesion_satellites", "lesion_peritumoral_enhancement",
    "lesion_enhancement_hu", "lesion_volume_ml", "lesion_central_slice", "reader2_dice", "liver_hu",
    ORACLE_AUC_COLUMN,
]
"""The columns of ``ground_truth.csv``, in the order the generator writes them."""


class GroundTruthError(ValueError):
    """A ground-truth file without a column the caller needs; the message names the file and what to do."""


def ground_truth_file(path: Path | str) -> Path:
    """``ground_truth.csv`` for ``path``: a cohort folder, its manifest (any ``.csv`` beside it) or the file itself."""
    path = Path(path)
    if path.name == GROUND_TRUTH_FILE:
        return path
    return (path.parent if path.suffix == ".csv" else path) / GROUND_TRUTH_FILE


def read_ground_truth(path: Path | str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a synthetic cohort's ground truth and check its columns.

    Args:
        path: the cohort folder, its manifest ``cohort.csv`` or ``ground_truth.csv`` itself.
        columns: the columns the caller needs (default: all of ``GROUND_TRUTH_COLUMNS``); ``patient_id`` is
            always required.

    Returns:
        The whole table, one row per patient, ``patient_id``, ``gender`` and ``scanner`` as strings.

    Raises:
        FileNotFoundError: no ground truth there (only a generated synthetic cohort has one).
        GroundTruthError: a needed column is missing (the file was edited, or written by another generator).
    """
    file = ground_truth_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: ground truth exists only for synthetic cohorts "
                                "(generate one with `python -m hcc_utils synth --out DIR`)")
    table = pd.read_csv(file, dtype={PATIENT_ID: str, "gender": str, "scanner": str})
    needed = [PATIENT_ID, *(c for c in (GROUND_TRUTH_COLUMNS if columns is None else columns) if c != PATIENT_ID)]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise GroundTruthError(f"{file}: missing column(s) {missing} of the synthetic ground truth (it has "
                               f"{list(table.columns)}); the file was edited or written by another generator: "
                               f"delete the folder {file.parent} and generate the cohort again")
    return table
