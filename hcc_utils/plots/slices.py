"""Figures of the preprocessing and 2.5D chapters (notebooks 01 and 02, docs/method.md sections 1-2).

- :func:`resampling_figure`: one patient before (original voxels, HU) and after resampling and windowing.
- :func:`stack_montage`: the 11 slices of a few patients' stacks with the tumour contour.
- :func:`tumour_size_figure`: the tumour's cross-section area and diameter on the central slice.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from hcc_utils.config import PreprocessConfig, SlicesConfig
    from hcc_utils.run_folder import RunFolder
    from hcc_utils.slices import SliceDataset

DISPLAY_HU = (-200.0, 300.0)  # display range of the unwindowed panels


def resampling_figure(image_path: Path | str, mask_path: Path | str, pre: PreprocessConfig | None = None,
                      slices_cfg: SlicesConfig | None = None, patient_id: str | None = None,
                      half_width_mm: float = 60.0):
    """Axial and coronal views through the tumour before (original grid, HU) and after (1 mm, windowed).

    Shows the ``2 * half_width_mm`` box around the tumour's centre, in millimetres, so the blocky original
    slices (e.g. 5 mm) and the resampled 1 mm grid are drawn at their true size; the red line is the tumour
    contour.
    """
    import SimpleITK as sitk

    from hcc_utils.config import PreprocessConfig, SlicesConfig
    from hcc_utils.io import read_image
    from hcc_utils.preprocess import Grid, axial_grid, resample_onto, window
    from hcc_utils.stack import find_lesion

    pre, slices_cfg = pre or PreprocessConfig(), slices_cfg or SlicesConfig()
    image, mask = read_image(image_path, patient_id), read_image(mask_path, patient_id, "mask")
    lesion = find_lesion(mask, slices_cfg, patient_id, mask_path)
    centre = Grid.of(lesion.image).to_physical((np.asarray(lesion.image.GetSize()) - 1) / 2.0)

    def view(grid: Grid, interpolator: str):
        """The box around the tumour centre in ``grid``: values, tumour mask, centre index (x, y, z)."""
        half = np.round(half_width_mm / np.asarray(grid.spacing)).astype(int)
        box = grid.region(tuple(np.round(grid.to_index(centre)).astype(int) - half), tuple(2 * half + 1))
        values = sitk.GetArrayFromImage(resample_onto(image, box, interpolator, pre.outside_value_hu))
        tumour = sitk.GetArrayFromImage(resample_onto(lesion.image, box, "nearest", 0, sitk.sitkUInt8))
        return values, tumour, half, np.asarray(grid.spacing)

    before = view(axial_grid(image, None), "nearest")  # the original voxels, axes turned to LPS
    after = view(axial_grid(image, pre.spacing_mm), pre.interpolator)
    after = (window(after[0], pre.window_width_hu, pre.window_level_hu), *after[1:])
    fig, axes = plt.subplots(2, 2, figsize=(9, 8.4))
    for row, (values, tumour, h, spacing), value_range, label, name in (
            (0, before, DISPLAY_HU, "HU", "before"), (1, after, (0, 1), "windowed [0, 1]", "after")):
        axial_extent = [(-h[0] - 0.5) * spacing[0], (h[0] + 0.5) * spacing[0],
                        (h[1] + 0.5) * spacing[1], (-h[1] - 0.5) * spacing[1]]
        coronal_extent = axial_extent[:2] + [(-h[2] - 0.5) * spacing[2], (h[2] + 0.5) * spacing[2]]
        what = (f"window {pre.window_width_hu:g}/{pre.window_level_hu:g} HU (W/L)" if row else
                f"display {DISPLAY_HU[0]:g}..{DISPLAY_HU[1]:g} HU")
        _panel(axes[row, 0], values[h[2]], tumour[h[2]], axial_extent, "upper", value_range, label,
               f"{name}: axial, {spacing[0]:.2f} x {spacing[1]:.2f} mm pixels, {what}")
        _panel(axes[row, 1], values[:, h[1], :], tumour[:, h[1], :], coronal_extent, "lower", value_range,
               label, f"{name}: coronal, {spacing[2]:.2g} mm slices")
    title = f"patient {patient_id}: " if patient_id else ""
    fig.suptitle(f"{title}resampling ({pre.interpolator}) and windowing, around the tumour centre; "
                 "red: tumour", fontsize=10)
    fig.tight_layout()
    return fig


def _panel(ax, pixels, contour, extent, origin, value_range, label, title) -> None:
    """One view in mm about the tumour centre; axial: anterior at the top, patient left on the right
    (radiological); coronal (origin ``lower``): superior at the top."""
    shown = ax.imshow(pixels, cmap="gray", vmin=value_range[0], vmax=value_range[1], extent=extent,
                      origin=origin, interpolation="nearest")
    if contour.any():
        ax.contour(contour, levels=[0.5], colors="red", linewidths=0.9, extent=extent, origin=origin)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("right-left (mm)")
    ax.set_ylabel("anterior-posterior (mm)" if origin == "upper" else "inferior-superior (mm)")
    plt.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label=label)


def _stacks(source: SliceDataset | RunFolder, patient_ids: list[str]):
    """(pid, images uint8, masks uint8, offsets) per requested patient, from a dataset or the run's cache."""
    from hcc_utils.run_folder import RunFolder
    from hcc_utils.slices import load_patient_stack

    if isinstance(source, RunFolder):
        for pid in patient_ids:
            images, masks, info = load_patient_stack(source, pid)
            yield pid, images, masks, info["offsets"]
        return
    position = {p: i for i, p in enumerate(source.patients["patient_id"].astype(str))}
    for pid in patient_ids:
        i = position[str(pid)]
        masks = source.masks[i] if source.masks is not None else np.zeros_like(source.images[i])
        yield pid, source.images[i], masks, source.offsets


