"""Resampling to a common voxel size, CT windowing, and the image/mask geometry check (docs/method.md section 1).

paper: every volume is resampled to 1x1x1 mm and windowed with width 259 HU and level 40 HU, i.e. clipped to
[-89.5, 169.5] HU and scaled to [0, 1]. choice: the image is interpolated with a cubic B-spline (or linearly),
the mask with nearest neighbour.

The resampled grid (:func:`axial_grid`) covers the same physical box as the original volume, with its axes
along the original axes, permuted and flipped so that they point as close as possible to patient Left,
Posterior and Superior (LPS): the third axis is then the axial one for any scan orientation, and every axial
slice is shown the same way round. :func:`resample_onto` computes any part of that grid from only the part of
the input it needs, which is what makes the 2.5D stack cheap (``hcc_utils.stack``)::

    >>> grid = axial_grid(image, (1.0, 1.0, 1.0))
    >>> slab = resample_onto(image, grid.region(start=(100, 120, 40), size=(64, 64, 19)), "bspline")
    >>> window(sitk.GetArrayFromImage(slab), width_hu=259, level_hu=40).max() <= 1.0
    True
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from hcc_utils.inputs_check import PatientInputError
from hcc_utils.progress import progress as progress_bar

if TYPE_CHECKING:
    import pandas as pd

INTERPOLATORS = {"bspline": sitk.sitkBSpline, "linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}
# Input voxels kept beyond the ones an output point falls between. The cubic B-spline's coefficients come from
# a recursive filter over the whole input whose boundary influence decays as 0.268^d at d voxels: 12 voxels
# make a sub-volume resampling equal to the full-volume one to ~1e-7 of the intensity range.
INPUT_PADDING = {"bspline": 12, "linear": 1, "nearest": 1}
# Nearest neighbour: a point exactly half-way between two voxels (common with binary-fraction spacings such as
# 0.78125 mm) would be decided by floating-point noise; nudging the sampling by this fraction of a voxel sends
# every such tie to the higher index, the same way in a sub-volume as in the whole volume.
NEAREST_TIE_SHIFT = 1e-6
AIR_HU = -1024.0


@dataclass(frozen=True)
class Grid:
    """A regular 3D sampling grid in ITK's convention: physical = origin + direction @ (spacing * index).

    ``size`` and ``spacing`` are in (x, y, z) order (voxels, mm); ``origin`` is the first voxel's centre (mm);
    ``direction`` is the 3x3 matrix whose columns are the axes' unit vectors. Numpy arrays of the grid are
    (z, y, x).
    """

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]
    size: tuple[int, int, int]

    def __post_init__(self) -> None:
        for name in ("origin", "spacing", "direction"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))

    @classmethod
    def of(cls, image: sitk.Image) -> Grid:
        return cls(image.GetOrigin(), image.GetSpacing(), image.GetDirection(), image.GetSize())

    @property
    def matrix(self) -> np.ndarray:
        """direction @ diag(spacing): continuous index (x, y, z) -> physical offset from the origin (mm)."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3) * np.asarray(self.spacing)

    def to_physical(self, index: np.ndarray) -> np.ndarray:
        """Continuous indices (..., 3) in (x, y, z) order -> physical points (..., 3) in mm."""
        return np.asarray(self.origin) + np.asarray(index, dtype=float) @ self.matrix.T

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """Physical points (..., 3) in mm -> continuous indices (..., 3) in (x, y, z) order."""
        return np.linalg.solve(self.matrix, (np.asarray(points, dtype=float) - self.origin).T).T

    def region(self, start: tuple[int, int, int], size: tuple[int, int, int]) -> Grid:
        """The sub-grid of ``size`` voxels from index ``start`` (may reach outside this grid)."""
        return Grid(self.to_physical(np.asarray(start, dtype=float)), self.spacing, self.direction, size)

    def corner_indices(self) -> np.ndarray:
        """The 8 corner voxel centres of the grid, as (8, 3) indices."""
        return np.array(list(itertools.product(*[(0, n - 1) for n in self.size])), dtype=float)


def axial_grid(image: sitk.Image, spacing_mm: tuple[float, float, float] | None = (1.0, 1.0, 1.0)) -> Grid:
    """The resampled grid of ``image``: ``spacing_mm`` voxels over the same physical box, axes nearest LPS.

    ``spacing_mm=None`` keeps each axis' original spacing (the original voxels, reoriented). The box is the
    one the input voxels tile (from -0.5 to size-0.5 in index units); the number of output voxels along an
    axis is the box length divided by the spacing, rounded; the output grid is centred in the box.
    """
    source = Grid.of(image)
    axes = np.asarray(source.direction, dtype=float).reshape(3, 3)
    order = max(itertools.permutations(range(3)), key=lambda p: sum(abs(axes[j, p[j]]) for j in range(3)))
    signs = [1.0 if axes[j, order[j]] >= 0 else -1.0 for j in range(3)]
    out_axes = np.stack([signs[j] * axes[:, order[j]] for j in range(3)], axis=1)
    box = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in source.size])), dtype=float)
    along = source.to_physical(box) @ out_axes  # corners in the output axes' frame (mm)
    low, extent = along.min(axis=0), np.ptp(along, axis=0)
    original = np.asarray([source.spacing[k] for k in order])
    spacing = original if spacing_mm is None else np.asarray(spacing_mm, dtype=float)
    size = np.maximum(1, np.round(extent / spacing)).astype(int)
    first_centre = low + (extent - size * spacing) / 2 + spacing / 2
    return Grid(out_axes @ first_centre, spacing, out_axes.reshape(-1), size)


