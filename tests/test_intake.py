"""The intake before the split (hcc_utils.intake), the `check` command and the runner's check before chapter 01."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from _volumes import patient_files, volume, write

from hcc_utils import artifacts, intake
from hcc_utils.cohort import CohortError, load_cohort
from hcc_utils.config import params_from_dict
from hcc_utils.run_folder import RunFolder

N_GOOD = 16


def good_cohort(folder, n: int = N_GOOD) -> list[dict]:
    rows = []
    for k in range(n):
        pid = f"P{k:02d}"
        image, mask = patient_files(folder, pid)
        rows.append({"patient_id": pid, "image": image.name, "mask": mask.name, "er": k % 2, "age": 50 + k})
    return rows


def params_for(folder, rows, **cohort):
    pd.DataFrame(rows).to_csv(folder / "cohort.csv", index=False)
    return params_from_dict({"name": "intake", "cohort": {"manifest": str(folder / "cohort.csv"),
                                                          "validation_fraction": 0.4, **cohort},
                             "slices": {"size": 32}, "radiomics": {"enabled": False}})


@pytest.fixture
def bad_cohort(tmp_path):
    """16 good patients and four bad ones: a 2D image, NaN voxels, a copy of P00's image, er = 2."""
    data = tmp_path / "data"
    rows = good_cohort(data)
    flat = write(volume(shape_zyx=(1, 40, 40)), data / "FLAT.nii.gz")
    nan = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "P01.nii.gz"))).astype(np.float32)
    nan[10:14] = np.nan
    nan_image = sitk.GetImageFromArray(nan)
    nan_image.CopyInformation(sitk.ReadImage(str(data / "P01.nii.gz")))
    write(nan_image, data / "NAN.nii.gz")
    shutil.copy(data / "P00.nii.gz", data / "COPY.nii.gz")
    rows += [{"patient_id": "FLAT", "image": flat.name, "mask": "P02_mask.nii.gz", "er": 1},
             {"patient_id": "NAN", "image": "NAN.nii.gz", "mask": "P01_mask.nii.gz", "er": 0},
             {"patient_id": "COPY", "image": "COPY.nii.gz", "mask": "P00_mask.nii.gz", "er": 1},
             {"patient_id": "ER2", "image": "P03.nii.gz", "mask": "P03_mask.nii.gz", "er": 2}]
    return data, rows


def test_bad_patients_are_excluded_before_the_split_and_the_others_go_on(bad_cohort, tmp_path):
    data, rows = bad_cohort
    params, run = params_for(data, rows), RunFolder(tmp_path / "run")
    patients = intake.decide_split(params, run, progress=False)
    excluded = run.exclusions().query("severity == 'excluded'")
    assert set(excluded["patient_id"]) == {"FLAT", "NAN", "COPY", "P00", "ER2"}  # every copy of the same image
    assert set(patients["patient_id"]) == {f"P{k:02d}" for k in range(1, N_GOOD)}
    assert set(artifacts.read_split(run)["patient_id"]) == set(patients["patient_id"])
    messages = dict(zip(excluded["patient_id"], excluded["message"], strict=False))
    assert "2D" in messages["FLAT"] and "NaN" in messages["NAN"] and "COPY" in messages["P00"]
    assert "er" in messages["ER2"] and "2" in messages["ER2"]
    assert intake.summary_line(run).startswith("20 patients in the manifest: 15 usable (8 ER, 7 NER), 5 excluded")
    assert set(intake.exclusion_table(run)["stage"]) == {"cohort", "inputs"}
    later = load_cohort(params, run)  # a later chapter: the excluded patients are simply not in the cohort
    assert set(later["patient_id"]) == set(patients["patient_id"])


def test_too_few_usable_patients_stop_with_the_counts(tmp_path):
    data = tmp_path / "data"
    params, run = params_for(data, good_cohort(data, n=6)), RunFolder(tmp_path / "run")
    with pytest.raises(CohortError, match=r"too few usable patients.*validation: \d ER and \d NER \(at least 2"):
        intake.decide_split(params, run, progress=False)
    assert not (run.tables / "cohort_split.csv").exists()


def test_one_outcome_only_says_so(tmp_path):
    data = tmp_path / "data"
    rows = [dict(r, er=0) for r in good_cohort(data, n=8)]
    with pytest.raises(CohortError, match="both outcomes"):
        intake.decide_split(params_for(data, rows), RunFolder(tmp_path / "run"), progress=False)


