"""The synthetic cohort's ground truth: the file the generator writes beside its manifest, and its reader.

``ground_truth.csv`` holds, per patient, what the images and the outcome were drawn from (docs/method.md section 1
for the cohort it stands in for; ``hcc_utils.synth.generator`` for the generative model): the latent invasiveness
and proliferation (standard normal, no unit), the true ER probability (a fraction), the lesion phenotype (mm, HU,
fractions), what the renderer measured (volume in mL, central slice index, reader-2 Dice) and the oracle AUC. It is
for checking the method only: the modelling code never reads it; the oracle comparisons do, through
:func:`read_ground_truth` and the column names below, never by guessing. :func:`matching_ground_truth` reads it only
when it describes the cohort at hand and otherwise says why it is ignored (a stale file beside a user's manifest)::

    >>> from hcc_utils.synth import truth
    >>> table = truth.read_ground_truth(manifest, columns=[truth.PATIENT_ID, truth.PROBABILITY_COLUMN])
    >>> table[truth.PROBABILITY_COLUMN]      # the true P(ER) of each patient
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


class GroundTruthIgnored(UserWarning):
    """A ground-truth file that does not describe the cohort at hand (stale, or another cohort's), left unread."""


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
    file = _existing(path)
    table = _read(file)
    missing = [c for c in _needed(columns) if c not in table.columns]
    if missing:
        raise GroundTruthError(f"{file}: missing column(s) {missing} of the synthetic ground truth (it has "
                               f"{list(table.columns)}); the file was edited or written by another generator: "
                               f"delete the folder {file.parent} and generate the cohort again")
    return table


def matching_ground_truth(path: Path | str, columns: Sequence[str] | None = None,
                          patients: Iterable | None = None) -> tuple[pd.DataFrame | None, str]:
    """The ground truth at ``path`` if it describes this cohort, else None and a note saying why it is ignored.

    It describes the cohort when it can be read, has ``patient_id`` and ``columns`` (as in :func:`read_ground_truth`)
    and lists each of ``patients`` (patient ids, compared as strings) exactly once, with a number in the probability
    and latent columns among ``columns``. A user's folder may hold a stale ``ground_truth.csv`` or another cohort's:
    the oracle comparisons (notebooks 06 and 08) then show the note instead of stopping.

    Returns:
        ``(table, "")`` with the table as :func:`read_ground_truth` gives it, or ``(None, note)``, e.g.
        ``"ground_truth.csv beside the manifest does not describe this cohort (patients P1, P2 missing): ignored"``
        (the file by name only: its folder may hold identifiers).

    Raises:
        FileNotFoundError: there is no ground-truth file (as :func:`read_ground_truth`).
    """
    file = _existing(path)
    try:
        table = _read(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        return None, _ignored(file, [f"it cannot be read as CSV: {' '.join(str(err).split())}"])
    reasons = []
    missing = [c for c in _needed(columns) if c not in table.columns]
    if missing:
        reasons.append(f"column{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing")
    if patients is not None and PATIENT_ID in table.columns:
        listed = table[PATIENT_ID].value_counts()
        wanted = list(dict.fromkeys(str(p) for p in patients))
        absent = [p for p in wanted if p not in listed.index]
        twice = [p for p in wanted if listed.get(p, 0) > 1]
        if absent:
            reasons.append(f"{_patients(absent)} missing")
        if twice:
            reasons.append(f"{_patients(twice)} listed more than once")
        rows = table[table[PATIENT_ID].isin(wanted)]
        numeric = [c for c in _needed(columns) if c in table.columns and c in (PROBABILITY_COLUMN, *LATENT_COLUMNS)]
        for column in numeric:
            empty = rows.loc[pd.to_numeric(rows[column], errors="coerce").isna(), PATIENT_ID].tolist()
            if empty:
                reasons.append(f"column {column} empty or not a number for {_patients(empty)}")
    return (None, _ignored(file, reasons)) if reasons else (table, "")


def _existing(path: Path | str) -> Path:
    """``ground_truth_file(path)``, or FileNotFoundError saying that only synthetic cohorts have one."""
    file = ground_truth_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: ground truth exists only for synthetic cohorts "
                                "(generate one with `python -m hcc_utils synth --out DIR`)")
    return file


def _read(file: Path) -> pd.DataFrame:
    return pd.read_csv(file, dtype={PATIENT_ID: str, "gender": str, "scanner": str})


def _needed(columns: Sequence[str] | None) -> list[str]:
    """``patient_id`` and ``columns`` (default: all of ``GROUND_TRUTH_COLUMNS``)."""
    return [PATIENT_ID, *(c for c in (GROUND_TRUTH_COLUMNS if columns is None else columns) if c != PATIENT_ID)]


def _patients(ids: list[str], shown: int = 5) -> str:
    """``patient P1`` or ``patients P1, P2 (and 3 more)``."""
    more = f" (and {len(ids) - shown} more)" if len(ids) > shown else ""
    return f"patient{'s' if len(ids) > 1 else ''} {', '.join(ids[:shown])}{more}"


def _ignored(file: Path, reasons: list[str]) -> str:
    return f"{file.name} beside the manifest does not describe this cohort ({'; '.join(reasons)}): ignored"
