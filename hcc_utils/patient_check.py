"""Per-patient input checks, run before the split (docs/method.md section 1): can this image and mask be used?

:func:`check_patient` reads one patient's image and mask once each and never raises on bad input: every problem
becomes a :class:`Finding`, ``"excluded"`` (the patient cannot be used) or ``"warning"`` (it can, but look), whose
message is one sentence naming the patient, the file (its name only, quoted) and what to do::

    >>> check = check_patient("HCC0007", "HCC0007.nii.gz", "HCC0007_reader1.nii.gz", PreprocessConfig(),
    ...                       SlicesConfig())
    >>> check.status, round(check.lesion_volume_mm3), check.hu_range
    ('ok', 4189, (-1024.0, 1890.0))

The checks, in order (verdict in brackets):

1. Reading (``io.read_image``): missing, empty, damaged or unreadable file, a 2D image, a 4D image with several
   time points, a bad DICOM folder [excluded]; what ITK or GDCM warned while reading [warning].
2. The image's values: several values per voxel (colour) [excluded]; NaN or infinite voxels [excluded]; a
   constant image [excluded]; an 8-bit picture (8-bit voxels, or whole numbers spanning 0..255), i.e. not CT in
   HU [excluded]; no value below -500 HU, i.e. no air (not in HU, or cropped) [warning].
3. Image and mask geometry (``preprocess.check_same_geometry``) [excluded].
4. The mask: it looks like an image (non-integer values, or more than 20 distinct values: image and mask
   swapped?) [excluded]; empty, no tumour label, other labels (``inputs_check.lesion_voxels``) [excluded]; a
   tumour smaller than ``slices.min_lesion_mm3`` [warning].
5. The image's content hash (SHA-256 of voxels and geometry): :func:`duplicate_images` finds the same image
   under several patient ids, and :func:`mark_duplicates` excludes every copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hcc_utils.config import PreprocessConfig, SlicesConfig
from hcc_utils.inputs_check import PatientInputError, lesion_voxels, place
from hcc_utils.io import read_image
from hcc_utils.preprocess import check_same_geometry
from hcc_utils.reader_output import summarise_reader_output

EXCLUDED, WARNING = "excluded", "warning"
AIR_BELOW_HU = -500.0
FULL_8BIT_SPAN = (5.0, 200.0)
"""Whole numbers from at most the first to at least the second value look like an 8-bit export, whatever the type."""
"""A CT in HU of a body holds air outside it (about -1000 HU): some voxel below this value (HU)."""
MAX_MASK_LABELS = 20
"""More distinct values than this in a mask (with negative values, or more than 255 of them, or
``slices.other_labels: error``) make it look like an image rather than a label mask."""
_SAMPLE_VOXELS = 1 << 21  # voxels sampled (evenly) to count a mask's distinct values
_SWAPPED = "check the manifest's image and mask columns (image and mask swapped?)"


@dataclass(frozen=True)
class Finding:
    """One problem of one patient: ``severity`` ``"excluded"`` or ``"warning"``, the ``file`` it is about (its
    name only, as ``exclusions.csv`` holds it) and the one-sentence ``message``, patient and file included."""

    severity: str
    file: str
    message: str


@dataclass
class PatientCheck:
    """The input check of one patient.

    ``status``: ``"excluded"`` when any finding is, else ``"warning"`` when there is any, else ``"ok"``.
    ``content_hash``: SHA-256 (hex) of the image's voxels and geometry, None when the image cannot be read.
    ``lesion_volume_mm3``: the tumour label's voxels x the voxel volume (mm^3), None when the mask cannot be used.
    ``hu_range``: the image's smallest and largest finite value (HU), None when it has none or cannot be read.
    ``image_file`` and ``image_kind`` (``"file"`` or ``"folder"``): the image's name, for later messages.
    """

    patient_id: str
    status: str
    findings: list[Finding]
    content_hash: str | None
    lesion_volume_mm3: float | None
    hu_range: tuple[float, float] | None
    image_file: str = ""
    image_kind: str = "file"


def status_of(findings: list[Finding]) -> str:
    """``"excluded"``, ``"warning"`` or ``"ok"``: the worst severity among ``findings``."""
    severities = {f.severity for f in findings}
    return EXCLUDED if EXCLUDED in severities else WARNING if WARNING in severities else "ok"


class _Findings(list):
    """The findings of one patient, each made from (severity, path, what is wrong, what to do)."""

    def __init__(self, patient_id: str):
        super().__init__()
        self.patient_id = patient_id

    def add(self, severity: str, path: Path, message: str, hint: str = "") -> None:
        self.append(Finding(severity, path.name, str(PatientInputError(self.patient_id, path, message, hint))))

    def error(self, err: PatientInputError) -> None:
        self.append(Finding(EXCLUDED, err.file, str(err.with_patient(self.patient_id))))


def check_patient(patient_id: str, image: str | Path, mask: str | Path, pre: PreprocessConfig,
                  cfg: SlicesConfig) -> PatientCheck:
    """Check one patient's image and mask (read once each); never raises on bad input (see the module's list).

    Args:
        image: the CT file or DICOM folder; mask: the tumour mask (``cfg.mask_label``).
        pre: for ``preprocess.geometry_tolerance``; cfg: for ``slices.mask_label``, ``slices.other_labels`` and
            ``slices.min_lesion_mm3``.

    An unforeseen error becomes an excluded finding ("unexpected <Type> ...; please report it").
    """
    patient_id, image, mask = str(patient_id), Path(image), Path(mask)
    found = _Findings(patient_id)
    check = PatientCheck(patient_id, "ok", found, None, None, None, image.name, "file")
    current = image
    try:
        check.image_kind = "folder" if image.is_dir() else "file"
        ct = _read(image, "image", found)
        current = mask
        labels = _read(mask, "mask", found)
        current = image
        nonfinite = None
        if ct is not None:
            check.content_hash = content_hash(ct)
            check.hu_range, nonfinite = _check_values(ct, image, found)
        current = mask
        tumour = None
        if labels is not None:
            if ct is not None:
                try:
                    check_same_geometry(ct, labels, pre.geometry_tolerance, patient_id, mask)
                except PatientInputError as err:
                    found.error(err)
            tumour = _check_mask(labels, mask, cfg, found)
            if tumour is not None:
                check.lesion_volume_mm3 = float(tumour.size * np.prod(labels.GetSpacing()))
                _check_size(check.lesion_volume_mm3, tumour.size, mask, cfg, found)
        current = image
        if nonfinite is not None:
            _report_nonfinite(nonfinite, tumour, ct, labels, image, found)
    except Exception as err:  # an unforeseen failure must not stop the cohort; it is reported, not hidden
        text = " ".join(summarise_reader_output(str(err), [image, mask]))  # one line, no folder names
        found.add(EXCLUDED, current, f"unexpected {type(err).__name__} while checking the patient ({text})",
                  "please report it with this message")
    check.status = status_of(found)
    check.findings = list(found)
    return check


def _read(path: Path, role: str, found: _Findings) -> sitk.Image | None:
    """The volume, or None with the reason recorded; ITK's and GDCM's warnings become warnings."""
    notes: list[str] = []
    image, error = None, None
    try:
        image = read_image(path, found.patient_id, role, notes=notes)
    except PatientInputError as err:
        error = err
    for note in notes:  # what the reader said first, then why the file cannot be used
        found.add(WARNING, path, f"the {role} reader warned: {note}",
                  f"look at the {role} in a viewer (this is the reader's own message, kept here instead of "
                  "the console)")
    if error is not None:
        found.error(error)
    return image


def content_hash(image: sitk.Image) -> str:
    """SHA-256 (hex) of the voxels as read (their type and bytes) and the geometry: size (voxels), spacing and
    origin (mm, rounded to 1e-4 mm) and direction (rounded to 1e-6), from the image in memory (no second read).

    The same volume gives the same hash in any file format that keeps its voxel type (NIfTI, NRRD, MHA).
    """
    values = np.ascontiguousarray(sitk.GetArrayViewFromImage(image))
    geometry = {"voxel": values.dtype.str, "shape": list(values.shape), "size": list(image.GetSize()),
                "spacing": [round(v, 4) + 0.0 for v in image.GetSpacing()],
                "origin": [round(v, 4) + 0.0 for v in image.GetOrigin()],
                "direction": [round(v, 6) + 0.0 for v in image.GetDirection()]}
    digest = hashlib.sha256(json.dumps(geometry, sort_keys=True).encode())
    digest.update(memoryview(values).cast("B"))
    return digest.hexdigest()


def _check_values(ct: sitk.Image, path: Path, found: _Findings) -> tuple[tuple[float, float] | None,
                                                                          np.ndarray | None]:
    """The image's finite value range (HU) and, when it has any, the flat indices of its NaN/infinite voxels."""
    if ct.GetNumberOfComponentsPerPixel() > 1:
        found.add(EXCLUDED, path, f"image has {ct.GetNumberOfComponentsPerPixel()} values per voxel (a colour or "
                  "vector image), not one CT value in HU", "export the CT series itself, not a screenshot or "
                  "a rendering")
        return None, None
    values = sitk.GetArrayViewFromImage(ct)
    nonfinite = None
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all():
            nonfinite = np.flatnonzero(~finite)
            if nonfinite.size == values.size:
                return None, nonfinite
            low, high = float(values.min(where=finite, initial=np.inf)), float(values.max(where=finite,
                                                                                            initial=-np.inf))
        else:
            low, high = float(values.min()), float(values.max())
    else:
        low, high = float(values.min()), float(values.max())
    shown = f"{low:g} to {high:g}"
    if low == high:
        found.add(EXCLUDED, path, f"image is constant (every voxel is {low:g})",
                  "export the image again: this one holds no picture")
    elif low >= 0 and high <= 255 and _looks_8bit(ct, values, low, high):
        found.add(EXCLUDED, path, f"image holds whole numbers within 0..255 only (from {shown}), so it is not a "
                  "CT in Hounsfield units (an 8-bit export, or the mask given as the image?)",
                  "export the image in HU: apply the DICOM rescale slope and intercept, or convert the DICOM "
                  "series with 'python -m hcc_utils dicom2nifti'")
    elif low >= AIR_BELOW_HU:
        found.add(WARNING, path, f"image has no value below {AIR_BELOW_HU:g} HU (from {shown}), so it holds no "
                  "air: it may not be in Hounsfield units, or it is cropped",
                  "check that the DICOM rescale slope and intercept were applied (a crop inside the body is "
                  "fine)")
    return (low, high), nonfinite


