"""The 2.5D slice dataset of a cohort (docs/method.md section 2).

:func:`build_slice_dataset` streams the patients (``hcc_utils.compute.map_patients``: ``n_jobs`` processes, or
the Dask cluster of ``params.compute``), makes each one's stack (``hcc_utils.stack``), caches it in
``cache/stacks/<pid>.npz`` with ``<pid>.json`` (indices, crop box, tumour size, warnings) so later notebooks and
reruns read it instead of recomputing, records excluded or warned patients in the run's ``exclusions.csv`` (stage
``"slices"``), and writes the dataset notebook 03 reads (file names: ``hcc_utils.artifacts``)::

    cache/slices/dataset.npz         images uint8 (n_patients, n_offsets, S, S): windowed [0, 1] x 255;
                                     masks uint8 (same shape, 1 = tumour); offsets int (n_offsets,)
    cache/slices/patients.csv        patient_id, er, split (rows aligned with the arrays' first axis)
    cache/slices/stack_info.csv      one row per patient: central index, tumour size, crop, clamping

Memory stays independent of the cohort size: stacks go to disk one by one and the dataset file is written by
streaming them into the ``.npz`` archive.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hcc_utils import artifacts
from hcc_utils.compute import is_dask, map_patients
from hcc_utils.config import Params, PreprocessConfig, SlicesConfig
from hcc_utils.inputs_check import PatientInputError, file_state, place
from hcc_utils.progress import progress as progress_bar

if TYPE_CHECKING:
    import pandas as pd

    from hcc_utils.run_folder import RunFolder

STAGE = "slices"
STACK_VERSION = "1"  # bump when the stack's pixels change for the same inputs and parameters
_NOT_IN_STACK = {"n_jobs", "min_lesion_mm3"}  # slices parameters that do not change a stack's pixels


@dataclass
class SliceDataset:
    """The 2.5D slices of a cohort.

    ``images`` uint8 (n_patients, n_offsets, S, S); ``patients`` (patient_id, er, split) aligned with their
    first axis; ``offsets`` (slices from the central one); ``masks`` uint8 like ``images`` (1 = tumour).
    """

    images: np.ndarray
    patients: pd.DataFrame
    offsets: list[int]
    masks: np.ndarray | None = None


def _cache_key(image: str, mask: str, pre: PreprocessConfig, cfg: SlicesConfig) -> str:
    payload = {"version": STACK_VERSION, "preprocess": pre.model_dump(mode="json"),
               "slices": cfg.model_dump(mode="json", exclude=_NOT_IN_STACK),
               "image": file_state(image), "mask": file_state(mask)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _stack_one(patient_id: str, image: str, mask: str, pre: PreprocessConfig, cfg: SlicesConfig,
               run: RunFolder, threads: int | None) -> dict:
    """Make (or reuse) one patient's cached stack; never raises on bad input (the result says why)."""
    import SimpleITK as sitk

    from hcc_utils.stack import make_stack

    if threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    stem = artifacts.file_stem(patient_id)
    key = _cache_key(image, mask, pre, cfg)
    info_file, stack_file = artifacts.STACK_INFO.path(run, stem=stem), artifacts.STACK.path(run, stem=stem)
    if info_file.is_file() and stack_file.is_file():
        info = json.loads(info_file.read_text())
        if info.get("cache_key") == key:
            return {"patient_id": patient_id, "status": "cached", "info": info, "file": mask}
    try:
        stack = make_stack(image, mask, pre, cfg, patient_id)
    except PatientInputError as err:
        return {"patient_id": patient_id, "status": "excluded", "file": err.file, "message": str(err)}
    except Exception as err:  # an unforeseen failure must not stop the cohort; it is reported, not hidden
        first_line = (str(err).strip().splitlines() or [""])[0]
        for path in (image, mask):  # folder names may hold identifiers
            first_line = first_line.replace(str(Path(path).parent), "...")
        first_line = first_line[:200]
        return {"patient_id": patient_id, "status": "excluded", "file": Path(image).name,
                "message": f"{place(patient_id, image)}: unexpected {type(err).__name__} "
                           f"while making the stack ({first_line}); please report it with this message"}
    info = {"patient_id": patient_id, "cache_key": key, **stack.info}
    tmp = artifacts.partial_path(stack_file)
    np.savez_compressed(tmp, images=np.round(stack.images * 255).astype(np.uint8), masks=stack.masks)
    tmp.replace(stack_file)
    info_file.write_text(json.dumps(info, indent=1))
    return {"patient_id": patient_id, "status": "made", "info": info, "file": mask}


