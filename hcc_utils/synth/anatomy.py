"""Synthetic arterial-phase abdominal CT anatomy for the embedded cohort (``hcc_utils.synth``), noise-free.

The volume covers the liver from just below its inferior tip to just above the dome (paper, "CT scan": "from the
apex of the diaphragm to the lower margin of the liver"), in axial slices of ``slice_thickness_mm`` (5 mm, Table
1). Each slice is painted with vectorised numpy in the order body wall -> organs -> vessels -> bone, so later
structures override earlier ones; small structures are painted inside their own bounding box only. The voxel grid
(``Geometry``), the scanner's noise and blur and the NIfTI output are in ``hcc_utils.synth.scanner``; the tumour is
painted afterwards by ``hcc_utils.synth.lesion``.

Array conventions (the DICOM/LPS convention that dcm2niix preserves): the volume is held as ``(z, y, x)`` in memory,
``x`` runs from the patient's right to left, ``y`` from anterior to posterior, ``z`` from inferior to superior. In
the mm frame used here ``u`` (along x) and ``v`` (along y) are measured from the centre of the field of view, so
the liver (patient right) has negative ``u`` and appears on the left of a slice displayed with rows = y.

Attenuation values (HU, arterial phase, 120 kV) follow common radiology values: air -1000, lung -850, fat about
-100, muscle about 50, liver parenchyma 65-85 (little portal inflow yet), aorta 230-350 (bolus-tracked), bone
cortex about 700 and cancellous bone about 230, kidney cortex about 170 (corticomedullary phase).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hcc_utils.synth.scanner import Geometry


class Tissue:
    """Labels (uint8) of the noise-free anatomy; plain ints, as they are used in per-slice inner loops."""

    AIR = 0
    FAT = 1  # subcutaneous
    MUSCLE = 2
    LIVER = 3
    VESSEL = 4
    BONE = 5
    LUNG = 6
    ORGAN = 7
    LIVER_VESSEL = 8
    TABLE = 9
    CAVITY = 10  # visceral fat of the abdominal cavity


LESION_HOSTS = (Tissue.LIVER, Tissue.LIVER_VESSEL, Tissue.CAVITY)
"""Tissues a (possibly exophytic) tumour may occupy: it pushes other organs aside, never crosses the wall."""


@dataclass(frozen=True)
class Anatomy:
    """One patient's body: sizes in mm, attenuation in HU, and the liver's craniocaudal range."""

    body_a: float  # half-width, left-right
    body_b: float  # half-depth, anterior-posterior
    body_cv: float  # centre of the body outline (y, mm)
    body_harmonics: tuple[float, ...]  # relative outline modulation (cos 2t, sin 2t, cos 3t, sin 3t)
    fat_mm: float  # subcutaneous fat thickness (follows BMI)
    muscle_mm: float
    liver_z0: float  # liver inferior tip (mm from the lowest slice)
    liver_height: float
    liver_hu: float
    aorta_hu: float
    aorta_radius: float
    spine_radius: float
    disc_phase: float
    rib_phase: float
    liver_vessels: np.ndarray  # (n, 6): u0, v0, du, dv (relative to the liver box), radius, enhanced (0/1)
    bowel: np.ndarray  # (n, 6): u, v (relative to the body half-axes), drift u, drift v, radius mm, top (t)

    @property
    def spine_v(self) -> float:
        return self.body_cv + self.body_b - 75.0


def draw_anatomy(rng: np.random.Generator, bmi: float, fov_mm: float) -> tuple[Anatomy, float]:
    """A patient's anatomy (no ER information: only BMI and chance) and the craniocaudal extent (mm) to cover."""
    body_a = float(np.clip(150 + 3.5 * (bmi - 22) + rng.normal(0, 8), 120, 0.45 * fov_mm))
    body_b = float(np.clip(body_a * rng.uniform(0.70, 0.80), 90, 0.40 * fov_mm))
    liver_height = float(rng.uniform(150, 185))
    bottom, top = rng.uniform(10, 20), rng.uniform(12, 22)
    vessels = np.column_stack([
        rng.uniform(-0.5, 0.5, 10), rng.uniform(-0.5, 0.5, 10), rng.uniform(-0.3, 0.3, 10),
        rng.uniform(-0.3, 0.3, 10), rng.uniform(2.0, 5.0, 10), (np.arange(10) < 6).astype(float)])
    anatomy = Anatomy(
        body_a=body_a, body_b=body_b, body_cv=float(rng.uniform(-5, 15)),
        body_harmonics=tuple(float(h) for h in rng.normal(0, 0.025, 4)),
        fat_mm=float(np.clip(8 + 2.2 * (bmi - 18) + rng.normal(0, 3), 4, 45)),
        muscle_mm=float(rng.uniform(7, 12)),
        liver_z0=float(bottom), liver_height=liver_height,
        liver_hu=float(rng.normal(75, 6)), aorta_hu=float(rng.uniform(230, 350)),
        aorta_radius=float(rng.uniform(10, 13)), spine_radius=float(rng.uniform(18, 22)),
        disc_phase=float(rng.uniform(0, 32)), rib_phase=float(rng.uniform(0, 2 * np.pi)),
        liver_vessels=vessels,
        bowel=np.column_stack([rng.uniform(-0.35, 0.75, 14), rng.uniform(-0.75, 0.25, 14), rng.uniform(-0.2, 0.2, 14),
                               rng.uniform(-0.2, 0.2, 14), rng.uniform(9, 18, 14), rng.uniform(0.15, 0.65, 14)]))
    return anatomy, bottom + liver_height + top


