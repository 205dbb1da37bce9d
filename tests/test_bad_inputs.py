"""Bad input at the image stage: each case names the patient, the file and what to do, and the cohort goes on.

Each test builds a cohort of one good patient and one bad one, runs ``slices.build_slice_dataset`` and checks
the bad patient's row in the run's exclusions table (what notebook 02 shows) and that the good patient got its
stack.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from _volumes import (
    blobs,
    cohort_table,
    patient_files,
    realdata_dir,
    small_params,
    volume,
    with_lesion,
    write,
)

from hcc_utils import slices
from hcc_utils.run_folder import RunFolder


def _run(tmp_path, bad_image, bad_mask, **slices_params):
    """Build the dataset for GOOD + BAD; return (dataset, the slices stage's exclusion rows of BAD)."""
    good = patient_files(tmp_path / "data", "GOOD")
    run = RunFolder(tmp_path / "run")
    data = slices.build_slice_dataset(cohort_table({"GOOD": good, "BAD": (bad_image, bad_mask)}),
                                      small_params(**slices_params), run, progress=False)
    rows = run.exclusions("slices")
    return data, rows[rows["patient_id"] == "BAD"].reset_index(drop=True)


def _excluded(tmp_path, bad_image, bad_mask, *phrases, **slices_params) -> str:
    data, rows = _run(tmp_path, bad_image, bad_mask, **slices_params)
    assert data.patients["patient_id"].tolist() == ["GOOD"]  # the other patient is processed
    assert rows["severity"].tolist() == ["excluded"]
    message = rows.loc[0, "message"]
    assert message.startswith(f"patient BAD, {'folder' if 'folder' in phrases else 'file'} ")
    for phrase in phrases:
        if phrase != "folder":
            assert phrase in message, message
    assert "\n" not in message and "Traceback" not in message
    return message


def _mask_like(image_path, values: np.ndarray, name: str):
    mask = sitk.GetImageFromArray(values)
    mask.CopyInformation(sitk.ReadImage(str(image_path)))
    return write(mask, image_path.parent / name)


def test_missing_file(tmp_path):
    image, mask = patient_files(tmp_path / "data", "BAD")
    image.unlink()
    _excluded(tmp_path, image, mask, "file 'BAD.nii.gz': image not found", "check the path")


def test_unreadable_file(tmp_path):
    _, mask = patient_files(tmp_path / "data", "BAD")
    junk = tmp_path / "data" / "BAD.nrrd"
    junk.write_bytes(b"NRRD0004\ntype: banana\n\n")
    _excluded(tmp_path, junk, mask, "file 'BAD.nrrd': image file cannot be read as an image",
              "export it again as NIfTI")


def test_truncated_nifti_is_not_silently_half_read(tmp_path):
    image, mask = patient_files(tmp_path / "data", "BAD")
    data = image.read_bytes()
    image.write_bytes(data[: int(len(data) * 0.8)])
    _excluded(tmp_path, image, mask, "file 'BAD.nii.gz': image file is damaged", "truncated or corrupt",
              "copy or export the file again")


def test_geometry_mismatch(tmp_path):
    image, mask = patient_files(tmp_path / "data", "BAD")
    shifted = sitk.ReadImage(str(mask))
    shifted.SetOrigin(np.add(shifted.GetOrigin(), (0.0, 0.0, 6.0)).tolist())
    write(shifted, mask)
    _excluded(tmp_path, image, mask, "file 'BAD_mask.nii.gz': mask origin is shifted by (0, 0, 6) mm",
              "export the mask again from the image it was drawn on")


def test_empty_mask(tmp_path):
    image, _ = patient_files(tmp_path / "data", "BAD")
    empty = _mask_like(image, np.zeros((24, 40, 40), np.uint8), "BAD_empty.nii.gz")
    _excluded(tmp_path, image, empty, "file 'BAD_empty.nii.gz': mask is empty", "check that the mask file")


def test_unexpected_labels(tmp_path):
    image, mask = patient_files(tmp_path / "data", "BAD")
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))
    values[2:5, 2:8, 2:8] = 2  # e.g. a liver label beside the tumour
    two = _mask_like(image, values, "BAD_labels.nii.gz")
    _excluded(tmp_path, image, two, "mask holds labels [1, 2], expected only 1",
              "set 'slices.other_labels: ignore'")
    data, rows = _run(tmp_path / "ignore", image, two, other_labels="ignore")
    assert data.patients["patient_id"].tolist() == ["GOOD", "BAD"] and rows.empty


def test_tumour_label_absent(tmp_path):
    image, mask = patient_files(tmp_path / "data", "BAD")
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(mask))) * 2
    _excluded(tmp_path, image, _mask_like(image, values, "BAD_l2.nii.gz"),
              "mask has no voxel with label 1 (labels present: [2])", "set 'slices.mask_label'")
    data, _ = _run(tmp_path / "label2", image, _mask_like(image, values, "BAD_l2.nii.gz"), mask_label=2)
    assert "BAD" in data.patients["patient_id"].tolist()


def test_non_integer_mask(tmp_path):
    image, mask = patient_files(tmp_path / "data", "BAD")
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(mask))).astype(np.float32) * 0.5
    _excluded(tmp_path, image, _mask_like(image, values, "BAD_prob.nii.gz"), "non-integer values (e.g. 0.5)",
              "export the segmentation as integer labels")


