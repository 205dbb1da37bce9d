"""Small CT-like volumes and cohorts for the image-stage tests (io, preprocess, slices, bad inputs)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from hcc_utils.config import params_from_dict

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


def realdata_dir(name: str) -> Path:
    """A folder of ``../shared/realdata``; the calling test is skipped (with the reason) when it is absent."""
    import pytest

    folder = REALDATA / name
    if not folder.is_dir():
        pytest.skip(f"real CT test data not found at {folder} (see ../shared/realdata/README.md)")
    return folder


def volume(shape_zyx=(24, 40, 40), spacing=(0.8, 0.8, 3.0), origin=(-16.0, -16.0, -36.0),
           direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), seed: int = 0) -> sitk.Image:
    """A noisy soft-tissue volume (int16 HU, ~60 +- 10) with the given geometry."""
    rng = np.random.default_rng(seed)
    values = np.clip(rng.normal(60, 10, shape_zyx), -1024, 3071).astype(np.int16)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection([float(d) for d in direction])
    return image


def blobs(reference: sitk.Image, centres_zyx, radii_vox, labels=None) -> sitk.Image:
    """A uint8 mask on ``reference``'s grid with ellipsoids (centres and radii in voxels, (z, y, x))."""
    shape = sitk.GetArrayViewFromImage(reference).shape
    zz, yy, xx = np.indices(shape)
    mask = np.zeros(shape, dtype=np.uint8)
    for k, (centre, radius) in enumerate(zip(centres_zyx, radii_vox, strict=True)):
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), centre, radius, strict=True)) <= 1
        mask[inside] = 1 if labels is None else labels[k]
    out = sitk.GetImageFromArray(mask)
    out.CopyInformation(reference)
    return out


def with_lesion(image: sitk.Image, mask: sitk.Image, hu: float = 20.0) -> sitk.Image:
    """``image`` with the masked voxels set to a hypodense lesion value (so the lesion is visible)."""
    values = sitk.GetArrayFromImage(image)
    values[sitk.GetArrayViewFromImage(mask) > 0] = hu
    out = sitk.GetImageFromArray(values)
    out.CopyInformation(image)
    return out


def write(image: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=str(path).endswith(".gz"))
    return path


def patient_files(folder: Path, pid: str, centres=((12, 20, 20),), radii=((3, 6, 7),), **geometry):
    """Write a good patient's image and mask; return their paths."""
    image = volume(**geometry, seed=zlib.crc32(pid.encode()))
    mask = blobs(image, centres, radii)
    return (write(with_lesion(image, mask), folder / f"{pid}.nii.gz"),
            write(mask, folder / f"{pid}_mask.nii.gz"))


def cohort_table(entries: dict[str, tuple[Path, Path]]) -> pd.DataFrame:
    """A cohort DataFrame (patient_id, image, mask, er, split) from {pid: (image, mask)}."""
    rows = [{"patient_id": pid, "image": str(image), "mask": str(mask), "er": k % 2,
             "split": "train" if k % 3 else "validation"}
            for k, (pid, (image, mask)) in enumerate(entries.items())]
    return pd.DataFrame(rows)


def small_params(**slices):
    """Params with a manifest placeholder (never read), 64-pixel stacks and optional ``slices`` overrides."""
    return params_from_dict({"cohort": {"manifest": "unused.csv"}, "slices": {"size": 64, **slices}})


IDENTIFIERS = {"0010|0010": "DOE^JANE", "0010|0020": "PID31337", "0010|0030": "19450203",
               "0008|0020": "20230405", "0008|0090": "DR^WHO"}
"""Patient-identifying DICOM attributes written into the test series (name, ID, birth date, study date)."""


def write_dicom_series(image: sitk.Image, folder: Path, series_uid: str, skip_slices=()) -> Path:
    """Write ``image`` as a CT DICOM series (one file per slice) carrying the fake identifiers above.

    GDCM's writer sets the process's locale to "C", which makes Python's default text encoding ASCII for the
    tests that run after it; the locale is put back.
    """
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    try:
        return _write_dicom_series(image, folder, series_uid, skip_slices)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_series(image: sitk.Image, folder: Path, series_uid: str, skip_slices) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6],
                                                   direction[1], direction[4], direction[7]))
    for k in range(image.GetDepth()):
        if k in skip_slices:
            continue
        plane = image[:, :, k]
        tags = {**IDENTIFIERS, "0008|0060": "CT", "0020|000d": series_uid.rsplit(".", 1)[0],
                "0020|000e": series_uid, "0020|0037": orientation, "0020|0013": str(k + 1),
                "0008|0018": f"{series_uid}.{k + 1}", "0018|0050": f"{image.GetSpacing()[2]:.3f}",
                "0020|0032": "\\".join(f"{v:.4f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k)))}
        for key, value in tags.items():
            plane.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(plane)
    return folder


def ties_to_higher_index(image: sitk.Image) -> sitk.Image:
    """A copy of ``image`` nudged by ``preprocess.NEAREST_TIE_SHIFT`` voxel, so that a plain SimpleITK
    nearest-neighbour resampling sends a point half-way between two voxels to the higher index, the rule
    ``hcc_utils.preprocess`` documents (otherwise floating-point noise decides such ties)."""
    from hcc_utils.preprocess import NEAREST_TIE_SHIFT

    out = sitk.Image(image)
    out.SetOrigin(image.TransformContinuousIndexToPhysicalPoint([-NEAREST_TIE_SHIFT] * image.GetDimension()))
    return out
