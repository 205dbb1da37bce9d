"""Radiomics features of the tumour: PyRadiomics extraction, per reader (ICC between readers: ``hcc_utils.icc``).

Implements the Radiomics comparator of docs/method.md section 5 (paper: Supplementary Material 2A, Fig. S1):
PyRadiomics features of the 1 mm HU image (not windowed) inside each reader's tumour mask, the ICC(3,1) of
every feature between the two readers and the features with ICC above ``radiomics.icc_threshold`` (default
0.75); the shared selection + ExtraTrees recipe on them is ``hcc_utils.radiomics_model``.

Settings are a PyRadiomics parameter file (``params/radiomics_default.yaml``), validated by PyRadiomics' own
schema (``RadiomicsFeatureExtractor(path_or_dict)``). Extraction takes a shortcut that changes no value:
PyRadiomics' own pre-processing (``imageoperations.resampleImage``) puts the output grid on the mask's
bounding box plus ``padDistance`` voxels, but its B-spline interpolator first computes spline coefficients
over the *whole* input volume (a 512 x 512 x n CT) and, with diagnostics on, it also hashes and summarises the
whole volume. Here the input image is first cropped to that box plus ``BSPLINE_MARGIN_VOXELS`` (beyond which
the cubic B-spline prefilter's influence, 0.268 per voxel, is below double precision), ``resampleImage`` is
called with the full mask (so the grid is exactly PyRadiomics' grid), and the resampled crop is handed to
``execute`` with resampling and diagnostics off (``radiomics.diagnostics: true`` adds a plain call's
``diagnostics_*`` entries, whole-volume hashes included). The image is read once per patient for both readers,
and PyRadiomics runs with the exact overrides of ``hcc_utils.radiomics_fast`` (bin edges from the ROI's extremes,
binning once per image, MCC from a symmetric eigenproblem, shape diameters among convex-hull candidates, ...).
What remains is PyRadiomics' feature maths (texture matrices in C, filters, resampling): most of the time.
In worker processes SimpleITK and BLAS run on ``compute.worker_threads`` threads (1), so N workers use N cores.
``benchmarks/radiomics.py`` and ``tests/test_radiomics*.py`` check the values against a plain PyRadiomics call
(1e-9 relative; most values bit-identical). Without resampling (``resampledPixelSpacing`` unset) PyRadiomics'
own ``preCrop`` is switched on: original-image features are unchanged; filtered-image features are then those
of the tumour box plus ``padDistance`` rather than of the whole volume, as PyRadiomics computes them whenever it
resamples.

Example::

    >>> features = extract_features("ct.nii.gz", "tumour.nii.gz", "params/radiomics_default.yaml")
    >>> features["original_firstorder_Mean"]        # HU
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from pykwalify.errors import SchemaError
from radiomics import __version__ as pyradiomics_version
from radiomics import imageoperations
from radiomics.featureextractor import RadiomicsFeatureExtractor

from hcc_utils import artifacts, compute, radiomics_fast
from hcc_utils.config import Params
from hcc_utils.io import read_image
from hcc_utils.progress import progress
from hcc_utils.run_folder import RunFolder
from hcc_utils.threads import worker_threads

BSPLINE_MARGIN_VOXELS = 40
"""Voxels (original grid) kept around the resampling region: 0.268**40 ~ 1e-23 (cubic B-spline prefilter)."""
READERS = ("reader1", "reader2")
Settings = str | Path | Mapping | RadiomicsFeatureExtractor


class RadiomicsError(ValueError):
    """Radiomics cannot go on (e.g. no patient could be extracted); the message says what to do."""


# --------------------------------------------------------------------------------------------- settings


def settings_path(params: Params) -> Path:
    """The PyRadiomics YAML of this run: ``radiomics.settings``, absolute once the params file is loaded (a relative
    path is relative to the params file; ``hcc_utils.config``)."""
    return Path(params.radiomics.settings)


def load_extractor(settings: Settings) -> RadiomicsFeatureExtractor:
    """A PyRadiomics extractor from a parameter file or its parsed dict, validated by PyRadiomics' schema."""
    if isinstance(settings, RadiomicsFeatureExtractor):
        return settings
    source = "settings dict" if isinstance(settings, Mapping) else Path(settings)
    if isinstance(source, Path) and not source.is_file():
        raise RadiomicsError(f"{source}: PyRadiomics settings file not found (see "
                             "params/radiomics_default.yaml)")
    try:
        if isinstance(settings, Mapping):
            return RadiomicsFeatureExtractor(copy.deepcopy(dict(settings)))
        return RadiomicsFeatureExtractor(str(source))
    except SchemaError as exc:
        raise RadiomicsError(f"{source}: not valid PyRadiomics settings: {exc.msg}") from None


