"""The scanner side of a synthetic CT: the voxel grid, noise and blur, and the int16 NIfTI files.

Each patient is imaged by one of the cohort's scanner profiles (``SyntheticCohort.scanners``; paper, Table 1:
tube current in mA, pixel spacing in mm, sharpness). The grid keeps the profile's field of view whatever the matrix
(``image_size``), so a 128 x 128 smoke cohort sees the same anatomy as a 512 x 512 one, coarser. Noise is white
Gaussian before an in-plane Gaussian blur (the reconstruction kernel): the blur sets sharpness and noise texture,
and the noise SD after it is ``NOISE_SD_HU_AT_50MA * sqrt(50 / mA)`` HU in the 512 matrix (quantum noise scales as
1/sqrt(dose)), smaller in proportion for coarser matrices. Values are then rounded to integer HU, clipped to the
12-bit CT range and written as gzipped NIfTI-1 with byte-identical output for identical input.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from hcc_utils.synth.params import ScannerProfile

REFERENCE_MATRIX = 512
"""The matrix the scanner profiles' pixel spacing and sharpness refer to (paper, Table 1)."""

NOISE_SD_HU_AT_50MA = 12.0
"""Image noise SD (HU) at 50 mA in the 512 matrix after the scanner's blur; scales as 1/sqrt(mA)."""


@dataclass(frozen=True)
class Geometry:
    """The voxel grid of one patient: ``size`` x ``size`` pixels, ``n_slices`` axial slices, spacing in mm."""

    size: int
    n_slices: int
    spacing_mm: tuple[float, float, float]  # (x, y, z)

    @cached_property
    def u(self) -> np.ndarray:
        """x positions (mm, patient right -> left) from the centre of the field of view, shape ``(1, size)``."""
        dx = self.spacing_mm[0]
        return ((np.arange(self.size, dtype=np.float32) - (self.size - 1) / 2) * dx)[None, :]

    @cached_property
    def v(self) -> np.ndarray:
        """y positions (mm, anterior -> posterior) from the centre of the field of view, shape ``(size, 1)``."""
        dy = self.spacing_mm[1]
        return ((np.arange(self.size, dtype=np.float32) - (self.size - 1) / 2) * dy)[:, None]

    @property
    def z(self) -> np.ndarray:
        """Slice positions (mm, inferior -> superior) from the lowest slice, shape ``(n_slices,)``."""
        return np.arange(self.n_slices, dtype=np.float64) * self.spacing_mm[2]

    @property
    def fov_mm(self) -> float:
        return self.size * self.spacing_mm[0]

    def affine(self) -> np.ndarray:
        """The NIfTI (RAS) voxel-to-world affine of an array indexed ``[x, y, z]``.

        World LPS = (i dx + o_x, j dy + o_y, k dz + o_z) with the field of view centred on the table axis; RAS
        negates the first two axes, so SimpleITK (LPS) reports an identity direction and the spacing as given.
        """
        dx, dy, dz = self.spacing_mm
        origin_lps = np.array([-(self.size - 1) / 2 * dx, -(self.size - 1) / 2 * dy, -250.0])
        affine = np.diag([-dx, -dy, dz, 1.0])
        affine[:3, 3] = origin_lps * np.array([-1.0, -1.0, 1.0])
        return affine


def make_geometry(scanner: ScannerProfile, image_size: int, slice_thickness_mm: float,
                  extent_mm: float) -> Geometry:
    """The grid for one scanner: pixel spacing scaled by 512 / ``image_size`` so the field of view (mm) is kept."""
    dxy = scanner.pixel_spacing_mm * REFERENCE_MATRIX / image_size
    n_slices = int(np.ceil(extent_mm / slice_thickness_mm)) + 1
    return Geometry(size=image_size, n_slices=n_slices, spacing_mm=(dxy, dxy, float(slice_thickness_mm)))


def scanner_noise(hu: np.ndarray, scanner: ScannerProfile, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Add white noise, then blur in-plane: the blur sets sharpness and noise texture; noise SD is calibrated
    after the blur (``NOISE_SD_HU_AT_50MA`` * sqrt(50 / mA), smaller for coarser matrices)."""
    sigma_px = scanner.sharpness_sigma_px * image_size / REFERENCE_MATRIX
    target_sd = NOISE_SD_HU_AT_50MA * np.sqrt(50.0 / scanner.tube_current_ma) * image_size / REFERENCE_MATRIX
    if sigma_px > 0.05:
        radius = int(3 * sigma_px + 0.5)
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
        kernel /= kernel.sum()
        reduction = float((kernel ** 2).sum())  # 2D separable kernel: SD factor = sum(k^2)
    else:
        reduction = 1.0
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    noise *= np.float32(target_sd / reduction)
    noise += hu
    if sigma_px > 0.05:
        ndimage.gaussian_filter(noise, (0, sigma_px, sigma_px), truncate=3.0, output=hu)
        return hu
    return noise


def to_int16(hu: np.ndarray) -> np.ndarray:
    """Round to integer HU and clip to the 12-bit CT range [-1024, 3071] (in place, then cast)."""
    np.rint(hu, out=hu)
    np.maximum(hu, -1024, out=hu)
    np.minimum(hu, 3071, out=hu)
    return hu.astype(np.int16)


def write_nifti(array_zyx: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write a ``(z, y, x)`` array as a gzipped NIfTI-1 file with byte-identical output for identical input.

    The gzip header gets mtime 0 and no file name (``gzip.compress``), so neither time nor folder leak in.
    """
    image = nib.Nifti1Image(np.ascontiguousarray(array_zyx).T, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=1, mtime=0))
