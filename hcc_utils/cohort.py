"""The cohort: loading the manifest, the embedded synthetic default, the patient-level split, the cohort's make-up.

The manifest (``cohort.csv``) has one row per patient with the columns of ``MANIFEST_COLUMNS``; image and mask
paths are relative to the manifest's folder (absolute paths work too). ``image`` may be a NIfTI/NRRD/MHA file or a
DICOM series folder. A user's own column names are mapped with ``cohort.columns`` in the params file. The schema
and the checks of every row live in ``hcc_utils.manifest_check`` (re-exported here): :func:`load_manifest` stops
on, or leaves out, the rows that check excludes (``cohort.invalid_rows``).

Codings: ``er`` 0/1 (recurrence within 2 years of resection), ``gender`` ``M``/``F``, ``alcohol`` 0/1,
``mvi_grade`` 0/1/2 (M0/M1/M2), ``ki67`` a fraction in [0, 1], ``edmondson`` 1-4 (grade I-IV). Clinical and
pathology columns may be empty (missing); the clinical model's missing-value policy is a parameter.

The patient-level split is decided once, by notebook 01 over the usable patients (``hcc_utils.intake.decide_split``,
written to ``tables/cohort_split.csv``); every later stage reads it with :func:`load_cohort`, which refuses a run
folder without it ("run 01_preprocessing first") and a manifest that changed since.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import pandas as pd
from sklearn.model_selection import train_test_split

from hcc_utils import artifacts
from hcc_utils.config import CohortConfig, Params
from hcc_utils.manifest_check import (  # noqa: F401  (the manifest's schema, re-exported: import it from here)
    ALLOWED_VALUES,
    MANIFEST_COLUMNS,
    NUMERIC_COLUMNS,
    PATH_COLUMNS,
    REQUIRED_COLUMNS,
    CohortError,
    format_problems,
    read_manifest,
)
from hcc_utils.synth import truth as synth_truth

SPLITS = ("train", "validation")
"""The two sets of the patient-level split (the ``split`` column; ``dataset`` in the paper's tables)."""


class ManifestWarning(UserWarning):
    """Manifest values left missing or taken at a detection limit, or other warnings (the patients are kept)."""


def data_home() -> Path:
    """Where generated cohorts are cached: ``$HCC_DATA_DIR`` or ``~/.cache/hcc_2p5d``."""
    return Path(os.environ.get("HCC_DATA_DIR", Path.home() / ".cache" / "hcc_2p5d")).expanduser()


def load_manifest(path: Path | str, columns: dict[str, str] | None = None,
                  invalid_rows: Literal["exclude", "stop"] = "stop") -> pd.DataFrame:
    """Read and check a manifest (``manifest_check.read_manifest``); paths become absolute. ``columns`` maps
    manifest names to the file's names.

    Args:
        invalid_rows: ``stop`` (default): a row that would exclude a patient raises one error listing every
            problem of the file; ``exclude``: those patients are left out (``cohort.invalid_rows``). Warnings (a
            clinical value left missing, or taken at a detection limit) never stop; they are issued as one
            ``ManifestWarning``. ``read_manifest`` gives the problems as a table.

    Raises:
        CohortError: a problem of the whole file (missing, unparseable, columns missing, too few patients, one
            outcome only), or, with ``invalid_rows="stop"``, any row that would exclude a patient.
    """
    if invalid_rows not in ("exclude", "stop"):
        raise ValueError(f"invalid_rows must be 'exclude' or 'stop', got {invalid_rows!r}")
    result = read_manifest(path, columns)
    problems = result.problems
    if invalid_rows == "stop" and len(result.excluded):
        raise CohortError(f"{Path(path).resolve()}: {len(result.excluded)} problem(s) exclude patients; fix them, "
                          "or set 'cohort.invalid_rows: exclude' to leave those patients out:\n"
                          + format_problems(problems))
    warned = problems[problems["severity"] == "warning"]
    if len(warned):
        warnings.warn(f"{Path(path).resolve()}: {len(warned)} warning(s), the patients kept:\n"
                      + format_problems(warned), ManifestWarning, stacklevel=2)
    return result.table


def manifest_hash(path: Path | str) -> str:
    """SHA-256 of the manifest's bytes (recorded in provenance.json)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def synthetic_dir(cfg, root: Path | None = None) -> Path:
    """The cache folder of the synthetic cohort ``cfg`` (``hcc_utils.synth.params.SyntheticCohort``), whether or
    not it exists yet: ``synthetic-n<n>-s<seed>-<cache key>`` under ``root`` (default ``data_home()/cohorts``)."""
    root = Path(root) if root is not None else data_home() / "cohorts"
    return root / f"synthetic-n{cfg.n}-s{cfg.seed}-{cfg.cache_key()}"


def ensure_synthetic(cfg, root: Path | None = None, n_jobs: int = 2) -> Path:
    """The synthetic cohort's manifest for ``cfg`` (a ``SyntheticCohort``): generated on first use (``n_jobs``
    processes; the bytes do not depend on it), then reused.

    Generation writes into a temporary folder that is renamed into place when complete, so an interrupted run
    never leaves a half-written cohort behind.
    """
    from hcc_utils import synth

    target = synthetic_dir(cfg, root)
    root = target.parent
    manifest = target / synth_truth.MANIFEST_FILE
    if manifest.is_file():
        return manifest
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
    try:
        synth.generate_cohort(cfg, tmp, n_jobs=n_jobs)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not manifest.is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def manifest_path(params: Params) -> Path:
    """The manifest this run reads (generating the synthetic cohort when needed)."""
    if params.cohort.synthetic is not None:
        return ensure_synthetic(params.cohort.synthetic)
    return Path(params.cohort.manifest)


def ground_truth_path(params: Params) -> Path | None:
    """``ground_truth.csv`` beside the manifest when it exists (synthetic cohorts), else None; never generates.

    Only the oracle comparisons of notebooks 06 and 08 read it; no modelling code does.
    """
    if params.cohort.synthetic is not None:
        folder = synthetic_dir(params.cohort.synthetic)
    else:
        folder = Path(params.cohort.manifest).parent
    path = folder / synth_truth.GROUND_TRUTH_FILE
    return path if path.is_file() else None


def split_patients(table: pd.DataFrame, cfg: CohortConfig) -> pd.Series:
    """Patient-level split, ``train`` or ``validation`` per patient (paper: random 7:3, stratified by ER here).

    With ``cfg.split_column`` the manifest's own split is used as given.
    """
    if cfg.split_column:
        if cfg.split_column not in table.columns:
            raise CohortError(f"split column '{cfg.split_column}' is not in the manifest")
        split = table[cfg.split_column].astype(str).str.lower().str.strip()
        bad = table.loc[~split.isin(["train", "validation"]), "patient_id"].tolist()
        if bad:
            raise CohortError(f"split column '{cfg.split_column}' must be 'train' or 'validation'; "
                              f"patients {bad[:5]} have other values")
        return pd.Series(split.to_numpy(), index=table["patient_id"].to_numpy(), name="split")
    train_ids, _ = train_test_split(table["patient_id"].to_numpy(), test_size=cfg.validation_fraction,
                                    stratify=table["er"].to_numpy(), random_state=cfg.split_seed)
    train = set(train_ids)
    return pd.Series(["train" if p in train else "validation" for p in table["patient_id"]],
                     index=table["patient_id"].to_numpy(), name="split")


def load_cohort(params: Params, run) -> pd.DataFrame:
    """The run's manifest with absolute paths and the ``split`` column notebook 01 decided (never split again).

    Raises:
        ArtifactMissing: the run folder has no split: run 01_preprocessing first.
        CohortError: the manifest changed since the split was decided (patients added, removed or relabelled).
    """
    split = artifacts.read_split(run).set_index("patient_id")
    table = read_manifest(manifest_path(params), params.cohort.columns).table  # its problems: chapter 01's
    left_out = run.excluded_ids() - set(split.index)  # excluded by notebook 01's intake, before the split
    table = table[~table["patient_id"].isin(left_out)].reset_index(drop=True)
    ids = table["patient_id"]
    added, removed = sorted(set(ids) - set(split.index)), sorted(set(split.index) - set(ids))
    relabelled = sorted(p for p in set(ids) & set(split.index)
                        if int(table.loc[ids == p, "er"].iloc[0]) != int(split.at[p, "er"]))
    if added or removed or relabelled:
        changes = "; ".join(f"{what}: {pids[:5]}" for what, pids in (("not in the split", added),
                            ("in the split but not in the manifest", removed), ("'er' changed", relabelled))
                            if pids)
        raise CohortError(f"{manifest_path(params)}: the manifest changed since notebook 01 decided the split "
                          f"({changes}); start a new run so that the split is decided again for every stage")
    table["split"] = split.loc[ids, "split"].to_numpy()
    return table


#: The paper's cohort (Cen et al. 2025, Results): for orientation beside a cohort's own make-up, never a target.
PAPER_COHORT = {"ER": 79 / 191, "MVI M0": 124 / 191, "MVI M1": 37 / 191, "MVI M2": 30 / 191,
                "Edmondson I": 13 / 191, "Edmondson II": 82 / 191, "Edmondson III": 73 / 191,
                "Edmondson IV": 23 / 191, "Male": 173 / 191, "Ki-67 mean": 0.23, "Ki-67 SD": 0.21}


def composition_table(table: pd.DataFrame, params: Params | None = None) -> pd.DataFrame:
    """The cohort's make-up (shares as fractions, Ki-67 mean and SD) beside the paper's cohort and, for a
    synthetic cohort, the generator's targets."""
    known = lambda col: table[col].dropna()  # noqa: E731
    observed = {"ER": table["er"].mean(),
                **{f"MVI M{k}": (known("mvi_grade") == k).mean() for k in range(3)},
                **{f"Edmondson {r}": (known("edmondson") == k).mean()
                   for k, r in zip(range(1, 5), ["I", "II", "III", "IV"], strict=True)},
                "Male": (known("gender") == "M").mean(),
                "Ki-67 mean": known("ki67").mean(), "Ki-67 SD": known("ki67").std()}
    rows = pd.DataFrame({"quantity": list(observed), "this cohort": list(observed.values()),
                         "paper (n=191)": [PAPER_COHORT[k] for k in observed]})
    syn = params.cohort.synthetic if params is not None else None
    if syn is not None:
        targets = {"ER": syn.er_prevalence, "Male": syn.male_share, "Ki-67 mean": syn.ki67_mean,
                   "Ki-67 SD": syn.ki67_sd,
                   **{f"MVI M{k}": s for k, s in enumerate(syn.mvi_shares)},
                   **{f"Edmondson {r}": s for r, s in zip(["I", "II", "III", "IV"], syn.edmondson_shares,
                                                          strict=True)}}
        rows["generator target"] = [targets[k] for k in observed]
    return rows


