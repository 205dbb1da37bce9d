"""One patient's 2.5D stack: largest cross-section, offsets, crop (docs/method.md section 2).

paper: the central slice is the axial slice with the largest tumour cross-section; its neighbours at offsets
+-1, +-2, +-4, +-7, +-9 slices make 11 slices per patient. choice: offsets count in the resampled 1 mm grid;
an offset that leaves the volume is clamped to the nearest valid slice (and recorded); one square crop for all
slices, from the tumour's bounding box on the central slice plus a margin, resized to the CNN input size.

Only what the stack needs is resampled: the lesion (nearest neighbour, in the resampled grid) to find the
central slice, then the image in the slab of slices and the in-plane box the stack covers (B-spline or
linear), which gives the same values as resampling the whole volume first (``benchmarks/preprocess.py`` checks
it)::

    >>> stack = make_stack("CT_image.nii.gz", "CT_mask.nii.gz", PreprocessConfig(), SlicesConfig())
    >>> stack.images.shape, stack.info["central_index"]
    ((11, 224, 224), 87)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hcc_utils.config import PreprocessConfig, SlicesConfig
from hcc_utils.inputs_check import PatientInputError, lesion_voxels
from hcc_utils.io import read_image
from hcc_utils.preprocess import Grid, axial_grid, check_same_geometry, resample_onto, window


@dataclass
class Lesion:
    """The tumour kept for the stack, as a small uint8 volume (1 = tumour) on the original grid.

    ``image`` spans the kept lesion's bounding box plus one voxel each side. ``volumes_ml`` lists every
    connected component of the mask's tumour label (largest first); ``edges`` names the borders of the stored
    volume the kept lesion touches (``"first slice"``, ``"last slice"``, ``"in-plane border"``).
    """

    image: sitk.Image
    volumes_ml: list[float]
    edges: list[str]


@dataclass
class StackPlan:
    """Where the stack lies in the resampled grid (indices in voxels of ``grid``; z is the axial index)."""

    grid: Grid
    offsets: list[int]
    central_index: int
    requested_indices: list[int]
    indices: list[int]
    crop_start: tuple[int, int]
    crop_side: int
    tumour_area_mm2: float
    max_diameter_mm: float
    areas_mm2: dict[int, float] = field(repr=False)

    @property
    def clamped_offsets(self) -> list[int]:
        pairs = zip(self.offsets, self.requested_indices, self.indices, strict=True)
        return [offset for offset, requested, used in pairs if requested != used]


@dataclass
class PatientStack:
    """The stack: ``images`` float32 (n_offsets, S, S) windowed to [0, 1]; ``masks`` uint8 (same shape, 1 =
    tumour); ``info`` the JSON-ready description (indices, crop box, tumour size, warnings)."""

    images: np.ndarray
    masks: np.ndarray
    info: dict


def find_lesion(mask: sitk.Image, cfg: SlicesConfig, patient_id: str | None = None,
                mask_file: Path | str | None = None) -> Lesion:
    """The tumour (``cfg.mask_label``) of ``mask``: its largest 26-connected component, or all of it.

    Raises:
        PatientInputError: empty mask, missing label, unexpected labels (see ``inputs_check.lesion_voxels``).
    """
    from scipy import ndimage

    values = sitk.GetArrayViewFromImage(mask)
    flat = lesion_voxels(values, cfg.mask_label, cfg.other_labels, patient_id, Path(mask_file or ""))
    zyx = np.stack(np.unravel_index(flat, values.shape), axis=1)
    low, high = zyx.min(axis=0), zyx.max(axis=0)
    box = np.zeros(tuple(high - low + 3), dtype=np.uint8)  # the bounding box plus one voxel each side
    box[tuple((zyx - low + 1).T)] = 1
    components, count = ndimage.label(box, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(components.reshape(-1))[1:]
    voxel_ml = float(np.prod(mask.GetSpacing())) / 1000.0
    if count > 1 and cfg.largest_component_only:
        largest = int(np.argmax(sizes)) + 1
        kept = np.argwhere(components == largest)  # in box coordinates
        first, last = kept.min(axis=0), kept.max(axis=0)
        low, high = low + first - 1, low + last - 1
        box = (components[tuple(slice(a - 1, b + 2) for a, b in zip(first, last, strict=True))] == largest)
        box = box.astype(np.uint8)
    image = sitk.GetImageFromArray(box)
    image.SetSpacing(mask.GetSpacing())
    image.SetDirection(mask.GetDirection())
    image.SetOrigin(tuple(Grid.of(mask).to_physical((low - 1)[::-1])))
    shape = np.asarray(values.shape)
    touches = {"first slice": low[0] == 0, "last slice": high[0] == shape[0] - 1,
               "in-plane border": np.any(low[1:] == 0) or np.any(high[1:] == shape[1:] - 1)}
    edges = [name for name, hit in touches.items() if hit]
    return Lesion(image, sorted((float(s) * voxel_ml for s in sizes), reverse=True), edges)


def plan_stack(lesion: Lesion, grid: Grid, offsets: list[int], margin_mm: float = 0.0) -> StackPlan:
    """Central slice, clamped indices and crop box of the stack in the resampled ``grid``.

    The central slice has the largest lesion area after nearest-neighbour resampling; a tie goes to the slice
    nearest the lesion's centroid (then to the lower index). The crop is the lesion's bounding box on the
    central slice, plus ``margin_mm`` on each side, widened to a square about its centre (it may reach outside
    the grid).
    """
    corners = np.array([[x, y, z] for x in (-0.5, lesion.image.GetWidth() - 0.5)
                        for y in (-0.5, lesion.image.GetHeight() - 0.5)
                        for z in (-0.5, lesion.image.GetDepth() - 0.5)])
    reach = grid.to_index(Grid.of(lesion.image).to_physical(corners))
    low = np.clip(np.floor(reach.min(axis=0)).astype(int), 0, np.asarray(grid.size) - 1)
    high = np.clip(np.ceil(reach.max(axis=0)).astype(int), 0, np.asarray(grid.size) - 1)
    region = grid.region(tuple(low), tuple(high - low + 1))
    tumour = sitk.GetArrayFromImage(resample_onto(lesion.image, region, "nearest", 0, sitk.sitkUInt8))
    counts = tumour.sum(axis=(1, 2), dtype=np.int64)
    if counts.max() == 0:
        raise PatientInputError(None, None, "the tumour is smaller than one resampled voxel",
                                "check the mask, or use a finer 'preprocess.spacing_mm'")
    centroid = float(np.dot(counts, np.arange(len(counts))) / counts.sum())
    ties = np.flatnonzero(counts == counts.max())
    central_local = int(ties[np.argmin(np.abs(ties - centroid))])
    central = int(low[2]) + central_local
    requested = [central + o for o in offsets]
    indices = [min(max(i, 0), grid.size[2] - 1) for i in requested]
    ys, xs = np.nonzero(tumour[central_local])
    spacing = np.asarray(grid.spacing)
    margin = np.round(margin_mm / spacing[:2]).astype(int)
    extent = np.array([xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]) + 2 * margin
    side = int(extent.max())
    start = np.array([xs.min(), ys.min()]) + low[:2] - margin - (side - extent) // 2
    pixel_mm2 = float(spacing[0] * spacing[1])
    areas = {int(low[2]) + k: float(c) * pixel_mm2 for k, c in enumerate(counts) if c}
    return StackPlan(grid, list(offsets), central, requested, indices, (int(start[0]), int(start[1])), side,
                     float(counts[central_local]) * pixel_mm2, _max_diameter_mm(xs, ys, spacing[:2]), areas)


def _max_diameter_mm(xs: np.ndarray, ys: np.ndarray, spacing_xy: np.ndarray) -> float:
    """Longest distance across the tumour on one slice (mm), between the outer corners of its pixels."""
    from scipy.spatial import ConvexHull

    corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1)
                              for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)])
    corners = np.unique(corners, axis=0) * spacing_xy
    hull = corners[ConvexHull(corners).vertices]
    return float(np.sqrt(((hull[:, None, :] - hull[None, :, :]) ** 2).sum(-1)).max())


def extract_stack(image: sitk.Image, lesion: Lesion, plan: StackPlan, pre: PreprocessConfig,
                  size: int) -> tuple[np.ndarray, np.ndarray]:
    """The windowed image and mask slices of ``plan``, resized to ``size`` x ``size``.

    Returns ``images`` float32 in [0, 1] and ``masks`` uint8 (0/1), each (n_offsets, size, size). Only the
    slab of slices from the lowest to the highest index, within the crop box, is resampled. Slices are resized
    bilinearly (antialiased when shrinking), masks by nearest neighbour.
    """
    from PIL import Image

    z_low = min(plan.indices)
    slab = plan.grid.region((*plan.crop_start, z_low), (plan.crop_side, plan.crop_side,
                                                        max(plan.indices) - z_low + 1))
    hu = sitk.GetArrayFromImage(resample_onto(image, slab, pre.interpolator, pre.outside_value_hu))
    tumour = sitk.GetArrayFromImage(resample_onto(lesion.image, slab, "nearest", 0, sitk.sitkUInt8))
    picks = [i - z_low for i in plan.indices]
    windowed = window(hu[picks], pre.window_width_hu, pre.window_level_hu)
    images = np.stack([_resize(s, size, Image.Resampling.BILINEAR) for s in windowed]).astype(np.float32)
    masks = np.stack([_resize(s, size, Image.Resampling.NEAREST) for s in tumour[picks]])
    return np.clip(images, 0.0, 1.0), masks


def _resize(pixels: np.ndarray, size: int, method) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize((size, size), method))


def stack_from_images(image: sitk.Image, mask: sitk.Image, pre: PreprocessConfig, cfg: SlicesConfig,
                      patient_id: str | None = None, image_file: Path | str | None = None,
                      mask_file: Path | str | None = None) -> PatientStack:
    """The stack of already-read volumes: geometry check, lesion, plan, slices, and the warnings to record.

    Raises:
        PatientInputError: image/mask geometry mismatch, a bad mask (see :func:`find_lesion`), or NaN or infinite
            image voxels that reach the stack.
    """
    check_same_geometry(image, mask, pre.geometry_tolerance, patient_id, mask_file)
    lesion = find_lesion(mask, cfg, patient_id, mask_file)
    grid = axial_grid(image, pre.spacing_mm)
    try:
        plan = plan_stack(lesion, grid, cfg.offsets, cfg.margin_mm)
    except PatientInputError as err:
        raise PatientInputError(patient_id, mask_file, err.message, err.hint) from None
    images, masks = extract_stack(image, lesion, plan, pre, cfg.size)
    if not np.isfinite(images).all():  # NaN in the image spreads through the B-spline over the whole slab
        raise PatientInputError(patient_id, image_file, "image holds NaN or infinite voxels that reach the 2.5D "
                                "stack", "export the image again (a failed conversion or resampling leaves these)")
    return PatientStack(images, masks, _describe(plan, lesion, image, pre, cfg))


def make_stack(image_path: Path | str, mask_path: Path | str, pre: PreprocessConfig, cfg: SlicesConfig,
               patient_id: str | None = None) -> PatientStack:
    """Read one patient's image and mask and make the stack; :class:`PatientInputError` on bad input."""
    image = read_image(image_path, patient_id, "image")
    mask = read_image(mask_path, patient_id, "mask")
    return stack_from_images(image, mask, pre, cfg, patient_id, image_path, mask_path)


