"""Notebook 11's 3D CNN comparator (issue 19): a 3D ResNet trained from scratch on a cube around the tumour.

beyond the paper: instead of 11 axial slices, a 3D ResNet-10 (:func:`build_cnn3d`) sees the tumour's whole
bounding box, resampled to a cube of ``size``^3 isotropic voxels and windowed like the slices (docs/method.md
sections 1 and 12). Training follows the 2D CNNs' recipe (``hcc_utils.cnn_train``): SGD with momentum and weight
decay, the learning rate cosine-annealed per iteration, cross-entropy on two classes, the first epoch with the
best eval-mode AUC on the selection rows kept. Augmentation is a random flip along each axis. Everything fitted
(voxel standardisation, weights, epoch) sees only the ``fit`` rows (weights, standardisation) and the ``select``
rows (epoch); any other row is only predicted::

    >>> cube = tumour_volume(image, mask, params.preprocess, params.slices, size=32, margin_mm=5.0)
    >>> result = train_cnn3d(cubes, er, ids, fit, select, params.comparators.cnn3d, params.cnn, seed=0)
    >>> result.prob.shape, result.best_epoch
    ((134,), 7)
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch

from hcc_utils.cnn_train import autocast_for, batches_per_epoch, safe_auc, sgd_step, torch_settings
from hcc_utils.config import CNNConfig, PreprocessConfig, SlicesConfig
from hcc_utils.config_comparators import CNN3DConfig
from hcc_utils.inputs_check import PatientInputError
from hcc_utils.preprocess import Grid, axial_grid, check_same_geometry, resample_onto, window
from hcc_utils.progress import plural, progress, summary_mode
from hcc_utils.stack import Lesion, find_lesion

MIN_SIDE_MM = 10.0
EVAL_BATCH = 32  # volumes per inference batch (a 32^3 batch of 32: ~0.5 GB of activations)
HISTORY_COLUMNS = ["epoch", "loss", "selection_auc", "seconds"]


def tumour_box(lesion: Lesion, image: sitk.Image, size: int, margin_mm: float) -> Grid:
    """The cube of ``size``^3 isotropic voxels about the kept lesion, on the axes of ``axial_grid(image)``.

    The lesion's bounding box is taken from its voxels' outer corners, measured along the output axes (nearest
    L, P, S); the cube is centred on it, with side = the box's largest extent + 2 * ``margin_mm`` (at least
    ``MIN_SIDE_MM``), so the voxel spacing is side / size mm.
    """
    axes = np.asarray(axial_grid(image, None).direction, dtype=float).reshape(3, 3)  # columns: the output axes
    inside = np.argwhere(sitk.GetArrayViewFromImage(lesion.image) > 0)[:, ::-1]  # (x, y, z) indices
    low, high = inside.min(axis=0), inside.max(axis=0)
    corners = np.array(list(itertools.product(*[(a - 0.5, b + 0.5) for a, b in zip(low, high, strict=True)])))
    along = Grid.of(lesion.image).to_physical(corners) @ axes  # mm along each output axis
    first, last = along.min(axis=0), along.max(axis=0)
    side = max(float((last - first).max()) + 2.0 * margin_mm, MIN_SIDE_MM)
    spacing = side / size
    start = (first + last) / 2.0 - side / 2.0 + spacing / 2.0  # the first voxel's centre, along the axes
    return Grid(tuple(axes @ start), (spacing,) * 3, tuple(axes.reshape(-1)), (size,) * 3)


def tumour_volume(image: sitk.Image, mask: sitk.Image, pre: PreprocessConfig, slices: SlicesConfig, size: int,
                  margin_mm: float, patient_id: str | None = None, mask_file: Path | str | None = None
                  ) -> np.ndarray:
    """The tumour's box as a cube of ``size``^3 voxels, uint8 (z, y, x), windowed like the 2.5D slices.

    The kept lesion (:func:`hcc_utils.stack.find_lesion` with ``slices``: the largest component unless
    ``slices.largest_component_only`` is off) gives the cube (:func:`tumour_box`): centred on its bounding box,
    side = the box's largest extent in mm + 2 * ``margin_mm`` (at least 10 mm), isotropic spacing side / size,
    axes of ``axial_grid(image)`` (z is the axial axis, nearest S). The image is sampled with
    ``pre.interpolator`` (no anti-aliasing when the cube's voxels are larger than the scan's), ``pre.
    outside_value_hu`` outside the scan, windowed (``pre.window_width_hu`` / ``window_level_hu``) and scaled to
    0..255.

    Raises:
        PatientInputError: image/mask geometry mismatch, a bad mask (as ``find_lesion``), NaN or infinite image
            voxels in the cube.
    """
    check_same_geometry(image, mask, pre.geometry_tolerance, patient_id, mask_file)
    lesion = find_lesion(mask, slices, patient_id, mask_file)
    grid = tumour_box(lesion, image, size, margin_mm)
    hu = sitk.GetArrayFromImage(resample_onto(image, grid, pre.interpolator, pre.outside_value_hu))
    if not np.isfinite(hu).all():
        raise PatientInputError(patient_id, None, "image holds NaN or infinite voxels near the tumour",
                                "export the image again (a failed conversion or resampling leaves these)")
    return np.rint(window(hu, pre.window_width_hu, pre.window_level_hu) * 255.0).astype(np.uint8)


def build_cnn3d() -> torch.nn.Module:
    """A 3D ResNet-10 from random weights, 2 classes, one input channel: torchvision's video ResNet
    (``VideoResNet(BasicBlock, [Conv3DSimple] * 4, [1, 1, 1, 1], BasicStem)``, r3d_18's design, Tran et al. 2018,
    with one basic block per stage instead of two; 14.3 M parameters instead of 33.1 M).

    Why not r3d_18: on the 2-core development CPU (2 threads, batch 8, 16^3 cubes, forward + backward + SGD step,
    ``benchmarks/cnn3d_throughput.py``) r3d_18 trained 3-5 volumes per wall second (4.3 per CPU second), so 10
    epochs of 134 patients took 300-470 s; the ResNet-10 trained 4-35 volumes/s (19 per CPU second; the machine
    was shared), about 40 s for those 10 epochs when the machine was quiet.

    The stem's first convolution takes 1 channel instead of 3 (same kernel 3x7x7, stride 1x2x2, padding 1x3x3,
    the same Kaiming initialisation). Input ``(B, 1, D, H, W)`` float; output ``(B, 2)`` logits. D is the axial
    axis, which the stem does not downsample (torchvision's video convention, D being time there).
    """
    from torchvision.models.video.resnet import BasicBlock, BasicStem, Conv3DSimple, VideoResNet

    return one_channel_stem(VideoResNet(BasicBlock, [Conv3DSimple] * 4, [1, 1, 1, 1], BasicStem, num_classes=2))


def one_channel_stem(model: torch.nn.Module) -> torch.nn.Module:
    """A torchvision VideoResNet whose stem's first convolution takes 1 channel (same kernel, stride, padding,
    bias and torchvision's Kaiming initialisation)."""
    old = model.stem[0]
    stem = torch.nn.Conv3d(1, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                           padding=old.padding, bias=old.bias is not None)
    torch.nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
    if stem.bias is not None:
        torch.nn.init.zeros_(stem.bias)
    model.stem[0] = stem
    return model


@dataclass
class CNN3DResult:
    """A trained 3D CNN's outcome: eval-mode P(ER) of every row with the chosen epoch's weights, and how it was
    chosen. ``history`` has one row per epoch (mean training loss, selection AUC, seconds of the training pass);
    ``best_epoch`` is 1-based; ``seconds`` the whole call's wall time."""

    prob: np.ndarray
    best_epoch: int
    selection_auc: float
    history: pd.DataFrame
    fit_ids: list[str]
    select_ids: list[str]
    seconds: float
    notes: list[str] = field(default_factory=list)
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False)