def _box(geom: Geometry, cu: float, cv: float, ru: float, rv: float) -> tuple[slice, slice]:
    """Row and column slices of the pixels within ``ru`` x ``rv`` mm of (cu, cv)."""
    dx, dy = geom.spacing_mm[:2]
    c0 = (geom.size - 1) / 2
    cols = slice(max(0, math.floor((cu - ru) / dx + c0)), max(0, math.ceil((cu + ru) / dx + c0) + 1))
    rows = slice(max(0, math.floor((cv - rv) / dy + c0)), max(0, math.ceil((cv + rv) / dy + c0) + 1))
    return rows, cols


def _ellipse(geom: Geometry, cu: float, cv: float, au: float, av: float,
             angle: float = 0.0) -> tuple[slice, slice, np.ndarray]:
    """Pixels inside an ellipse (centre, semi-axes in mm, rotation in radians): its box and the mask in it."""
    reach = max(au, av)
    rows, cols = _box(geom, cu, cv, reach, reach)
    du = geom.u[:, cols] - cu
    dv = geom.v[rows, :] - cv
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        du, dv = du * c + dv * s, dv * c - du * s
    return rows, cols, (du / au) ** 2 + (dv / av) ** 2 <= 1.0


def _is_any(lab: np.ndarray, tissues: tuple[int, ...]) -> np.ndarray:
    hit = lab == tissues[0]
    for tissue in tissues[1:]:
        hit |= lab == tissue
    return hit


def _paint_ellipse(img: np.ndarray, lab: np.ndarray, geom: Geometry, cu: float, cv: float, au: float,
                   av: float, hu: float, tissue: int, angle: float = 0.0,
                   inside: tuple[int, ...] | None = None) -> None:
    """Set pixels inside an ellipse to ``hu`` and ``tissue``; with ``inside``, only pixels of those tissues.

    ``img`` and ``lab`` are one slice ``(y, x)`` or a stack of slices ``(z, y, x)`` (the same ellipse in each).
    """
    if au <= 0 or av <= 0:
        return
    rows, cols, sel = _ellipse(geom, cu, cv, au, av, angle)
    img_box, lab_box = img[..., rows, cols], lab[..., rows, cols]
    if inside is not None:
        sel = sel & _is_any(lab_box, inside)
    else:
        sel = np.broadcast_to(sel, img_box.shape)
    img_box[sel] = hu
    lab_box[sel] = tissue


# body wall layers from outside in: air, skin, subcutaneous fat, muscle, abdominal cavity (visceral fat)
_WALL_HU = np.array([-1000.0, 30.0, -100.0, 50.0, -95.0], dtype=np.float32)
_WALL_TISSUE = np.array([Tissue.AIR, Tissue.MUSCLE, Tissue.FAT, Tissue.MUSCLE, Tissue.CAVITY], dtype=np.uint8)


def _ramp(x: float, top: float = 1.0) -> float:
    """``x`` clipped to [0, top]: how far an organ has grown at this height."""
    return min(max(float(x), 0.0), top)


def _liver_profile(t: float) -> float:
    """Relative liver cross-section size along its height (t = 0 inferior tip, 1 dome), maximal near t = 0.6."""
    return float(np.sqrt(np.sin(np.pi * _ramp(t) ** 1.4)))


