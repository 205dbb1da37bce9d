"""Reading CT volumes and masks (NIfTI, NRRD, MHA, a DICOM series folder) and DICOM -> NIfTI conversion.

Everything is read with SimpleITK, so geometry (origin, spacing, direction, in LPS millimetres) follows ITK's
rules for every format; a DICOM series is sorted by slice position along the slice normal (GDCM), and its
slice spacing comes from the positions, not from the ``SliceThickness`` tag (docs/method.md section 1: DICOM
exported from the PACS and converted to NIfTI)::

    >>> image = read_image(Path("CT_image.nii.gz"), patient_id="STS_001")
    >>> image.GetSpacing()
    (0.977, 0.977, 3.27)

No patient identifier (name, ID, birth date, study date) is read into the outputs or printed: the NIfTI
written by ``dicom2nifti`` holds voxels and geometry only, and messages name files, never DICOM attributes.

ITK and GDCM write their own warnings (e.g. ``WARNING: In .../itkImageSeriesReader.hxx, line 502 ...
Non uniform sampling or missing slices detected``) straight to the process's standard error. The readers here
catch that output while they read (``hcc_utils.reader_output.reader_messages``) and turn each warning into one
line without folder names, handed to the caller (``notes``) or logged (logger ``hcc_utils.reader_output``) when
the caller does not ask.

ITK 5.4's NIfTI reader silently replaces NaN and infinite voxels with 0 (fixed in ITK 6, ITK pull request 6683),
which would hide a broken export as plausible tissue; :func:`read_image` puts them back, so the input checks
(``hcc_utils.patient_check``) see what the file holds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hcc_utils.inputs_check import (
    PatientInputError,
    check_dimensions,
    check_exists,
    check_volume,
    decompress_verified,
)
from hcc_utils.reader_output import reader_messages

_SPACING_TOLERANCE = 0.01  # fraction of the slice spacing


@dataclass(frozen=True)
class ImageHeader:
    """Geometry of a volume without its voxels: size (x, y, z voxels), spacing (mm), origin (mm, LPS)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    pixel_type: str


@dataclass(frozen=True)
class DicomSeries:
    """One series of a DICOM folder: its position in the listing, UID and files sorted by slice position."""

    index: int
    uid: str
    files: tuple[str, ...]


def read_image(path: Path | str, patient_id: str | None = None, role: str = "image",
               series: int | str | None = None, notes: list[str] | None = None) -> sitk.Image:
    """Read a 3D volume: NIfTI (``.nii``, ``.nii.gz``), NRRD, MHA/MHD, or a folder holding one DICOM series.

    Args:
        path: the file, or the DICOM folder.
        patient_id: named in error messages.
        role: ``"image"`` or ``"mask"``, named in error messages.
        series: for a DICOM folder with several series, which one (index in :func:`list_dicom_series` or UID).
        notes: receives one line per warning ITK or GDCM wrote while reading (filled also when the read then
            fails); when None, each is logged instead. Nothing the readers write reaches standard error.

    Raises:
        PatientInputError: missing, empty, damaged (truncated gzip) or unreadable file; a 2D image; a DICOM
            folder with no or several series, or unevenly spaced slices.
    """
    path = Path(path)
    check_exists(path, patient_id, role)
    with reader_messages(notes, patient_id, path, role):
        if path.is_dir():
            image = read_dicom_series(path, series=series, patient_id=patient_id, role=role)
        else:
            image = _drop_unit_fourth_axis(_read_file(path, patient_id, role))
    check_volume(image, patient_id, path, role)
    return image


def _drop_unit_fourth_axis(image: sitk.Image) -> sitk.Image:
    """A 4D image with a single time point (as some converters write) as the 3D volume it is."""
    return image[:, :, :, 0] if image.GetDimension() == 4 and image.GetSize()[3] == 1 else image


def _read_file(path: Path, patient_id: str | None, role: str) -> sitk.Image:
    readable = decompress_verified(path, patient_id, role) if path.name.lower().endswith(".gz") else path
    try:
        image = sitk.ReadImage(str(readable))
        if path.name.lower().endswith((".nii", ".nii.gz")) and image.GetPixelID() in (sitk.sitkFloat32,
                                                                                      sitk.sitkFloat64):
            image = _with_nonfinite_kept(image, readable)
        return image
    except RuntimeError:
        raise PatientInputError(patient_id, path, f"{role} file cannot be read as an image (damaged, "
                                "truncated or another format)", "export it again as NIfTI (.nii.gz), NRRD or "
                                "MHA, or give the folder of a DICOM series") from None
    finally:
        if readable != path:
            shutil.rmtree(readable.parent, ignore_errors=True)