def resamples(extractor: RadiomicsFeatureExtractor) -> bool:
    """Whether the settings resample (PyRadiomics resamples when both interpolator and spacing are set)."""
    s = extractor.settings
    return s.get("interpolator") is not None and s.get("resampledPixelSpacing") is not None


def settings_fingerprint(extractor: RadiomicsFeatureExtractor) -> str:
    """A short hash of all that changes the feature values (settings, image types, classes, version)."""
    payload = {"settings": extractor.settings, "imageTypes": extractor.enabledImagetypes,
               "features": extractor.enabledFeatures, "pyradiomics": pyradiomics_version}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _quiet_pyradiomics(level: int = logging.ERROR) -> Iterator[None]:
    """PyRadiomics logs INFO records per feature class; keep only errors while extracting."""
    logger = logging.getLogger("radiomics")
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


# --------------------------------------------------------------------------------------------- extraction


def _label_map(mask: sitk.Image, settings: dict) -> sitk.Image:
    """The mask as PyRadiomics reads it; the whole-volume cast happens only for vector or non-integer
    masks."""
    pixel = mask.GetPixelIDTypeAsString().lower()
    if "vector" in pixel or "float" in pixel:
        return imageoperations.getMask(mask, **settings)
    return mask


def _crop_box(image: sitk.Image, mask: sitk.Image, label: int, margin: int) -> tuple[list[int], list[int]]:
    """Image index box (lower, upper inclusive) around the mask's ``label`` box plus ``margin`` voxels."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    if label not in stats.GetLabels():
        raise ValueError(f"label {label} is not in the mask (labels found: {list(stats.GetLabels())})")
    box = stats.GetBoundingBox(label)
    nd = mask.GetDimension()
    lo, size = np.array(box[:nd], float), np.array(box[nd:], float)
    corners = [lo - 0.5 + np.array(c) * size for c in np.ndindex(*(2,) * nd)]
    physical = [mask.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners]
    index = np.array([image.TransformPhysicalPointToContinuousIndex(p) for p in physical])
    upper_limit = np.array(image.GetSize()) - 1
    lower = np.clip(np.floor(index.min(axis=0)) - margin, 0, upper_limit).astype(int)
    upper = np.clip(np.ceil(index.max(axis=0)) + margin, 0, upper_limit).astype(int)
    return lower.tolist(), upper.tolist()


def prepare_inputs(image: sitk.Image, mask: sitk.Image,
                   extractor: RadiomicsFeatureExtractor) -> tuple[sitk.Image, sitk.Image]:
    """The image and mask PyRadiomics' own loading would hand to its filters, computed on a crop.

    With resampling: normalisation (if enabled) of the whole image, as PyRadiomics does, then
    ``imageoperations.resampleImage`` of the image cropped to the resampling region plus
    ``BSPLINE_MARGIN_VOXELS`` with the *full* mask, so the output grid is PyRadiomics' own. Without resampling
    the inputs are returned unchanged (``fast_extractor`` then sets ``preCrop``).
    """
    settings = extractor.settings
    mask = _label_map(mask, settings)
    if not resamples(extractor):
        return image, mask
    if settings.get("normalize", False):
        image = imageoperations.normalizeImage(image, **settings)
    spacing = np.asarray(settings["resampledPixelSpacing"], float)
    spacing = np.where(spacing == 0, np.asarray(mask.GetSpacing()), spacing)
    pad_mm = float(settings.get("padDistance", 5)) * float(spacing.max())
    margin = math.ceil(pad_mm / min(image.GetSpacing())) + 2 + BSPLINE_MARGIN_VOXELS
    lower, upper = _crop_box(image, mask, int(settings.get("label", 1)), margin)
    cropped = image[tuple(slice(lo, up + 1) for lo, up in zip(lower, upper, strict=True))]
    return imageoperations.resampleImage(cropped, mask, **settings)


def fast_extractor(settings: Settings, diagnostics: bool = False) -> RadiomicsFeatureExtractor:
    """The extractor used on ``prepare_inputs``' output: no resampling (already done), PyRadiomics' diagnostics
    only when asked (``diagnostics``; ``radiomics_fast.plain_diagnostics`` makes them a plain call's)."""
    extractor = copy.deepcopy(load_extractor(settings))
    if resamples(extractor):
        extractor.settings.update(resampledPixelSpacing=None, normalize=False, preCrop=False)
    else:
        extractor.settings.update(preCrop=True)
    extractor.settings["additionalInfo"] = diagnostics
    return extractor


def _as_floats(result: Mapping) -> dict[str, float]:
    return {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}


def _as_image(source: str | Path | sitk.Image, role: str, patient_id: str | None = None) -> sitk.Image:
    return source if isinstance(source, sitk.Image) else read_image(Path(source), patient_id, role)


def _extract(image: sitk.Image, mask: sitk.Image, extractor: RadiomicsFeatureExtractor,
             fast: RadiomicsFeatureExtractor) -> tuple[dict[str, float], dict | None]:
    """Features (and, if ``fast`` has them on, a plain call's diagnostics) of one image and mask."""
    with _quiet_pyradiomics(), radiomics_fast.exact_overrides():
        inputs = prepare_inputs(image, mask, extractor)
        result = fast.execute(*inputs)
    diagnostics = (radiomics_fast.plain_diagnostics(result, extractor, image, mask, inputs, resamples(extractor))
                   if fast.settings["additionalInfo"] else None)
    return _as_floats(result), diagnostics


def extract_features(image_path: str | Path | sitk.Image, mask_path: str | Path | sitk.Image,
                     settings: Settings, diagnostics: bool = False) -> dict:
    """PyRadiomics features of one image and mask (HU image, any spacing), e.g. ``original_firstorder_Mean``.

    With resampling in the settings, the values equal
    ``RadiomicsFeatureExtractor(settings).execute(image_path, mask_path)`` to 1e-9 relative (bit-identical but
    for the overrides of ``hcc_utils.radiomics_fast``; without resampling see the module docstring).
    ``settings`` is a PyRadiomics YAML path, its parsed dict or an extractor; image and mask are files (NIfTI,
    NRRD, MHA, a DICOM folder) or SimpleITK images. With ``diagnostics`` the plain call's ``diagnostics_*``
    entries (versions, settings, image hashes; not floats) come first, as PyRadiomics returns them.
    """
    extractor = load_extractor(settings)
    image, mask = _as_image(image_path, "image"), _as_image(mask_path, "mask")
    features, info = _extract(image, mask, extractor, fast_extractor(extractor, diagnostics))
    return (info or {}) | features


def extract_reference(image_path: str | Path, mask_path: str | Path, settings: Settings,
                      diagnostics: bool | None = None) -> dict[str, float]:
    """The plain PyRadiomics call, for comparison: ``RadiomicsFeatureExtractor(settings).execute(i, m)``.

    ``diagnostics`` overrides ``additionalInfo`` (None: as in the settings). Diagnostics are not returned.
    """
    extractor = copy.deepcopy(load_extractor(settings))
    if diagnostics is not None:
        extractor.settings["additionalInfo"] = diagnostics
    with _quiet_pyradiomics():
        return _as_floats(extractor.execute(str(image_path), str(mask_path)))


def extract_patient(image_path: str | Path, masks: Mapping[str, str | Path], settings: Settings,
                    patient_id: str | None = None, threads: int | None = None,
                    diagnostics: bool = False) -> dict[str, dict]:
    """Features of one patient for each reader's mask; the image is read once.

    Returns ``{reader: {"features": dict | None, "diagnostics": dict | None, "error": str | None, "seconds":
    float}}``; an error of one reader (unreadable mask, label missing, ...) does not stop the other.
    ``diagnostics``: PyRadiomics' ``diagnostics_*`` entries of a plain call, kept apart from the features.
    ``threads``: SimpleITK and BLAS threads while extracting (in a worker process, ``compute.worker_threads``:
    1, so that N workers use N cores; None: as they are).
    """
    extractor = load_extractor(settings)
    fast = fast_extractor(extractor, diagnostics)
    out: dict[str, dict] = {}
    with worker_threads(threads):
        try:
            image = _as_image(image_path, "image", patient_id)
        except Exception as exc:  # noqa: BLE001 - reported per patient, the cohort goes on
            return {r: {"features": None, "diagnostics": None, "error": f"image: {exc}", "seconds": 0.0}
                    for r in masks}
        for reader, mask_path in masks.items():
            start = time.perf_counter()
            try:
                features, info = _extract(image, _as_image(mask_path, "mask", patient_id), extractor, fast)
                out[reader] = {"features": features, "diagnostics": info, "error": None,
                               "seconds": time.perf_counter() - start}
            except Exception as exc:  # noqa: BLE001
                out[reader] = {"features": None, "diagnostics": None, "error": f"{type(exc).__name__}: {exc}",
                               "seconds": time.perf_counter() - start}
    return out


# --------------------------------------------------------------------------------------------- cohort


def _file_stamp(path: str) -> list:
    p = Path(path)
    stat = p.stat() if p.exists() else None
    return [str(p), stat.st_size if stat else None, stat.st_mtime_ns if stat else None]


def _cache_key(fingerprint: str, image: str, mask: str) -> str:
    payload = json.dumps([fingerprint, _file_stamp(image), _file_stamp(mask)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _cache_file(run: RunFolder, patient_id: str, reader: str) -> Path:
    return artifacts.RADIOMICS_CACHE.path(run, stem=artifacts.file_stem(patient_id), reader=reader)


def _read_cache(path: Path, key: str, diagnostics: bool = False) -> dict[str, float] | None:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry["features"] if entry.get("key") == key and (not diagnostics or "diagnostics" in entry) else None


def _write_cache(path: Path, key: str, features: dict[str, float], seconds: float,
                 diagnostics: dict | None = None) -> None:
    entry = {"key": key, "seconds": round(seconds, 3), "features": features}
    if diagnostics:  # radiomics.diagnostics: PyRadiomics' entries, as text (its CSV output writes them so)
        entry["diagnostics"] = {k: str(v) for k, v in diagnostics.items()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, path)


def largest_first(masks: list[str | Path]) -> list[int]:
    """Positions of ``masks`` ordered by file size, largest first (missing files last).

    A compressed mask's size follows the tumour's surface, and extraction time grows with the tumour; handing
    processes the largest tumours first (longest-processing-time-first scheduling) leaves no large tumour
    running alone at the end of a cohort.
    """
    sizes = [Path(m).stat().st_size if Path(m).is_file() else -1 for m in masks]
    return sorted(range(len(masks)), key=lambda i: -sizes[i])


def icc_patient_ids(cohort: pd.DataFrame, params: Params) -> list[str]:
    """Patients whose reader-2 features enter the ICC: training patients with a second mask (leak_free) or all
    with one (onekey_compat), at most ``radiomics.icc_max_patients`` (seeded random subset,
    ``params.seed``)."""
    has_second = cohort["mask_reader2"].map(lambda v: isinstance(v, str) and bool(v.strip()))
    eligible = cohort[has_second & ((cohort["split"] == "train") | (params.protocol == "onekey_compat"))]
    ids = eligible["patient_id"].astype(str).tolist()
    limit = params.radiomics.icc_max_patients
    if limit is not None and len(ids) > limit:
        rng = np.random.default_rng(params.seed)
        ids = sorted(rng.choice(ids, size=limit, replace=False).tolist())
    return ids


def extract_cohort(cohort: pd.DataFrame, params: Params, run: RunFolder,
                   n_jobs: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reader-1 features of every patient and reader-2 features of the ICC patients (index ``patient_id``).

    Cached per patient and reader in ``cache/radiomics/<pid>_reader{1,2}.json`` (keyed by the settings and
    the input files; with ``radiomics.diagnostics`` the entry also holds PyRadiomics' diagnostics, as text),
    extracted in parallel over patients (``n_jobs`` processes of ``compute.worker_threads`` threads, default
    ``radiomics.n_jobs``, or the Dask cluster of ``params.compute``: ``hcc_utils.compute.map_patients``).
    Patients excluded at an earlier stage are skipped; a failed reader-1 extraction excludes the patient from the
    radiomics model, a failed reader-2 extraction only from the ICC (both recorded in ``exclusions.csv``).

    Raises:
        RadiomicsError: no patient could be extracted with reader 1's mask.
    """
    extractor = load_extractor(settings_path(params))
    extractor.settings["label"] = params.slices.mask_label
    fingerprint = settings_fingerprint(extractor)
    earlier = set(run.exclusions().query("severity == 'excluded' and stage != 'radiomics'")["patient_id"])
    second = set(icc_patient_ids(cohort, params))
    results: dict[str, dict[str, dict[str, float]]] = {}
    todo = []
    for row in cohort.to_dict("records"):
        pid = str(row["patient_id"])
        if pid in earlier:
            continue
        masks = {"reader1": row["mask"]} | ({"reader2": row["mask_reader2"]} if pid in second else {})
        results[pid] = {}
        missing = {}
        for reader, mask in masks.items():
            key = _cache_key(fingerprint, row["image"], mask)
            cached = _read_cache(_cache_file(run, pid, reader), key, params.radiomics.diagnostics)
            if cached is None:
                missing[reader] = (mask, key)
            else:
                results[pid][reader] = cached
        if missing:
            todo.append((pid, row["image"], missing))

    first_masks = [next(iter(missing.values()))[0] for _, _, missing in todo]  # reader 1's unless cached
    todo = [todo[i] for i in largest_first(first_masks)]
    n_jobs = n_jobs or params.radiomics.n_jobs
    threads = params.compute.worker_threads if n_jobs > 1 and not compute.is_dask(params.compute) else None
    jobs = [(image, {r: m for r, (m, _) in missing.items()}, extractor, pid, threads, params.radiomics.diagnostics)
            for pid, image, missing in todo]  # on Dask each task runs with compute.worker_threads
    outputs = compute.map_patients(extract_patient, jobs, params.compute, n_jobs)
    for (pid, _, missing), output in progress(zip(todo, outputs, strict=True), total=len(todo),
                                              desc="radiomics (patients)", unit="patient", disable=not todo):
        for reader, res in output.items():
            mask, key = missing[reader]
            if res["features"] is not None:
                _write_cache(_cache_file(run, pid, reader), key, res["features"], res["seconds"],
                             res["diagnostics"])
                results[pid][reader] = res["features"]
            else:
                severity, scope = (("excluded", "the radiomics model") if reader == "reader1"
                                   else ("warning", "the ICC analysis"))
                run.record_issue(pid, "radiomics", severity, mask,
                                 f"{reader} extraction failed ({res['error']}); not part of {scope}; check "
                                 "that the mask holds the tumour label and matches the image geometry")
    tables = []
    for reader in READERS:
        rows = {pid: r[reader] for pid, r in results.items() if reader in r}
        table = pd.DataFrame.from_dict(rows, orient="index").astype(float)
        table.index.name = "patient_id"
        tables.append(table)
    if tables[0].empty:
        raise RadiomicsError(f"no patient could be extracted with reader 1's mask; see {run.exclusions_file}")
    return tables[0], tables[1][tables[1].index.isin(tables[0].index)]  # a reading pair or nothing
