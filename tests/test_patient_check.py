"""The per-patient input checks before the split (hcc_utils.patient_check, docs/method.md section 1).

Each test writes one small patient (40 x 40 x 24 voxels) and checks the verdict and the message: one sentence that
names the patient, the file (name only, quoted) and what to do.
"""

from __future__ import annotations

import re
import shutil

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from _volumes import blobs, realdata_dir, volume, with_lesion, write, write_dicom_series

from hcc_utils import patient_check
from hcc_utils.config import PreprocessConfig, SlicesConfig
from hcc_utils.patient_check import check_patient, content_hash, duplicate_images, mark_duplicates

PRE, CFG = PreprocessConfig(), SlicesConfig()
CENTRE, RADII = (12, 20, 20), (5, 10, 12)  # voxels (z, y, x); spacing (0.8, 0.8, 3.0) mm


def ct(seed: int = 0, **geometry) -> sitk.Image:
    """A CT-like volume in HU: soft tissue (~60 HU) inside a body cylinder, air (-1000 HU) around it."""
    image = volume(seed=seed, **geometry)
    values = sitk.GetArrayFromImage(image)
    _, ny, nx = values.shape
    yy, xx = np.ogrid[:ny, :nx]
    values[:, ((yy - ny / 2) / (ny / 2)) ** 2 + ((xx - nx / 2) / (nx / 2)) ** 2 > 0.8] = -1000
    out = sitk.GetImageFromArray(values)
    out.CopyInformation(image)
    return out


def patient(folder, pid="P1", image: sitk.Image | None = None, radii=RADII, name=None):
    """Write a patient's image (with a visible lesion) and mask; return their paths."""
    image = ct() if image is None else image
    mask = blobs(image, [CENTRE], [radii])
    return (write(with_lesion(image, mask), folder / (name or f"{pid}.nii.gz")),
            write(mask, folder / f"{pid}_mask.nii.gz"))


def check(pid, image, mask, **slices) -> patient_check.PatientCheck:
    return check_patient(pid, image, mask, PRE, SlicesConfig(**slices) if slices else CFG)


def only(result, severity: str, *phrases: str) -> str:
    """The one finding of ``result``: its severity, the status, one line, and the phrases in its message."""
    assert len(result.findings) == 1, result.findings
    finding = result.findings[0]
    assert finding.severity == severity and result.status == severity
    assert "\n" not in finding.message and "Traceback" not in finding.message
    for phrase in phrases:
        assert phrase in finding.message, finding.message
    return finding.message


def test_a_good_patient_is_ok_with_hash_volume_and_range(tmp_path, monkeypatch):
    image, mask = patient(tmp_path)
    reads, real = [], patient_check.read_image
    monkeypatch.setattr(patient_check, "read_image", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    result = check("P1", image, mask)
    assert (result.status, result.findings) == ("ok", [])
    assert re.fullmatch(r"[0-9a-f]{64}", result.content_hash)
    ellipsoid = 4 / 3 * np.pi * (RADII[0] * 3.0) * (RADII[1] * 0.8) * (RADII[2] * 0.8)  # mm^3
    assert result.lesion_volume_mm3 == pytest.approx(ellipsoid, rel=0.03)
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(image)))
    assert result.hu_range == (values.min(), values.max()) and result.hu_range[0] == -1000
    assert reads == [image, mask]  # each file read once
    assert (result.image_file, result.image_kind) == ("P1.nii.gz", "file")


def test_a_missing_file_names_it_quoted_so_a_trailing_space_shows(tmp_path):
    image, mask = patient(tmp_path)
    result = check("P1", tmp_path / "P1.nii.gz ", mask)
    only(result, "excluded", "patient P1, file 'P1.nii.gz ': image not found; check the path")
    assert result.findings[0].file == "P1.nii.gz "
    assert (result.content_hash, result.hu_range) == (None, None)
    assert result.lesion_volume_mm3 == pytest.approx(4767, rel=0.01)  # the mask was still checked


def test_a_2d_image(tmp_path):
    _, mask = patient(tmp_path)
    flat = write(ct()[:, :, 12], tmp_path / "P1_2d.nii.gz")
    only(check("P1", flat, mask), "excluded", "file 'P1_2d.nii.gz': image is 2D (a single 40x40 slice)",
         "export the whole series")


