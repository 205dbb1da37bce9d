"""Grad-CAM of the chosen slice CNN on its last convolutional block (paper Fig. 3c,d; docs/method.md section 3).

Uses the ``grad-cam`` package (``pytorch_grad_cam.GradCAM``): the class-1 (ER) logit's gradients, averaged over
the block's feature map, weight its channels; the ReLU of the weighted sum, upsampled to the input and scaled to
[0, 1], is the map. The block's resolution is input/32 (7x7 at the paper's 224 px, 2x2 at 64 px), so small CPU
inputs give coarse maps.

Two representative validation patients are shown on their central slice: the ER patient with the highest
probability and the NER patient with the lowest (the model's most confident correct calls); when a set lacks one
of them the other set or the other extreme is used and the title says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from hcc_utils.cnn import downstream_predictions, last_conv_block, load_choice, load_trained_model
from hcc_utils.cnn_train import network_input, resize_slices
from hcc_utils.config import Params
from hcc_utils.run_folder import RunFolder


@dataclass
class GradCAMExample:
    """One slice with its Grad-CAM: ``image`` and ``cam`` are (size, size) floats in [0, 1]; ``mask`` the tumour
    (same size, bool) when the dataset has masks."""

    title: str
    er: int
    prob: float
    image: np.ndarray
    cam: np.ndarray
    mask: np.ndarray | None = None


def gradcam_maps(model: torch.nn.Module, architecture: str, slices: np.ndarray, size: int,
                 target_class: int = 1) -> np.ndarray:
    """Grad-CAM maps ``(k, size, size)`` in [0, 1] of uint8 slices ``(k, S, S)`` for ``target_class`` (1 = ER).

    The slices go through the same resizing and ImageNet normalisation as at inference; ``model`` stays in eval
    mode and in fp32.
    """
    device = next(model.parameters()).device
    x = network_input(resize_slices(torch.as_tensor(slices[:, None], device=device), size))
    with GradCAM(model=model, target_layers=[last_conv_block(model, architecture)]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(target_class)] * len(x))
    return np.asarray(maps, dtype=np.float32)


def _pick(candidates: pd.DataFrame, er: int, highest: bool) -> tuple[pd.Series, str] | None:
    rows = candidates[candidates["er"] == er].sort_values("prob", ascending=not highest, kind="stable")
    return None if rows.empty else (rows.iloc[0], "highest" if highest else "lowest")


def representative_slices(predictions: pd.DataFrame) -> list[tuple[pd.Series, str]]:
    """Central-slice rows of two representative patients and their titles (validation first, then train)."""
    central = predictions[predictions["offset"] == 0]
    picks = []
    for er, highest in ((1, True), (0, False)):
        for dataset in ("validation", "train"):
            found = _pick(central[central["split"] == dataset], er, highest)
            if found is not None:
                row, extreme = found
                group = "ER" if er else "NER"
                picks.append((row, f"{dataset.capitalize()} {group} patient, {extreme} probability "
                                   f"(p = {row['prob']:.2f})"))
                break
    return picks


def representative_examples(dataset, params: Params, run: RunFolder) -> list[GradCAMExample]:
    """Grad-CAM of the downstream architecture on the central slice of two representative patients.

    ``dataset`` is the slice dataset (``slices.load_slice_dataset``); patient identifiers are not shown.
    """
    choice = load_choice(run)
    architecture = choice["key"]
    size = params.cnn.size_of(architecture)
    model = load_trained_model(run, architecture)
    patients = dataset.patients.reset_index(drop=True)
    position = {pid: i for i, pid in enumerate(patients["patient_id"].astype(str))}
    centre = list(dataset.offsets).index(0)
    examples = []
    for row, title in representative_slices(downstream_predictions(run)):
        i = position[str(row["patient_id"])]
        image = dataset.images[i, centre]
        cam = gradcam_maps(model, architecture, image[None], size)[0]
        shown = resize_slices(torch.as_tensor(image[None, None]), size)[0, 0].numpy() / 255.0
        mask = None
        if getattr(dataset, "masks", None) is not None:
            mask = resize_slices(torch.as_tensor(dataset.masks[i, centre][None, None]), size)[0, 0].numpy() > 0.5
        examples.append(GradCAMExample(title=title, er=int(row["er"]), prob=float(row["prob"]),
                                       image=np.clip(shown, 0, 1), cam=cam, mask=mask))
    return examples
