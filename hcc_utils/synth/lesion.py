"""The HCC lesion of one synthetic patient: 3D shape, arterial-phase appearance and the two readers' masks.

The phenotype (size, margin irregularity, internal heterogeneity, necrosis, capsule, satellite nodules, peritumoral
enhancement, degree of arterial hyperenhancement) is drawn in ``hcc_utils.synth.biology`` from the patient's
latent biology; this module turns it into voxels. Everything is computed inside the lesion's bounding box.

Shape: an ellipsoid of the drawn diameter whose radius is modulated by a smooth random function of direction (a
sum of cosines of the direction vector, low frequencies for lobulation and higher ones for margin irregularity),
so the signed distance to the surface is ``sd = |A d| - R (1 + g(d / |d|))`` in mm. Partial volume: a voxel is
filled by ``clip(1/2 - sd / w, 0, 1)`` with ``w`` the extent of the voxel (mm) along the surface normal, so 5 mm
slices soften the lesion's upper and lower surfaces as a real slice profile does.

Masks: reader 1 is the set of voxel centres inside the surface (sd < 0, never in bone, muscle, lung or air);
reader 2 moves that boundary by a smooth random field (a bias, direction-dependent bulges and slice-to-slice jitter,
as a second radiologist drawing slice by slice would), scaled so its Dice with reader 1 is a drawn target in
[0.86, 0.94] (paper: "Tumor segmentation ... by two radiologists", used for the ICC of radiomics features).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from hcc_utils.synth.anatomy import LESION_HOSTS, Tissue
from hcc_utils.synth.scanner import Geometry

NECROSIS_HU = 25.0
CAPSULE_HU = 50.0
PERITUMORAL_GAIN_HU = 35.0
READER2_DICE_RANGE = (0.86, 0.94)


@dataclass(frozen=True)
class LesionPhenotype:
    """What the lesion looks like (drawn from the latent biology in ``hcc_utils.synth.biology``)."""

    diameter_mm: float
    irregularity: float  # SD of the relative radius modulation (fraction of the radius)
    heterogeneity_hu: float  # SD of the internal texture, HU
    necrosis_share: float  # fraction of the tumour volume
    capsule: bool
    satellites: int
    peritumoral_enhancement: bool
    enhancement_hu: float  # mean arterial-phase attenuation of viable tumour, HU


@dataclass(frozen=True)
class LesionResult:
    """The rendered lesion: both readers' masks (uint8, ``(z, y, x)``) and what ground_truth.csv records."""

    reader1: np.ndarray
    reader2: np.ndarray
    volume_ml: float
    reader2_dice: float
    central_slice: int


