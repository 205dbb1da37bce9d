"""The image stage on real CT (../shared/realdata; each test is skipped with the reason when it is absent)."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from _volumes import realdata_dir, small_params, ties_to_higher_index

from hcc_utils import io, slices
from hcc_utils.config import PreprocessConfig, SlicesConfig
from hcc_utils.run_folder import RunFolder
from hcc_utils.stack import make_stack

pytestmark = pytest.mark.realdata


def _independent_central_slice(mask: sitk.Image) -> tuple[int, np.ndarray]:
    """Largest axial cross-section after nearest-neighbour resampling to 1 mm, computed directly with
    SimpleITK (axis-aligned input): the 1 mm grid tiles the same box as the input voxels (a point half-way
    between two voxels takes the higher index, the rule hcc_utils documents); ties between slices go to the
    slice nearest the lesion's centroid."""
    spacing, size = np.asarray(mask.GetSpacing()), np.asarray(mask.GetSize())
    out_size = np.round(size * spacing).astype(int)
    origin = np.asarray(mask.GetOrigin()) - spacing / 2 + (size * spacing - out_size) / 2 + 0.5
    resampled = sitk.GetArrayFromImage(sitk.Resample(
        ties_to_higher_index(mask), [int(s) for s in out_size], sitk.Transform(), sitk.sitkNearestNeighbor,
        origin.tolist(), [1.0, 1.0, 1.0], mask.GetDirection(), 0, sitk.sitkUInt8))
    areas = resampled.sum(axis=(1, 2))
    centroid = np.dot(areas, np.arange(len(areas))) / areas.sum()
    ties = np.flatnonzero(areas == areas.max())
    return int(ties[np.argmin(np.abs(ties - centroid))]), resampled


def test_lung1_central_slice_and_crop_match_an_independent_computation():
    folder = realdata_dir("pyradiomics_lung1")
    image, mask = folder / "lung1_image.nrrd", folder / "lung1_label.nrrd"
    label = sitk.ReadImage(str(mask))
    assert int(sitk.GetArrayViewFromImage(label).sum()) == 837  # the README's voxel count
    central, resampled = _independent_central_slice(label)
    stack = make_stack(image, mask, PreprocessConfig(), SlicesConfig(), "lung1")
    info = stack.info
    assert info["central_index"] == central
    assert info["tumour_area_mm2"] == pytest.approx(float(resampled[central].sum()))
    ys, xs = np.nonzero(resampled[central])
    box = info["crop_box_voxels"]
    assert box["x0"] <= xs.min() and xs.max() < box["x1"] and box["y0"] <= ys.min() and ys.max() < box["y1"]
    assert box["x1"] - box["x0"] == box["y1"] - box["y0"] == box["side"]
    scale = (224 / box["side"]) ** 2  # tumour pixels on the 224 x 224 central slice
    assert stack.masks[5].sum() / scale == pytest.approx(resampled[central].sum(), rel=0.05)
    assert info["clamped_offsets"] == [] and info["n_lesion_components"] == 1


def test_every_ibsi_sts_patient_gives_a_valid_stack(tmp_path):
    folder = realdata_dir("ibsi_sts")
    patients = sorted(p for p in folder.iterdir() if p.is_dir())
    assert len(patients) == 12
    cohort = pd.DataFrame({"patient_id": [p.name for p in patients],
                           "image": [str(p / "CT_image.nii.gz") for p in patients],
                           "mask": [str(p / "CT_mask.nii.gz") for p in patients],
                           "er": [k % 2 for k in range(12)], "split": ["train"] * 12})
    run = RunFolder(tmp_path / "run")
    data = slices.build_slice_dataset(cohort, small_params(size=224), run, progress=False)
    assert data.patients["patient_id"].tolist() == cohort["patient_id"].tolist()
    assert run.excluded_ids() == set()
    assert data.images.shape == (12, 11, 224, 224)
    assert (data.masks[:, 5].reshape(12, -1).sum(axis=1) > 0).all()  # the tumour is on every central slice
    assert (data.images.reshape(12, -1).std(axis=1) > 5).all()  # real anatomy, not an empty crop
    info = slices.stack_info_table(run)
    assert (info["n_axial_slices"] > 150).all()  # 3.3 mm slices -> ~1 mm
    assert info["tumour_area_mm2"].between(100, 50_000).all()