def stack_montage(source: SliceDataset | RunFolder, patient_ids: list[str] | None = None, n: int = 3):
    """The 2.5D stacks of ``patient_ids`` (default: the first ``n`` patients), one row per patient, one column
    per offset (slices from the central one, 1 mm apart), with the tumour contour in red."""
    if patient_ids is None:
        if hasattr(source, "patients"):
            patient_ids = source.patients["patient_id"].astype(str).tolist()[:n]
        else:
            import pandas as pd

            patient_ids = pd.read_csv(source.cache / "slices" / "patients.csv", dtype={"patient_id": str})[
                "patient_id"].tolist()[:n]
    stacks = list(_stacks(source, list(patient_ids)))
    n_offsets = len(stacks[0][3])
    fig, axes = plt.subplots(len(stacks), n_offsets, figsize=(1.25 * n_offsets, 1.45 * len(stacks)),
                             squeeze=False)
    for r, (row, (pid, images, masks, offsets)) in enumerate(zip(axes, stacks, strict=True)):
        for ax, image, mask, offset in zip(row, images, masks, offsets, strict=True):
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="bilinear")
            if mask.any():
                ax.contour(mask, levels=[0.5], colors="red", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{offset:+d}" if offset else "0 (central)", fontsize=8)
        row[0].set_ylabel(pid, fontsize=8)
    fig.suptitle("2.5D stacks: offsets in 1 mm slices from the largest cross-section; red: tumour",
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


def first_usable_resampling_figure(cohort: pd.DataFrame, pre: PreprocessConfig | None = None,
                                   slices_cfg: SlicesConfig | None = None):
    """:func:`resampling_figure` for the first patient of ``cohort`` whose image and mask can be used.

    A patient with a broken file is skipped here (chapter 02 lists it with the reason), so one bad case never
    stops the book.
    """
    from hcc_utils.inputs_check import PatientInputError

    for row in cohort.itertuples(index=False):
        try:
            return resampling_figure(row.image, row.mask, pre, slices_cfg, str(row.patient_id))
        except PatientInputError:
            continue
    raise ValueError("no patient's image and mask could be read; see chapter 02's exclusions")