def test_several_lesions_warn_and_keep_the_largest(tmp_path):
    reference = volume()
    mask = blobs(reference, [(12, 12, 12), (12, 30, 30)], [(4, 7, 7), (1, 2, 2)])
    image = write(with_lesion(reference, mask), tmp_path / "data" / "BAD.nii.gz")
    mask_path = write(mask, tmp_path / "data" / "BAD_mask.nii.gz")
    data, rows = _run(tmp_path, image, mask_path)
    assert data.patients["patient_id"].tolist() == ["GOOD", "BAD"]
    assert rows["severity"].tolist() == ["warning"]
    message = rows.loc[0, "message"]
    assert "mask has 2 separate lesions" in message and "the largest is used" in message
    info = slices.load_patient_stack(RunFolder(tmp_path / "run"), "BAD")[2]
    big = 0.8 * 0.8 * 3.0 * sitk.GetArrayFromImage(blobs(reference, [(12, 12, 12)], [(4, 7, 7)])).sum()
    assert info["lesion_volumes_ml"][0] == pytest.approx(big / 1000, rel=1e-3)
    assert info["crop_box_mm"]["side_mm"] < 16  # the crop is around the large lesion only


def test_tumour_at_the_volume_edge_warns(tmp_path):
    image, mask = patient_files(tmp_path / "data", "BAD", centres=((0, 20, 20),), radii=((2, 6, 6),))
    data, rows = _run(tmp_path, image, mask)
    assert "BAD" in data.patients["patient_id"].tolist()
    messages = " | ".join(rows["message"])
    assert set(rows["severity"]) == {"warning"}
    assert "tumour touches the first slice of the scanned volume" in messages
    assert "fall outside the volume" in messages


def test_nan_voxels_near_the_tumour(tmp_path):
    image, mask = patient_files(tmp_path / "data", "BAD")
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(image))).astype(np.float32)
    values[12, 18:22, 18:22] = np.nan  # read as NaN (not as ITK's 0), they would blank the whole stack
    nan = _mask_like(image, values, "BAD_nan.nii.gz")
    _excluded(tmp_path, nan, mask, "file 'BAD_nan.nii.gz': image holds NaN or infinite voxels that reach the 2.5D "
              "stack", "export the image again")


def test_2d_image(tmp_path):
    _, mask = patient_files(tmp_path / "data", "BAD")
    flat = write(volume()[:, :, 12], tmp_path / "data" / "BAD_2d.nii.gz")
    _excluded(tmp_path, flat, mask, "file 'BAD_2d.nii.gz': image is 2D (a single 40x40 slice)",
              "export the whole series")


def test_dicom_folder_with_mixed_series(tmp_path):
    import pydicom

    source = realdata_dir("dicom_ct3slice") / "ct"
    folder = tmp_path / "data" / "BAD_dicom"
    folder.mkdir(parents=True)
    for k, path in enumerate(sorted(source.glob("*.dcm"))):
        shutil.copy(path, folder / path.name)
        other = pydicom.dcmread(path)
        other.SeriesInstanceUID = other.SeriesInstanceUID + ".9"
        other.SOPInstanceUID = other.SOPInstanceUID + ".9"
        other.SeriesNumber = 3
        other.save_as(folder / f"b{k}.dcm")
    mask = write(sitk.Image([512, 512, 3], sitk.sitkUInt8), tmp_path / "data" / "BAD_mask.nii.gz")
    message = _excluded(tmp_path, folder, mask, "folder", "folder 'BAD_dicom': folder holds 2 DICOM series",
                        "(#0: 3 slice(s), #1: 3 slice(s))", "--series N")
    assert "JANCT" not in message and "99000" not in message  # no PatientName / PatientID


def test_all_bad_cases_in_one_cohort_leave_the_good_ones(tmp_path):
    folder = tmp_path / "data"
    good_a, good_b = patient_files(folder, "A"), patient_files(folder, "B")
    missing = (folder / "gone.nii.gz", good_a[1])
    empty = (good_a[0], _mask_like(good_a[0], np.zeros((24, 40, 40), np.uint8), "E_mask.nii.gz"))
    run = RunFolder(tmp_path / "run")
    data = slices.build_slice_dataset(cohort_table({"A": good_a, "M": missing, "E": empty, "B": good_b}),
                                      small_params(), run, progress=False)
    assert data.patients["patient_id"].tolist() == ["A", "B"]
    assert run.excluded_ids() == {"M", "E"}
    table = run.exclusions("slices")
    assert list(table.columns) == ["patient_id", "stage", "severity", "file", "message"]
    assert table.set_index("patient_id").loc["M", "file"] == "gone.nii.gz"


def test_an_unforeseen_error_is_reported_without_folder_names(tmp_path, monkeypatch):
    from hcc_utils import stack

    image, mask = patient_files(tmp_path / "data" / "Doe_Jane_1945", "BAD")
    real = stack.make_stack

    def flaky(image_path, mask_path, pre, cfg, patient_id=None):
        if patient_id == "BAD":
            raise RuntimeError(f"itk::ERROR: cannot allocate for {image_path}\n  at line 42")
        return real(image_path, mask_path, pre, cfg, patient_id)

    monkeypatch.setattr(stack, "make_stack", flaky)
    message = _excluded(tmp_path, image, mask, "unexpected RuntimeError while making the stack",
                        "please report it")
    assert "Doe_Jane" not in message and "BAD.nii.gz" in message