def _dicom_headers(folder):
    import pydicom

    headers = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    row, col = np.asarray(headers[0].ImageOrientationPatient[:3], float), np.asarray(
        headers[0].ImageOrientationPatient[3:], float)
    normal = np.cross(row, col)
    return sorted(headers, key=lambda h: float(np.dot(np.asarray(h.ImagePositionPatient, float), normal))), \
        row, col, normal


def test_dicom_series_reads_with_the_geometry_of_its_headers():
    folder = realdata_dir("dicom_ct3slice") / "ct"
    headers, row, col, normal = _dicom_headers(folder)
    image = io.read_image(folder)
    first, second = (np.asarray(h.ImagePositionPatient, float) for h in headers[:2])
    assert image.GetSize() == (headers[0].Columns, headers[0].Rows, len(headers))
    pixel = [float(v) for v in headers[0].PixelSpacing]  # (row spacing = y, column spacing = x)
    slice_spacing = abs(np.dot(second - first, normal))
    assert np.allclose(image.GetSpacing(), [pixel[1], pixel[0], slice_spacing], atol=1e-4)
    assert image.GetSpacing()[2] == pytest.approx(1.0, abs=1e-4)  # from positions, not SliceThickness (1.25)
    assert np.allclose(image.GetOrigin(), first, atol=1e-4)
    assert np.allclose(np.asarray(image.GetDirection()).reshape(3, 3), np.stack([row, col, normal], axis=1))
    hu = np.stack([h.pixel_array * float(h.RescaleSlope) + float(h.RescaleIntercept) for h in headers])
    assert np.array_equal(sitk.GetArrayFromImage(image), hu)
    assert io.read_header(folder).size == image.GetSize()


def test_dicom_series_converts_to_nifti_without_identifiers(tmp_path, capsys):
    folder = realdata_dir("dicom_ct3slice") / "ct"
    headers = _dicom_headers(folder)[0]
    identifying = {str(h.get(tag, "")).strip() for h in headers
                   for tag in ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "SeriesDate",
                               "AcquisitionDate", "AccessionNumber", "InstitutionName",
                               "ReferringPhysicianName")}
    identifying = {v for v in identifying if len(v) >= 4}
    assert identifying  # the test series does carry them
    out = tmp_path / "case.nii.gz"
    assert io.main_dicom2nifti_cli(folder, out) == 0
    printed = capsys.readouterr().out
    written = gzip.decompress(out.read_bytes())
    for value in identifying:
        assert value.encode() not in written and value not in printed
    converted = sitk.ReadImage(str(out))
    assert np.array_equal(sitk.GetArrayFromImage(converted), sitk.GetArrayFromImage(io.read_image(folder)))
    assert np.allclose(converted.GetOrigin(), io.read_image(folder).GetOrigin(), atol=1e-3)


def test_dicom_series_with_its_nrrd_segmentation_gives_a_stack():
    folder = realdata_dir("dicom_ct3slice")
    stack = make_stack(folder / "ct", folder / "liver_seg.nrrd", PreprocessConfig(), SlicesConfig(size=64))
    info = stack.info
    assert info["resampled_size"][2] == 3 and set(info["indices"]) <= {0, 1, 2}
    assert info["clamped_offsets"]  # a 3 mm scan cannot hold +-9 slices: clamped and warned
    assert any("fall outside the volume" in w for w in info["warnings"])


def test_totalseg_liver_works_as_a_roi():
    folder = realdata_dir("totalseg_abdomen")
    mask = sitk.ReadImage(str(folder / "liver_mask.nii.gz"))
    stack = make_stack(folder / "example_ct_sm.nii.gz", folder / "liver_mask.nii.gz", PreprocessConfig(),
                       SlicesConfig(size=128), "totalseg")
    info = stack.info
    assert info["lesion_volumes_ml"][0] == pytest.approx(1062.450, rel=1e-6)  # the README's liver volume
    flipped = sitk.DICOMOrient(mask, "LPS")  # stored RAS-like; the independent check needs LPS axes
    central, resampled = _independent_central_slice(flipped)
    assert info["central_index"] == central
    assert info["tumour_area_mm2"] == pytest.approx(float(resampled[central].sum()))
    assert stack.masks[5].mean() > 0.3 and 0.0 <= stack.images.min() and stack.images.max() <= 1.0
