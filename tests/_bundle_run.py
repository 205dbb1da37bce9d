"""Helpers of the bundle and predict tests over the session's smoke run (``smoke_run``, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hcc_utils import artifacts
from hcc_utils.cohort import manifest_path
from hcc_utils.config import load_params
from hcc_utils.run_folder import RunFolder


def new_manifest(run: Path, folder: Path, split: str = "validation", limit: int | None = None,
                 outcome: bool = False) -> Path:
    """The run's own patients of ``split`` as a new-patient manifest (the manifest's cells as written, paths made
    absolute, no ``er`` unless ``outcome``), in ``folder``."""
    params = load_params(run / artifacts.PARAMS.pattern)
    source = manifest_path(params)
    raw = pd.read_csv(source, dtype=str, keep_default_na=False)
    ids = artifacts.read_split(RunFolder(run)).query("split == @split")["patient_id"].tolist()[:limit]
    table = raw[raw["patient_id"].isin(ids)].drop(columns=[] if outcome else ["er"]).reset_index(drop=True)
    for column in ("image", "mask", "mask_reader2"):
        table[column] = [str((source.parent / v).resolve()) if v else v for v in table[column]]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "new_patients.csv"
    table.to_csv(path, index=False)
    return path