def _with_nonfinite_kept(image: sitk.Image, nifti: Path) -> sitk.Image:
    """``image`` (read by ITK from the uncompressed NIfTI file ``nifti``) with the file's NaN and infinite voxels
    put back where ITK 5.4 wrote 0.

    The file's voxels are memory-mapped (nibabel), unscaled: only a floating-point data type can hold them. NIfTI
    stores x fastest, as ITK's buffer, so flat indices agree. Best effort: a file nibabel cannot map is left as
    ITK read it.
    """
    try:
        import nibabel as nib

        raw = nib.load(str(nifti)).dataobj.get_unscaled()
        if raw.dtype.kind != "f" or raw.size != np.prod(image.GetSize()) * image.GetNumberOfComponentsPerPixel():
            return image
        flat = np.reshape(raw, -1, order="F")
        bad = np.flatnonzero(~np.isfinite(flat))
        if bad.size == 0:
            return image
        kept = flat[bad].astype(np.float64)
    except Exception:  # a check on top of a successful read must not fail the read
        return image
    values = sitk.GetArrayFromImage(image)
    values.reshape(-1)[bad] = kept
    out = sitk.GetImageFromArray(values, isVector=image.GetNumberOfComponentsPerPixel() > 1)
    out.CopyInformation(image)
    return out


def read_header(path: Path | str, patient_id: str | None = None, role: str = "image",
                notes: list[str] | None = None) -> ImageHeader:
    """The geometry of a volume from its header only (fast: no voxels are decompressed).

    For a DICOM folder, the size counts the slice files and the spacing comes from the first two slice
    positions. ``notes`` as in :func:`read_image`.

    Raises:
        PatientInputError: missing or unreadable file, or a header that is not of a 3D volume (2D, or 4D with
            several time points).
    """
    path = Path(path)
    check_exists(path, patient_id, role)
    with reader_messages(notes, patient_id, path, role):
        header = _read_header(path, patient_id, role)
    check_dimensions(header.size, patient_id, path, role)
    return header


def _read_header(path: Path, patient_id: str | None, role: str) -> ImageHeader:
    reader = sitk.ImageFileReader()
    if path.is_dir():
        found = list_dicom_series(path)
        if len(found) != 1:
            raise _series_error(path, found, patient_id)
        files = found[0].files
        second = sitk.ImageFileReader()
        try:
            reader.SetFileName(files[0])
            reader.ReadImageInformation()
            if len(files) > 1:
                second.SetFileName(files[1])
                second.ReadImageInformation()
        except RuntimeError:
            raise PatientInputError(patient_id, path, f"DICOM {role} series header cannot be read (damaged or "
                                    "not an image series)", "export the series again from the PACS") from None
        spacing = list(reader.GetSpacing()[:2]) + [float(reader.GetSpacing()[-1])]
        if len(files) > 1:
            spacing[2] = float(np.linalg.norm(np.subtract(second.GetOrigin(), reader.GetOrigin())))
        return ImageHeader(tuple(reader.GetSize()[:2]) + (len(files),), tuple(spacing), reader.GetOrigin(),
                           reader.GetDirection(), sitk.GetPixelIDValueAsString(reader.GetPixelID()))
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise PatientInputError(patient_id, path, f"{role} file header cannot be read",
                                "save it as NIfTI (.nii.gz), NRRD or MHA") from None
    return ImageHeader(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection(),
                       sitk.GetPixelIDValueAsString(reader.GetPixelID()))


def list_dicom_series(folder: Path | str) -> list[DicomSeries]:
    """The DICOM series in ``folder`` (not its sub-folders), each with its files sorted by slice position."""
    folder = str(folder)
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM warns on stderr about non-DICOM files
    try:
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    return [DicomSeries(i, uid, tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)))
            for i, uid in enumerate(sorted(uids))]


def _series_error(folder: Path, found: list[DicomSeries], patient_id: str | None) -> PatientInputError:
    if not found:
        return PatientInputError(patient_id, folder, "folder holds no DICOM series",
                                 "point to the folder that holds the .dcm files of the arterial-phase series")
    listing = ", ".join(f"#{s.index}: {len(s.files)} slice(s)" for s in found)
    return PatientInputError(patient_id, folder, f"folder holds {len(found)} DICOM series ({listing})",
                             "choose one: 'python -m hcc_utils dicom2nifti FOLDER OUT.nii.gz --series N' (N "
                             "the index above, or the SeriesInstanceUID) and use the NIfTI in the manifest")


