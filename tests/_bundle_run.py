"""One finished run of notebooks 01-05 of ``params/smoke.yaml`` (with its model bundle), shared by the bundle and
predict tests of one pytest process.

By default it is made here: ``runner.run_book`` over the first five notebooks into a temporary folder (about two
minutes on two cores). ``HCC_SMOKE_RUN=/path/to/runs/smoke`` copies a finished smoke run instead (its big
caches and the book left out; its folder is never written) and writes the bundle into the copy when it has none.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from hcc_utils import artifacts
from hcc_utils.cohort import manifest_path
from hcc_utils.config import load_params
from hcc_utils.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
_SKIP = shutil.ignore_patterns("book", "figures", "notebooks", "stacks", "slices", "robustness", "cnn", "checks")
_MADE: dict[str, Path] = {}


def smoke_run(tmp_path_factory) -> Path:
    """The run folder (made or copied once per process)."""
    if "run" in _MADE:
        return _MADE["run"]
    out = tmp_path_factory.mktemp("bundle_run") / "smoke"
    source = os.environ.get("HCC_SMOKE_RUN")
    if source:
        shutil.copytree(source, out, ignore=_SKIP)
        if not artifacts.BUNDLE_INDEX.path(RunFolder(out)).is_file():
            from hcc_utils.bundle import write_bundle

            write_bundle(load_params(out / artifacts.PARAMS.pattern), RunFolder(out))
    else:
        from hcc_utils.runner import NOTEBOOKS, run_book

        run_book(ROOT / "params" / "smoke.yaml", out=out, build=False, notebooks=NOTEBOOKS[:5], echo=print,
                 cell_timeout=600)
    _MADE["run"] = out
    return out


def new_manifest(run: Path, folder: Path, split: str = "validation", limit: int | None = None) -> Path:
    """The run's own patients of ``split`` as a new-patient manifest (the manifest's cells as written, paths made
    absolute, no ``er``), in ``folder``."""
    params = load_params(run / artifacts.PARAMS.pattern)
    source = manifest_path(params)
    raw = pd.read_csv(source, dtype=str, keep_default_na=False)
    ids = artifacts.read_split(RunFolder(run)).query("split == @split")["patient_id"].tolist()[:limit]
    table = raw[raw["patient_id"].isin(ids)].drop(columns=["er"]).reset_index(drop=True)
    for column in ("image", "mask", "mask_reader2"):
        table[column] = [str((source.parent / v).resolve()) if v else v for v in table[column]]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "new_patients.csv"
    table.to_csv(path, index=False)
    return path
