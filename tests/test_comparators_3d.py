"""Notebook 11's 3D CNN comparator (hcc_utils.comparators_3d): the tumour cube, the model, leak-free training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from _volumes import realdata_dir

from hcc_utils.cnn_train import safe_auc
from hcc_utils.comparators_3d import build_cnn3d, train_cnn3d, tumour_box, tumour_volume
from hcc_utils.config import CNNConfig, PreprocessConfig, SlicesConfig
from hcc_utils.config_comparators import CNN3DConfig
from hcc_utils.inputs_check import PatientInputError
from hcc_utils.progress import ENV
from hcc_utils.stack import find_lesion

RADIUS_MM = 8.0


def _ball_case(label: int = 1) -> tuple[sitk.Image, sitk.Image]:
    """0 HU volume (0.8 x 0.8 x 3 mm voxels, axes turned 20 degrees about z and z flipped) with a 150 HU ball of
    radius 8 mm centred on voxel (x 24, y 22, z 9); its extent along x and y is 21 voxels = 16.8 mm."""
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    shape_zyx = (18, 44, 48)
    image = sitk.GetImageFromArray(np.zeros(shape_zyx, dtype=np.int16))
    image.SetSpacing((0.8, 0.8, 3.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, -1.0))
    zz, yy, xx = np.indices(shape_zyx)
    offsets_mm = np.stack([(xx - 24) * 0.8, (yy - 22) * 0.8, (zz - 9) * 3.0])  # axes orthonormal: distances hold
    inside = (offsets_mm ** 2).sum(axis=0) <= RADIUS_MM ** 2
    values = np.where(inside, 150, 0).astype(np.int16)
    out, mask = sitk.GetImageFromArray(values), sitk.GetImageFromArray((inside * label).astype(np.uint8))
    out.CopyInformation(image)
    mask.CopyInformation(image)
    return out, mask


def test_tumour_volume_is_a_cube_centred_on_the_ball_that_shrinks_with_the_margin():
    image, mask = _ball_case()
    pre, slices = PreprocessConfig(), SlicesConfig()
    lesion = find_lesion(mask, slices)
    for margin in (0.0, 5.0):
        grid = tumour_box(lesion, image, 16, margin)
        assert grid.size == (16, 16, 16) and len(set(grid.spacing)) == 1
        assert grid.spacing[0] * 16 == pytest.approx(21 * 0.8 + 2 * margin)
        assert np.asarray(grid.direction).reshape(3, 3)[2, 2] == pytest.approx(1.0)  # z flipped to point S
    assert tumour_box(lesion, image, 16, 0.0).spacing[0] * 16 == pytest.approx(16.8)
    bright = {}
    for margin in (0.0, 5.0):
        cube = tumour_volume(image, mask, pre, slices, 16, margin, "P001")
        assert cube.shape == (16, 16, 16) and cube.dtype == np.uint8
        inside = cube > (88 + 236) / 2  # 0 HU -> 88, 150 HU -> 236 in the paper's window
        assert cube[7:9, 7:9, 7:9].min() > 220
        centroid = np.argwhere(inside).mean(axis=0)
        np.testing.assert_allclose(centroid, 7.5, atol=0.3)
        bright[margin] = int(inside.sum())
    assert cube[0, 0, 0] < 100  # margin 5 mm: the corners are background
    assert 3.0 < bright[0.0] / bright[5.0] < 5.5  # volume ratio (26.8 / 16.8)^3 = 4.1


def test_tumour_volume_names_the_patient_when_the_mask_lacks_the_label():
    image, mask = _ball_case(label=2)
    with pytest.raises(PatientInputError, match="P042.*no voxel with label 1"):
        tumour_volume(image, mask, PreprocessConfig(), SlicesConfig(), 16, 5.0, "P042", "P042_mask.nii.gz")


@pytest.mark.realdata
def test_tumour_volume_on_real_ct():
    folder = realdata_dir("pyradiomics_lung1")
    image = sitk.ReadImage(str(folder / "lung1_image.nrrd"))
    mask = sitk.ReadImage(str(folder / "lung1_label.nrrd"))
    pre, slices = PreprocessConfig(), SlicesConfig()
    cube = tumour_volume(image, mask, pre, slices, 16, 5.0, "lung1")
    assert cube.shape == (16, 16, 16) and cube.dtype == np.uint8
    from hcc_utils.preprocess import resample_onto

    grid = tumour_box(find_lesion(mask, slices), image, 16, 5.0)
    tumour = sitk.GetArrayFromImage(resample_onto(mask, grid, "nearest", 0, sitk.sitkUInt8)) > 0
    ends = np.argwhere(tumour)
    np.testing.assert_allclose((ends.min(axis=0) + ends.max(axis=0)) / 2, 7.5, atol=1.0)
    assert cube[tumour].mean() > cube[~tumour].mean() + 50  # soft-tissue tumour in aerated lung


def _toy(n: int, size: int = 8, seed: int = 0, gap: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """n cubes, half of each class; class 1 is brighter by ``gap`` grey levels (0: labels carry no signal)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    volumes = rng.integers(0, 256 - gap, (n, size, size, size)) + gap * labels[:, None, None, None]
    return volumes.astype(np.uint8), labels, [f"P{k:03d}" for k in range(n)]