def resample_onto(image: sitk.Image, grid: Grid, interpolator: str = "bspline", default_value: float = 0.0,
                  pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
    """Resample ``image`` at the points of ``grid``, reading only the input voxels those points need.

    The input is cut to the box around the grid's points plus ``INPUT_PADDING[interpolator]`` voxels, so the
    result equals a full-volume resampling followed by cropping: exactly for ``nearest`` (a point half-way
    between two voxels takes the higher-index one) and ``linear``, to ~1e-7 of the intensity range for
    ``bspline``. Points outside the input get ``default_value`` (e.g. air, -1024 HU).
    """
    if interpolator not in INTERPOLATORS:
        raise ValueError(f"interpolator must be one of {sorted(INTERPOLATORS)}, got {interpolator!r}")
    source = Grid.of(image)
    reach = source.to_index(grid.to_physical(grid.corner_indices()))
    pad = INPUT_PADDING[interpolator]
    low = np.maximum(np.floor(reach.min(axis=0)).astype(int) - pad, 0)
    high = np.minimum(np.ceil(reach.max(axis=0)).astype(int) + pad, np.asarray(source.size) - 1)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(s) for s in grid.size])
    resampler.SetOutputOrigin(grid.origin)
    resampler.SetOutputSpacing(grid.spacing)
    resampler.SetOutputDirection(grid.direction)
    resampler.SetDefaultPixelValue(float(default_value))
    resampler.SetOutputPixelType(pixel_type)
    resampler.SetInterpolator(INTERPOLATORS[interpolator])
    if np.any(high < low):  # the grid lies wholly outside the input
        empty = sitk.Image([int(s) for s in grid.size], pixel_type)
        empty.SetOrigin(grid.origin)
        empty.SetSpacing(grid.spacing)
        empty.SetDirection(grid.direction)
        return sitk.Add(empty, float(default_value))
    part = image[int(low[0]):int(high[0]) + 1, int(low[1]):int(high[1]) + 1, int(low[2]):int(high[2]) + 1]
    if interpolator == "nearest":
        part.SetOrigin(tuple(Grid.of(part).to_physical(np.full(3, -NEAREST_TIE_SHIFT))))
    return resampler.Execute(part)