class _DirectionField:
    """A smooth random function on the unit sphere with standard deviation ``amplitude`` (sum of cosines)."""

    def __init__(self, rng: np.random.Generator, n_terms: int, freq: tuple[float, float], amplitude: float):
        directions = rng.normal(size=(n_terms, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        self.waves = directions * rng.uniform(*freq, size=(n_terms, 1))
        self.phases = rng.uniform(0, 2 * np.pi, n_terms)
        self.weight = amplitude * np.sqrt(2.0 / n_terms)

    def __call__(self, nz: np.ndarray, ny: np.ndarray, nx: np.ndarray) -> np.ndarray:
        total = np.zeros(np.broadcast_shapes(nz.shape, ny.shape, nx.shape), dtype=np.float32)
        for (wz, wy, wx), phase in zip(self.waves, self.phases, strict=True):
            total += np.cos(nz * np.float32(wz) + ny * np.float32(wy) + nx * np.float32(wx) + np.float32(phase))
        return total * np.float32(self.weight)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_mm: float,
                  spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Gaussian random field with unit SD and correlation length ``sigma_mm``."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    field = ndimage.gaussian_filter(noise, [sigma_mm / s for s in spacing_zyx], mode="reflect")
    return field / max(float(field.std()), 1e-6)


def _choose_centre(labels: np.ndarray, geom: Geometry, radius: float, liver_z0: float, liver_height: float,
                   rng: np.random.Generator) -> tuple[int, int, int]:
    """A voxel (k, j, i) deep in the liver at mid height, where a lesion of ``radius`` mm fits in the volume."""
    dz = geom.spacing_mm[2]
    z = geom.z
    fits = (z >= min(radius + dz, z[-1] / 2)) & (z <= max(z[-1] - radius - dz, z[-1] / 2))
    t = (z - liver_z0) / liver_height
    liver_area = ((labels == Tissue.LIVER) | (labels == Tissue.LIVER_VESSEL)).sum(axis=(1, 2))
    candidates = np.flatnonzero(fits & (t > 0.3) & (t < 0.75) & (liver_area > 0))
    if candidates.size == 0:
        candidates = np.flatnonzero(fits & (liver_area > 0))
    if candidates.size == 0:
        candidates = np.array([geom.n_slices // 2])
    k = int(rng.choice(candidates))
    liver = (labels[k] == Tissue.LIVER) | (labels[k] == Tissue.LIVER_VESSEL)
    if not liver.any():
        return k, geom.size // 2, geom.size // 2
    depth = ndimage.distance_transform_edt(liver, sampling=geom.spacing_mm[1::-1])
    deep = np.argwhere(depth >= min(0.6 * radius, 0.8 * depth.max()))
    j, i = deep[rng.integers(len(deep))]
    return k, int(j), int(i)


def render_lesion(hu: np.ndarray, labels: np.ndarray, geom: Geometry, phenotype: LesionPhenotype,
                  liver_z0: float, liver_height: float, rng: np.random.Generator) -> LesionResult:
    """Paint the lesion into ``hu`` (in place, noise-free HU) and return both readers' masks."""
    dx, dy, dz = geom.spacing_mm
    spacing_zyx = (dz, dy, dx)
    radius = phenotype.diameter_mm / 2
    k0, j0, i0 = _choose_centre(labels, geom, radius, liver_z0, liver_height, rng)
    centre = np.array([k0 * dz, j0 * dy, i0 * dx]) + rng.uniform(-0.5, 0.5, 3) * np.array(spacing_zyx)
    reach = radius * (1 + 3 * phenotype.irregularity) + 12.0
    lo = [max(0, int(np.floor((c - reach) / s))) for c, s in zip(centre, spacing_zyx, strict=True)]
    hi = [min(n, int(np.ceil((c + reach) / s)) + 1)
          for c, s, n in zip(centre, spacing_zyx, hu.shape, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    pz, py, px = (np.arange(a, b, dtype=np.float32) * s - np.float32(c)
                  for a, b, s, c in zip(lo, hi, spacing_zyx, centre, strict=True))
    pz, py, px = pz[:, None, None], py[None, :, None], px[None, None, :]
    dist = np.sqrt(pz ** 2 + py ** 2 + px ** 2) + np.float32(1e-3)
    nz, ny, nx = pz / dist, py / dist, px / dist

    rotation = Rotation.random(rng=rng).as_matrix().astype(np.float32)
    axes = rng.uniform([0.8, 0.75, 1.0], [1.0, 1.0, 1.0]).astype(np.float32)
    axes /= np.cbrt(axes.prod())
    ez, ey, ex = ((rotation[r, 0] * pz + rotation[r, 1] * py + rotation[r, 2] * px) / axes[r] for r in range(3))
    ellipsoid_dist = np.sqrt(ez ** 2 + ey ** 2 + ex ** 2)
    lobes = _DirectionField(rng, 8, (1.0, 3.0), 0.7 * phenotype.irregularity)
    margin = _DirectionField(rng, 8, (5.0, 9.0), 0.5 * phenotype.irregularity)
    sd = ellipsoid_dist - np.float32(radius) * (1 + lobes(nz, ny, nx) + margin(nz, ny, nx))
    normal_extent = np.abs(nz) * dz + np.abs(ny) * dy + np.abs(nx) * dx
    host = np.isin(labels[box], LESION_HOSTS)
    occupancy = np.clip(0.5 - sd / normal_extent, 0, 1) * host
    inside = (sd < 0) & host

    texture = _smooth_field(rng, sd.shape, rng.uniform(2.0, 4.0), spacing_zyx)
    tumour = phenotype.enhancement_hu + phenotype.heterogeneity_hu * texture
    core = inside & (sd < -3.0)
    if phenotype.necrosis_share > 0 and core.sum() > 20:
        field = _smooth_field(rng, sd.shape, 6.0, spacing_zyx) + 2.0 * (1 - ellipsoid_dist / np.float32(radius))
        share_of_core = min(0.95, phenotype.necrosis_share * inside.sum() / core.sum())
        threshold = np.quantile(field[core], 1 - share_of_core)
        necrotic = np.clip((field - threshold) / 0.5 + 0.5, 0, 1) * core
        tumour = tumour * (1 - necrotic) + (NECROSIS_HU + 4.0 * texture) * necrotic
    if phenotype.capsule:
        thickness = rng.uniform(1.2, 2.2)
        coverage = _DirectionField(rng, 6, (1.0, 3.0), 1.0)(nz, ny, nx) > -0.5
        rim = np.clip(1.0 - np.abs(sd + thickness / 2) / (thickness / 2 + 0.5 * normal_extent), 0, 1) * coverage
        tumour = tumour * (1 - rim) + CAPSULE_HU * rim
    region = hu[box]
    region[:] = region * (1 - occupancy) + tumour * occupancy
    liver_box = (labels[box] == Tissue.LIVER) | (labels[box] == Tissue.LIVER_VESSEL)
    if phenotype.peritumoral_enhancement:
        width = rng.uniform(5.0, 10.0)
        wedge = _DirectionField(rng, 6, (1.0, 2.5), 1.0)(nz, ny, nx) > 0.3
        gain = np.clip(1 - sd / width, 0, 1) * (sd > 0) * wedge * liver_box
        region += PERITUMORAL_GAIN_HU * gain
    reader1 = np.zeros(hu.shape, dtype=np.uint8)
    reader1[box] = inside
    for _ in range(phenotype.satellites):
        _paint_satellite(hu, labels, reader1, centre, radius * (1 + 2 * phenotype.irregularity),
                         phenotype.enhancement_hu + 10.0, spacing_zyx, rng)
    reader2 = np.zeros(hu.shape, dtype=np.uint8)
    reader2[box], dice = _second_reader(sd, inside, host, (nz, ny, nx), radius, rng)
    n_voxels = int(inside.sum())
    central = int(lo[0] + np.argmax(inside.sum(axis=(1, 2)))) if n_voxels else -1
    return LesionResult(reader1=reader1, reader2=reader2, volume_ml=n_voxels * dx * dy * dz / 1000.0,
                        reader2_dice=dice, central_slice=central)


def _paint_satellite(hu: np.ndarray, labels: np.ndarray, lesion: np.ndarray, lesion_centre: np.ndarray,
                     reach: float, satellite_hu: float, spacing_zyx: tuple[float, float, float],
                     rng: np.random.Generator) -> None:
    """A small spherical daughter nodule (3-7 mm radius) 4-12 mm beyond the main tumour, in liver only.

    Not part of the readers' masks: they outline the dominant lesion.
    """
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    radius = rng.uniform(3.0, 7.0)
    centre = lesion_centre + direction * (reach + rng.uniform(4.0, 12.0) + radius)
    spacing = np.array(spacing_zyx)
    lo = np.maximum(np.floor((centre - radius - spacing) / spacing).astype(int), 0)
    hi = np.minimum(np.ceil((centre + radius + spacing) / spacing).astype(int) + 1, hu.shape)
    if np.any(hi <= lo):
        return
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    offsets = np.ogrid[box]
    dist = np.sqrt(sum((o * s - c) ** 2 for o, s, c in zip(offsets, spacing, centre, strict=True)))
    allowed = ((labels[box] == Tissue.LIVER) | (labels[box] == Tissue.LIVER_VESSEL)) & (lesion[box] == 0)
    fill = (np.clip(0.5 - (dist - radius) / spacing.mean(), 0, 1) * allowed).astype(np.float32)
    hu[box] = hu[box] * (1 - fill) + np.float32(satellite_hu) * fill


def _second_reader(sd: np.ndarray, reader1: np.ndarray, host: np.ndarray, normals: tuple[np.ndarray, ...],
                   radius: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Reader 2's mask (in the lesion box) and its Dice with reader 1, aimed at a drawn target Dice."""
    target = rng.uniform(*READER2_DICE_RANGE)
    bulges = _DirectionField(rng, 8, (1.5, 5.0), 1.0)(*normals)
    jitter = rng.normal(0, 0.5, size=(sd.shape[0], 1, 1)).astype(np.float32)
    shift = np.float32(radius) * (np.float32(rng.normal(0, 0.5)) + bulges + jitter)
    n1 = int(reader1.sum())

    def attempt(scale: float) -> tuple[np.ndarray, float]:
        mask = (sd < scale * shift) & host
        overlap = int((mask & reader1).sum())
        return mask, 2.0 * overlap / max(n1 + int(mask.sum()), 1)

    lo, hi = 0.0, 0.25
    best_mask, best_dice = attempt(hi)
    while best_dice > target and hi < 4.0:
        hi *= 2
        best_mask, best_dice = attempt(hi)
    for _ in range(14):
        mid = (lo + hi) / 2
        mask, dice = attempt(mid)
        if abs(dice - target) < abs(best_dice - target):
            best_mask, best_dice = mask, dice
        if dice > target:
            lo = mid
        else:
            hi = mid
    return best_mask, float(best_dice)