def _looks_8bit(ct: sitk.Image, values: np.ndarray, low: float, high: float) -> bool:
    """An 8-bit picture rather than a CT in HU: an 8-bit voxel type, or whole numbers spanning most of 0..255.

    A CT in HU within 0..255 with a narrow spread (a tight crop inside soft tissue) only gets the no-air warning.
    """
    eight_bit = ct.GetPixelID() in (sitk.sitkUInt8, sitk.sitkInt8)
    return eight_bit or (low <= FULL_8BIT_SPAN[0] and high >= FULL_8BIT_SPAN[1] and _whole_numbers(values))


def _whole_numbers(values: np.ndarray) -> bool:
    """Every value is a whole number (checked slice by slice: no full-volume temporary)."""
    if values.dtype.kind in "iub":
        return True
    return all(np.array_equal(plane, np.rint(plane)) for plane in values)


def _report_nonfinite(nonfinite: np.ndarray, tumour: np.ndarray | None, ct: sitk.Image,
                      labels: sitk.Image | None, path: Path, found: _Findings) -> None:
    total = int(np.prod(ct.GetSize()))
    inside = ""
    if tumour is not None and labels is not None and labels.GetSize() == ct.GetSize():
        inside = f", {np.isin(tumour, nonfinite, assume_unique=True).sum():,} of them inside the tumour"
    found.add(EXCLUDED, path, f"image holds {nonfinite.size:,} NaN or infinite voxels ({nonfinite.size / total:.2%}"
              f" of the volume{inside})", "export the image again (a failed conversion or resampling "
              "leaves these)")


