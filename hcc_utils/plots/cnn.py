"""Figures of the slice-CNN chapter (notebook 03; the paper's Fig. 3).

* :func:`roc_curves`: slice-level ROC curves of the architectures on one set (Fig. 3a training, 3b validation).
* :func:`training_curves`: loss and AUC per epoch, the chosen checkpoint marked.
* :func:`gradcam_figure`: central slices of two representative patients with their Grad-CAM (Fig. 3c,d).

Every function returns a matplotlib Figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from hcc_utils.palette import OKABE_ITO

if TYPE_CHECKING:
    from hcc_utils.gradcam import GradCAMExample

ARCHITECTURE_COLOURS = {"ResNet18": OKABE_ITO["blue"], "ResNet101": OKABE_ITO["vermillion"],
                        "DenseNet121": OKABE_ITO["sky blue"]}
"""The paper's Fig. 3 colours (ResNet18 blue, ResNet101 red, DenseNet121 cyan) in their Okabe-Ito form."""
SET_TITLES = {"train": "Training slices", "validation": "Validation slices"}


def roc_curves(predictions: pd.DataFrame, table3: pd.DataFrame, dataset: str, ci_level: float = 0.95):
    """Slice-level ROC curve of each architecture on ``dataset`` (``train`` or ``validation``).

    Args:
        predictions: ``cnn.train_and_predict(...).predictions`` (architecture, split, er, prob per slice).
        table3: Table 3, for the AUC and its DeLong CI in the legend.
    """
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    part = predictions[predictions["split"] == dataset]
    for architecture, group in part.groupby("architecture", sort=False):
        row = table3[(table3["dataset"] == dataset) & (table3["architecture"] == architecture)].iloc[0]
        if group["er"].nunique() < 2:
            continue
        fpr, tpr, _ = roc_curve(group["er"], group["prob"])
        ax.plot(fpr, tpr, lw=1.8, color=ARCHITECTURE_COLOURS.get(architecture),
                label=f"{architecture}: AUC {row['auc']:.3f} ({row['auc_low']:.3f}–{row['auc_high']:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=0.8)
    n_slices = part.groupby("architecture").size().max() if len(part) else 0
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", xlabel="1 − specificity (fraction)",
           ylabel="Sensitivity (fraction)",
           title=f"{SET_TITLES.get(dataset, dataset)} (n = {n_slices} slices, "
                 f"{part['patient_id'].nunique()} patients)")
    ax.legend(loc="lower right", fontsize=8, title=f"AUC ({ci_level:.0%} CI, DeLong)", title_fontsize=8)
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame, choice: dict | None = None):
    """Mean training loss (left) and slice AUC per epoch (right): training pass (dashed, augmented, train mode)
    and the selection set (solid: inner validation under leak_free, validation under onekey_compat). A dot marks
    each architecture's chosen checkpoint."""
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    selected_on = (choice or {}).get("selected_on", "selection")
    best = (choice or {}).get("best_epoch", {})
    for architecture, group in history.groupby("architecture", sort=False):
        colour = ARCHITECTURE_COLOURS.get(architecture)
        ax_loss.plot(group["epoch"], group["loss"], marker=".", color=colour, label=architecture)
        ax_auc.plot(group["epoch"], group["train_auc"], ls="--", color=colour, alpha=0.7)
        ax_auc.plot(group["epoch"], group["selection_auc"], marker=".", color=colour, label=architecture)
        if architecture in best:
            chosen = group[group["epoch"] == best[architecture]]
            ax_auc.scatter(chosen["epoch"], chosen["selection_auc"], s=80, facecolor="none", edgecolor=colour,
                           lw=1.8, zorder=3)
    ax_loss.set(xlabel="Epoch", ylabel="Cross-entropy (mean over training slices)", title="Training loss")
    ax_auc.axhline(0.5, ls=":", color="0.6", lw=0.8)
    ax_auc.set(xlabel="Epoch", ylabel="Slice AUC", ylim=(0, 1),
               title=f"AUC: {selected_on.replace('_', ' ')} (solid), training pass (dashed)")
    ax_loss.legend(fontsize=8)
    ax_auc.legend(fontsize=8, loc="lower right")
    for ax in (ax_loss, ax_auc):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def gradcam_figure(examples: list[GradCAMExample], architecture: str = "", letters: str = "cd"):
    """Each example's central slice (top) and its Grad-CAM overlay (bottom, jet colour map, 0 = no evidence for
    ER, 1 = the most); the tumour outline in white when the dataset has masks. ``letters``: the paper's panel
    letters of the first columns (``""`` for none)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    n = max(len(examples), 1)
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n, 7.4), squeeze=False)
    for col, example in enumerate(examples):
        grey = np.repeat(example.image[..., None], 3, axis=2).astype(np.float32)
        overlay = show_cam_on_image(grey, example.cam, use_rgb=True, image_weight=0.55)
        axes[0, col].imshow(example.image, cmap="gray", vmin=0, vmax=1)
        axes[1, col].imshow(overlay)
        if example.mask is not None and example.mask.any():
            for ax in axes[:, col]:
                ax.contour(example.mask, levels=[0.5], colors="white", linewidths=0.8)
        axes[0, col].set_title(f"{letters[col] if col < len(letters) else ''}  {example.title}".strip(),
                               fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"Grad-CAM of {architecture} on its last convolutional block (class ER)" if architecture
                 else "Grad-CAM on the last convolutional block (class ER)", fontsize=10)
    fig.tight_layout()
    return fig