def _masks(n: int, n_fit: int, n_select: int) -> tuple[np.ndarray, np.ndarray]:
    fit, select = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    fit[:n_fit], select[n_fit:n_fit + n_select] = True, True
    return fit, select


CNN = CNNConfig(progress=False)


def test_the_3d_model_sees_training_patients_only_and_one_seed_gives_one_result():
    volumes, labels, ids = _toy(16, gap=40)
    fit, select = _masks(16, 8, 4)
    cfg = CNN3DConfig(size=8, epochs=2, batch_size=4)
    first = train_cnn3d(volumes, labels, ids, fit, select, cfg, CNN, seed=3)
    assert np.array_equal(train_cnn3d(volumes, labels, ids, fit, select, cfg, CNN, seed=3).prob, first.prob)
    assert first.fit_ids == ids[:8] and first.select_ids == ids[8:12]
    assert not set(first.fit_ids + first.select_ids) & set(ids[12:])
    assert first.prob.shape == (16,) and np.isfinite(first.prob).all()
    changed, flipped = volumes.copy(), labels.copy()
    changed[12:] = np.random.default_rng(9).integers(0, 256, changed[12:].shape)
    flipped[12:] = 1 - flipped[12:]
    second = train_cnn3d(changed, flipped, ids, fit, select, cfg, CNN, seed=3)
    assert second.best_epoch == first.best_epoch
    assert second.history[["loss", "selection_auc"]].equals(first.history[["loss", "selection_auc"]])
    assert np.array_equal(second.prob[:12], first.prob[:12])
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    assert not np.array_equal(second.prob[12:], first.prob[12:])  # the validation rows are predicted


def test_a_learnable_toy_is_learnt_with_one_summary_line(monkeypatch, capsys):
    volumes, labels, ids = _toy(24, gap=80, seed=1)
    fit, select = _masks(24, 12, 6)
    monkeypatch.setenv(ENV, "summary")
    result = train_cnn3d(volumes, labels, ids, fit, select, CNN3DConfig(size=8, epochs=4, batch_size=4),
                         CNNConfig(), seed=5)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("3D ResNet-10: 4 epochs in ")
    validation = ~fit & ~select
    assert safe_auc(labels[validation], result.prob[validation]) == 1.0
    assert result.selection_auc == 1.0
    assert list(result.history.columns) == ["epoch", "loss", "selection_auc", "seconds"]


def test_one_class_select_rows_keep_the_last_epoch_and_one_class_fit_rows_are_refused():
    volumes, labels, ids = _toy(12)
    fit, select = _masks(12, 8, 2)
    labels[8:10] = 1
    result = train_cnn3d(volumes, labels, ids, fit, select, CNN3DConfig(size=8, epochs=2, batch_size=4), CNN, 0)
    assert result.best_epoch == 2 and math.isnan(result.selection_auc)
    assert any("last epoch (2) is kept" in note for note in result.notes)
    labels[:8] = 0
    with pytest.raises(ValueError, match="must hold both classes"):
        train_cnn3d(volumes, labels, ids, fit, select, CNN3DConfig(size=8, epochs=1, batch_size=4), CNN, 0)


def test_build_cnn3d_takes_one_channel_and_gives_two_logits():
    model = build_cnn3d().eval()
    stem = model.stem[0]
    assert stem.in_channels == 1 and stem.kernel_size == (3, 7, 7) and stem.stride == (1, 2, 2)
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 16, 16, 16)).shape == (2, 2)
