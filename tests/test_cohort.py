"""The manifest loader and the patient-level split."""

from pathlib import Path

import pandas as pd
import pytest

from hcc_utils.cohort import CohortError, load_manifest, split_patients
from hcc_utils.config import CohortConfig


def manifest(tmp_path: Path, rows: list[dict], name: str = "cohort.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def row(pid: str, er: int, **extra) -> dict:
    return {"patient_id": pid, "image": f"images/{pid}.nii.gz", "mask": f"masks/{pid}.nii.gz", "er": er, **extra}


def test_paths_become_absolute_and_columns_complete(tmp_path):
    table = load_manifest(manifest(tmp_path, [row("P1", 1, gender="male"), row("P2", 0, gender="F")]))
    assert table.loc[0, "image"] == str((tmp_path / "images/P1.nii.gz").resolve())
    assert list(table["gender"]) == ["M", "F"]
    assert table["mask_reader2"].isna().all() and "ki67" in table.columns


def test_column_mapping(tmp_path):
    rows = [{"ID": "A", "ct": "a.nii.gz", "seg": "a_m.nii.gz", "recurrence": 1}]
    table = load_manifest(manifest(tmp_path, rows),
                          {"patient_id": "ID", "image": "ct", "mask": "seg", "er": "recurrence"})
    assert table.loc[0, "patient_id"] == "A" and table.loc[0, "er"] == 1


@pytest.mark.parametrize("rows, match", [
    ([{"patient_id": "A", "image": "a", "er": 1}], r"missing column\(s\) \['mask'\]"),
    ([row("A", 1), row("A", 0)], "duplicate patient_id"),
    ([row("A", 2)], "'er' must be one of"),
    ([row("A", 1, mvi_grade=3)], "'mvi_grade' must be one of"),
    ([row("A", 1, ki67=23)], "fraction in \\[0, 1\\]"),
])
def test_bad_manifests_are_named(tmp_path, rows, match):
    path = manifest(tmp_path, rows)
    with pytest.raises(CohortError, match=match) as err:
        load_manifest(path)
    assert str(path) in str(err.value)


def test_split_is_stratified_and_seeded(tmp_path):
    table = pd.DataFrame({"patient_id": [f"P{i}" for i in range(100)], "er": [i % 5 < 2 for i in range(100)]})
    table["er"] = table["er"].astype(int)
    cfg = CohortConfig(manifest=Path("x.csv"), validation_fraction=0.3, split_seed=1)
    first, second = split_patients(table, cfg), split_patients(table, cfg)
    assert first.equals(second)
    assert (first == "validation").sum() == 30
    val_er = table.set_index("patient_id").loc[first[first == "validation"].index, "er"].mean()
    assert val_er == pytest.approx(0.4, abs=0.02)


def test_fixed_split_column(tmp_path):
    path = manifest(tmp_path, [row("A", 1, fold="train"), row("B", 0, fold="Validation")])
    table = load_manifest(path)
    split = split_patients(table, CohortConfig(manifest=path, split_column="fold"))
    assert list(split) == ["train", "validation"]


def test_exclusion_log_is_per_stage_and_rerun_clears_it(tmp_path):
    from hcc_utils.run_folder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.record_issue("P1", "slices", "excluded", tmp_path / "secret_folder" / "P1.nii.gz", "mask is empty")
    run.record_issue("P2", "radiomics", "warning", None, "no reader-2 mask")
    assert run.excluded_ids() == {"P1"}
    assert run.exclusions("slices").loc[0, "file"] == "P1.nii.gz"
    run.clear_issues("slices")
    assert run.excluded_ids() == set() and list(run.exclusions()["patient_id"]) == ["P2"]