def test_a_4d_image_with_several_time_points(tmp_path):
    _, mask = patient(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 24, 3), np.int16), np.eye(4)), tmp_path / "P1_4d.nii.gz")
    only(check("P1", tmp_path / "P1_4d.nii.gz", mask), "excluded", "image has 4 dimensions (40x40x24x3)",
         "save one 3D phase")


def test_a_png_renamed_nii_gz(tmp_path):
    from PIL import Image

    _, mask = patient(tmp_path)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "shot.png")
    shutil.copy(tmp_path / "shot.png", tmp_path / "P1.nii.gz")
    only(check("P1", tmp_path / "P1.nii.gz", mask), "excluded", "file 'P1.nii.gz': image is 2D")


def test_a_truncated_gzip(tmp_path):
    image, mask = patient(tmp_path)
    data = mask.read_bytes()
    mask.write_bytes(data[: len(data) // 2])
    result = check("P1", image, mask)
    only(result, "excluded", "file 'P1_mask.nii.gz': mask file is damaged", "copy or export the file again")
    assert result.content_hash is not None and result.lesion_volume_mm3 is None


def test_image_and_mask_geometry_must_match(tmp_path):
    image, mask = patient(tmp_path)
    shifted = sitk.ReadImage(str(mask))
    shifted.SetOrigin(np.add(shifted.GetOrigin(), (0.0, 0.0, 6.0)).tolist())
    write(shifted, mask)
    only(check("P1", image, mask), "excluded", "file 'P1_mask.nii.gz': mask origin is shifted by (0, 0, 6) mm")


@pytest.mark.parametrize("change, phrase", [
    (lambda m: m * 0, "mask is empty"),
    (lambda m: m * 2, "mask has no voxel with label 1 (labels present: [2])"),
    (lambda m: np.where(np.arange(m.shape[0])[:, None, None] < 2, 3, m), "mask holds labels [1, 3]"),
])
def test_mask_labels(tmp_path, change, phrase):
    image, mask = patient(tmp_path)
    values = change(sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))).astype(np.uint8)
    relabelled = sitk.GetImageFromArray(values)
    relabelled.CopyInformation(sitk.ReadImage(str(image)))
    result = check("P1", image, write(relabelled, mask))
    only(result, "excluded", "patient P1, file 'P1_mask.nii.gz': " + phrase)
    assert result.lesion_volume_mm3 is None


def _as_image(reference: sitk.Image, values: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(values)
    out.CopyInformation(reference)
    return out


def test_nan_voxels_are_counted_inside_the_tumour_too(tmp_path):
    image, mask = patient(tmp_path)
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(image))).astype(np.float32)
    values[0, :4, :10] = np.nan  # 40 voxels outside the tumour
    values[12, 20, 18:21] = np.inf  # and 3 inside it
    nan = write(_as_image(sitk.ReadImage(str(image)), values), tmp_path / "P1_nan.nii.gz")
    result = check("P1", nan, mask)
    only(result, "excluded", "file 'P1_nan.nii.gz': image holds 43 NaN or infinite voxels (0.11% of the volume, "
         "3 of them inside the tumour)", "export the image again")
    assert result.hu_range == (-1000.0, pytest.approx(float(np.nanmax(values[np.isfinite(values)]))))


def test_an_8bit_export_is_not_ct_in_hu(tmp_path):
    _, mask = patient(tmp_path)
    values = np.clip(sitk.GetArrayFromImage(ct()) / 4 + 100, 0, 255).astype(np.uint8)
    eight = write(_as_image(ct(), values), tmp_path / "P1_8bit.nii.gz")
    only(check("P1", eight, mask), "excluded",
         f"image holds whole numbers within 0..255 only (from {values.min()} to {values.max()}), so it is not a CT "
         "in Hounsfield units", "apply the DICOM rescale slope and intercept")


