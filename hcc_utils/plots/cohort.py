"""Figures of the cohort chapter (notebook 01): a gallery of tumour slices with the readers' contours."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _largest_slice(mask: np.ndarray) -> int:
    """Axial index (first axis of a SimpleITK array) with the most mask voxels."""
    return int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))


def tumour_gallery(cohort: pd.DataFrame, n: int = 4, seed: int = 0, window=(40.0, 259.0)):
    """Axial slice through each shown tumour's largest cross-section (original grid, window level/width in HU)
    with reader 1's contour (red) and reader 2's (cyan, when present). Shows ``n`` patients, half ER half NER."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    picks = []
    for er in (1, 0):
        ids = cohort.loc[cohort["er"] == er, "patient_id"].to_numpy()
        picks += list(rng.choice(ids, size=min(len(ids), (n + 1 - er) // 2), replace=False))
    level, width = window
    fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), 3.5), squeeze=False)
    for ax, pid in zip(axes[0], picks, strict=True):
        row = cohort.set_index("patient_id").loc[pid]
        image = sitk.GetArrayFromImage(sitk.ReadImage(row["image"]))
        mask = sitk.GetArrayFromImage(sitk.ReadImage(row["mask"]))
        z = _largest_slice(mask)
        ax.imshow(image[z], cmap="gray", vmin=level - width / 2, vmax=level + width / 2)
        ax.contour(mask[z] > 0, levels=[0.5], colors="red", linewidths=1.0)
        if isinstance(row.get("mask_reader2"), str):
            mask2 = sitk.GetArrayFromImage(sitk.ReadImage(row["mask_reader2"]))
            ax.contour(mask2[z] > 0, levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(f"{pid} · {'ER' if row['er'] == 1 else 'NER'} · slice {z}", fontsize=9)
        ax.axis("off")
    fig.suptitle("Arterial phase, largest tumour cross-section (red: reader 1, cyan: reader 2)", fontsize=10)
    fig.tight_layout()
    return fig
