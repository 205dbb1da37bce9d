"""Notebook 11's per-patient inputs that the run's caches do not hold: 2.5D slices at offsets other than the
stack's (``comparators.offset_sets``) and the tumour's 3D box (``comparators.cnn3d``). docs/method.md section 12.

Each patient's image and mask are read once for both, on the run's compute (``hcc_utils.compute``: local
processes or a Dask cluster), and the result is cached in ``cache/comparators/<patient>.npz`` under a key of
everything that shapes it, so a resumed run reuses it. The extra slices come from the same plan as the cached
stack (the central slice and the crop box depend only on the central slice, ``stack.plan_stack``), so together
with the cached slices they form one stack. A patient whose files fail here is left out of the comparators that
need these inputs and recorded in ``exclusions.csv`` (stage ``comparators``); the others go on.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hcc_utils import artifacts
from hcc_utils.compute import is_dask, map_patients
from hcc_utils.config import Params, PreprocessConfig, SlicesConfig
from hcc_utils.inputs_check import PatientInputError
from hcc_utils.progress import progress as progress_bar
from hcc_utils.reader_output import summarise_reader_output
from hcc_utils.run_folder import RunFolder

STAGE = "comparators"
INPUTS_VERSION = "1"  # bump when the pixels change for the same inputs and parameters


@dataclass
class ComparatorInputs:
    """The extra inputs of the patients that gave them (``patients``, in the order asked for).

    ``slices``: uint8 (n_patients, len(offsets), S, S) windowed like the cached stacks, or None when no offset
    was asked for; ``volumes``: uint8 (n_patients, V, V, V) (z, y, x), or None; ``excluded``: patient_id, file,
    message of the patients that did not; ``seconds``: wall time of the pass.
    """

    patients: list[str]
    offsets: list[int]
    slices: np.ndarray | None
    volumes: np.ndarray | None
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["patient_id", "file", "message"]))
    seconds: float = 0.0


def extra_offsets(offset_sets: list[list[int]], cached: list[int]) -> list[int]:
    """The offsets of ``offset_sets`` that the cached stacks (``cached``) lack, sorted."""
    return sorted({o for offsets in offset_sets for o in offsets} - set(cached))


def _key(image: str, mask: str, pre: PreprocessConfig, slices: SlicesConfig, offsets: list[int],
         volume: tuple[int, float] | None) -> str:
    payload = {"version": INPUTS_VERSION, "image": image, "mask": mask, "preprocess": pre.model_dump(mode="json"),
               "slices": slices.model_dump(mode="json", exclude={"n_jobs", "min_lesion_mm3", "offsets"}),
               "offsets": offsets, "volume": volume}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _inputs_one(patient_id: str, image_path: str, mask_path: str, pre: PreprocessConfig, slices: SlicesConfig,
                offsets: list[int], volume: tuple[int, float] | None, cache_file: str,
                threads: int | None) -> dict:
    """One patient's extra slices and 3D box (cached); never raises on bad input (the result says why)."""
    import SimpleITK as sitk

    from hcc_utils.comparators_3d import tumour_volume
    from hcc_utils.io import read_image
    from hcc_utils.stack import stack_from_images

    if threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    key, cache = _key(image_path, mask_path, pre, slices, offsets, volume), Path(cache_file)
    if cache.is_file():
        with np.load(cache) as stored:
            if str(stored["key"]) == key:
                return {"patient_id": patient_id, "status": "cached", "slices": stored["slices"],
                        "volume": stored["volume"]}
    try:
        image = read_image(image_path, patient_id, "image")
        mask = read_image(mask_path, patient_id, "mask")
        extra = np.zeros((0,), np.uint8)
        if offsets:
            stack = stack_from_images(image, mask, pre, slices.model_copy(update={"offsets": offsets}), patient_id,
                                      image_path, mask_path)
            extra = np.round(stack.images * 255).astype(np.uint8)
        box = np.zeros((0,), np.uint8)
        if volume is not None:
            box = tumour_volume(image, mask, pre, slices, volume[0], volume[1], patient_id, mask_path)
    except PatientInputError as err:
        return {"patient_id": patient_id, "status": "excluded", "file": Path(str(err.file or mask_path)).name,
                "message": str(err)}
    except Exception as err:  # one patient's unforeseen failure must not stop the others; it is reported
        text = " ".join(summarise_reader_output(str(err), [Path(image_path), Path(mask_path)]))  # no folder names
        return {"patient_id": patient_id, "status": "excluded", "file": Path(image_path).name,
                "message": f"{patient_id}: unexpected {type(err).__name__} while preparing notebook 11's inputs "
                           f"({text}); please report it with this message"}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = artifacts.partial_path(cache)
    with open(tmp, "wb") as handle:
        np.savez_compressed(handle, key=np.array(key), slices=extra, volume=box)
    tmp.replace(cache)
    return {"patient_id": patient_id, "status": "made", "slices": extra, "volume": box}


def load_inputs(cohort: pd.DataFrame, params: Params, run: RunFolder, offsets: list[int], volume: bool,
                progress: bool = True) -> ComparatorInputs:
    """The extra slices at ``offsets`` and (``volume``) the 3D tumour box of every patient of ``cohort``
    (``patient_id, image, mask``), in its order, on the run's compute; exclusions recorded in the run folder.
    """
    start = time.perf_counter()
    box = (params.comparators.cnn3d.size, params.comparators.cnn3d.margin_mm) if volume else None
    n_jobs = params.slices.n_jobs
    threads = 1 if n_jobs > 1 and not is_dask(params.compute) else None
    rows = cohort.reset_index(drop=True)
    args = [(str(r.patient_id), str(r.image), str(r.mask), params.preprocess, params.slices, list(offsets), box,
             str(artifacts.COMPARATOR_INPUTS.path(run, stem=artifacts.file_stem(str(r.patient_id)))), threads)
            for r in rows.itertuples(index=False)]
    kept, slices, volumes, excluded = [], [], [], []
    run.clear_issues(STAGE)
    stream = map_patients(_inputs_one, args, params.compute, n_jobs)
    for result in progress_bar(stream, total=len(args), desc="notebook 11 inputs", unit="patient",
                               disable=not progress):
        if result["status"] == "excluded":
            excluded.append({k: result[k] for k in ("patient_id", "file", "message")})
            run.record_issue(result["patient_id"], STAGE, "excluded", result["file"], result["message"])
            continue
        kept.append(result["patient_id"])
        slices.append(result["slices"])
        volumes.append(result["volume"])
    return ComparatorInputs(
        patients=kept, offsets=list(offsets),
        slices=np.stack(slices) if offsets and slices else None,
        volumes=np.stack(volumes) if volume and volumes else None,
        excluded=pd.DataFrame(excluded, columns=["patient_id", "file", "message"]),
        seconds=time.perf_counter() - start)
