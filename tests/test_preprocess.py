"""Resampling, windowing and the image/mask geometry check (hcc_utils.preprocess, docs/method.md section 1)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from _volumes import blobs, cohort_table, patient_files, volume, write

from hcc_utils.inputs_check import PatientInputError
from hcc_utils.preprocess import (
    Grid,
    axial_grid,
    check_same_geometry,
    geometry_by_scanner,
    geometry_table,
    resample,
    resample_onto,
    window,
)


def test_window_maps_the_papers_range_to_0_1():
    hu = np.array([-1000.0, -89.5, 40.0, 169.5, 3000.0])
    assert window(hu, 259, 40) == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    assert window(hu).dtype == np.float32


def test_axial_grid_covers_the_same_box_at_1mm():
    image = volume(shape_zyx=(10, 30, 40), spacing=(0.75, 0.75, 5.0), origin=(-10.0, 20.0, -100.0))
    grid = axial_grid(image, (1.0, 1.0, 1.0))
    assert grid.size == (30, 22, 50)  # 40*0.75, round(30*0.75 = 22.5) and 10*5 mm
    assert grid.spacing == (1.0, 1.0, 1.0)
    # the first output voxel sits half a voxel inside the box the input voxels tile (x and z exactly)
    assert grid.origin[0] == pytest.approx(-10.0 - 0.375 + 0.5)
    assert grid.origin[2] == pytest.approx(-100.0 - 2.5 + 0.5)


@pytest.mark.parametrize("direction, original_spacing", [((-1, 0, 0, 0, -1, 0, 0, 0, 1), (1.0, 2.0, 3.0)),
                                                         ((1, 0, 0, 0, 0, 1, 0, -1, 0), (1.0, 3.0, 2.0))])
def test_axial_grid_turns_axes_to_lps(direction, original_spacing):
    """RAS-stored NIfTI (x, y flipped) and a coronal acquisition both give an L, P, S output grid."""
    image = volume(shape_zyx=(8, 12, 16), spacing=(1.0, 2.0, 3.0), direction=direction)
    grid = axial_grid(image, (1.0, 1.0, 1.0))
    assert np.allclose(np.asarray(grid.direction).reshape(3, 3), np.eye(3))
    source = Grid.of(image)
    box_in = source.to_physical(np.array([[-0.5, -0.5, -0.5], [15.5, 11.5, 7.5]]))
    box_out = grid.to_physical(np.array([[-0.5, -0.5, -0.5], np.asarray(grid.size) - 0.5]))
    assert np.allclose(np.sort(box_in, axis=0), np.sort(box_out, axis=0))
    assert axial_grid(image, None).spacing == original_spacing  # each axis keeps its own spacing


@pytest.mark.parametrize("interpolator, tolerance_hu",
                         [("nearest", 0.0), ("linear", 1e-4), ("bspline", 1e-3)])
def test_resampling_a_region_equals_full_volume_then_crop(interpolator, tolerance_hu):
    # 0.7 mm -> 1 mm puts some points exactly half-way between two input voxels (x = 21, for one)
    image = sitk.Cast(volume(shape_zyx=(20, 60, 60), spacing=(0.7, 0.7, 5.0), seed=3), sitk.sitkFloat32)
    full = resample(image, (1.0, 1.0, 1.0), interpolator)
    grid = axial_grid(image, (1.0, 1.0, 1.0))
    region = grid.region((10, 5, 30), (17, 20, 19))
    part = sitk.GetArrayFromImage(resample_onto(image, region, interpolator, -1024.0))
    expected = sitk.GetArrayFromImage(full)[30:49, 5:25, 10:27]
    assert np.abs(part - expected).max() <= tolerance_hu


def test_nearest_neighbour_ties_go_to_the_higher_index():
    """0.75 mm -> 1 mm puts some output points exactly half-way between two input voxels."""
    values = np.arange(16, dtype=np.int16).reshape(1, 1, 16).repeat(2, axis=0).repeat(2, axis=1)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.75, 1.0, 1.0))
    grid = axial_grid(image)  # 12 points: continuous input indices (k + 0.5) / 0.75 - 0.5
    reach = (np.arange(12) + 0.5) / 0.75 - 0.5
    expected = np.floor(reach + 0.5).astype(int)  # round half up
    assert np.any(reach % 1 == 0.5)
    assert sitk.GetArrayFromImage(resample_onto(image, grid, "nearest"))[0, 0].tolist() == expected.tolist()
    part = resample_onto(image, grid.region((3, 0, 0), (7, 2, 2)), "nearest")
    assert sitk.GetArrayFromImage(part)[0, 0].tolist() == expected[3:10].tolist()


def test_resampling_outside_the_scan_gives_the_default_value():
    image = volume(shape_zyx=(4, 10, 10))
    grid = axial_grid(image).region((-50, -50, 0), (5, 5, 2))
    values = sitk.GetArrayFromImage(resample_onto(image, grid, "bspline", -1024.0))
    assert np.all(values == -1024.0)


def test_mask_resampling_keeps_labels():
    image = volume(shape_zyx=(12, 30, 30), spacing=(0.6, 0.6, 4.0))
    mask = blobs(image, [(6, 15, 15), (6, 5, 5)], [(2, 5, 5), (1, 2, 2)], labels=[1, 2])
    out = sitk.GetArrayFromImage(resample(mask, (1.0, 1.0, 1.0), "nearest", 0, sitk.sitkUInt8))
    assert set(np.unique(out)) == {0, 1, 2}


def _copy(image, **change):
    out = sitk.Image(image)
    for key, value in change.items():
        getattr(out, f"Set{key}")(value)
    return out


def test_same_geometry_within_tolerance_passes():
    image = volume()
    mask = _copy(image, Origin=tuple(o + 1e-5 for o in image.GetOrigin()))
    check_same_geometry(image, mask, 1e-3)


@pytest.mark.parametrize("change, words", [
    ({"Spacing": (0.8, 0.8, 2.5)}, "spacing"),
    ({"Origin": (-16.0, -16.0, -31.0)}, "origin is shifted by (0, 0, 5) mm"),
    ({"Direction": (1, 0, 0, 0, -1, 0, 0, 0, -1)}, "different directions"),
])
def test_geometry_mismatch_is_named(change, words):
    image = volume()
    with pytest.raises(PatientInputError) as err:
        check_same_geometry(image, _copy(image, **change), 1e-3, "HCC0001", "HCC0001_mask.nii.gz")
    text = str(err.value)
    assert text.startswith("patient HCC0001, file 'HCC0001_mask.nii.gz': ")
    assert words in text and "export the mask again" in text


def test_size_mismatch_is_named():
    with pytest.raises(PatientInputError, match=r"image has 40x40x24 voxels but the mask 40x40x23"):
        check_same_geometry(volume(), volume(shape_zyx=(23, 40, 40)), 1e-3, "HCC0001", "m.nii.gz")


def test_geometry_table_reads_headers(tmp_path):
    image, mask = patient_files(tmp_path, "HCC0001")
    other = write(volume(shape_zyx=(10, 32, 32), spacing=(0.7, 0.7, 5.0)), tmp_path / "HCC0002.nrrd")
    cohort = cohort_table({"HCC0001": (image, mask), "HCC0002": (other, mask),
                           "HCC0003": (tmp_path / "missing.nii.gz", mask)})
    cohort["scanner"] = ["A", "B", "A"]
    table = geometry_table(cohort, progress=False)
    assert table["size"].tolist() == ["40x40x24", "32x32x10", ""]
    assert table.loc[1, "spacing_mm"] == "0.70 x 0.70 x 5.00"
    assert table.loc[1, "slice_mm"] == pytest.approx(5.0)
    assert table["scanner"].tolist() == ["A", "B", "A"]
    assert "not found" in table.loc[2, "problem"]


def test_geometry_table_gives_a_2d_or_4d_image_a_row_saying_so(tmp_path):
    import nibabel as nib

    image, mask = patient_files(tmp_path, "HCC0001")
    flat = write(volume()[:, :, 12], tmp_path / "HCC0002.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7, 3), np.int16), np.eye(4)), tmp_path / "HCC0003.nii.gz")
    cohort = cohort_table({"HCC0001": (image, mask), "HCC0002": (flat, mask),
                           "HCC0003": (tmp_path / "HCC0003.nii.gz", mask)})
    cohort["scanner"] = ["A", "A", "B"]
    table = geometry_table(cohort, progress=False)
    assert table["problem"].tolist()[0] == ""
    assert table.loc[1, "problem"].startswith("image is 2D (a single 40x40 slice)")
    assert table.loc[2, "problem"].startswith("image has 4 dimensions (5x6x7x3)")
    assert table.loc[1:, "size"].tolist() == ["", ""]
    summary = geometry_by_scanner(table).set_index("scanner")
    assert summary.loc["A", "unreadable"] == 1 and summary.loc["B", "unreadable"] == 1
