"""Bad input at the image stage: the checks, and one exception naming the patient, the file and what to do.

Every check raises :class:`PatientInputError`, whose text is a single sentence a user can act on::

    patient HCC0007, file 'HCC0007_reader1.nii.gz': mask is empty (no voxel with a label); check that the mask
    file is the right one and was saved after drawing

The cohort loop (``hcc_utils.slices.build_slice_dataset``) catches it per patient, records it in the run's
``exclusions.csv`` and goes on with the other patients. Only file *names* are shown, never their folders
(which may hold identifiers); a name is quoted, so that a leading or trailing space shows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np

_CHUNK_BYTES = 1 << 22


class PatientInputError(ValueError):
    """An input file of one patient that cannot be used.

    Args:
        patient_id: the manifest's patient id, or None when unknown (the ``crop`` command).
        file: the offending file or folder (only its name is shown).
        message: what is wrong, e.g. ``"mask is empty (no voxel with a label)"``.
        hint: what to do about it, e.g. ``"check the mask file or the 'slices.mask_label' parameter"``.
    """

    def __init__(self, patient_id: str | None, file: str | Path | None, message: str, hint: str = ""):
        self.patient_id = patient_id
        self.file = Path(file).name if file else ""
        self.kind = "folder" if file and Path(file).is_dir() else "file"
        self.message = message
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = place(self.patient_id, self.file, self.kind)
        prefix = f"{where}: " if where else ""
        return f"{prefix}{self.message}" + (f"; {self.hint}" if self.hint else "")

    def with_patient(self, patient_id: str | None) -> PatientInputError:
        """The same error attributed to ``patient_id``."""
        err = PatientInputError(patient_id, self.file, self.message, self.hint)
        err.kind = self.kind
        return err


def place(patient_id: str | None, file: str | Path | None, kind: str = "file") -> str:
    """Where a message is about: ``patient HCC0007, file 'HCC0007.nii.gz'`` (the name only, quoted as Python
    quotes it, so a trailing space or a control character shows), or a part of that, or ``""``."""
    where = [] if patient_id is None else [f"patient {patient_id}"]
    if file:
        where.append(f"{kind} {Path(file).name!r}")
    return ", ".join(where)


def file_state(path: str | Path) -> list:
    """A file's identity for the caches' keys: its path, size (bytes) and modification time (ns); None when absent.

    The stack cache (chapter 02) and the intake's check cache (chapter 01) key on it, so an edited file is read again.
    """
    path = Path(str(path)) if path else None
    stat = path.stat() if path is not None and path.exists() else None
    return [str(path), stat.st_size if stat else None, stat.st_mtime_ns if stat else None]


def check_exists(path: Path, patient_id: str | None, role: str) -> None:
    """The file or folder exists and is not empty."""
    if not path.exists():
        raise PatientInputError(patient_id, path, f"{role} not found",
                                "check the path (in a manifest, paths are relative to cohort.csv)")
    if not os.access(path, os.R_OK):
        raise PatientInputError(patient_id, path, f"{role} cannot be read (permission denied)",
                                "give your user read access to it")
    if path.is_file() and path.stat().st_size == 0:
        raise PatientInputError(patient_id, path, f"{role} file is empty (0 bytes)",
                                "export or copy the file again")


def decompress_verified(path: Path, patient_id: str | None, role: str) -> Path:
    """Decompress a ``.gz`` file to a temporary file, checking every gzip member's CRC and length.

    SimpleITK reads a truncated ``.nii.gz`` without complaint and fills the missing voxels with zeros, so the
    compressed stream is verified here (as nibabel does) before the image is parsed. Returns the temporary
    file (in its own folder, on ``/dev/shm`` when available); the caller removes that folder. A file named
    ``.gz`` that is not gzip-compressed is returned as is (SimpleITK reads it).
    """
    with path.open("rb") as src:
        if src.read(2) != b"\x1f\x8b":
            return path
        src.seek(-4, os.SEEK_END)
        expected_bytes = int.from_bytes(src.read(4), "little")  # the last member's length mod 2^32: a guess
    complete = False
    for tmp_root in (_memory_folder(2 * expected_bytes + (1 << 20)), None):
        folder = Path(tempfile.mkdtemp(prefix="hcc_read_", dir=tmp_root))
        target = folder / path.name[: -len(".gz")]
        try:
            complete = _gunzip(path, target)
        except zlib.error:
            complete = False
        except OSError:  # e.g. /dev/shm full: retry in the ordinary temporary folder
            shutil.rmtree(folder, ignore_errors=True)
            if tmp_root is None:
                raise
            continue
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        break
    if not complete:
        shutil.rmtree(folder, ignore_errors=True)
        raise PatientInputError(patient_id, path, f"{role} file is damaged: its compressed (gzip) stream is "
                                "truncated or corrupt, so part of the volume is missing",
                                "copy or export the file again (an interrupted download or copy does this)")
    return target


def _memory_folder(needed_bytes: int) -> str | None:
    """``/dev/shm`` when it is writable with room for ``needed_bytes`` (containers often give it 64 MB)."""
    try:
        if os.access("/dev/shm", os.W_OK) and shutil.disk_usage("/dev/shm").free > needed_bytes:
            return "/dev/shm"
    except OSError:
        pass
    return None


def _gunzip(source: Path, target: Path) -> bool:
    """Stream-decompress ``source`` into ``target``; True when the last gzip member ended with its trailer."""
    decompressor = zlib.decompressobj(wbits=31)
    member_open = False
    with source.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(_CHUNK_BYTES):
            while chunk:
                member_open = True
                dst.write(decompressor.decompress(chunk))
                if not decompressor.eof:
                    break
                chunk = decompressor.unused_data  # the next member of a multi-member file
                decompressor = zlib.decompressobj(wbits=31)
                member_open = False
    return not member_open


def check_volume(image, patient_id: str | None, file: Path, role: str) -> None:
    """A 3D volume with more than one slice (a 2D image cannot give a 2.5D stack)."""
    check_dimensions(tuple(image.GetSize()), patient_id, file, role)


def check_dimensions(size: tuple[int, ...], patient_id: str | None, file: Path, role: str) -> None:
    """The same check from a size alone (voxels per axis, e.g. a header's): 3D, more than one voxel along each
    axis; a 4D size whose fourth axis is 1 (one time point) counts as 3D."""
    size = tuple(int(s) for s in size)
    if len(size) == 4 and size[3] == 1:
        size = size[:3]
    if len(size) <= 2 or (len(size) == 3 and min(size) == 1):
        shown = "x".join(str(s) for s in size)
        raise PatientInputError(patient_id, file, f"{role} is 2D (a single {shown} slice), but the 2.5D "
                                "stack needs the 3D volume",
                                "export the whole series (all axial slices) as one file")
    if len(size) != 3:
        raise PatientInputError(patient_id, file, f"{role} has {len(size)} dimensions "
                                f"({'x'.join(str(s) for s in size)}), expected a 3D volume",
                                "save one 3D phase (the arterial phase) per file")


def lesion_voxels(mask: np.ndarray, label: int, other_labels: str, patient_id: str | None,
                  file: Path) -> np.ndarray:
    """Flat indices of the voxels with ``label``, after checking the mask holds sensible labels.

    Args:
        mask: the mask array (any numeric dtype).
        label: the tumour's label value (``slices.mask_label``).
        other_labels: ``"error"`` (another label besides background and ``label`` is an error, since a liver
            mask with the tumour as label 2 would otherwise be read as the tumour) or ``"ignore"``.

    Raises:
        PatientInputError: empty mask, no voxel with ``label``, non-integer values, or other labels present.
    """
    flat = mask.reshape(-1)
    nonzero = np.flatnonzero(flat != 0)
    values = flat[nonzero]
    if nonzero.size == 0:
        raise PatientInputError(patient_id, file, "mask is empty (no voxel with a label)",
                                "check that the mask file is the right one and was saved after drawing")
    if values.dtype.kind == "f" and not np.all(np.isfinite(values) & (values == np.round(values))):
        odd = values[~(np.isfinite(values) & (values == np.round(values)))][0]
        raise PatientInputError(patient_id, file, f"mask holds non-integer values (e.g. {float(odd):.3g}), "
                                "so it is not a label mask (an interpolated mask, or image and mask swapped?)",
                                "export the segmentation as integer labels (ITK-SNAP: Segmentation > Save)")
    present = np.unique(values).astype(np.int64)
    if label not in present:
        raise PatientInputError(patient_id, file, f"mask has no voxel with label {label} (labels present: "
                                f"{present.tolist()})", "set 'slices.mask_label' to the tumour's label")
    others = [int(v) for v in present if v != label]
    if others and other_labels == "error":
        raise PatientInputError(patient_id, file, f"mask holds labels {present.tolist()}, expected only "
                                f"{label} besides background", f"if the tumour is label {label}, set "
                                "'slices.other_labels: ignore'; otherwise set 'slices.mask_label' to the "
                                "tumour's label")
    return nonzero[values == label] if others else nonzero
