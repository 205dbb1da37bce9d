"""The 2.5D stack and the slice dataset (hcc_utils.stack, hcc_utils.slices; docs/method.md section 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from _volumes import (
    blobs,
    cohort_table,
    patient_files,
    small_params,
    ties_to_higher_index,
    volume,
    with_lesion,
    write,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hcc_utils import slices
from hcc_utils.config import PreprocessConfig, SlicesConfig
from hcc_utils.preprocess import axial_grid, resample, window
from hcc_utils.run_folder import RunFolder
from hcc_utils.stack import find_lesion, first_usable_views, plan_stack, resampling_views, stack_from_images

OFFSETS = [-9, -7, -4, -2, -1, 0, 1, 2, 4, 7, 9]


def _iso_volume(depth: int = 30, side: int = 40) -> sitk.Image:
    return volume(shape_zyx=(depth, side, side), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))


def _mask_from_slices(reference: sitk.Image, squares: dict[int, tuple[int, int]]) -> sitk.Image:
    """A mask with a rectangle of (height, width) pixels centred at (20, 20) on each given slice."""
    values = np.zeros(sitk.GetArrayViewFromImage(reference).shape, dtype=np.uint8)
    for z, (h, w) in squares.items():
        values[z, 20 - h // 2:20 - h // 2 + h, 20 - w // 2:20 - w // 2 + w] = 1
    mask = sitk.GetImageFromArray(values)
    mask.CopyInformation(reference)
    return mask


def _plan(mask: sitk.Image, image: sitk.Image, margin_mm: float = 0.0, offsets=OFFSETS):
    return plan_stack(find_lesion(mask, SlicesConfig()), axial_grid(image), offsets, margin_mm)


def test_central_slice_is_the_largest_cross_section():
    image = _iso_volume()
    squares = {10: (3, 3), 11: (5, 5), 12: (7, 7), 13: (5, 5), 14: (3, 3)}
    plan = _plan(_mask_from_slices(image, squares), image)
    assert plan.central_index == 12
    assert plan.indices == [3, 5, 8, 10, 11, 12, 13, 14, 16, 19, 21]
    assert plan.tumour_area_mm2 == pytest.approx(49.0)
    assert plan.max_diameter_mm == pytest.approx(7 * np.sqrt(2))
    assert plan.areas_mm2 == {10: 9.0, 11: 25.0, 12: 49.0, 13: 25.0, 14: 9.0}


@pytest.mark.parametrize("squares, central", [({10: (3, 3), 11: (3, 3), 12: (2, 2)}, 11),
                                              ({9: (2, 2), 10: (3, 3), 11: (3, 3)}, 10)])
def test_a_tie_goes_to_the_slice_nearest_the_centroid(squares, central):
    image = _iso_volume()
    assert _plan(_mask_from_slices(image, squares), image).central_index == central


def test_crop_box_is_square_about_the_central_tumour_plus_margin():
    image = _iso_volume()
    mask = _mask_from_slices(image, {12: (4, 10)})  # rows 18..21, columns 15..24
    plan = _plan(mask, image)
    assert plan.crop_side == 10 and plan.crop_start == (15, 15)  # x from 15, y widened 18..21 -> 15..24
    wide = _plan(mask, image, margin_mm=3.0)
    assert wide.crop_side == 16 and wide.crop_start == (12, 12)


def test_offsets_leaving_the_volume_are_clamped_and_recorded():
    image = _iso_volume(depth=30)
    mask = _mask_from_slices(image, {1: (5, 5), 2: (6, 6), 3: (5, 5)})
    stack = stack_from_images(image, mask, PreprocessConfig(), SlicesConfig(size=32))
    info = stack.info
    assert info["central_index"] == 2
    assert info["indices"] == [0, 0, 0, 0, 1, 2, 3, 4, 6, 9, 11]
    assert info["clamped_offsets"] == [-9, -7, -4]
    assert info["requested_indices"][:3] == [-7, -5, -2]
    assert any("offsets [-9, -7, -4] fall outside the volume" in w for w in info["warnings"])
    assert np.array_equal(stack.images[0], stack.images[2])  # clamped offsets repeat slice 0


def test_stack_is_windowed_cropped_and_resized():
    image = volume(shape_zyx=(16, 48, 48), spacing=(0.7, 0.7, 3.0))
    mask = blobs(image, [(8, 24, 24)], [(3, 9, 9)])
    stack = stack_from_images(with_lesion(image, mask, hu=20.0), mask, PreprocessConfig(),
                              SlicesConfig(size=64))
    assert stack.images.shape == stack.masks.shape == (11, 64, 64)
    assert stack.images.dtype == np.float32 and 0.0 <= stack.images.min() and stack.images.max() <= 1.0
    centre = stack.images[5, 28:36, 28:36]
    assert centre == pytest.approx(window(np.array([20.0]))[0], abs=0.02)  # lesion HU after the window
    assert set(np.unique(stack.masks)) == {0, 1} and stack.masks[5].mean() > 0.6


def test_slab_resampling_equals_full_volume_resampling_then_crop():
    image = sitk.Cast(volume(shape_zyx=(14, 60, 60), spacing=(0.74, 0.74, 5.0), seed=5), sitk.sitkFloat32)
    mask = blobs(image, [(7, 30, 28)], [(1.5, 10, 12)])
    image = with_lesion(image, mask, hu=0.0)
    pre, cfg = PreprocessConfig(), SlicesConfig(size=48)
    stack = stack_from_images(image, mask, pre, cfg)
    full = sitk.GetArrayFromImage(resample(image, pre.spacing_mm, "bspline", pre.outside_value_hu))
    box = stack.info["crop_box_voxels"]
    crops = full[stack.info["indices"], box["y0"]:box["y1"], box["x0"]:box["x1"]]
    expected = [np.asarray(Image.fromarray(np.ascontiguousarray(c)).resize((48, 48),
                                                                          Image.Resampling.BILINEAR))
                for c in window(crops)]
    assert np.abs(stack.images - np.clip(np.stack(expected), 0, 1)).max() < 1e-5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(3, 14), side=st.integers(12, 28), in_plane=st.floats(0.5, 1.6),
       thickness=st.floats(0.8, 5.0), cz=st.floats(0, 1), cy=st.floats(0.2, 0.8), cx=st.floats(0.2, 0.8),
       rz_mm=st.floats(1.5, 8), ry_mm=st.floats(1.5, 6), rx_mm=st.floats(1.5, 6), second=st.booleans(),
       offsets=st.lists(st.integers(-12, 12), min_size=1, max_size=6, unique=True))
def test_indices_stay_inside_and_central_slice_has_the_largest_area(depth, side, in_plane, thickness, cz,
                                                                     cy, cx, rz_mm, ry_mm, rx_mm, second,
                                                                     offsets):
    image = volume(shape_zyx=(depth, side, side), spacing=(in_plane, in_plane, thickness))
    centres = [((depth - 1) * cz, (side - 1) * cy, (side - 1) * cx)]
    radii = [(rz_mm / thickness, ry_mm / in_plane, rx_mm / in_plane)]  # >= 3 mm across: not lost at 1 mm
    if second:  # a satellite far from the main lesion
        centres.append(((depth - 1) * (1 - cz), (side - 1) * (1 - cy), (side - 1) * (1 - cx)))
        radii.append((0.6, 1.0, 1.0))
    mask = blobs(image, centres, radii)
    if not sitk.GetArrayViewFromImage(mask).any():
        return
    offsets = sorted(set(offsets) | {0})
    lesion = find_lesion(mask, SlicesConfig())
    grid = axial_grid(image)
    plan = plan_stack(lesion, grid, offsets)
    assert all(0 <= i < grid.size[2] for i in plan.indices)
    assert plan.indices[offsets.index(0)] == plan.central_index
    # independent: the kept lesion resampled over the whole grid, its largest axial area
    full = sitk.GetArrayFromImage(sitk.Resample(
        ties_to_higher_index(lesion.image), [int(s) for s in grid.size], sitk.Transform(),
        sitk.sitkNearestNeighbor, grid.origin, grid.spacing, grid.direction, 0, sitk.sitkUInt8))
    areas = full.sum(axis=(1, 2))
    assert areas[plan.central_index] == areas.max()
    ys, xs = np.nonzero(full[plan.central_index])
    x0, y0 = plan.crop_start
    assert x0 <= xs.min() and xs.max() < x0 + plan.crop_side
    assert y0 <= ys.min() and ys.max() < y0 + plan.crop_side


def test_a_lesion_lost_by_resampling_is_reported():
    from hcc_utils.inputs_check import PatientInputError

    image = volume(shape_zyx=(6, 20, 20), spacing=(0.3, 0.3, 0.3))
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    mask[10, 10, 3] = 1  # a single 0.3 mm voxel, between the 1 mm grid's points
    with pytest.raises(PatientInputError, match="smaller than one resampled voxel"):
        stack_from_images(image, mask, PreprocessConfig(), SlicesConfig(size=32), "P1", "P1_mask.nii.gz")


def _cohort(tmp_path, n: int = 3, **geometry):
    return cohort_table({f"P{k:02d}": patient_files(tmp_path / "data", f"P{k:02d}", **geometry)
                         for k in range(n)})


def test_slice_dataset_is_written_aligned_and_reused(tmp_path, monkeypatch):
    cohort = _cohort(tmp_path)
    params, run = small_params(), RunFolder(tmp_path / "run")
    data = slices.build_slice_dataset(cohort, params, run, progress=False)
    assert data.images.shape == (3, 11, 64, 64) and data.images.dtype == np.uint8
    assert data.masks.shape == data.images.shape
    assert data.offsets == OFFSETS
    assert data.patients["patient_id"].tolist() == ["P00", "P01", "P02"]
    assert data.patients["er"].tolist() == cohort["er"].tolist()
    assert data.patients["split"].tolist() == cohort["split"].tolist()
    again = slices.load_slice_dataset(run)
    assert np.array_equal(again.images, data.images)
    first = np.load(run.cache / "stacks" / "P01.npz")["images"]
    assert np.array_equal(data.images[1], first)
    info = json.loads((run.cache / "stacks" / "P01.json").read_text())
    assert {"central_index", "indices", "crop_box_voxels", "crop_box_mm", "clamped_offsets",
            "tumour_area_mm2", "max_diameter_mm", "n_lesion_components"} <= set(info)
    table = slices.stack_info_table(run)
    assert table["patient_id"].tolist() == ["P00", "P01", "P02"] and (table["tumour_area_mm2"] > 0).all()

    def fail(*args, **kwargs):
        raise AssertionError("a cached stack was recomputed")

    monkeypatch.setattr("hcc_utils.stack.make_stack", fail)
    rerun = slices.build_slice_dataset(cohort, params, run, progress=False)
    assert np.array_equal(rerun.images, data.images)


def test_changed_parameters_recompute_the_stacks(tmp_path):
    cohort = _cohort(tmp_path, n=1)
    run = RunFolder(tmp_path / "run")
    slices.build_slice_dataset(cohort, small_params(), run, progress=False)
    data = slices.build_slice_dataset(cohort, small_params(offsets=[-1, 0, 1], size=32), run, progress=False)
    assert data.images.shape == (1, 3, 32, 32) and data.offsets == [-1, 0, 1]


def test_parallel_build_gives_the_same_dataset(tmp_path):
    cohort = _cohort(tmp_path)
    serial = slices.build_slice_dataset(cohort, small_params(), RunFolder(tmp_path / "a"), progress=False)
    parallel = slices.build_slice_dataset(cohort, small_params(), RunFolder(tmp_path / "b"), n_jobs=2,
                                          progress=False)
    assert np.array_equal(serial.images, parallel.images)


def test_clamped_offsets_table_lists_patient_and_offset(tmp_path):
    folder = tmp_path / "data"
    entries = {"P00": patient_files(folder, "P00"),
               "EDGE": patient_files(folder, "EDGE", centres=((1, 20, 20),), radii=((1, 6, 6),))}
    run = RunFolder(tmp_path / "run")
    slices.build_slice_dataset(cohort_table(entries), small_params(), run, progress=False)
    table = slices.clamped_offsets_table(run)
    assert set(table["patient_id"]) == {"EDGE"}
    assert table["offset"].tolist() == sorted(table["offset"].tolist()) and table["offset"].max() < 0
    assert (table["used_index"] == 0).all() and (table["requested_index"] < 0).all()
    warned = run.exclusions("slices")
    assert set(warned["patient_id"]) == {"EDGE"} and set(warned["severity"]) == {"warning"}


def test_load_without_a_dataset_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="02_slices_2p5d"):
        slices.load_slice_dataset(RunFolder(tmp_path))


def crop_cli(image, mask, out, params, *more: str) -> int:
    """``python -m hcc_utils crop`` as a user calls it."""
    from hcc_utils.__main__ import main

    return main(["crop", "--image", str(image), "--mask", str(mask), "--out", str(out)]
                + (["--params", str(params)] if params else []) + list(more))


def test_crop_cli_writes_pngs_and_stack_json(tmp_path, capsys):
    image, mask = patient_files(tmp_path, "P00")
    out = tmp_path / "out"
    assert crop_cli(image, mask, out, None) == 0
    names = sorted(p.name for p in out.glob("slice_*.png"))
    assert names == sorted(f"slice_{o}.png" for o in OFFSETS)
    png = Image.open(out / "slice_0.png")
    assert png.mode == "L" and png.size == (224, 224)
    info = json.loads((out / "stack.json").read_text())
    assert info["indices"][OFFSETS.index(0)] == info["central_index"]
    assert {"crop_box_voxels", "crop_box_mm", "clamped_offsets", "requested_indices"} <= set(info)
    assert "wrote 11 slices" in capsys.readouterr().out


def test_crop_cli_reads_stage_sections_of_a_params_file(tmp_path):
    image, mask = patient_files(tmp_path, "P00")
    params = tmp_path / "p.yaml"
    params.write_text("slices:\n  offsets: [-2, 0, 2]\n  size: 32\npreprocess:\n  interpolator: linear\n")
    assert crop_cli(image, mask, tmp_path / "out", params) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["slice_-2.png", "slice_0.png",
                                                                        "slice_2.png"]
    assert json.loads((tmp_path / "out" / "stack.json").read_text())["preprocess"]["interpolator"] == "linear"


def test_crop_cli_bad_params_and_bad_input_print_one_line(tmp_path, capsys):
    image, mask = patient_files(tmp_path, "P00")
    params = tmp_path / "p.yaml"
    params.write_text("slices:\n  offsets: [-2, 2]\n")
    assert crop_cli(image, mask, tmp_path / "out", params) == 2
    assert crop_cli(image, tmp_path / "nope.nii.gz", tmp_path / "out", None) == 2
    empty = write(blobs(sitk.ReadImage(str(image)), [], []), tmp_path / "empty.nii.gz")
    assert crop_cli(image, empty, tmp_path / "out", None) == 2
    assert crop_cli(image, mask, tmp_path / "out", tmp_path / "missing.yaml") == 2
    (tmp_path / "afile").write_text("")
    assert crop_cli(image, mask, tmp_path / "afile" / "out", None) == 2
    printed = capsys.readouterr()
    lines = printed.err.strip().splitlines()
    assert printed.out == "" and "Traceback" not in printed.err
    assert len(lines) == 5 and all(line.startswith("error: ") for line in lines)
    assert "offsets must contain 0" in lines[0]
    assert "file 'nope.nii.gz': mask not found" in lines[1]
    assert "file 'empty.nii.gz': mask is empty" in lines[2]
    assert "missing.yaml: parameter file not found" in lines[3]
    assert lines[4] == "error: --out 'out': 'afile' above it is a file, not a folder; choose another --out"
    assert not (tmp_path / "out").exists()


def test_crop_cli_writes_into_a_folder_with_files_only_with_force(tmp_path, capsys):
    image, mask = patient_files(tmp_path, "P00")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "slice_0.png").write_bytes(b"an earlier crop")
    assert crop_cli(image, mask, out, None) == 2
    printed = capsys.readouterr()
    assert printed.err.strip() == ("error: --out 'out' is not empty; choose another folder or add --force (which "
                                   "overwrites only the files this command writes)")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "slice_0.png"]
    assert (out / "slice_0.png").read_bytes() == b"an earlier crop"
    assert crop_cli(image, mask, out, None, "--force") == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert Image.open(out / "slice_0.png").size == (224, 224) and (out / "stack.json").is_file()


@pytest.fixture(scope="module")
def synthetic_cohort(tmp_path_factory):
    from hcc_utils import synth
    from hcc_utils.cohort import load_manifest
    from hcc_utils.synth.params import SyntheticCohort

    folder = tmp_path_factory.mktemp("synthetic")  # seed 7: 3 ER and 5 NER (seed 3 drew ER for all 8, which
    # load_manifest now refuses: the models need both outcomes)
    manifest = synth.generate_cohort(SyntheticCohort(n=8, seed=7, image_size=64), folder, n_jobs=1,
                                     progress=False)
    table = load_manifest(manifest)
    table["split"] = ["train", "validation"] * 4
    return table


def test_synthetic_cohort_gives_a_stack_for_every_patient(synthetic_cohort, tmp_path):
    run = RunFolder(tmp_path / "run")
    data = slices.build_slice_dataset(synthetic_cohort, small_params(), run, progress=False)
    assert data.patients["patient_id"].tolist() == synthetic_cohort["patient_id"].tolist()
    assert (data.masks[:, OFFSETS.index(0)].reshape(8, -1).sum(axis=1) > 0).all()
    assert set(run.exclusions("slices")["severity"]) <= {"warning"}


def test_figures_of_notebooks_01_and_02(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from hcc_utils.plots import slices as figures

    cohort = _cohort(tmp_path)
    run = RunFolder(tmp_path / "run")
    data = slices.build_slice_dataset(cohort, small_params(), run, progress=False)
    views = resampling_views(cohort.loc[0, "image"], cohort.loc[0, "mask"], PreprocessConfig(),
                                   SlicesConfig(), "P00", half_width_mm=15)
    fig = figures.resampling_figure(views, PreprocessConfig(), "P00")
    assert len(fig.axes) == 8  # 4 views + their colour bars
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert [t.split(":")[0] for t in titles] == ["before", "before", "after", "after"]
    montage = figures.stack_montage(data, ["P02", "P00"])
    assert len(montage.axes) == 2 * 11 and montage.axes[0].get_ylabel() == "P02"
    assert len(figures.stack_montage(slices.load_slice_dataset(run), n=2).axes) == 2 * 11
    assert first_usable_views(cohort, PreprocessConfig(), SlicesConfig())[0] == "P00"
    sizes = figures.tumour_size_figure(slices.stack_info_table(run))
    assert "(mm)" in sizes.axes[1].get_xlabel()