class AnatomyPainter:
    """Renders the noise-free HU volume and the tissue labels of one patient, slice by slice."""

    def __init__(self, anatomy: Anatomy, geom: Geometry) -> None:
        self.a, self.g = anatomy, geom
        du = geom.u
        dv = geom.v - anatomy.body_cv
        theta = np.arctan2(dv / anatomy.body_b, du / anatomy.body_a)
        h = anatomy.body_harmonics
        modulation = (1 + h[0] * np.cos(2 * theta) + h[1] * np.sin(2 * theta) + h[2] * np.cos(3 * theta)
                      + h[3] * np.sin(3 * theta) + 0.06 * np.clip(np.sin(theta), 0, None) ** 4)
        ellipse_r = np.hypot(anatomy.body_a * np.cos(theta), anatomy.body_b * np.sin(theta))
        self.body_r = (ellipse_r / modulation).astype(np.float32)  # outline radius at each pixel's angle, mm
        depth = self.body_r - np.hypot(du, dv).astype(np.float32)  # mm inside the body outline
        layer = ((depth > 0).view(np.uint8) + (depth > 1.5).view(np.uint8) + (depth > anatomy.fat_mm).view(np.uint8)
                 + (depth > anatomy.fat_mm + anatomy.muscle_mm).view(np.uint8))
        self.wall_hu, self.wall_tissue = _WALL_HU[layer], _WALL_TISSUE[layer]
        self._table(self.wall_hu, self.wall_tissue)
        self.inner = layer == 4
        self.liver_allowed = depth > anatomy.fat_mm + anatomy.muscle_mm + 2.0

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """(HU volume float32, tissue labels uint8), both shaped ``(z, y, x)``."""
        g = self.g
        hu = np.empty((g.n_slices, g.size, g.size), dtype=np.float32)
        labels = np.empty(hu.shape, dtype=np.uint8)
        for k, z in enumerate(g.z):
            self._slice(hu[k], labels[k], float(z))
        self._axial_constants(hu, labels)
        return hu, labels

    def liver_box(self, t: float) -> tuple[float, float, float, float]:
        """Right-lobe centre and semi-axes (u, v, au, av; mm) at relative liver height ``t``."""
        a = self.a
        w = _liver_profile(t)
        cu = -0.42 * a.body_a - 0.10 * a.body_a * (1 - t)
        return cu, -0.05 * a.body_b, 0.50 * a.body_a * w, 0.85 * a.body_b * w

    def _slice(self, img: np.ndarray, lab: np.ndarray, z: float) -> None:
        a = self.a
        t = (z - a.liver_z0) / a.liver_height
        img[:] = self.wall_hu
        lab[:] = self.wall_tissue
        inner = self.inner
        self._thorax(img, lab, t, inner)
        self._liver(img, lab, t, self.liver_allowed)
        self._organs(img, lab, t)
        self._bowel(img, lab, t, inner)
        self._psoas_and_ribs(img, lab, z, t)

    def _table(self, img: np.ndarray, lab: np.ndarray) -> None:
        g, a = self.g, self.a
        top = a.body_cv + a.body_b + 12.0
        rows = (g.v[:, 0] >= top) & (g.v[:, 0] < top + 8.0)
        cols = np.abs(g.u[0]) < 0.42 * g.fov_mm
        img[np.ix_(rows, cols)] = 150.0
        lab[np.ix_(rows, cols)] = Tissue.TABLE

    def _thorax(self, img: np.ndarray, lab: np.ndarray, t: float, inner: np.ndarray) -> None:
        """Lung bases (posterior recesses) and the heart above the dome."""
        a, g = self.a, self.g
        grow = _ramp((t - 0.72) / 0.28, 1.2)
        if grow <= 0:
            return
        for side in (-1, 1):
            rows, cols = _box(g, side * 0.55 * a.body_a, a.body_cv + 0.35 * a.body_b, 0.45 * a.body_a,
                              0.65 * a.body_b)
            du = (g.u[:, cols] - side * 0.55 * a.body_a) / (0.42 * a.body_a * grow + 1e-3)
            dv = (g.v[rows, :] - a.body_cv - 0.40 * a.body_b) / (0.55 * a.body_b * grow + 1e-3)
            sel = (du ** 2 + dv ** 2 < 1) & inner[rows, cols]
            img[rows, cols][sel] = -850.0
            lab[rows, cols][sel] = Tissue.LUNG
        heart = _ramp((t - 0.93) / 0.07, 1.2)
        if heart > 0:
            _paint_ellipse(img, lab, g, 0.15 * a.body_a, a.body_cv - 0.30 * a.body_b, 0.32 * a.body_a * heart,
                           0.28 * a.body_b * heart, 150.0, Tissue.ORGAN, angle=0.4)

    def _liver(self, img: np.ndarray, lab: np.ndarray, t: float, allowed: np.ndarray) -> None:
        """Right lobe (an ellipse with a lobulated edge, clipped by the abdominal wall), left lobe, vessels."""
        a, g = self.a, self.g
        if not 0 < t < 1:
            return
        cu, cv, au, av = self.liver_box(t)
        rows, cols = _box(g, cu, cv, au * 1.1, av * 1.1)
        du, dv = g.u[:, cols] - cu, g.v[rows, :] - cv
        theta = np.arctan2(dv, du)
        edge = 1.0 + 0.05 * np.cos(3 * theta + 2 * t) + 0.03 * np.sin(5 * theta - 3 * t)
        sel = ((du / au) ** 2 + (dv / av) ** 2 < edge ** 2) & allowed[rows, cols]
        img[rows, cols][sel] = a.liver_hu
        lab[rows, cols][sel] = Tissue.LIVER
        left = _ramp((t - 0.45) / 0.2) * _liver_profile(t)
        if left > 0:
            rows, cols, sel = _ellipse(g, 0.12 * a.body_a, -0.42 * a.body_b, 0.38 * a.body_a * left,
                                       0.25 * a.body_b * left, angle=-0.25)
            sel &= allowed[rows, cols]
            img[rows, cols][sel] = a.liver_hu
            lab[rows, cols][sel] = Tissue.LIVER
        for u0, v0, du_t, dv_t, r, enhanced in a.liver_vessels:
            vu = cu + (u0 + du_t * t) * au * 1.6
            vv = cv + (v0 + dv_t * t) * av * 1.6
            _paint_ellipse(img, lab, g, vu, vv, r, r, 135.0 if enhanced else 55.0, Tissue.LIVER_VESSEL,
                           inside=(Tissue.LIVER,))

    def _organs(self, img: np.ndarray, lab: np.ndarray, t: float) -> None:
        """Portal vein, stomach, spleen, gallbladder and kidneys at the heights where they meet the liver."""
        a, g = self.a, self.g
        portal = _ramp(min(t - 0.3, 0.62 - t) / 0.08)
        if portal > 0:
            _paint_ellipse(img, lab, g, -38.0, a.body_cv - 0.05 * a.body_b, 9 * portal, 7 * portal, 140.0,
                           Tissue.VESSEL, angle=0.6)
        stomach = _ramp(min(t - 0.5, 0.97 - t) / 0.15)
        if stomach > 0:
            su, sv = 0.35 * a.body_a, a.body_cv - 0.25 * a.body_b
            au, av = 0.36 * a.body_a * stomach, 0.35 * a.body_b * stomach
            _paint_ellipse(img, lab, g, su, sv, au + 3, av + 3, 60.0, Tissue.ORGAN, angle=0.5)
            _paint_ellipse(img, lab, g, su, sv, au, av, 15.0, Tissue.ORGAN, angle=0.5)
            rows, cols = _box(g, su, sv, au + 3, av + 3)
            gas = (lab[rows, cols] == Tissue.ORGAN) & (img[rows, cols] == 15.0) & (g.v[rows, :] < sv - 0.3 * av)
            img[rows, cols][gas] = -950.0
        spleen = _ramp(min(t - 0.35, 0.95 - t) / 0.15)
        if spleen > 0:
            _paint_ellipse(img, lab, g, 0.68 * a.body_a, a.body_cv + 0.30 * a.body_b, 0.22 * a.body_a * spleen,
                           0.42 * a.body_b * spleen, 120.0, Tissue.ORGAN, angle=-0.6)
        gallbladder = _ramp(min(t - 0.15, 0.45 - t) / 0.1)
        if gallbladder > 0:
            _paint_ellipse(img, lab, g, -0.18 * a.body_a, -0.45 * a.body_b, 14 * gallbladder, 22 * gallbladder,
                           10.0, Tissue.ORGAN, angle=0.5, inside=(Tissue.LIVER, Tissue.CAVITY))
        for side, top in ((-1, 0.42), (1, 0.52)):
            kidney = _ramp((top - t) / 0.15)
            if kidney > 0:
                ku, kv = side * 0.45 * a.body_a, a.spine_v + 5
                _paint_ellipse(img, lab, g, ku, kv, 28 * kidney, 36 * kidney, 170.0, Tissue.ORGAN,
                               angle=-side * 0.5)
                _paint_ellipse(img, lab, g, ku, kv, 16 * kidney, 22 * kidney, 95.0, Tissue.ORGAN,
                               angle=-side * 0.5)

    def _bowel(self, img: np.ndarray, lab: np.ndarray, t: float, inner: np.ndarray) -> None:
        """Bowel loops (wall, then fluid, gas or faecal content) in the free abdominal cavity below their top."""
        a, g = self.a, self.g
        for j, (u0, v0, du_t, dv_t, r, top) in enumerate(a.bowel):
            if t > top:
                continue
            cu, cv = (u0 + du_t * t) * a.body_a, a.body_cv + (v0 + dv_t * t) * a.body_b
            rows, cols = _box(g, cu, cv, r, r)
            radial = np.hypot(g.u[:, cols] - cu, (g.v[rows, :] - cv) / 0.85)
            free = inner[rows, cols] & (lab[rows, cols] == Tissue.CAVITY)
            wall, content = free & (radial <= r), free & (radial <= r - 2.5)
            img[rows, cols][wall] = 40.0
            lab[rows, cols][wall] = Tissue.ORGAN
            img[rows, cols][content] = (-900.0, 20.0, -40.0)[j % 3]

    def _psoas_and_ribs(self, img: np.ndarray, lab: np.ndarray, z: float, t: float) -> None:
        """Psoas muscles (lower slices) and rib sections inside the body wall (fewer, posterior, lower down)."""
        a, g = self.a, self.g
        psoas = _ramp((0.35 - t) / 0.3)
        if psoas > 0:
            for side in (-1, 1):
                _paint_ellipse(img, lab, g, side * (a.spine_radius + 10), a.spine_v + 2, 6 + 12 * psoas,
                               8 + 10 * psoas, 50.0, Tissue.MUSCLE)
        n_ribs = 9 if t > 0.3 else 4
        for j in range(n_ribs):
            theta = math.pi * (-0.15 + 1.3 * (j + 0.5) / n_ribs) + 0.15 * math.sin(z / 40 + a.rib_phase + j)
            if t <= 0.3:
                theta = math.pi * (0.55 + 0.12 * (j - 1.5))
            direction = np.array([math.cos(theta), math.sin(theta)])
            # the outline radius in this direction, read off the painter's grid at the nearest pixel
            probe = a.body_a * 0.5 * direction + np.array([0.0, a.body_cv])
            r_mid = self._outline_radius(probe) - a.fat_mm - a.muscle_mm * 0.5
            cu, cv = r_mid * direction[0], a.body_cv + r_mid * direction[1]
            _paint_ellipse(img, lab, g, cu, cv, 7.0, 4.5, 520.0, Tissue.BONE, angle=theta + math.pi / 2,
                           inside=(Tissue.MUSCLE, Tissue.FAT))

    def _axial_constants(self, hu: np.ndarray, lab: np.ndarray) -> None:
        """Structures with the same section in every slice, painted on the whole stack at once: paraspinal
        muscles, aorta, inferior vena cava, vertebra (with an intervertebral disc every ~32 mm), arch, canal."""
        a, g = self.a, self.g
        sv, rs = a.spine_v, a.spine_radius
        for side in (-1, 1):
            _paint_ellipse(hu, lab, g, side * 33.0, sv + 45, 26.0, 20.0, 50.0, Tissue.MUSCLE,
                           inside=(Tissue.FAT, Tissue.MUSCLE, Tissue.CAVITY))
        _paint_ellipse(hu, lab, g, 18.0, sv - rs - a.aorta_radius - 3, a.aorta_radius, a.aorta_radius,
                       a.aorta_hu, Tissue.VESSEL)
        _paint_ellipse(hu, lab, g, -24.0, sv - rs - 14, 13.0, 10.0, 95.0, Tissue.VESSEL, angle=0.3)
        _paint_ellipse(hu, lab, g, 0.0, sv, rs, rs * 0.9, 700.0, Tissue.BONE)
        _paint_ellipse(hu, lab, g, 0.0, sv, rs - 2.5, rs * 0.9 - 2.5, 230.0, Tissue.BONE)
        for k in np.flatnonzero((g.z + a.disc_phase) % 32.0 < 7.0):
            _paint_ellipse(hu[k], lab[k], g, 0.0, sv, rs, rs * 0.9, 90.0, Tissue.ORGAN)
        _paint_ellipse(hu, lab, g, 0.0, sv + rs + 10, 14.0, 12.0, 600.0, Tissue.BONE)
        _paint_ellipse(hu, lab, g, 0.0, sv + rs + 9, 8.0, 7.0, 15.0, Tissue.ORGAN)
        _paint_ellipse(hu, lab, g, 0.0, sv + rs + 30, 5.0, 13.0, 550.0, Tissue.BONE)

    def _outline_radius(self, probe: np.ndarray) -> float:
        g = self.g
        dx = g.spacing_mm[0]
        c0 = (g.size - 1) / 2
        col = min(max(round(probe[0] / dx + c0), 0), g.size - 1)
        row = min(max(round(probe[1] / dx + c0), 0), g.size - 1)
        return float(self.body_r[row, col])
