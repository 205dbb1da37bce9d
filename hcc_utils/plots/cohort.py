"""Figures of the cohort chapter (notebook 01): a gallery of tumour slices with the readers' contours."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _largest_slice(mask: np.ndarray) -> int:
    """Axial index (first axis of a SimpleITK array) with the most mask voxels."""
    return int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))


def _readable(row) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """Image, reader-1 and reader-2 mask arrays of one patient, or None when a file cannot be used."""
    import SimpleITK as sitk

    from hcc_utils.inputs_check import PatientInputError
    from hcc_utils.io import read_image

    try:
        image = sitk.GetArrayFromImage(read_image(row["image"], row.name))
        mask = sitk.GetArrayFromImage(read_image(row["mask"], row.name, "mask"))
        second = (sitk.GetArrayFromImage(read_image(row["mask_reader2"], row.name, "mask"))
                  if isinstance(row.get("mask_reader2"), str) else None)
    except PatientInputError:
        return None
    if image.shape != mask.shape or not mask.any() or (second is not None and second.shape != mask.shape):
        return None
    return image, mask, second


def tumour_gallery(cohort: pd.DataFrame, n: int = 4, seed: int = 0, window=(40.0, 259.0)):
    """Axial slice through each shown tumour's largest cross-section (original grid, window level/width in HU)
    with reader 1's contour (red) and reader 2's (cyan, when present). Shows ``n`` patients, half ER half NER,
    drawn at random; a patient whose files cannot be used is passed over (chapter 02 lists it)."""
    rng = np.random.default_rng(seed)
    table = cohort.set_index("patient_id")
    shown = []
    for er in (1, 0):
        ids = rng.permutation(table.index[table["er"] == er].to_numpy())
        wanted = (n + 1 - er) // 2
        for pid in ids:
            if len([s for s in shown if s[1] == er]) == wanted:
                break
            arrays = _readable(table.loc[pid])
            if arrays is not None:
                shown.append((pid, er, arrays))
    level, width = window
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(3.2 * max(1, len(shown)), 3.5), squeeze=False)
    for ax, (pid, er, (image, mask, second)) in zip(axes[0], shown, strict=False):
        z = _largest_slice(mask)
        ax.imshow(image[z], cmap="gray", vmin=level - width / 2, vmax=level + width / 2)
        ax.contour(mask[z] > 0, levels=[0.5], colors="red", linewidths=1.0)
        if second is not None:
            ax.contour(second[z] > 0, levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(f"{pid} · {'ER' if er == 1 else 'NER'} · slice {z}", fontsize=9)
        ax.axis("off")
    fig.suptitle("Arterial phase, largest tumour cross-section (red: reader 1, cyan: reader 2)", fontsize=10)
    fig.tight_layout()
    return fig
