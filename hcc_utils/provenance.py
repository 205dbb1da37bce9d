"""``provenance.json``: what produced a run (params, package versions, git commit, seeds, cohort hash, times, and
the machine: ``hcc_utils.resources.machine_info``). The book's Provenance chapter is made from it
(``hcc_utils.provenance_chapter``)."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from hcc_utils import artifacts
from hcc_utils.config import Params
from hcc_utils.resources import machine_info
from hcc_utils.run_folder import RunFolder
from hcc_utils.threads import process_threads

PACKAGES = ["numpy", "scipy", "pandas", "scikit-learn", "imbalanced-learn", "torch", "torchvision", "SimpleITK",
            "nibabel", "pydicom", "pyradiomics-bhklab", "shap", "grad-cam", "dcurves", "pingouin", "statsmodels",
            "matplotlib", "seaborn", "pydantic", "papermill", "jupyter-book"]
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages whose behaviour shapes the results."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, str | bool | None]:
    """The project's git commit and whether the working tree had uncommitted changes."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}


def seeds(params: Params) -> dict[str, int]:
    found = {"seed": params.seed, "split_seed": params.cohort.split_seed, "lasso_seed": params.selection.lasso_seed,
             "model_seed": params.model.seed}
    if params.cohort.synthetic is not None:
        found["synthetic_seed"] = params.cohort.synthetic.seed
        if params.apply.manifest is None:
            from hcc_utils.apply import new_synthetic_settings

            found["apply_synthetic_seed"] = new_synthetic_settings(params).seed
    return found


def cohort_manifest(params: Params) -> dict[str, str | None]:
    """The manifest's path and SHA-256, once the cohort exists (a synthetic cohort is made by notebook 01)."""
    from hcc_utils.cohort import manifest_hash, synthetic_dir
    from hcc_utils.synth.truth import MANIFEST_FILE

    if params.cohort.manifest is not None:
        path = Path(params.cohort.manifest)
    else:
        path = synthetic_dir(params.cohort.synthetic) / MANIFEST_FILE
    return {"path": str(path), "sha256": manifest_hash(path) if path.is_file() else None}


def write_provenance(run: RunFolder, params: Params, params_file: Path, started: str, status: dict,
                     ended: str | None = None) -> Path:
    """Write (or refresh) ``run/provenance.json``."""
    record = {
        "params_file": str(params_file),
        "params": params.model_dump(mode="json"),
        "protocol": params.protocol,
        "seeds": seeds(params),
        "cohort_manifest": cohort_manifest(params),
        "git": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "machine": {**machine_info(), "torch_threads": process_threads(params.compute),
                    "worker_threads": params.compute.worker_threads},
        "started": started,
        "ended": ended,
        "notebooks": status,
    }
    return artifacts.write_json(run, artifacts.PROVENANCE, record)