def split_table(table: pd.DataFrame) -> pd.DataFrame:
    """Patients per split and outcome (paper: 133 train = 56 ER + 77 NER; 58 validation = 23 ER + 35 NER)."""
    counts = pd.crosstab(table["split"], table["er"].map({0: "NER", 1: "ER"}), margins=True, margins_name="all")
    counts = counts.reindex(columns=["NER", "ER", "all"], fill_value=0)
    counts["ER share"] = counts["ER"] / counts["all"]
    return counts.rename_axis(index="set", columns=None).reset_index()


def manifest_overview(table: pd.DataFrame) -> pd.DataFrame:
    """Per manifest column: how many patients have a value, and a one-line summary (no paths, no identifiers)."""
    rows = []
    for col in MANIFEST_COLUMNS:
        if col in ("patient_id",):
            continue
        values = table[col]
        present = int(values.notna().sum())
        if col in PATH_COLUMNS:
            summary = "file given" if present else "not given"
        elif col in ("gender", "scanner") or col in ALLOWED_VALUES:
            summary = ", ".join(f"{k}: {v}" for k, v in values.value_counts().sort_index().items())
        else:
            summary = f"{values.mean():.3g} ± {values.std():.3g} (median {values.median():.3g})" if present else ""
        rows.append({"column": col, "patients with a value": present, "missing": len(table) - present,
                     "summary": summary})
    return pd.DataFrame(rows)