def _check_mask(labels: sitk.Image, path: Path, cfg: SlicesConfig, found: _Findings) -> np.ndarray | None:
    """The flat indices of the tumour's voxels, or None with the reason recorded."""
    values = sitk.GetArrayViewFromImage(labels)
    odd = _first_non_integer(values)
    if odd is not None:
        found.add(EXCLUDED, path, f"mask holds non-integer values (e.g. {odd:.3g}), so it is not a label mask "
                  "(image and mask swapped? an interpolated or probability mask?)",
                  f"{_SWAPPED}, and export the segmentation as integer labels")
        return None
    flat = values.reshape(-1)
    step = max(1, flat.size // _SAMPLE_VOXELS)
    distinct = np.unique(flat[::step])
    image_like = distinct.size > MAX_MASK_LABELS and (distinct[0] < 0 or distinct.size > 255)
    if image_like or (distinct.size > MAX_MASK_LABELS and cfg.other_labels == "error"):
        count = f"{'at least ' if step > 1 else ''}{distinct.size}"
        hint = _SWAPPED if image_like else (f"{_SWAPPED}; for a mask of many labels, set "
                                            "'slices.other_labels: ignore' and 'slices.mask_label' to the "
                                            "tumour's label")
        found.add(EXCLUDED, path, f"mask holds {count} distinct values (from {distinct[0]:g} to "
                  f"{distinct[-1]:g}), so it looks like an image, not a label mask", hint)
        return None
    try:
        return lesion_voxels(values, cfg.mask_label, cfg.other_labels, found.patient_id, path)
    except PatientInputError as err:
        found.error(err)
        return None


def _first_non_integer(values: np.ndarray) -> float | None:
    """The first value that is not a whole number (NaN and infinities count), or None (slice by slice)."""
    if values.dtype.kind in "iub":
        return None
    for plane in values:
        bad = ~np.isfinite(plane) | (plane != np.rint(plane))
        if bad.any():
            return float(plane[bad][0])
    return None


def _check_size(volume_mm3: float, voxels: int, path: Path, cfg: SlicesConfig, found: _Findings) -> None:
    if volume_mm3 < cfg.min_lesion_mm3:
        found.add(WARNING, path, f"tumour (label {cfg.mask_label}) is {volume_mm3:.0f} mm^3 ({voxels} voxels), "
                  f"below 'slices.min_lesion_mm3' ({cfg.min_lesion_mm3:g} mm^3)",
                  "check that the mask covers the whole tumour (the 2.5D stack of so small a tumour holds "
                  "little of it)")


def duplicate_images(checks: list[PatientCheck]) -> dict[str, list[str]]:
    """Patients whose images are identical (same voxels and geometry): content hash -> patient ids, in the order
    of ``checks``, for every hash that two or more distinct patient ids share. Unreadable images are left out."""
    groups: dict[str, list[str]] = {}
    for check in checks:
        if check.content_hash is not None and check.patient_id not in groups.get(check.content_hash, []):
            groups.setdefault(check.content_hash, []).append(check.patient_id)
    return {digest: ids for digest, ids in groups.items() if len(ids) > 1}


def mark_duplicates(checks: list[PatientCheck]) -> list[PatientCheck]:
    """``checks`` with an excluded finding added to every patient whose image another patient also has (new
    objects; the others are returned as they are). The message names all the other ids::

        patient P2, file 'P2.nii.gz': the same image as patient(s) P1 (identical voxels and geometry); a patient
        must appear once: remove the duplicate rows or fix the image paths
    """
    others = {pid: [o for o in ids if o != pid] for ids in duplicate_images(checks).values() for pid in ids}
    marked = []
    for check in checks:
        if check.patient_id not in others:
            marked.append(check)
            continue
        message = (f"{place(check.patient_id, check.image_file, check.image_kind)}: the same image as patient(s) "
                   f"{', '.join(others[check.patient_id])} (identical voxels and geometry); a patient must appear "
                   "once: remove the duplicate rows or fix the image paths")
        findings = [*check.findings, Finding(EXCLUDED, check.image_file, message)]
        marked.append(dataclasses.replace(check, findings=findings, status=status_of(findings)))
    return marked