def build_slice_dataset(cohort: pd.DataFrame, params: Params, run: RunFolder, n_jobs: int | None = None,
                        progress: bool = True) -> SliceDataset:
    """Make every patient's stack (cached), record exclusions and warnings, and write the slice dataset.

    Args:
        cohort: ``cohort.load_cohort(params, run)`` (patient_id, image, mask, er, split).
        n_jobs: processes (default ``params.slices.n_jobs``); each uses one SimpleITK thread when > 1. With
            ``compute.scheduler: dask`` the patients go to the cluster instead (``hcc_utils.compute``).

    Returns the dataset as :func:`load_slice_dataset` reads it; ``RuntimeError`` when no patient is left.
    """
    import pandas as pd

    pre, cfg = params.preprocess, params.slices
    n_jobs = n_jobs or cfg.n_jobs
    rows = cohort.reset_index(drop=True)
    threads = 1 if n_jobs > 1 and not is_dask(params.compute) else None  # on Dask: compute.worker_threads
    args = [(str(r.patient_id), str(r.image), str(r.mask), pre, cfg, run, threads)
            for r in rows.itertuples(index=False)]
    stream = map_patients(_stack_one, args, params.compute, n_jobs)
    results = {}
    run.clear_issues(STAGE)
    for result in progress_bar(stream, total=len(rows), desc="2.5D stacks", unit="patient", disable=not progress):
        results[result["patient_id"]] = result
        if result["status"] == "excluded":
            run.record_issue(result["patient_id"], STAGE, "excluded", result["file"], result["message"])
        else:
            for warning in result["info"]["warnings"]:
                run.record_issue(result["patient_id"], STAGE, "warning", result["file"],
                                 f"{place(result['patient_id'], result['file'])}: {warning}")
    kept = rows[[results[str(p)]["status"] != "excluded" for p in rows["patient_id"]]]
    if kept.empty:
        reasons = "; ".join(r["message"] for r in list(results.values())[:3])
        raise RuntimeError(f"no patient gave a 2.5D stack ({len(rows)} excluded), e.g.: {reasons}")
    infos = [results[str(p)]["info"] for p in kept["patient_id"]]
    patients = pd.DataFrame({"patient_id": kept["patient_id"].astype(str).to_numpy(),
                             "er": kept["er"].astype(int).to_numpy(), "split": kept["split"].to_numpy()})
    _write_dataset(run, patients, infos, cfg)
    return load_slice_dataset(run)


def _write_dataset(run: RunFolder, patients: pd.DataFrame, infos: list[dict], cfg: SlicesConfig) -> None:
    """Stream the cached stacks into ``dataset.npz`` (skipped when the same stacks were written before)."""
    manifest = {"offsets": cfg.offsets, "size": cfg.size, "patients": patients["patient_id"].tolist(),
                "stacks": [i["cache_key"] for i in infos], "er": patients["er"].tolist(),
                "split": patients["split"].tolist()}
    manifest_file, arrays_file = artifacts.SLICE_INDEX.path(run), artifacts.SLICE_ARRAYS.path(run)
    if arrays_file.is_file() and manifest_file.is_file() and json.loads(manifest_file.read_text()) == manifest:
        return
    shape = (len(patients), len(cfg.offsets), cfg.size, cfg.size)
    tmp = artifacts.partial_path(arrays_file)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name in ("images", "masks"):
            with archive.open(artifacts.ARCHIVE_MEMBER.format(name=name), "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, {"descr": np.lib.format.dtype_to_descr(
                    np.dtype(np.uint8)), "fortran_order": False, "shape": shape})
                for pid in patients["patient_id"]:
                    with np.load(artifacts.STACK.path(run, stem=artifacts.file_stem(pid))) as stack:
                        member.write(np.ascontiguousarray(stack[name], dtype=np.uint8).tobytes())
        with archive.open(artifacts.ARCHIVE_MEMBER.format(name="offsets"), "w") as member:
            np.lib.format.write_array(member, np.asarray(cfg.offsets, dtype=np.int64))
    tmp.replace(arrays_file)
    artifacts.write_table(run, artifacts.SLICE_PATIENTS, patients)
    artifacts.write_table(run, artifacts.STACK_TABLE, stack_info_frame(infos, patients))
    manifest_file.write_text(json.dumps(manifest))


def stack_info_frame(infos: list[dict], patients: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per patient from the stacks' info: central index, tumour size, crop, clamped offsets."""
    import pandas as pd

    table = pd.DataFrame([{
        "patient_id": i["patient_id"], "central_index": i["central_index"],
        "n_axial_slices": i["resampled_size"][2], "tumour_area_mm2": i["tumour_area_mm2"],
        "max_diameter_mm": i["max_diameter_mm"], "n_lesion_components": i["n_lesion_components"],
        "crop_side_mm": i["crop_box_mm"]["side_mm"],
        "clamped_offsets": " ".join(map(str, i["clamped_offsets"])),
        "n_warnings": len(i["warnings"])} for i in infos])
    if patients is not None:
        table = table.merge(patients, on="patient_id", how="left")
    return table


def load_slice_dataset(run: RunFolder) -> SliceDataset:
    """The dataset written by :func:`build_slice_dataset` (notebook 02) for this run."""
    with np.load(artifacts.SLICE_ARRAYS.require(run)) as data:
        images, masks, offsets = data["images"], data["masks"], data["offsets"].tolist()
    return SliceDataset(images, artifacts.read_slice_patients(run), offsets, masks)


def stack_info_table(run: RunFolder) -> pd.DataFrame:
    """``stack_info.csv`` of the run: one row per included patient (see :func:`stack_info_frame`)."""
    return artifacts.read_stack_table(run)


def load_patient_stack(run: RunFolder, patient_id: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """One patient's cached stack: images uint8 (n_offsets, S, S), masks uint8, and its info dict."""
    stem = artifacts.file_stem(str(patient_id))
    with np.load(artifacts.STACK.require(run, stem=stem)) as stack:
        return stack["images"], stack["masks"], artifacts.read_stack_info(run, patient_id)


def clamped_offsets_table(run: RunFolder) -> pd.DataFrame:
    """Offsets that fell outside the volume and were clamped: one row per (patient, offset).

    Columns: ``patient_id, offset, requested_index, used_index, n_axial_slices`` (indices in the resampled
    grid).
    """
    import pandas as pd

    rows = []
    for pid in artifacts.read_slice_patients(run)["patient_id"]:
        info = artifacts.read_stack_info(run, pid)
        for offset, requested, used in zip(info["offsets"], info["requested_indices"], info["indices"],
                                           strict=True):
            if requested != used:
                rows.append({"patient_id": pid, "offset": offset, "requested_index": requested,
                             "used_index": used, "n_axial_slices": info["resampled_size"][2]})
    columns = ["patient_id", "offset", "requested_index", "used_index", "n_axial_slices"]
    return pd.DataFrame(rows, columns=columns)
