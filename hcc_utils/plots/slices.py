"""Figures of the preprocessing and 2.5D chapters (notebooks 01 and 02, docs/method.md sections 1-2), drawn from
arrays (the reading and resampling is ``hcc_utils.stack``'s and ``hcc_utils.slices``').

- :func:`resampling_figure`: one patient before (original voxels, HU) and after resampling and windowing.
- :func:`stack_montage`: the 11 slices of a few patients' stacks with the tumour contour.
- :func:`tumour_size_figure`: the tumour's cross-section area and diameter on the central slice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from hcc_utils.palette import MASK_COLOUR

if TYPE_CHECKING:
    import pandas as pd

    from hcc_utils.config import PreprocessConfig
    from hcc_utils.slices import SliceDataset
    from hcc_utils.stack import ResampledView

DISPLAY_HU = (-200.0, 300.0)  # display range of the unwindowed panels


def resampling_figure(views: tuple[ResampledView, ResampledView], pre: PreprocessConfig,
                      patient_id: str | None = None):
    """Axial and coronal views through the tumour before (original grid, HU) and after (1 mm, windowed).

    ``views`` is ``stack.resampling_views(...)`` (or ``stack.first_usable_views``): the box around the tumour's
    centre, drawn in millimetres so the blocky original slices (e.g. 5 mm) and the resampled 1 mm grid show at
    their true size; the vermillion line is the tumour contour.
    """
    fig, axes = plt.subplots(2, 2, figsize=(9, 8.4))
    for row, view, value_range, label, name in ((0, views[0], DISPLAY_HU, "HU", "before"),
                                                (1, views[1], (0, 1), "windowed [0, 1]", "after")):
        h, spacing = view.half, view.spacing
        axial_extent = [(-h[0] - 0.5) * spacing[0], (h[0] + 0.5) * spacing[0],
                        (h[1] + 0.5) * spacing[1], (-h[1] - 0.5) * spacing[1]]
        coronal_extent = axial_extent[:2] + [(-h[2] - 0.5) * spacing[2], (h[2] + 0.5) * spacing[2]]
        what = (f"window {pre.window_width_hu:g}/{pre.window_level_hu:g} HU (W/L)" if row else
                f"display {DISPLAY_HU[0]:g}..{DISPLAY_HU[1]:g} HU")
        _panel(axes[row, 0], view.values[h[2]], view.tumour[h[2]], axial_extent, "upper", value_range, label,
               f"{name}: axial, {spacing[0]:.2f} x {spacing[1]:.2f} mm pixels, {what}")
        _panel(axes[row, 1], view.values[:, h[1], :], view.tumour[:, h[1], :], coronal_extent, "lower",
               value_range, label, f"{name}: coronal, {spacing[2]:.2g} mm slices")
    title = f"patient {patient_id}: " if patient_id else ""
    fig.suptitle(f"{title}resampling ({pre.interpolator}) and windowing, around the tumour centre; "
                 "vermillion: tumour", fontsize=10)
    fig.tight_layout()
    return fig


def _panel(ax, pixels, contour, extent, origin, value_range, label, title) -> None:
    """One view in mm about the tumour centre; axial: anterior at the top, patient left on the right
    (radiological); coronal (origin ``lower``): superior at the top."""
    shown = ax.imshow(pixels, cmap="gray", vmin=value_range[0], vmax=value_range[1], extent=extent,
                      origin=origin, interpolation="nearest")
    if contour.any():
        ax.contour(contour, levels=[0.5], colors=MASK_COLOUR, linewidths=0.9, extent=extent, origin=origin)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("right-left (mm)")
    ax.set_ylabel("anterior-posterior (mm)" if origin == "upper" else "inferior-superior (mm)")
    plt.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label=label)


def stack_montage(dataset: SliceDataset, patient_ids: list[str] | None = None, n: int = 3):
    """The 2.5D stacks of ``patient_ids`` (default: the first ``n`` patients of ``dataset``, a
    ``slices.SliceDataset``), one row per patient, one column per offset (slices from the central one, 1 mm
    apart), with the tumour contour in vermillion."""
    ids = dataset.patients["patient_id"].astype(str).tolist()
    patient_ids = [str(p) for p in patient_ids] if patient_ids is not None else ids[:n]
    position = {p: i for i, p in enumerate(ids)}
    n_offsets = len(dataset.offsets)
    fig, axes = plt.subplots(len(patient_ids), n_offsets, figsize=(1.25 * n_offsets, 1.45 * len(patient_ids)),
                             squeeze=False)
    for r, (row, pid) in enumerate(zip(axes, patient_ids, strict=True)):
        images = dataset.images[position[pid]]
        masks = dataset.masks[position[pid]] if dataset.masks is not None else np.zeros_like(images)
        for ax, image, mask, offset in zip(row, images, masks, dataset.offsets, strict=True):
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="bilinear")
            if mask.any():
                ax.contour(mask, levels=[0.5], colors=MASK_COLOUR, linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{offset:+d}" if offset else "0 (central)", fontsize=8)
        row[0].set_ylabel(pid, fontsize=8)
    fig.suptitle("2.5D stacks: offsets in 1 mm slices from the largest cross-section; vermillion: tumour",
                 fontsize=9)
    fig.tight_layout()
    return fig


def tumour_size_figure(info: pd.DataFrame, hue: str | None = "split"):
    """Histograms of the tumour's area (cm^2) and longest diameter (mm) on the central slice.

    ``info`` is ``slices.stack_info_table(run)``; ``hue`` a column to split the bars by (or None).
    """
    import seaborn as sns

    table = info.assign(tumour_area_cm2=info["tumour_area_mm2"] / 100.0)
    hue = hue if hue in table.columns else None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, column, label in ((axes[0], "tumour_area_cm2", "cross-section area on the central slice (cm²)"),
                              (axes[1], "max_diameter_mm", "longest diameter on the central slice (mm)")):
        sns.histplot(table, x=column, hue=hue, ax=ax, bins=min(20, max(5, len(table) // 3)), element="step")
        ax.set_xlabel(label)
        ax.set_ylabel("patients")
    fig.suptitle(f"Tumour size at the central slice (n = {len(table)})", fontsize=10)
    fig.tight_layout()
    return fig