def read_dicom_series(folder: Path | str, series: int | str | None = None, patient_id: str | None = None,
                      role: str = "image") -> sitk.Image:
    """Read one DICOM series as a 3D volume in HU (rescale slope/intercept applied), sorted by slice position.

    The returned image carries geometry only: no DICOM attribute is kept in its metadata.

    Raises:
        PatientInputError: no series, several series and ``series`` not given (the message lists them by index
            and slice count, never by patient attributes), unknown ``series``, unevenly spaced slices.
    """
    folder = Path(folder)
    found = list_dicom_series(folder)
    if series is None:
        if len(found) != 1:
            raise _series_error(folder, found, patient_id)
        chosen = found[0]
    else:
        matches = [s for s in found if str(series) in (str(s.index), s.uid)]
        if not matches:
            raise PatientInputError(patient_id, folder, f"no DICOM series {series!r} in this folder "
                                    f"({len(found)} series)", "give an index from 0 to "
                                    f"{max(len(found) - 1, 0)} or a SeriesInstanceUID present in the folder")
        chosen = matches[0]
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames(list(chosen.files))
    reader.LoadPrivateTagsOff()
    try:
        raw = reader.Execute()
    except RuntimeError:
        sizes = _slice_sizes(chosen.files)
        if len(sizes) > 1:
            shown = " and ".join("x".join(map(str, size)) for size in sorted(sizes)[:3])
            raise PatientInputError(patient_id, folder, f"DICOM slices of this series have different sizes "
                                    f"({shown} pixels): the folder mixes images of several series or "
                                    "reconstructions", "export the arterial-phase series alone") from None
        raise PatientInputError(patient_id, folder, f"DICOM {role} series cannot be read (damaged or not an "
                                "image series)", "export the series again from the PACS") from None
    raw = _drop_unit_fourth_axis(raw)
    check_volume(raw, patient_id, folder, role)
    deviation = _slice_spacing_deviation(chosen.files, raw)
    if deviation > _SPACING_TOLERANCE * raw.GetSpacing()[2]:
        raise PatientInputError(patient_id, folder, "DICOM slices are unevenly spaced (up to "
                                f"{deviation:.3g} mm off a regular grid): slices are missing or several "
                                "series are mixed",
                                "export the complete series again")
    return _geometry_only(raw)


def _slice_sizes(files: tuple[str, ...]) -> set[tuple[int, ...]]:
    """The distinct in-plane sizes (columns, rows) of the slice files, from their headers."""
    sizes = set()
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            continue
        sizes.add(tuple(reader.GetSize()[:2]))
    return sizes


def _slice_spacing_deviation(files: tuple[str, ...], image: sitk.Image) -> float:
    """Largest distance (mm) of a slice from the regular grid the volume assumes, along the slice normal."""
    if len(files) < 3:
        return 0.0
    import pydicom

    normal = np.asarray(image.GetDirection()).reshape(3, 3)[:, 2]
    positions = []
    for name in files:
        header = pydicom.dcmread(name, stop_before_pixels=True, specific_tags=["ImagePositionPatient"])
        if "ImagePositionPatient" not in header:
            return 0.0
        positions.append(float(np.dot(np.asarray(header.ImagePositionPatient, dtype=float), normal)))
    positions = np.sort(positions)
    expected = positions[0] + image.GetSpacing()[2] * np.arange(len(positions))
    return float(np.max(np.abs(positions - expected)))


def _geometry_only(image: sitk.Image) -> sitk.Image:
    """A copy holding voxels (int16 when the values fit, else float32) and geometry, and no metadata."""
    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.kind in "iu" and values.min() >= np.iinfo(np.int16).min and values.max() <= np.iinfo(
            np.int16).max:
        values = values.astype(np.int16)
    elif values.dtype.kind not in "iu":
        values = values.astype(np.float32)
    clean = sitk.GetImageFromArray(np.ascontiguousarray(values))
    clean.CopyInformation(image)
    return clean


def dicom_to_nifti(src_dir: Path | str, out_path: Path | str, series: int | str | None = None) -> sitk.Image:
    """Convert one DICOM series to a NIfTI file that holds voxels and geometry only (no patient data).

    Returns the written image. Raises :class:`PatientInputError` on a bad folder (see
    :func:`read_dicom_series`).
    """
    out_path = Path(out_path)
    if not out_path.name.lower().endswith((".nii", ".nii.gz")):
        raise PatientInputError(None, out_path, "output name must end in .nii or .nii.gz",
                                "e.g. 'python -m hcc_utils dicom2nifti SRC_DIR case001.nii.gz'")
    check_exists(Path(src_dir), None, "DICOM folder")
    if not Path(src_dir).is_dir():
        raise PatientInputError(None, src_dir, "expected a folder holding one DICOM series, got a file",
                                "give the folder that holds the series' .dcm files")
    image = read_dicom_series(src_dir, series=series)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(out_path), useCompression=out_path.name.lower().endswith(".gz"))
    return image


def main_dicom2nifti_cli(src_dir: Path, out_path: Path, series: int | str | None = None) -> int:
    """``python -m hcc_utils dicom2nifti SRC_DIR OUT.nii.gz [--series N]``: convert and print what was written.

    Returns 0. Raises :class:`PatientInputError` on bad input; ``python -m hcc_utils`` prints it as one
    ``error:`` line with exit code 2, after refusing an existing OUT unless ``--force`` (``hcc_utils.__main__``).
    """
    image = dicom_to_nifti(src_dir, out_path, series=series)
    size = "x".join(str(s) for s in image.GetSize())
    spacing = "x".join(f"{s:.3g}" for s in image.GetSpacing())
    print(f"wrote {Path(out_path).name}: {size} voxels, spacing {spacing} mm")
    return 0