def _describe(plan: StackPlan, lesion: Lesion, image: sitk.Image, pre: PreprocessConfig,
              cfg: SlicesConfig) -> dict:
    grid, side = plan.grid, plan.crop_side
    corner = grid.to_physical(np.array([*plan.crop_start, plan.central_index], dtype=float))
    warnings = []
    if len(lesion.volumes_ml) > 1:
        kept = ("the largest is used" if cfg.largest_component_only
                else "all are used ('slices.largest_component_only' is off)")
        volumes = ", ".join(f"{v:.2f}" for v in lesion.volumes_ml[:5])
        warnings.append(f"mask has {len(lesion.volumes_ml)} separate lesions ({volumes} mL); {kept}")
    if lesion.edges:
        warnings.append(f"tumour touches the {' and '.join(lesion.edges)} of the scanned volume and may be "
                        "cut off; check that the scan covers the whole tumour")
    if plan.clamped_offsets:
        warnings.append(f"offsets {plan.clamped_offsets} fall outside the volume (central slice "
                        f"{plan.central_index} of 0..{grid.size[2] - 1}); the nearest valid slice is used")
    outside = max(0, -min(plan.crop_start), max(s + side - n for s, n in zip(plan.crop_start, grid.size[:2],
                                                                              strict=True)))
    if outside:
        warnings.append(f"the crop box reaches {outside * grid.spacing[0]:.0f} mm beyond the scan's in-plane "
                        f"border; that part is filled with {pre.outside_value_hu:g} HU")
    return {
        "offsets": plan.offsets, "central_index": plan.central_index, "indices": plan.indices,
        "requested_indices": plan.requested_indices, "clamped_offsets": plan.clamped_offsets,
        "crop_box_voxels": {"x0": plan.crop_start[0], "y0": plan.crop_start[1],
                            "x1": plan.crop_start[0] + side, "y1": plan.crop_start[1] + side, "side": side},
        "crop_box_mm": {"first_voxel_centre_lps": [round(float(c), 3) for c in corner],
                        "side_mm": round(side * grid.spacing[0], 3)},
        "resampled_size": list(grid.size), "resampled_spacing_mm": list(grid.spacing),
        "original_size": list(image.GetSize()),
        "original_spacing_mm": [round(s, 4) for s in image.GetSpacing()],
        "tumour_area_mm2": round(plan.tumour_area_mm2, 2), "max_diameter_mm": round(plan.max_diameter_mm, 2),
        "n_lesion_components": len(lesion.volumes_ml),
        "lesion_volumes_ml": [round(v, 3) for v in lesion.volumes_ml],
        "output_size": cfg.size, "warnings": warnings,
    }