def test_an_image_without_air_warns(tmp_path):
    body = volume()  # soft tissue (~60 HU) and a layer of fat (-100 HU): a crop inside the body
    body = _as_image(body, np.where(np.arange(40)[None, None, :] < 4, -100, sitk.GetArrayFromImage(body)))
    image, mask = patient(tmp_path, image=sitk.Cast(body, sitk.sitkInt16))
    result = check("P1", image, mask)
    only(result, "warning", "image has no value below -500 HU (from ", "so it holds no air",
         "rescale slope and intercept")
    assert result.content_hash is not None and result.lesion_volume_mm3 > 0


def test_a_constant_image(tmp_path):
    _, mask = patient(tmp_path)
    flat = write(_as_image(ct(), np.full((24, 40, 40), -1000, np.int16)), tmp_path / "P1_flat.nii.gz")
    only(check("P1", flat, mask), "excluded", "image is constant (every voxel is -1000)")


def test_a_colour_image(tmp_path):
    _, mask = patient(tmp_path)
    rgb = sitk.Compose(*[sitk.Cast(ct(), sitk.sitkUInt8)] * 3)
    only(check("P1", write(rgb, tmp_path / "P1_rgb.nrrd"), mask), "excluded", "image has 3 values per voxel")


def test_image_and_mask_swapped(tmp_path):
    image, mask = patient(tmp_path)
    result = check("P1", mask, image)
    assert result.status == "excluded"
    by_file = {f.file: f.message for f in result.findings}
    assert "so it looks like an image, not a label mask" in by_file["P1.nii.gz"]
    assert "image and mask swapped?" in by_file["P1.nii.gz"]
    assert "the mask given as the image?" in by_file["P1_mask.nii.gz"]


def test_a_probability_mask_is_not_a_label_mask(tmp_path):
    image, mask = patient(tmp_path)
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(mask))).astype(np.float32) * 0.7
    soft = write(_as_image(sitk.ReadImage(str(mask)), values), tmp_path / "P1_prob.nii.gz")
    only(check("P1", image, soft), "excluded", "mask holds non-integer values (e.g. 0.7)",
         "image and mask swapped?", "export the segmentation as integer labels")


def test_a_mask_of_many_labels_is_allowed_when_other_labels_are_ignored(tmp_path):
    image, mask = patient(tmp_path)
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))
    values[0] = np.arange(40 * 40).reshape(40, 40) % 30 + 2  # 30 organ labels beside the tumour's 1
    many = write(_as_image(sitk.ReadImage(str(mask)), values), tmp_path / "P1_organs.nii.gz")
    only(check("P1", image, many), "excluded", "mask holds 32 distinct values", "'slices.other_labels: ignore'")
    assert check("P1", image, many, other_labels="ignore").status == "ok"


def test_a_small_tumour_warns(tmp_path):
    image, mask = patient(tmp_path, radii=(1, 2, 2))
    result = check("P1", image, mask)
    message = only(result, "warning", "file 'P1_mask.nii.gz': tumour (label 1) is ",
                   "below 'slices.min_lesion_mm3' (250 mm^3)", "covers the whole tumour")
    assert f"is {result.lesion_volume_mm3:.0f} mm^3" in message and result.lesion_volume_mm3 < 250
    assert check("P1", image, mask, min_lesion_mm3=0).status == "ok"


def test_the_hash_follows_content_and_geometry_not_the_format(tmp_path):
    image, mask = patient(tmp_path)
    read = sitk.ReadImage(str(image))
    assert content_hash(sitk.ReadImage(str(write(read, tmp_path / "copy.nrrd")))) == content_hash(read)
    moved = sitk.Image(read)
    moved.SetOrigin(np.add(read.GetOrigin(), (0.5, 0.0, 0.0)).tolist())
    other = _as_image(read, sitk.GetArrayFromImage(read) + np.int16(1))
    assert len({content_hash(read), content_hash(moved), content_hash(other)}) == 3


def test_the_same_image_under_two_ids_is_found_and_every_copy_excluded(tmp_path):
    a = patient(tmp_path, "A")
    b = patient(tmp_path, "B", image=ct(seed=1))
    copy = shutil.copy(a[0], tmp_path / "C.nii.gz")
    checks = [check("A", *a), check("B", *b), check("C", copy, a[1]), check("A", *a)]
    assert duplicate_images(checks) == {checks[0].content_hash: ["A", "C"]}
    marked = mark_duplicates(checks)
    assert [m.status for m in marked] == ["excluded", "ok", "excluded", "excluded"]
    assert marked[1] is checks[1] and checks[0].status == "ok"  # the input is left as it was
    assert marked[2].findings[-1].message == (
        "patient C, file 'C.nii.gz': the same image as patient(s) A (identical voxels and geometry); a patient "
        "must appear once: remove the duplicate rows or fix the image paths")
    assert "the same image as patient(s) C" in marked[0].findings[-1].message