def resample(image: sitk.Image, spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
             interpolator: str = "bspline", default_value: float = AIR_HU,
             pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
    """The whole volume resampled to ``spacing_mm`` on :func:`axial_grid` (masks: ``"nearest"``)."""
    return resample_onto(image, axial_grid(image, spacing_mm), interpolator, default_value, pixel_type)


def window(hu: np.ndarray, width_hu: float = 259.0, level_hu: float = 40.0) -> np.ndarray:
    """CT window: HU clipped to [level - width/2, level + width/2] and scaled to [0, 1] (float32).

    paper: width 259 HU, level 40 HU, i.e. [-89.5, 169.5] HU.
    """
    low = level_hu - width_hu / 2.0
    scaled = (np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(width_hu)
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def check_same_geometry(image: sitk.Image, mask: sitk.Image, tolerance: float = 1e-3,
                        patient_id: str | None = None, mask_file: Path | str | None = None) -> None:
    """Image and mask share size, spacing, origin and direction.

    Tolerances: spacing relative (``tolerance`` of the image's spacing), origin in voxels (``tolerance`` of a
    voxel along each axis), direction cosines absolute (``tolerance``).

    Raises:
        PatientInputError: naming what differs, by how much, and what to do.
    """
    redraw = ("the mask was not drawn on this image, or was saved with another header: export the mask again "
              "from the image it was drawn on (e.g. ITK-SNAP) or resample it onto the image")
    if image.GetSize() != mask.GetSize():
        shown = ["x".join(str(s) for s in im.GetSize()) for im in (image, mask)]
        raise PatientInputError(patient_id, mask_file, f"image has {shown[0]} voxels but the mask {shown[1]}",
                                redraw)
    spacing, mask_spacing = np.asarray(image.GetSpacing()), np.asarray(mask.GetSpacing())
    if np.any(np.abs(spacing - mask_spacing) > tolerance * spacing):
        raise PatientInputError(patient_id, mask_file, f"image spacing {_mm(spacing)} mm differs from the "
                                f"mask's {_mm(mask_spacing)} mm", redraw)
    shift = np.asarray(mask.GetOrigin()) - np.asarray(image.GetOrigin())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if np.any(np.abs(np.linalg.solve(direction * spacing, shift)) > tolerance):
        raise PatientInputError(patient_id, mask_file, f"mask origin is shifted by {_mm(shift)} mm from the "
                                "image's", redraw)
    if np.any(np.abs(direction.reshape(-1) - np.asarray(mask.GetDirection())) > tolerance):
        raise PatientInputError(patient_id, mask_file, "image and mask axes point in different directions "
                                "(direction cosines differ)", redraw)


def _mm(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def geometry_table(cohort: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
    """One row per patient: size (voxels), spacing (mm), scanner, from the image headers only (fast).

    Columns: ``patient_id, scanner, size, spacing_mm, in_plane_mm, slice_mm, n_slices, problem`` (``problem``
    empty unless the header cannot be read; that patient's row then has no geometry).
    """
    import pandas as pd

    from hcc_utils.io import read_header

    rows = []
    for row in progress_bar(cohort.itertuples(index=False), total=len(cohort), desc="headers", unit="patient",
                            disable=not progress):
        entry = {"patient_id": row.patient_id, "scanner": getattr(row, "scanner", None), "size": "",
                 "spacing_mm": "", "in_plane_mm": np.nan, "slice_mm": np.nan, "n_slices": pd.NA,
                 "problem": ""}
        try:
            header = read_header(row.image, patient_id=row.patient_id)
        except PatientInputError as err:
            entry["problem"] = err.message
        else:
            entry.update(size="x".join(str(s) for s in header.size[:3]),
                         spacing_mm=" x ".join(f"{s:.2f}" for s in header.spacing[:3]),
                         in_plane_mm=float(header.spacing[0]), slice_mm=float(header.spacing[2]),
                         n_slices=int(header.size[2]) if len(header.size) > 2 else 1)
        rows.append(entry)
    return pd.DataFrame(rows)


def geometry_by_scanner(geometry: pd.DataFrame) -> pd.DataFrame:
    """Per scanner (the paper's Table 1): patients, matrix sizes, in-plane spacing range (mm), slice spacing (mm),
    slices per volume, and how many headers could not be read. ``geometry`` is :func:`geometry_table`'s output."""
    import pandas as pd

    table = geometry.assign(scanner=geometry["scanner"].fillna("unknown"), matrix=geometry["size"].str.rsplit(
        "x", n=1).str[0])
    rows = []
    for scanner, group in table.groupby("scanner", sort=True):
        ok = group[group["problem"] == ""]
        rows.append({"scanner": scanner, "patients": len(group),
                     "matrix": ", ".join(sorted(set(ok["matrix"]))),
                     "in-plane spacing (mm)": f"{ok['in_plane_mm'].min():.2f}-{ok['in_plane_mm'].max():.2f}",
                     "slice spacing (mm)": ", ".join(f"{v:g}" for v in sorted(set(ok["slice_mm"].round(2)))),
                     "slices": f"{int(ok['n_slices'].min())}-{int(ok['n_slices'].max())}" if len(ok) else "",
                     "unreadable": int((group["problem"] != "").sum())})
    return pd.DataFrame(rows)


@dataclass
class TumourSlice:
    """One patient's axial slice through the largest tumour cross-section on the original grid: ``image`` (HU),
    ``mask`` and ``second`` (reader 2, or None) as 2D arrays; ``index`` the axial slice."""

    patient_id: str
    er: int
    index: int
    image: np.ndarray
    mask: np.ndarray
    second: np.ndarray | None


def _tumour_slice(patient_id: str, row) -> TumourSlice | None:
    from hcc_utils.io import read_image

    try:
        image = sitk.GetArrayFromImage(read_image(row["image"], patient_id))
        mask = sitk.GetArrayFromImage(read_image(row["mask"], patient_id, "mask"))
        second = (sitk.GetArrayFromImage(read_image(row["mask_reader2"], patient_id, "mask"))
                  if isinstance(row.get("mask_reader2"), str) else None)
    except PatientInputError:
        return None
    if image.shape != mask.shape or not mask.any() or (second is not None and second.shape != mask.shape):
        return None
    z = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))
    return TumourSlice(patient_id, int(row["er"]), z, image[z], mask[z], None if second is None else second[z])


def tumour_slices(cohort: pd.DataFrame, n: int = 4, seed: int = 0) -> list[TumourSlice]:
    """``n`` patients' largest tumour cross-sections for chapter 01's gallery, half ER half NER, drawn at random
    (``seed``); a patient whose files cannot be used is passed over (chapter 02 lists it)."""
    rng = np.random.default_rng(seed)
    table = cohort.set_index("patient_id")
    shown: list[TumourSlice] = []
    for er in (1, 0):
        wanted = (n + 1 - er) // 2
        for pid in rng.permutation(table.index[table["er"] == er].to_numpy()):
            if len([s for s in shown if s.er == er]) == wanted:
                break
            item = _tumour_slice(str(pid), table.loc[pid])
            if item is not None:
                shown.append(item)
    return shown