@dataclass
class ResampledView:
    """A box of ``2 * half + 1`` voxels about the tumour centre in one grid: ``values`` (z, y, x; HU, or windowed
    [0, 1]), ``tumour`` (uint8, 1 = tumour), ``half`` (voxels each side, x y z) and ``spacing`` (mm, x y z)."""

    values: np.ndarray
    tumour: np.ndarray
    half: np.ndarray
    spacing: np.ndarray


def resampling_views(image_path: Path | str, mask_path: Path | str, pre: PreprocessConfig, cfg: SlicesConfig,
                     patient_id: str | None = None, half_width_mm: float = 60.0
                     ) -> tuple[ResampledView, ResampledView]:
    """One patient about the tumour centre before (original voxels, HU, nearest neighbour) and after preprocessing
    (``pre.spacing_mm`` grid, ``pre.interpolator``, windowed to [0, 1]): what chapter 01's figure shows.

    Raises:
        PatientInputError: the image or mask cannot be used.
    """
    image, mask = read_image(image_path, patient_id), read_image(mask_path, patient_id, "mask")
    lesion = find_lesion(mask, cfg, patient_id, mask_path)
    centre = Grid.of(lesion.image).to_physical((np.asarray(lesion.image.GetSize()) - 1) / 2.0)

    def view(grid: Grid, interpolator: str) -> ResampledView:
        half = np.round(half_width_mm / np.asarray(grid.spacing)).astype(int)
        box = grid.region(tuple(np.round(grid.to_index(centre)).astype(int) - half), tuple(2 * half + 1))
        values = sitk.GetArrayFromImage(resample_onto(image, box, interpolator, pre.outside_value_hu))
        tumour = sitk.GetArrayFromImage(resample_onto(lesion.image, box, "nearest", 0, sitk.sitkUInt8))
        return ResampledView(values, tumour, half, np.asarray(grid.spacing))

    before = view(axial_grid(image, None), "nearest")  # the original voxels, axes turned to LPS
    after = view(axial_grid(image, pre.spacing_mm), pre.interpolator)
    after.values = window(after.values, pre.window_width_hu, pre.window_level_hu)
    return before, after


def first_usable_views(cohort, pre: PreprocessConfig, cfg: SlicesConfig
                       ) -> tuple[str, tuple[ResampledView, ResampledView]]:
    """:func:`resampling_views` of the first patient of ``cohort`` whose image and mask can be used, with its id.

    A patient with a broken file is passed over here (chapter 02 lists it with the reason), so one bad case never
    stops the book.
    """
    for row in cohort.itertuples(index=False):
        try:
            return str(row.patient_id), resampling_views(row.image, row.mask, pre, cfg, str(row.patient_id))
        except PatientInputError:
            continue
    raise ValueError("no patient's image and mask could be read; see chapter 02's exclusions")