def _dicom_patient(folder, skip_slices=(), shift_mm=0.0):
    """A CT DICOM series (one slice shifted by ``shift_mm`` along z, or slices left out) and its NIfTI mask."""
    import pydicom

    reference = ct()
    mask = blobs(reference, [CENTRE], [RADII])
    series = write_dicom_series(with_lesion(reference, mask), folder / "series", "1.2.826.0.1.3680043.2.1125.9",
                                skip_slices)
    if shift_mm:
        header = pydicom.dcmread(series / "slice005.dcm")
        x, y, z = (float(v) for v in header.ImagePositionPatient)
        header.ImagePositionPatient = [f"{v:.4f}" for v in (x, y, z + shift_mm)]
        header.save_as(series / "slice005.dcm")
    return series, write(mask, folder / "mask.nii.gz")


def test_itk_warnings_become_a_warning_finding_not_raw_stderr(tmp_path, capfd):
    series, mask = _dicom_patient(tmp_path / "Doe_Jane", shift_mm=0.02)
    result = check("P1", series, mask)
    assert capfd.readouterr().err == ""
    only(result, "warning", "patient P1, folder 'series': the image reader warned: ImageSeriesReader: Non uniform "
         "sampling or missing slices detected, maximum nonuniformity:0.02", "look at the image in a viewer")
    assert "Doe_Jane" not in result.findings[0].message and result.image_kind == "folder"


def test_a_series_with_a_missing_slice_is_excluded_and_the_reader_warning_kept(tmp_path, capfd):
    series, mask = _dicom_patient(tmp_path, skip_slices=(7,))
    result = check("P1", series, mask)
    assert capfd.readouterr().err == ""
    assert result.status == "excluded"
    assert [f.severity for f in result.findings] == ["warning", "excluded"]
    assert "missing slices detected" in result.findings[0].message
    assert "DICOM slices are unevenly spaced" in result.findings[1].message


def test_an_unforeseen_error_is_reported_without_folder_names(tmp_path, monkeypatch):
    image, mask = patient(tmp_path / "Doe_Jane_1945")

    def broken(image_):
        raise RuntimeError(f"itk::ERROR: cannot hash {image}\n  at line 42")

    monkeypatch.setattr(patient_check, "content_hash", broken)
    result = check("P1", image, mask)
    message = only(result, "excluded", "patient P1, file 'P1.nii.gz': unexpected RuntimeError while checking the "
                   "patient (itk::ERROR: cannot hash ", "please report it with this message")
    assert "Doe_Jane" not in message


def test_real_ct_cases_are_ok():
    cases = [(f"STS_{p.name}", p / "CT_image.nii.gz", p / "CT_mask.nii.gz")
             for p in sorted(realdata_dir("ibsi_sts").iterdir()) if p.is_dir()]
    lung = realdata_dir("pyradiomics_lung1")
    cases.append(("lung1", lung / "lung1_image.nrrd", lung / "lung1_label.nrrd"))
    liver = realdata_dir("totalseg_abdomen")
    cases.append(("totalseg", liver / "example_ct_sm.nii.gz", liver / "liver_mask.nii.gz"))
    dicom = realdata_dir("dicom_ct3slice")
    cases.append(("dicom", dicom / "ct", dicom / "liver_seg.nrrd"))
    results = {pid: check(pid, image, mask) for pid, image, mask in cases}
    assert {pid: r.findings for pid, r in results.items() if r.status != "ok"} == {}
    assert results["totalseg"].lesion_volume_mm3 == pytest.approx(1_062_450, rel=1e-6)  # the README's volume
    assert results["lung1"].lesion_volume_mm3 == pytest.approx(837 * np.prod(
        sitk.ReadImage(str(lung / "lung1_label.nrrd")).GetSpacing()))
    assert duplicate_images(list(results.values())) == {}
