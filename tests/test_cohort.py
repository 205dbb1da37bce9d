"""The manifest loader and the patient-level split (every row check: tests/test_manifest_check.py)."""

from pathlib import Path

import pandas as pd
import pytest

from hcc_utils.cohort import CohortError, ManifestWarning, load_manifest, split_patients
from hcc_utils.config import CohortConfig


def manifest(tmp_path: Path, rows: list[dict], name: str = "cohort.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def row(pid: str, er: int, **extra) -> dict:
    return {"patient_id": pid, "image": f"images/{pid}.nii.gz", "mask": f"masks/{pid}.nii.gz", "er": er, **extra}


def filler(n: int = 6) -> list[dict]:
    """Enough good patients (half of each outcome) for a manifest to be splittable."""
    return [row(f"F{i}", i % 2) for i in range(n)]


def test_paths_become_absolute_and_columns_complete(tmp_path):
    table = load_manifest(manifest(tmp_path, [row("P1", 1, gender="male"), row("P2", 0, gender="F")] + filler()))
    assert table.loc[0, "image"] == str((tmp_path / "images/P1.nii.gz").resolve())
    assert list(table["gender"][:2]) == ["M", "F"]
    assert table["mask_reader2"].isna().all() and "ki67" in table.columns


def test_column_mapping(tmp_path):
    rows = [{"ID": r["patient_id"], "ct": r["image"], "seg": r["mask"], "recurrence": r["er"]}
            for r in [row("A", 1)] + filler()]
    table = load_manifest(manifest(tmp_path, rows),
                          {"patient_id": "ID", "image": "ct", "mask": "seg", "er": "recurrence"})
    assert table.loc[0, "patient_id"] == "A" and table.loc[0, "er"] == 1


@pytest.mark.parametrize("rows, match", [
    ([{"patient_id": "A", "image": "a", "er": 1}], r"missing column\(s\) \['mask'\]"),
    ([row("A", 1), row("A", 0)] + filler(), r"patient_id 'A' is on rows 2, 3: every copy excluded"),
    ([row("A", 2)] + filler(), r"column 'er': found '2', not 0 or 1: patient excluded"),
])
def test_bad_manifests_are_named(tmp_path, rows, match):
    path = manifest(tmp_path, rows)
    with pytest.raises(CohortError, match=match) as err:
        load_manifest(path)  # invalid_rows="stop", the default of load_manifest
    assert str(path) in str(err.value)


@pytest.mark.parametrize("extra, match", [
    ({"mvi_grade": 3}, r"column 'mvi_grade': '3(\.0)?' is not one of 0, 1, 2"),  # 3.0: the column has blanks
    ({"ki67": 23}, r"column 'ki67': '23(\.0)?' is above 1: left missing; percent\? give a fraction in \[0, 1\]"),
])
def test_impossible_pathology_values_are_left_missing_with_a_warning(tmp_path, extra, match):
    path = manifest(tmp_path, [row("A", 1, **extra)] + filler())
    with pytest.warns(ManifestWarning, match=match):
        table = load_manifest(path)
    assert table[list(extra)].isna().all().all() and len(table) == 7


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
    path = manifest(tmp_path, [row("A", 1, fold="train"), row("B", 0, fold="Validation")]
                    + [r | {"fold": "train"} for r in filler()])
    table = load_manifest(path)
    split = split_patients(table, CohortConfig(manifest=path, split_column="fold"))
    assert list(split[:2]) == ["train", "validation"]


def test_exclusion_log_is_per_stage_and_rerun_clears_it(tmp_path):
    from hcc_utils.run_folder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.record_issue("P1", "slices", "excluded", tmp_path / "secret_folder" / "P1.nii.gz", "mask is empty")
    run.record_issue("P2", "radiomics", "warning", None, "no reader-2 mask")
    assert run.excluded_ids() == {"P1"}
    assert run.exclusions("slices").loc[0, "file"] == "P1.nii.gz"
    run.clear_issues("slices")
    assert run.excluded_ids() == set() and list(run.exclusions()["patient_id"]) == ["P2"]


# -- the split is decided once (notebook 01) and read back ------------------------------------------------------

def _user_params(tmp_path: Path, rows: list[dict]):
    from hcc_utils.config import params_from_dict

    return params_from_dict({"name": "split_once", "cohort": {"manifest": str(manifest(tmp_path, rows))}})


def decide_split(params, run):
    """Notebook 01's split without its file checks (these tests' image paths do not exist)."""
    from hcc_utils import artifacts

    table = load_manifest(params.cohort.manifest)
    table["split"] = split_patients(table, params.cohort).to_numpy()
    artifacts.write_split(run, table)
    return table


def test_the_split_is_decided_once_and_read_back(tmp_path):
    from hcc_utils.cohort import load_cohort
    from hcc_utils.run_folder import RunFolder

    rows = [row(f"P{i:02d}", i % 2) for i in range(20)]
    params, run = _user_params(tmp_path, rows), RunFolder(tmp_path / "run")
    decided = decide_split(params, run)
    params.cohort.split_seed += 1  # a later stage never splits again, whatever the params say now
    assert load_cohort(params, run)["split"].tolist() == decided["split"].tolist()
    assert (run.tables / "cohort_split.csv").is_file()


def test_a_later_stage_without_the_split_says_run_01_first(tmp_path):
    from hcc_utils.artifacts import ArtifactMissing
    from hcc_utils.cohort import load_cohort
    from hcc_utils.run_folder import RunFolder

    params = _user_params(tmp_path, [row(f"P{i:02d}", i % 2) for i in range(10)])
    with pytest.raises(ArtifactMissing, match="cohort_split.csv not found: run 01_preprocessing first"):
        load_cohort(params, RunFolder(tmp_path / "run"))


def test_a_manifest_changed_since_the_split_is_refused(tmp_path):
    from hcc_utils.cohort import load_cohort
    from hcc_utils.run_folder import RunFolder

    rows = [row(f"P{i:02d}", i % 2) for i in range(10)]
    params, run = _user_params(tmp_path, rows), RunFolder(tmp_path / "run")
    decide_split(params, run)
    manifest(tmp_path, rows[1:] + [row("P99", 1)])
    with pytest.raises(CohortError, match=r"changed since notebook 01.*not in the split: \['P99'\].*\['P00'\]"):
        load_cohort(params, run)
    manifest(tmp_path, [rows[0] | {"er": 1}] + rows[1:])
    with pytest.raises(CohortError, match=r"'er' changed: \['P00'\]"):
        load_cohort(params, run)


@pytest.mark.slow
def test_a_later_notebook_on_a_run_folder_without_the_split_fails_with_run_01_first(tmp_path):
    """Notebook 02 executed as the runner does, on a run folder that never ran notebook 01."""
    from hcc_utils.run_folder import RunFolder
    from hcc_utils.runner import NOTEBOOK_DIR, RunError, execute_notebook

    params = _user_params(tmp_path, [row(f"P{i:02d}", i % 2) for i in range(10)])
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    run.params_file.write_text(params.dump_yaml())
    with pytest.raises(RunError, match="run 01_preprocessing first"):
        execute_notebook("02_slices_2p5d", run, NOTEBOOK_DIR, hint="")