def test_invalid_rows_stop_lists_them_all(bad_cohort, tmp_path):
    data, rows = bad_cohort
    rows += [{"patient_id": "ER9", "image": "P04.nii.gz", "mask": "P04_mask.nii.gz", "er": 9}]
    params = params_for(data, rows, invalid_rows="stop")
    with pytest.raises(CohortError, match=r"(?s)invalid rows.*ER2.*ER9"):
        intake.check_cohort(params, progress=False)


def test_file_checks_are_cached_in_the_run_folder(tmp_path, monkeypatch):
    data = tmp_path / "data"
    params, run = params_for(data, good_cohort(data, n=6)), RunFolder(tmp_path / "run")
    first = intake.check_cohort(params, run, progress=False)
    monkeypatch.setattr(intake, "check_patient", lambda *a, **k: pytest.fail("read again"))
    again = intake.check_cohort(params, run, progress=False)
    pd.testing.assert_frame_equal(first.summary, again.summary)


def test_check_command_table_and_exit_codes(bad_cohort, tmp_path, monkeypatch, capsys):
    from hcc_utils.__main__ import main

    data, rows = bad_cohort
    params_for(data, rows)
    params_file = data / "p.yaml"
    params_file.write_text("name: intake\ncohort:\n  manifest: cohort.csv\n  validation_fraction: 0.4\n"
                           "radiomics:\n  enabled: false\n")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--params", str(params_file)]) == 0
    out = capsys.readouterr().out
    assert "15 usable (8 ER, 7 NER), 5 excluded" in out and "check-intake.csv" in out
    report = pd.read_csv(tmp_path / "check-intake.csv", dtype={"patient_id": str})
    assert set(report.loc[report["status"] == "excluded", "patient_id"]) == {"FLAT", "NAN", "COPY", "P00", "ER2"}
    assert (report.loc[report["patient_id"] == "P05", "status"] != "excluded").all()
    assert main(["check", "--params", str(params_file)]) == 0 and (tmp_path / "check-intake-2.csv").is_file()
    assert main(["check", "--params", str(params_file), "--out", "check-intake.csv"]) == 2  # never overwritten
    few = [r for r in rows if r["patient_id"] in {"P00", "P01", "P02", "P03", "P04", "P05"}]
    pd.DataFrame(few).to_csv(data / "cohort.csv", index=False)
    assert main(["check", "--params", str(params_file)]) == 1
    assert "cannot run: too few usable patients" in capsys.readouterr().out
    assert main(["check", "--params", str(data / "missing.yaml")]) == 2


def test_the_runner_checks_the_cohort_before_chapter_01(tmp_path):
    from hcc_utils.runner import RunError, check_inputs

    data = tmp_path / "data"
    params = params_for(data, good_cohort(data, n=6))
    run = RunFolder(tmp_path / "run")
    with pytest.raises(RunError, match="the cohort cannot run: too few usable patients.*python -m hcc_utils check"):
        check_inputs(params, data / "p.yaml", run, echo=lambda *_: None)
    params.cnn.weights = {"resnet18": str(tmp_path / "nowhere.pt")}
    with pytest.raises(RunError, match="cnn.weights.resnet18: '.*nowhere.pt' not found"):
        check_inputs(params, data / "p.yaml", run, echo=lambda *_: None)
    params.cnn.weights = {}
    params.apply.manifest = tmp_path / "new.csv"
    with pytest.raises(RunError, match="apply.manifest: '.*new.csv' not found"):
        check_inputs(params, data / "p.yaml", run, echo=lambda *_: None)


def test_the_landing_page_names_the_excluded_with_links(tmp_path):
    from hcc_utils.runner import NOTEBOOKS, patients_line

    run = RunFolder(tmp_path / "run")
    assert patients_line(run, NOTEBOOKS) == "no patient was excluded"
    run.record_issue("A", "inputs", "excluded", None, "2D")
    run.record_issue("B", "slices", "excluded", None, "lesion at the border")
    run.record_issue("C", "slices", "warning", None, "clamped")
    line = patients_line(run, NOTEBOOKS)
    assert line.startswith("2 excluded (1 in [Cohort and preprocessing](notebooks/01_preprocessing.ipynb); 1 in")