@torch.no_grad()
def _predict(model: torch.nn.Module, volumes: torch.Tensor, rows: np.ndarray, scale: float, shift: float,
             device: torch.device, cnn: CNNConfig) -> np.ndarray:
    """Eval-mode P(class 1) of ``volumes[rows]``, in batches of ``EVAL_BATCH``."""
    model.eval()
    out = np.empty(len(rows))
    for start in range(0, len(rows), EVAL_BATCH):
        part = torch.as_tensor(rows[start:start + EVAL_BATCH], device=device)
        with autocast_for(device, cnn):
            logits = model(volumes[part].float() * scale + shift)
        out[start:start + len(part)] = logits.float().softmax(dim=1)[:, 1].cpu().double().numpy()
    return out


def train_cnn3d(volumes: np.ndarray, labels: np.ndarray, ids: list[str], fit: np.ndarray, select: np.ndarray,
                cfg: CNN3DConfig, cnn: CNNConfig, seed: int, device: torch.device | str = "cpu",
                desc: str = "3D ResNet-10") -> CNN3DResult:
    """Train :func:`build_cnn3d` on the ``fit`` rows, choose the epoch on the ``select`` rows, predict every row.

    Args:
        volumes: uint8 ``(n, S, S, S)`` cubes (:func:`tumour_volume`).
        labels: 0/1 ``(n,)`` (ER = 1).
        ids: the rows' patient ids (recorded in the result).
        fit, select: boolean ``(n,)`` masks: the rows that fit the weights and the voxel standardisation, and the
            rows whose eval-mode AUC chooses the epoch. Other rows (validation patients) are only predicted.
        cfg: ``params.comparators.cnn3d`` (epochs, batch_size; size and margin are the caller's, for the cubes).
        cnn: ``params.cnn`` for the recipe: ``lr``, ``momentum``, ``weight_decay``, threads, bf16, ``progress``.
        seed: seeds the weights (``torch.manual_seed``) and a generator for the shuffles and flips.

    The recipe: inputs x / 255 standardised with the mean and SD of the fit volumes' voxels; per epoch the fit
    rows shuffled into batches of ``cfg.batch_size`` (the last incomplete batch dropped, as for the 2D CNNs, so
    batch normalisation never sees a tiny batch), each volume flipped along each axis with
    probability 1/2; SGD with the learning rate cosine-annealed per iteration over ``cfg.epochs``. The first
    epoch with the best selection AUC is kept; when every epoch's AUC is undefined (the select rows hold one class
    or none), the last epoch, with a note. On CPU two calls with one seed and thread count give the same numbers.

    Raises:
        ValueError: inputs of inconsistent shapes, or fit rows without both classes.
    """
    start_time = time.perf_counter()
    volumes = np.asarray(volumes)
    labels = np.asarray(labels).astype(np.int64)
    fit, select = np.asarray(fit, dtype=bool), np.asarray(select, dtype=bool)
    n = len(volumes)
    same_length = len(labels) == len(ids) == len(fit) == len(select) == n
    if volumes.ndim != 4 or volumes.dtype != np.uint8 or not same_length:
        raise ValueError(f"train_cnn3d needs uint8 volumes (n, S, S, S) and n labels, ids, fit and select flags; "
                         f"got volumes {volumes.dtype} {volumes.shape}, {len(labels)} labels, {len(ids)} ids, "
                         f"{len(fit)} fit and {len(select)} select flags")
    fit_rows, select_rows = np.flatnonzero(fit), np.flatnonzero(select)
    if len(set(labels[fit_rows].tolist())) < 2:
        raise ValueError(f"the 3D CNN's fit rows ({len(fit_rows)} patients) must hold both classes (ER 0 and 1); "
                         f"they hold {sorted(set(labels[fit_rows].tolist()))}: check the split")
    notes = []
    if fit.any() and (fit & select).any():
        notes.append(f"{int((fit & select).sum())} rows both fit the weights and choose the epoch")
    fitted = volumes[fit_rows].astype(np.float64) / 255.0
    mean, sd = float(fitted.mean()), float(fitted.std())
    if not sd > 0:
        notes.append("the fit volumes are constant; standardised with SD 1")
        sd = 1.0
    scale, shift = 1.0 / (255.0 * sd), -mean / sd
    notes.append(f"input standardised with the fit volumes' voxel mean {mean:.4f} and SD {sd:.4f} (of x / 255)")
    device = torch.device(device)
    with torch_settings(cnn, device):
        torch.manual_seed(seed)
        model = build_cnn3d().to(device)
        generator = torch.Generator().manual_seed(seed)
        data = torch.from_numpy(np.ascontiguousarray(volumes)).unsqueeze(1).to(device)
        targets = torch.as_tensor(labels).to(device)
        optimiser = torch.optim.SGD(model.parameters(), lr=cnn.lr, momentum=cnn.momentum,
                                    weight_decay=cnn.weight_decay)
        n_batches = batches_per_epoch(len(fit_rows), cfg.batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=cfg.epochs * n_batches)
        history, best_state, best_epoch, best_score = [], None, 0, -math.inf
        summary = summary_mode()
        bar = progress(range(1, cfg.epochs + 1), desc=desc, unit="epoch",
                       disable=not cnn.progress or summary, mininterval=1.0)
        for epoch in bar:
            model.train()
            order = torch.as_tensor(fit_rows)[torch.randperm(len(fit_rows), generator=generator)]
            flips = torch.rand(len(fit_rows), 3, generator=generator) < 0.5
            order, flips = order.to(device), flips.to(device)
            epoch_start, loss_sum, seen = time.perf_counter(), torch.zeros((), device=device), 0
            for b in range(n_batches):
                rows = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                x = data[rows].float() * scale + shift
                for axis in range(3):
                    flip = flips[b * cfg.batch_size:b * cfg.batch_size + len(rows), axis].view(-1, 1, 1, 1, 1)
                    x = torch.where(flip, x.flip(2 + axis), x)
                loss, _ = sgd_step(model, optimiser, x, targets[rows], device, cnn)
                schedule.step()
                loss_sum += loss.detach() * len(rows)
                seen += len(rows)
            seconds = time.perf_counter() - epoch_start
            auc = safe_auc(labels[select_rows], _predict(model, data, select_rows, scale, shift, device, cnn))
            history.append({"epoch": epoch, "loss": float(loss_sum) / max(seen, 1), "selection_auc": auc,
                            "seconds": seconds})
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", sel_auc=f"{auc:.3f}")
            score = auc if math.isfinite(auc) else -math.inf
            if best_state is None or score > best_score or (best_score == -math.inf and score == -math.inf):
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best_epoch, best_score = epoch, score
        model.load_state_dict(best_state)
        prob = np.empty(n)
        for group in (fit_rows, np.flatnonzero(select & ~fit), np.flatnonzero(~fit & ~select)):
            prob[group] = _predict(model, data, group, scale, shift, device, cnn)
    selection_auc = best_score if best_score > -math.inf else float("nan")
    if math.isnan(selection_auc):
        classes = sorted(set(labels[select_rows].tolist()))
        notes.append(f"selection AUC undefined in every epoch ({len(select_rows)} select rows, classes {classes}): "
                     f"the last epoch ({best_epoch}) is kept")
    seconds = time.perf_counter() - start_time
    table = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    if cnn.progress and summary:
        per_epoch = min(len(fit_rows), n_batches * cfg.batch_size)
        print(cnn3d_summary(desc, table, per_epoch, best_epoch, selection_auc, seconds), flush=True)
    return CNN3DResult(prob=prob, best_epoch=best_epoch, selection_auc=selection_auc, history=table,
                       fit_ids=[str(ids[i]) for i in fit_rows], select_ids=[str(ids[i]) for i in select_rows],
                       seconds=seconds, notes=notes,
                       state_dict={k: v.cpu() for k, v in best_state.items()})


def cnn3d_summary(name: str, history: pd.DataFrame, volumes_per_epoch: int, best_epoch: int, selection_auc: float,
                  seconds: float) -> str:
    """One line on a finished training, in the 2D CNNs' style (``cnn_train.training_summary``): "3D ResNet-10: 20
    epochs in 95 s (31 volumes/s), best epoch 7, selection AUC 0.712". The rate is the training passes'."""
    train_seconds = float(history["seconds"].sum())
    rate = (f"{volumes_per_epoch * len(history) / train_seconds:.0f} volumes/s" if train_seconds > 0
            else "volumes/s not measured")
    chosen = (f"best epoch {best_epoch}, selection AUC {selection_auc:.3f}" if math.isfinite(selection_auc)
              else f"epoch {best_epoch} kept (selection AUC undefined in every epoch)")
    return f"{name}: {len(history)} {plural(len(history), 'epoch')} in {seconds:.0f} s ({rate}), {chosen}"
