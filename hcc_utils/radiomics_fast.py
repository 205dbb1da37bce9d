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
  ``eps`` term (a relative change of ``eps / (px py)`` in the entries of rare grey levels, whose antisymmetric
  part moves eigenvalues in second order only), so a symmetric solver (``eigvalsh``) on its symmetric part gives
  the same eigenvalues to rounding (about 1e-14 relative), 5-10 times faster on one thread (from
  ``MCC_SYMMETRIC_FROM`` grey levels; below, PyRadiomics' method is cheap and kept).
- ``shape`` (``cShape.calculate_coefficients``): PyRadiomics' C code compares every pair of mesh vertices for the
  maximum diameters (``O(V^2)``, 0.35 s at 6 cm, 1 s at 8 cm); ``hcc_utils.radiomics_shape`` compares the same
  vertices among the candidates a maximum can use (bit-identical) and counts marching-cube patterns for the
  surface area and volume (equal to rounding, about 1e-13).
- ``RadiomicsFirstOrder._moment`` (skewness, kurtosis): ``(x - mean)**3`` and ``**4`` by multiplication instead
  of ``numpy.power`` (``pow`` per voxel); one rounding more per voxel (about 1e-16 relative per term).
- ``RadiomicsFeaturesBase.getFeatureNames``: found once per class (``inspect.getmembers``), not per object.

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

from hcc_utils import radiomics_shape

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

_SHAPE_C = SimpleNamespace(calculate_coefficients=radiomics_shape.shape_coefficients,
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


# --------------------------------------------------------------------------------------------- threads


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
