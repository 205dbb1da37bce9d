"""Exact, faster PyRadiomics: small overrides of PyRadiomics functions that keep its feature values.

The Radiomics comparator (docs/method.md section 5) extracts PyRadiomics' full bank per patient and reader;
``hcc_utils.radiomics`` runs that extraction inside ``exact_overrides()``, which swaps a few PyRadiomics
functions for ones that compute the same numbers with less work (issue 18). Each override says what it replaces
and why its values are PyRadiomics' own:

- ``imageoperations.getBinEdges`` (fixed ``binWidth``): the edges from the ROI's two extremes, found by numpy,
  instead of Python's ``min``/``max`` over every voxel; the same edges (bit-identical).
- ``RadiomicsFeaturesBase._applyBinning``: every texture class re-bins the same filtered image (6 times per image);
  the first result is kept for the image and handed out as copies (bit-identical).
- ``RadiomicsGLCM.getMCCFeatureValue``: PyRadiomics takes the general eigenvalues (``numpy.linalg.eigvals``) of
  ``Q = Dx^-1 P Dy^-1 P^T`` per angle. ``Q`` is similar to ``Dx^1/2 Q Dx^-1/2``, symmetric up to PyRadiomics'
  ``eps`` term (1e-5 of the smallest entries at most, whose antisymmetric part moves eigenvalues in second order
  only), so a symmetric solver (``eigvalsh``) on its symmetric part gives the same eigenvalues to rounding
  (about 1e-14 relative), several times faster and without LAPACK's general solver (from
  ``MCC_SYMMETRIC_FROM`` grey levels; below, PyRadiomics' method is cheap and kept).
- ``shape`` (``cShape.calculate_coefficients``): PyRadiomics' C code compares every pair of mesh vertices for the
  maximum diameters (``O(V^2)``, 0.35 s at 6 cm, 1 s at 8 cm). Here the same vertices (edge midpoints of the
  voxel grid, coordinates computed as in the C code) are reduced to the candidates a maximum can use (convex
  hull vertices in 3D, end points of every grid line in a plane) and the same squared distances are compared:
  the same maxima. Surface area and volume are sums over marching cubes whose terms depend on the cube's corner
  pattern (and, for the volume, linearly on the cube's position): PyRadiomics' own C function is probed once per
  pattern and spacing on one-cube masks, and the patterns are counted (equal to rounding, about 1e-15).
- ``RadiomicsFirstOrder._moment`` (skewness, kurtosis): ``(x - mean)**3`` and ``**4`` by multiplication instead
  of ``numpy.power`` (``pow`` per voxel); one rounding more per voxel (about 1e-16 relative per term).

Everything else (resampling, filters, texture matrices in C, the other features) is PyRadiomics' code.
``tests/test_radiomics_fast.py`` checks every feature of the full bank against a plain PyRadiomics call (1e-9
relative, 1e-12 absolute near 0).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator, Mapping
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk
from radiomics import base, firstorder, generalinfo, glcm, imageoperations
from radiomics import shape as pyradiomics_shape

_PYRADIOMICS = {
    "getBinEdges": imageoperations.getBinEdges,
    "_applyBinning": base.RadiomicsFeaturesBase._applyBinning,
    "getMCCFeatureValue": glcm.RadiomicsGLCM.getMCCFeatureValue,
    "cShape": pyradiomics_shape.cShape,
    "_moment": firstorder.RadiomicsFirstOrder.__dict__["_moment"],
    "getFeatureNames": base.RadiomicsFeaturesBase.__dict__["getFeatureNames"],
}
MCC_SYMMETRIC_FROM = 24
"""Grey levels from which MCC's eigenvalues come from the symmetric solver. Below, PyRadiomics' own method (a
few milliseconds) keeps MCC bit-identical where it is ill-conditioned: with 2-3 grey levels and nearly
independent neighbours the second eigenvalue can be ~1e-12, known to ~1e-16 absolute by either solver, so its
square root differs in the 5th digit between them."""
PAIR_BLOCK = 512
"""Rows per block when comparing all pairs of candidate vertices (memory: block x candidates x 24 bytes)."""


# --------------------------------------------------------------------------------------------- bin edges


def bin_edges_from_extremes(parameterValues, **kwargs):  # noqa: N803 - PyRadiomics' argument name
    """``imageoperations.getBinEdges`` with a fixed ``binWidth``: PyRadiomics' own function on ``[min, max]``.

    PyRadiomics takes ``min()`` and ``max()`` of the ROI's grey values with Python's builtins, one numpy scalar
    per voxel (5% of a full-bank extraction at 3 cm, 25% at 6 cm). With a fixed bin width the edges depend on those
    two values only (exact in floating point). ``binCount`` settings and ROIs holding NaN go to the original.
    """
    original = _PYRADIOMICS["getBinEdges"]
    values = np.asarray(parameterValues)
    if kwargs.get("binCount") is not None or values.size == 0:
        return original(parameterValues, **kwargs)
    extremes = np.array([values.min(), values.max()])
    return original(parameterValues if np.isnan(extremes).any() else extremes, **kwargs)


# --------------------------------------------------------------------------------------------- binning once

_binned = threading.local()


def _apply_binning_once(self, matrix):
    """``RadiomicsFeaturesBase._applyBinning``, computed once per (filtered image, mask, bin settings).

    PyRadiomics' ``computeFeatures`` builds every feature class from the same image and mask objects, and each
    class bins the image again. The binned array, grey levels and ``Ng`` of the last image are kept (per thread)
    and handed out as copies. Voxel-based extraction, or a matrix that is not the image's own values, goes to
    the original.
    """
    original = _PYRADIOMICS["_applyBinning"]
    if self.voxelBased or not np.array_equal(matrix, self.imageArray):
        return original(self, matrix)
    key = (self.label, self.settings.get("binWidth", 25), self.settings.get("binCount"))
    entry = getattr(_binned, "entry", None)
    if entry is None or entry[0] is not self.inputImage or entry[1] is not self.inputMask or entry[2] != key:
        binned = original(self, matrix)
        _binned.entry = (self.inputImage, self.inputMask, key, binned.copy(),
                         self.coefficients["grayLevels"].copy(), self.coefficients["Ng"])
        return binned
    self.coefficients["grayLevels"] = entry[4].copy()
    self.coefficients["Ng"] = entry[5]
    return entry[3].copy()


# --------------------------------------------------------------------------------------------- GLCM MCC


def mcc_symmetric(self):
    """``RadiomicsGLCM.getMCCFeatureValue`` from a symmetric eigenproblem (module docstring; glcm feature 16).

    ``Q[i, j] = sum_k P[i, k] P[j, k] / (px[i] py[k] + eps)`` exactly as PyRadiomics builds it; then
    ``S = Dx^1/2 Q Dx^-1/2`` (grey levels with ``px = 0`` have an empty row and column in ``Q``, hence in ``S``:
    eigenvalue 0, as in ``Q``), ``eigvalsh((S + S^T) / 2)`` and the square root of the second largest eigenvalue,
    averaged over angles with ``nanmean``. Fewer than ``MCC_SYMMETRIC_FROM`` grey levels (cheap; a flat region
    returns 1) or a GLCM holding NaN go to PyRadiomics' method.
    """
    P = self.P_glcm
    if P.shape[1] < MCC_SYMMETRIC_FROM or P.shape[3] == 0 or not np.isfinite(P).all():
        return _PYRADIOMICS["getMCCFeatureValue"](self)
    eps = self.coefficients["eps"]
    p = P.transpose(0, 3, 1, 2)  # (voxels, angles, i, k)
    px = self.coefficients["px"][:, :, 0, :].transpose(0, 2, 1)  # (voxels, angles, i)
    py = self.coefficients["py"][:, 0, :, :].transpose(0, 2, 1)  # (voxels, angles, k)
    q = (p / (px[..., :, None] * py[..., None, :] + eps)) @ p.swapaxes(-1, -2)
    root = np.sqrt(px)
    inverse = np.divide(1.0, root, out=np.zeros_like(root), where=root > 0)
    s = root[..., :, None] * q * inverse[..., None, :]
    eigenvalues = np.linalg.eigvalsh((s + s.swapaxes(-1, -2)) / 2)  # ascending
    with np.errstate(invalid="ignore"):
        mcc = np.sqrt(eigenvalues[..., -2])
    return np.nanmean(mcc, 1)


# --------------------------------------------------------------------------------------------- shape


def _corner_patterns(mask: np.ndarray) -> np.ndarray:
    """The 8-bit corner pattern of every marching cube (cube ``(z, y, x)`` spans voxels ``z..z+1`` etc.); bit
    ``4 dz + 2 dy + dx``."""
    m = mask.astype(np.uint8)
    pattern = np.zeros(tuple(s - 1 for s in m.shape), dtype=np.uint8)
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                corner = m[dz:m.shape[0] - 1 + dz, dy:m.shape[1] - 1 + dy, dx:m.shape[2] - 1 + dx]
                pattern |= corner << np.uint8(4 * dz + 2 * dy + dx)
    return pattern


def _cube(pattern: int) -> np.ndarray:
    """The 2 x 2 x 2 mask of one corner pattern (bit order of ``_corner_patterns``)."""
    return np.array([(pattern >> b) & 1 for b in range(8)], dtype=bool).reshape(2, 2, 2)


@functools.lru_cache(maxsize=8)
def _pattern_terms(spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyRadiomics' surface area and volume terms of one marching cube per corner pattern, from its C code.

    For a cube at grid position ``(z, y, x)`` the C code adds ``area[c]`` to the surface area and
    ``volume[c] + z * slope[c, 0] + y * slope[c, 1] + x * slope[c, 2]`` to the volume (its signed tetrahedra from
    the image origin are linear in the cube's position). ``area`` and ``volume`` come from a one-cube mask;
    ``slope[c, axis]`` from a mask of two cubes along ``axis`` (the first repeats the pattern's lower face, so
    it is another known pattern, the second is the pattern moved by one voxel) minus the two one-cube terms.
    """
    calculate = _PYRADIOMICS["cShape"].calculate_coefficients
    spacing_array = np.asarray(spacing, dtype=float)
    area, volume = np.zeros(256), np.zeros(256)
    for pattern in range(256):
        area[pattern], volume[pattern], _ = calculate(_cube(pattern), spacing_array)
    slope = np.zeros((256, 3))
    for pattern in range(256):
        cube = _cube(pattern)
        for axis in range(3):
            lower = np.take(cube, [0], axis=axis)
            pair = np.concatenate([lower, cube], axis=axis)  # cubes: (lower, lower) then the pattern
            first = int(_corner_patterns(np.take(pair, [0, 1], axis=axis))[0, 0, 0])
            _, both, _ = calculate(pair, spacing_array)
            slope[pattern, axis] = both - volume[first] - volume[pattern]
    return area, volume, slope


