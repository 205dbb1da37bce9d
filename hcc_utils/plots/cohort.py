"""Figures of the cohort chapter (notebook 01): a gallery of tumour slices with the readers' contours."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt

from hcc_utils.palette import READER_COLOURS

if TYPE_CHECKING:
    from hcc_utils.preprocess import TumourSlice


def tumour_gallery(shown: list[TumourSlice], window=(40.0, 259.0)):
    """Axial slice through each tumour's largest cross-section (original grid, window level/width in HU) with
    reader 1's contour (vermillion) and reader 2's (sky blue, when present); ``shown`` is
    ``preprocess.tumour_slices(...)``."""
    level, width = window
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(3.2 * max(1, len(shown)), 3.5), squeeze=False)
    for ax, item in zip(axes[0], shown, strict=False):
        ax.imshow(item.image, cmap="gray", vmin=level - width / 2, vmax=level + width / 2)
        ax.contour(item.mask > 0, levels=[0.5], colors=READER_COLOURS["reader 1"], linewidths=1.0)
        if item.second is not None:
            ax.contour(item.second > 0, levels=[0.5], colors=READER_COLOURS["reader 2"], linewidths=0.8)
        ax.set_title(f"{item.patient_id} · {'ER' if item.er == 1 else 'NER'} · slice {item.index}", fontsize=9)
        ax.axis("off")
    fig.suptitle("Arterial phase, largest tumour cross-section (vermillion: reader 1, sky blue: reader 2)", fontsize=10)
    fig.tight_layout()
    return fig
