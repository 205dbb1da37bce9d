"""Reading volumes (NIfTI, NRRD, MHA, DICOM series) and DICOM -> NIfTI without identifiers (hcc_utils.io), and
the readers' console output caught (hcc_utils.reader_output)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from _volumes import IDENTIFIERS, volume, write, write_dicom_series

from hcc_utils import io
from hcc_utils.inputs_check import PatientInputError
from hcc_utils.reader_output import summarise_reader_output

UID = "1.2.826.0.1.3680043.2.1125.7"


def _same(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing())
            and np.allclose(a.GetOrigin(), b.GetOrigin()) and np.allclose(a.GetDirection(), b.GetDirection())
            and np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b)))


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.nrrd", "ct.mha"])
def test_formats_read_back_with_their_geometry(tmp_path, name):
    image = volume(direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1), origin=(30.0, 12.5, -80.0))
    path = write(image, tmp_path / name)
    assert _same(io.read_image(path), image)
    header = io.read_header(path)
    assert header.size == image.GetSize()
    assert np.allclose(header.spacing, image.GetSpacing()) and np.allclose(header.origin, image.GetOrigin())


def test_truncated_gzip_is_caught_not_half_read(tmp_path):
    path = write(volume(shape_zyx=(30, 64, 64)), tmp_path / "HCC0009.nii.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(PatientInputError) as err:
        io.read_image(path, patient_id="HCC0009")
    text = str(err.value)
    assert text.startswith("patient HCC0009, file 'HCC0009.nii.gz': image file is damaged")
    assert "truncated or corrupt" in text and "copy or export the file again" in text


def test_corrupt_gzip_crc_is_caught(tmp_path):
    path = write(volume(), tmp_path / "ct.nii.gz")
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # inside the CRC-32 trailer
    path.write_bytes(bytes(data))
    with pytest.raises(PatientInputError, match="damaged"):
        io.read_image(path)


@pytest.mark.parametrize("name", ["ct.nrrd", "ct.mha"])
def test_truncated_compressed_nrrd_and_mha_are_refused(tmp_path, name):
    path = write(volume(shape_zyx=(30, 64, 64)), tmp_path / name)  # zlib-compressed voxels
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(PatientInputError, match="cannot be read as an image .damaged, truncated"):
        io.read_image(path)


def test_multi_member_and_uncompressed_gz_files_read(tmp_path):
    image = volume()
    raw = write(image, tmp_path / "ct.nii").read_bytes()
    (tmp_path / "multi.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    assert _same(io.read_image(tmp_path / "multi.nii.gz"), image)
    shutil.copy(tmp_path / "ct.nii", tmp_path / "plain.nii.gz")
    assert _same(io.read_image(tmp_path / "plain.nii.gz"), image)


def test_single_time_point_4d_reads_as_3d(tmp_path):
    values = np.zeros((5, 6, 7, 1), dtype=np.int16)  # nibabel order (x, y, z, t)
    nib.save(nib.Nifti1Image(values, np.diag([0.8, 0.8, 4.0, 1.0])), tmp_path / "t1.nii.gz")
    assert io.read_image(tmp_path / "t1.nii.gz").GetSize() == (5, 6, 7)
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7, 3), np.int16), np.eye(4)), tmp_path / "t3.nii.gz")
    with pytest.raises(PatientInputError, match="4 dimensions"):
        io.read_image(tmp_path / "t3.nii.gz")


@pytest.mark.parametrize("name", ["nan.nii.gz", "nan.nii"])
def test_nifti_nan_and_infinite_voxels_are_kept_not_read_as_zero(tmp_path, name):
    """ITK 5.4's NIfTI reader writes 0 for them; read_image puts them back, in the file's voxel order."""
    values = np.full((5, 6, 7), 40.0, np.float32)  # nibabel order (x, y, z)
    values[1, 2, 3], values[4, 0, 6], values[0, 5, 0] = np.nan, np.inf, -np.inf
    nib.save(nib.Nifti1Image(values, np.diag([-0.8, -0.8, 3.0, 1.0])), tmp_path / name)
    read = sitk.GetArrayFromImage(io.read_image(tmp_path / name))  # (z, y, x)
    assert np.isnan(read[3, 2, 1]) and read[6, 0, 4] == np.inf and read[0, 5, 0] == -np.inf
    assert np.isfinite(read).sum() == read.size - 3 and np.all(read[np.isfinite(read)] == 40.0)
    scaled = nib.Nifti1Image(np.ones((5, 6, 7), np.int16), np.eye(4))
    scaled.header.set_slope_inter(0.5, -10.0)  # integers on disk, floats once scaled: nothing to put back
    nib.save(scaled, tmp_path / "scaled.nii.gz")
    assert np.all(sitk.GetArrayFromImage(io.read_image(tmp_path / "scaled.nii.gz")) == -9.5)


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "notes.nrrd").write_text("this is not an image\n")
    with pytest.raises(PatientInputError, match=r"file 'notes.nrrd': image file cannot be read as an image"):
        io.read_image(tmp_path / "notes.nrrd")
    with pytest.raises(PatientInputError, match="mask not found; check the path"):
        io.read_image(tmp_path / "gone.nii.gz", role="mask")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(PatientInputError, match="empty"):
        io.read_image(tmp_path / "empty.nii.gz")


def test_dicom_series_sorted_by_position_with_header_geometry(tmp_path):
    image = volume(shape_zyx=(6, 16, 20), spacing=(0.8, 0.8, 2.5), origin=(-10.0, -20.0, -30.0))
    folder = write_dicom_series(image, tmp_path / "series", UID)
    for k, path in enumerate(sorted(folder.iterdir())):  # file names in reverse slice order
        path.rename(folder / f"img{5 - k}.dcm")
    read = io.read_image(folder)
    assert _same(read, image)
    assert read.GetMetaDataKeys() == ()


def test_dicom_folder_with_two_series_asks_which(tmp_path):
    folder = tmp_path / "mixed"
    write_dicom_series(volume(shape_zyx=(5, 16, 16)), folder, UID)
    write_dicom_series(volume(shape_zyx=(3, 16, 16), spacing=(0.8, 0.8, 5.0)), folder / "b", UID + "1")
    for path in (folder / "b").iterdir():
        path.rename(folder / f"b_{path.name}")
    with pytest.raises(PatientInputError) as err:
        io.read_image(folder, patient_id="HCC0004")
    text = str(err.value)
    assert ("patient HCC0004, folder 'mixed': folder holds 2 DICOM series (#0: 5 slice(s), #1: 3 slice(s))"
            in text)
    assert "--series N" in text
    assert io.read_image(folder, series=1).GetSize() == (16, 16, 3)
    assert io.read_image(folder, series=UID).GetSize() == (16, 16, 5)


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path):
    folder = write_dicom_series(volume(shape_zyx=(6, 16, 16)), tmp_path / "gap", UID, skip_slices=(3,))
    with pytest.raises(PatientInputError, match="unevenly spaced"):
        io.read_image(folder)


def test_dicom_series_mixing_slice_sizes_says_so(tmp_path):
    folder = write_dicom_series(volume(shape_zyx=(6, 16, 16)), tmp_path / "mixed", UID)
    other = write_dicom_series(volume(shape_zyx=(6, 12, 12)), tmp_path / "small", UID)
    (other / "slice003.dcm").replace(folder / "slice003.dcm")
    with pytest.raises(PatientInputError, match=r"different sizes \(12x12 and 16x16 pixels\).*several series"):
        io.read_image(folder)


def _jittered_series(folder, shift_mm=0.02):
    """A DICOM series whose fourth slice sits ``shift_mm`` off the regular grid: ITK warns, the read succeeds
    (within ``io._SPACING_TOLERANCE``)."""
    import pydicom

    write_dicom_series(volume(shape_zyx=(6, 16, 16)), folder, UID)
    path = folder / "slice003.dcm"
    header = pydicom.dcmread(path)
    position = [float(v) for v in header.ImagePositionPatient]
    header.ImagePositionPatient = [f"{v:.4f}" for v in (position[0], position[1], position[2] + shift_mm)]
    header.save_as(path)
    return folder


def test_itk_warnings_become_one_line_notes_not_raw_stderr(tmp_path, capfd):
    notes = []
    image = io.read_image(_jittered_series(tmp_path / "Doe Jane 1945" / "ct"), notes=notes)
    assert image.GetSize() == (16, 16, 6)
    assert capfd.readouterr().err == ""
    assert notes == ["ImageSeriesReader: Non uniform sampling or missing slices detected, maximum "
                     "nonuniformity:0.02"]
    gap = write_dicom_series(volume(shape_zyx=(6, 16, 16)), tmp_path / "gap", UID, skip_slices=(3,))
    notes = []
    with pytest.raises(PatientInputError, match="unevenly spaced"):
        io.read_image(gap, notes=notes)  # the notes are filled also when the read then fails
    assert capfd.readouterr().err == "" and "missing slices detected" in notes[0]


def test_itk_warnings_are_logged_when_the_caller_keeps_no_notes(tmp_path, capfd, caplog):
    folder = _jittered_series(tmp_path / "ct")
    with caplog.at_level("WARNING", logger="hcc_utils.reader_output"):
        io.read_image(folder, patient_id="HCC0003")
        io.read_header(folder, patient_id="HCC0003")
    assert capfd.readouterr().err == ""
    assert [r.getMessage() for r in caplog.records][:1] == [
        "patient HCC0003, folder 'ct': the image reader warned: ImageSeriesReader: Non uniform sampling or "
        "missing slices detected, maximum nonuniformity:0.02"]


def test_reader_output_is_summarised_without_folders():
    text = ("WARNING: In /build/ITK/Modules/IO/itkGDCMImageIO.cxx, line 361\n"
            "GDCMImageIO (0x5581d2c0): Could not read /data/Doe Jane/CT 1/slice7.dcm\n\n"
            "WARNING: In /build/ITK/Modules/IO/itkGDCMImageIO.cxx, line 361\n"
            "GDCMImageIO (0x5581d2c0): Could not read /data/Doe Jane/CT 1/slice7.dcm\n"
            "Warning: In /gdcm/gdcmReader.cxx, line 12, function Read\nbad tag in Smith_J/x.dcm\n")
    lines = summarise_reader_output(text, [Path("/data/Doe Jane/CT 1")])
    assert lines == ["GDCMImageIO: Could not read slice7.dcm", "bad tag in x.dcm"]
    assert summarise_reader_output("x" * 500)[0].endswith("...") and summarise_reader_output("\n") == []


def test_dicom2nifti_writes_no_identifiers(tmp_path, capsys):
    image = volume(shape_zyx=(4, 16, 16), spacing=(0.7, 0.7, 3.0))
    folder = write_dicom_series(image, tmp_path / "PID31337_DOE", UID)
    out = tmp_path / "case001.nii.gz"
    assert io.main_dicom2nifti_cli(folder, out) == 0
    printed = capsys.readouterr().out
    written = gzip.decompress(out.read_bytes())
    header = nib.load(out).header
    for value in IDENTIFIERS.values():
        assert value.encode() not in written
        assert value not in printed
    assert "DOE" not in printed  # not even the folder's name
    assert header["descrip"].tobytes().strip(b"\x00") == b""
    assert header["intent_name"].tobytes().strip(b"\x00") == b""
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), sitk.GetArrayFromImage(image))


def dicom2nifti(*args) -> int:
    """``python -m hcc_utils dicom2nifti ...`` as a user calls it."""
    from hcc_utils.__main__ import main

    return main(["dicom2nifti", *map(str, args)])


def error_lines(capsys) -> list[str]:
    """What a command printed on stderr, checked to be ``error:`` lines and no traceback."""
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err
    lines = printed.err.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), lines
    return lines


def test_dicom2nifti_bad_input_returns_2_with_one_line(tmp_path, capsys):
    assert dicom2nifti(tmp_path / "nowhere", tmp_path / "o.nii.gz") == 2
    assert error_lines(capsys) == ["error: file 'nowhere': DICOM folder not found; check the path (in a manifest, "
                                   "paths are relative to cohort.csv)"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "scan.dcm").write_text("not a DICOM file")
    assert dicom2nifti(tmp_path / "notes", tmp_path / "o.nii.gz") == 2
    [line] = error_lines(capsys)
    assert line.startswith("error: folder 'notes': folder holds no DICOM series; point to the folder")
    assert dicom2nifti(tmp_path / "notes", tmp_path / "o.png") == 2
    assert "output name must end in .nii or .nii.gz" in error_lines(capsys)[0]
    assert dicom2nifti(tmp_path / "notes", tmp_path / "notes") == 2
    assert error_lines(capsys) == ["error: OUT 'notes' is a folder; give a file name ending in .nii.gz"]
    (tmp_path / "afile").write_text("")
    assert dicom2nifti(tmp_path / "notes", tmp_path / "afile" / "o.nii.gz") == 2
    assert error_lines(capsys) == ["error: OUT 'o.nii.gz': 'afile' above it is a file, not a folder; choose "
                                   "another OUT"]
    assert not list(tmp_path.glob("*.nii*"))


def test_dicom2nifti_never_overwrites_without_force(tmp_path, capsys):
    folder = write_dicom_series(volume(shape_zyx=(4, 16, 16), spacing=(0.7, 0.7, 3.0)), tmp_path / "series", UID)
    out = tmp_path / "case001.nii.gz"
    out.write_bytes(b"an earlier conversion")
    assert dicom2nifti(folder, out) == 2
    assert error_lines(capsys) == ["error: OUT 'case001.nii.gz' exists; choose another name or add --force"]
    assert out.read_bytes() == b"an earlier conversion"
    assert dicom2nifti(folder, out, "--force") == 0
    assert "wrote case001.nii.gz" in capsys.readouterr().out
    assert sitk.ReadImage(str(out)).GetSize() == (16, 16, 4)


def test_image_modules_do_not_import_torch():
    code = ("import sys, hcc_utils.io, hcc_utils.preprocess, hcc_utils.stack, hcc_utils.slices; "
            "heavy = {'torch', 'matplotlib', 'pandas'} & set(sys.modules); print(sorted(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch" not in result.stdout and "matplotlib" not in result.stdout