def _mesh_vertices(mask: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mesh vertices PyRadiomics' C code compares for the diameters: ``(n, 3)`` coordinates in mm (z, y, x)
    and the same points as twice their grid index (integers).

    One vertex per grid edge whose two voxels differ, at the edge's midpoint: for cube ``(z, y, x)`` the edges
    from voxel ``(z+1, y+1, x)`` towards ``+x``, ``-y`` and ``-z``, coordinates ``(index + offset) * spacing``
    as the C code computes them (hence the same floating-point values).
    """
    m = mask.astype(bool)
    corner = m[1:, 1:, :-1]
    edges = ((m[1:, 1:, 1:], (1.0, 1.0, 0.5)), (m[1:, :-1, :-1], (1.0, 0.5, 0.0)),
             (m[:-1, 1:, :-1], (0.5, 1.0, 0.0)))
    coordinates, grid = [], []
    for neighbour, offset in edges:
        index = np.nonzero(corner != neighbour)
        coordinates.append(np.stack([(i.astype(float) + o) * s for i, o, s in zip(index, offset, spacing,
                                                                                  strict=True)], axis=1))
        grid.append(np.stack([2 * i + int(2 * o) for i, o in zip(index, offset, strict=True)], axis=1))
    return np.concatenate(coordinates), np.concatenate(grid)


def _max_squared_distance(points: np.ndarray, at_least: float = 0.0) -> float:
    """The largest ``(a - b)**2`` summed over z, y, x (in that order, as the C code) over all pairs, or
    ``at_least`` when no pair reaches it.

    Both ends of a pair at least ``d`` apart lie at least ``d - R`` from the centroid (``R``: the largest distance
    to it), so with ``at_least`` only those points are compared (with a margin of 1e-9 for rounding).
    """
    if len(points) > 64 and at_least > 0:
        distance = np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1))
        points = points[distance >= np.sqrt(at_least) * (1 - 1e-9) - distance.max()]
    best = at_least
    for start in range(0, len(points), PAIR_BLOCK):
        diff = points[start:start + PAIR_BLOCK, None, :] - points[None, :, :]
        diff *= diff
        best = max(best, float(((diff[..., 0] + diff[..., 1]) + diff[..., 2]).max(initial=0.0)))
    return best


def _line_ends(line: list[np.ndarray], position: np.ndarray) -> np.ndarray:
    """Which points are the first or last (by ``position``) of their line, the points sharing the integer keys
    ``line``.

    A point strictly between two others of a straight line is no vertex of the convex hull of any set holding
    them, so it cannot end a longest pair (the distance is convex in each end).
    """
    order = np.lexsort((position, *line[::-1]))
    key = np.stack(line, axis=1)[order]
    new_line = np.r_[True, (key[1:] != key[:-1]).any(axis=1)]
    ends = np.zeros(len(position), dtype=bool)
    ends[order[new_line | np.r_[new_line[1:], True]]] = True
    return ends


def _hull_vertices(points: np.ndarray) -> np.ndarray:
    """The convex hull's vertices in 3D (all points when there are few, or when qhull fails, e.g. flat sets)."""
    if len(points) <= PAIR_BLOCK:
        return points
    from scipy.spatial import ConvexHull, QhullError

    try:
        return points[ConvexHull(points).vertices]
    except QhullError:
        return points


def _diameters_squared(points: np.ndarray, grid: np.ndarray) -> list[float]:
    """The largest squared distance between two vertices with the same z, the same y, the same x, and overall
    (the C code's four diameters before the square root), compared among the candidates that can reach them:
    in a plane, the ends of its grid lines along both axes and both diagonals; in 3D, the ends along the three
    axes, then the convex hull's vertices."""
    if len(points) == 0:
        return [0.0] * 4
    axis_ends = [_line_ends([grid[:, a] for a in range(3) if a != along], grid[:, along]) for along in range(3)]
    squared = []
    for axis in range(3):
        b, c = [a for a in range(3) if a != axis]
        keep = axis_ends[b] & axis_ends[c]
        keep &= _line_ends([grid[:, axis], grid[:, b] - grid[:, c]], grid[:, b])
        keep &= _line_ends([grid[:, axis], grid[:, b] + grid[:, c]], grid[:, b])
        p = points[keep]
        p = p[np.argsort(p[:, axis], kind="stable")]
        planes = np.split(p, np.flatnonzero(p[1:, axis] != p[:-1, axis]) + 1)
        best = 0.0
        for k in np.argsort([len(plane) for plane in planes])[::-1]:  # large planes first: a high bound early
            best = _max_squared_distance(planes[k], best)
        squared.append(best)
    candidates = _hull_vertices(points[axis_ends[0] & axis_ends[1] & axis_ends[2]])
    squared.append(_max_squared_distance(candidates, max(squared)))  # a pair in a plane is a pair
    return squared


def shape_coefficients(mask: np.ndarray, spacing: np.ndarray) -> tuple[float, float, tuple[float, ...]]:
    """``cShape.calculate_coefficients``: surface area (mm^2), volume (mm^3) and the maximum diameters (mm, same
    slice, column, row, 3D) of PyRadiomics' marching-cubes mesh of ``mask`` (padded, z, y, x; module
    docstring). Other than a 3D boolean mask goes to PyRadiomics' C function."""
    if mask.ndim != 3 or mask.dtype != bool or min(mask.shape) < 2:
        return _PYRADIOMICS["cShape"].calculate_coefficients(mask, spacing)
    spacing = np.asarray(spacing, dtype=float)
    area, volume, slope = _pattern_terms(tuple(spacing.tolist()))
    patterns = _corner_patterns(mask).ravel()
    counts = np.bincount(patterns, minlength=256)
    position = np.indices(tuple(s - 1 for s in mask.shape), sparse=False).reshape(3, -1).astype(float)
    position_sums = np.stack([np.bincount(patterns, weights=position[a], minlength=256) for a in range(3)], 1)
    surface = float(counts @ area)
    total_volume = float(counts @ volume + (position_sums * slope).sum())
    squared = _diameters_squared(*_mesh_vertices(mask, spacing))
    return surface, total_volume, tuple(float(np.sqrt(d)) for d in squared)


_SHAPE_C = SimpleNamespace(calculate_coefficients=shape_coefficients,
                           calculate_coefficients2D=_PYRADIOMICS["cShape"].calculate_coefficients2D)


# --------------------------------------------------------------------------------------------- first order


def moment_by_products(a, moment=1):
    """``RadiomicsFirstOrder._moment``: ``nanmean((a - nanmean(a))**moment)`` per row, the powers 2-4 by
    multiplication. Arrays holding NaN (voxel-based extraction) go to the original."""
    if moment not in (2, 3, 4) or np.isnan(a).any():
        return _PYRADIOMICS["_moment"].__func__(a, moment)
    d = a - np.mean(a, 1, keepdims=True)
    square = d * d
    power = square if moment == 2 else square * d if moment == 3 else square * square
    return np.mean(power, 1)


# --------------------------------------------------------------------------------------------- feature names


@functools.cache
def _feature_names(cls) -> dict[str, bool]:
    return _PYRADIOMICS["getFeatureNames"].__func__(cls)


def feature_names(cls) -> dict[str, bool]:
    """``RadiomicsFeaturesBase.getFeatureNames``: each class's features (name: deprecated) found once per class,
    not once per feature class object (``inspect.getmembers``, 85 times per full-bank extraction); a copy."""
    return dict(_feature_names(cls))


# --------------------------------------------------------------------------------------------- diagnostics


def plain_diagnostics(result: Mapping, extractor, image: sitk.Image, mask: sitk.Image,
                      inputs: tuple[sitk.Image, sitk.Image], resampled: bool) -> dict:
    """The ``diagnostics_*`` entries a plain call (``RadiomicsFeatureExtractor.execute`` with
    ``additionalInfo: true``) returns, in its order, for the project's extraction (``hcc_utils.radiomics``).

    ``result`` is PyRadiomics' output on the prepared ``inputs`` with diagnostics on: its entries of a corrected
    or resegmented mask are the plain call's. The settings, and after the project's own resampling the original
    image and mask (whole volume, hashed; the mask cast as PyRadiomics' ``getMask`` does) and the interpolated
    ones, are recorded here as PyRadiomics' ``execute`` and ``loadImage`` do.
    """
    settings = {**extractor.settings, "additionalInfo": True}
    info = generalinfo.GeneralInfo()
    info.addGeneralSettings(settings)
    info.addEnabledImageTypes(extractor.enabledImagetypes)
    if resampled:
        label = settings.get("label", 1)
        info.addImageElements(image)
        info.addMaskElements(None, imageoperations.getMask(mask, **settings), label)
        info.addImageElements(inputs[0], "interpolated")
        info.addMaskElements(inputs[0], inputs[1], label, "interpolated")
    own = dict(info.getGeneralInfo())
    kept = ("diagnostics_Mask-corrected", "diagnostics_Mask-resegmented") if resampled else "diagnostics_"
    return own | {k: v for k, v in result.items() if k.startswith(kept) and k not in own}


# --------------------------------------------------------------------------------------------- installing

_OVERRIDES = (
    (imageoperations, "getBinEdges", bin_edges_from_extremes),
    (base.RadiomicsFeaturesBase, "_applyBinning", _apply_binning_once),
    (glcm.RadiomicsGLCM, "getMCCFeatureValue", mcc_symmetric),
    (pyradiomics_shape, "cShape", _SHAPE_C),
    (firstorder.RadiomicsFirstOrder, "_moment", staticmethod(moment_by_products)),
    (base.RadiomicsFeaturesBase, "getFeatureNames", classmethod(feature_names)),
)
_lock = threading.Lock()
_depth = 0
_saved: list[tuple[object, str, object]] = []


@contextlib.contextmanager
def exact_overrides() -> Iterator[None]:
    """PyRadiomics with the overrides above, for the duration of the block (module docstring).

    Re-entrant and thread-safe: installed on the first entry, restored on the last exit (threads of one process
    share PyRadiomics' module state; the overrides give the same values, so overlapping blocks are harmless).
    """
    global _depth
    with _lock:
        if _depth == 0:
            _saved[:] = [(owner, name, owner.__dict__[name]) for owner, name, _ in _OVERRIDES]
            for owner, name, replacement in _OVERRIDES:
                setattr(owner, name, replacement)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for owner, name, original in _saved:
                    setattr(owner, name, original)
                _saved.clear()
                _binned.entry = None
