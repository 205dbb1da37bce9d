"""The manifest checks (hcc_utils.manifest_check): every problem reported at once, bad rows excluded, not fatal.

Each test writes a small cohort.csv: the rows under test first (line 2 on), then six good patients (three of each
outcome, the smallest cohort that can be split), and checks the message, the verdict and that the good rows stay.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from hcc_utils.cohort import CohortError, ManifestWarning, load_manifest
from hcc_utils.config import CohortConfig
from hcc_utils.manifest_check import MIN_PER_OUTCOME, PROBLEM_COLUMNS, read_manifest

BASE = ["patient_id", "image", "mask", "er"]


def patient(pid: str, er: int | str, **extra: str) -> dict:
    return {"patient_id": pid, "image": f"images/{pid}.nii.gz", "mask": f"masks/{pid}.nii.gz", "er": er, **extra}


def good(n: int = 2 * MIN_PER_OUTCOME) -> list[dict]:
    return [patient(f"G{i}", i % 2) for i in range(n)]


def write(tmp_path: Path, rows: list[dict], name: str = "cohort.csv") -> Path:
    """The rows verbatim (strings as given, '' for absent cells), the base columns first."""
    columns = BASE + [c for r in rows for c in r if c not in BASE]
    columns = list(dict.fromkeys(columns))
    path = tmp_path / name
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[r.get(c, "") for c in columns] for r in rows])
    return path


def only(result, column: str) -> pd.Series:
    """The one problem about ``column``."""
    found = result.problems[result.problems["column"] == column]
    assert len(found) == 1, result.problems
    return found.iloc[0]


GOOD_IDS = [f"G{i}" for i in range(2 * MIN_PER_OUTCOME)]


# -- rows that exclude the patient -------------------------------------------------------------------------------

@pytest.mark.parametrize("er, found", [("", "'er' is empty"), ("2", "found '2', not 0 or 1"),
                                       ("yes", "found 'yes', not 0 or 1"), ("0.5", "found '0.5', not 0 or 1")])
def test_a_bad_er_excludes_that_patient_and_says_what_was_found(tmp_path, er, found):
    result = read_manifest(write(tmp_path, [patient("P1", er)] + good()))
    problem = only(result, "er")
    assert problem["message"] == (f"patient P1, row 2, column 'er': {found}: patient excluded; give 1 (recurrence "
                                  "within 2 years of resection) or 0 (none)")
    assert (problem["severity"], problem["patient_id"], problem["row"], problem["value"]) == ("excluded", "P1", 2, er)
    assert result.table["patient_id"].tolist() == GOOD_IDS


def test_er_written_as_a_float_or_with_spaces_is_fine(tmp_path):
    result = read_manifest(write(tmp_path, [patient("P1", "1.0"), patient("P2", " 0 ")] + good()))
    assert result.problems.empty and result.table["er"].tolist()[:2] == [1, 0]
    assert result.table["er"].dtype == int


def test_an_empty_patient_id_names_the_row(tmp_path):
    result = read_manifest(write(tmp_path, good()[:3] + [patient("  ", 1)] + good()[3:]))
    problem = only(result, "patient_id")
    assert problem["message"] == ("row 5, column 'patient_id': no patient_id in row 5: row excluded; give every "
                                  "patient a (pseudonymous) id")
    assert problem["patient_id"] == "" and "nan" not in result.table["patient_id"].tolist()
    assert result.table["patient_id"].tolist() == GOOD_IDS


def test_every_copy_of_a_duplicate_id_is_excluded_naming_the_rows(tmp_path):
    rows = [patient("P1", 1), *good()[:2], patient(" P1", 0)] + good()[2:]
    result = read_manifest(write(tmp_path, rows))
    problems = result.problems
    assert problems["row"].tolist() == [2, 5] and set(problems["severity"]) == {"excluded"}
    assert problems["message"].tolist() == [
        f"patient P1, row {r}, column 'patient_id': patient_id 'P1' is on rows 2, 5: every copy excluded; keep one "
        "row per patient" for r in (2, 5)]
    assert "P1" not in result.table["patient_id"].tolist() and len(result.table) == len(GOOD_IDS)


@pytest.mark.parametrize("column, role", [("image", "image"), ("mask", "mask")])
def test_an_empty_image_or_mask_excludes_the_patient(tmp_path, column, role):
    result = read_manifest(write(tmp_path, good()[:1] + [patient("P1", 1) | {column: " "}] + good()[1:]))
    assert only(result, column)["message"] == (f"patient P1, row 3, column '{column}': no {role} given in row 3: "
                                               f"patient excluded; give the {role} path, relative to the manifest")
    assert result.table["patient_id"].tolist() == GOOD_IDS


def test_an_empty_second_reader_mask_is_fine(tmp_path):
    result = read_manifest(write(tmp_path, [patient("P1", 1, mask_reader2="")] + good()))
    assert result.problems.empty and result.table["mask_reader2"].isna().all()


def test_a_path_with_a_stray_space_is_kept_and_shown_quoted_by_its_name_only(tmp_path):
    rows = [patient("P1", 1) | {"image": "secret_folder/P1.nii.gz "}] + good()
    result = read_manifest(write(tmp_path, rows))
    problem = only(result, "image")
    assert problem["severity"] == "warning" and problem["value"] == "'P1.nii.gz '"
    assert problem["message"] == ("patient P1, row 2, column 'image': the path 'P1.nii.gz ' (file name shown) ends "
                                  "with a space; it is used as written: remove the space unless the file's name "
                                  "has it")
    assert "secret_folder" not in problem["message"]
    assert result.table.loc[0, "image"] == str(tmp_path / "secret_folder" / "P1.nii.gz ")


# -- values left missing, or taken at a limit, with a warning ----------------------------------------------------

@pytest.mark.parametrize("column, value, what", [
    ("age", "130", "'130' is outside 0-120 years: left missing; check the value"),
    ("age", "-1", "'-1' is outside 0-120 years: left missing; check the value"),
    ("age", "sixty", "'sixty' is not a number: left missing; write a number (years)"),
    ("afp", "-5", "'-5' is negative: left missing; afp cannot be below 0 ng/mL"),
    ("alb", "-40", "'-40' is negative: left missing; alb cannot be below 0 g/L"),
    ("ast", "-1", "'-1' is negative: left missing; ast cannot be below 0 U/L"),
    ("alt", "-1", "'-1' is negative: left missing; alt cannot be below 0 U/L"),
    ("bmi", "-22", "'-22' is negative: left missing; bmi cannot be below 0 kg/m2"),
    ("hbsag", "-3", "'-3' is negative: left missing; hbsag cannot be below 0 IU/mL"),
    ("bmi", "22,5", "'22,5' is not a number (a decimal comma? write a point): left missing; write a number "
                    "(kg/m2)"),
    ("ki67", "35", "'35' is above 1: left missing; percent? give a fraction in [0, 1], e.g. 35 -> 0.35"),
    ("ki67", "-0.1", "'-0.1' is below 0: left missing; give a fraction in [0, 1]"),
    ("mvi_grade", "3", "'3' is not one of 0, 1, 2 (M0/M1/M2 as 0/1/2): left missing; write one of 0, 1, 2"),
    ("mvi_grade", "M1", "'M1' is not one of 0, 1, 2 (M0/M1/M2 as 0/1/2): left missing; write one of 0, 1, 2"),
    ("edmondson", "5", "'5' is not one of 1, 2, 3, 4 (grade I-IV as 1-4): left missing; write one of 1, 2, 3, 4"),
    ("edmondson", "0", "'0' is not one of 1, 2, 3, 4 (grade I-IV as 1-4): left missing; write one of 1, 2, 3, 4"),
    ("alcohol", "2", "'2' is not one of 0, 1 (1 = yes, 0 = no): left missing; write one of 0, 1"),
    ("gender", "X", "'X' is not M, F, male or female: left missing; write M or F"),
    ("gender", "Man", "'Man' is not M, F, male or female: left missing; write M or F"),
])
def test_an_impossible_or_unreadable_value_is_left_missing_with_a_warning(tmp_path, column, value, what):
    result = read_manifest(write(tmp_path, [patient("P1", 1, **{column: value})] + good()))
    problem = only(result, column)
    assert problem["message"] == f"patient P1, row 2, column '{column}': {what}"
    assert (problem["severity"], problem["value"]) == ("warning", value)
    assert result.table["patient_id"].tolist() == ["P1"] + GOOD_IDS
    assert pd.isna(result.table.loc[0, column])


@pytest.mark.parametrize("value, taken, side", [("<20", 20, "below the detection limit"),
                                                ("< 20", 20, "below the detection limit"),
                                                ("<=0.5", 0.5, "below the detection limit"),
                                                (">1210", 1210, "above the reporting limit")])
def test_a_value_at_an_assay_limit_is_taken_as_the_limit_with_a_warning(tmp_path, value, taken, side):
    result = read_manifest(write(tmp_path, [patient("P1", 1, afp=value), patient("P2", 0, afp="35.5")] + good()))
    problem = only(result, "afp")
    assert problem["message"] == f"patient P1, row 2, column 'afp': '{value}': {side}: taken as {value.lstrip('<>= ')}"
    assert problem["severity"] == "warning"
    assert result.table["afp"].tolist()[:2] == [taken, 35.5]


def test_valid_clinical_values_and_gender_words_pass_silently(tmp_path):
    rows = [patient("P1", 1, gender="male", age="0", ki67="1", afp="0"),
            patient("P2", 0, gender=" Female ", age="120", ki67="0.35", mvi_grade="2", edmondson="4", alcohol="1"),
            patient("P3", 0, gender="m")]
    result = read_manifest(write(tmp_path, rows + good()))
    assert result.problems.empty
    assert result.table["gender"].tolist()[:3] == ["M", "F", "M"] and result.table.loc[1, "ki67"] == 0.35


def test_an_empty_row_is_skipped_with_a_warning(tmp_path):
    rows = good()[:2] + [dict.fromkeys(BASE, "")] + good()[2:]
    result = read_manifest(write(tmp_path, rows))
    problem = result.problems.iloc[0]
    assert (problem["row"], problem["severity"], problem["message"]) == (4, "warning", "row 4: an empty row: skipped")
    assert result.table["patient_id"].tolist() == GOOD_IDS


# -- every problem at once -----------------------------------------------------------------------------------

def many_problems(tmp_path: Path) -> Path:
    rows = [patient("P1", "yes"), patient("", 1), patient("P3", 1, age="sixty", afp="<20"),
            patient("P4", 0) | {"image": ""}, patient("P5", 1, ki67="35")]
    return write(tmp_path, rows + good())


def test_all_problems_are_reported_and_the_good_rows_kept(tmp_path):
    result = read_manifest(many_problems(tmp_path))
    problems = result.problems
    assert list(problems.columns) == PROBLEM_COLUMNS
    assert problems[["row", "column", "severity"]].values.tolist() == [
        [2, "er", "excluded"], [3, "patient_id", "excluded"], [4, "age", "warning"], [4, "afp", "warning"],
        [5, "image", "excluded"], [6, "ki67", "warning"]]
    assert result.table["patient_id"].tolist() == ["P3", "P5"] + GOOD_IDS
    assert result.excluded["row"].tolist() == [2, 3, 5]


def test_stop_raises_one_error_listing_every_problem_one_per_line(tmp_path):
    path = many_problems(tmp_path)
    with pytest.raises(CohortError) as err:
        load_manifest(path, invalid_rows="stop")
    lines = str(err.value).splitlines()
    assert lines[0] == (f"{path}: 3 problem(s) exclude patients; fix them, or set 'cohort.invalid_rows: exclude' "
                        "to leave those patients out:")
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["excluded"] * 3 + ["warning"] * 3
    assert "patient P1, row 2, column 'er': found 'yes'" in lines[1]
    assert "row 3, column 'patient_id': no patient_id in row 3" in lines[2]
    assert "patient P4, row 5, column 'image': no image given in row 5" in lines[3]
    assert "'<20': below the detection limit: taken as 20" in str(err.value)


def test_exclude_returns_the_usable_rows_and_warns_once(tmp_path):
    with pytest.warns(ManifestWarning, match=r"3 warning\(s\), the patients kept") as caught:
        table = load_manifest(many_problems(tmp_path), invalid_rows="exclude")
    assert len(caught) == 1
    assert table["patient_id"].tolist() == ["P3", "P5"] + GOOD_IDS
    assert table.loc[0, "afp"] == 20 and pd.isna(table.loc[0, "age"]) and pd.isna(table.loc[1, "ki67"])


def test_load_manifest_refuses_an_unknown_policy(tmp_path):
    with pytest.raises(ValueError, match="invalid_rows must be 'exclude' or 'stop', got 'skip'"):
        load_manifest(write(tmp_path, good()), invalid_rows="skip")


def test_the_params_key_defaults_to_exclude():
    assert CohortConfig(manifest=Path("c.csv")).invalid_rows == "exclude"
    assert CohortConfig(manifest=Path("c.csv"), invalid_rows="stop").invalid_rows == "stop"
    with pytest.raises(ValueError, match="invalid_rows"):
        CohortConfig(manifest=Path("c.csv"), invalid_rows="skip")


def test_rows_are_lines_of_the_file_across_blank_lines_and_quoted_line_breaks(tmp_path):
    path = tmp_path / "cohort.csv"
    lines = ["patient_id,image,mask,er,scanner", "", 'P1,a.nii.gz,a_m.nii.gz,1,"two\nlines"', "",
             "P2,b.nii.gz,b_m.nii.gz,maybe,x"]
    lines += [f"G{i},g{i}.nii.gz,g{i}_m.nii.gz,{i % 2},x" for i in range(6)]
    path.write_text("\n".join(lines) + "\n")
    assert only(read_manifest(path), "er")["row"] == 6


def test_a_mapped_column_is_named_as_the_file_names_it(tmp_path):
    rows = [{"ID": r["patient_id"], "image": r["image"], "mask": r["mask"], "recurrence": r["er"]}
            for r in [patient("P1", "2")] + good()]
    path = tmp_path / "cohort.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    result = read_manifest(path, {"patient_id": "ID", "er": "recurrence"})
    assert only(result, "er")["message"].startswith("patient P1, row 2, column 'recurrence' (er): found '2'")


def test_a_mapped_id_column_keeps_its_leading_zeros(tmp_path):
    rows = [{"ID": f"00{i}", "image": "a", "mask": "b", "er": i % 2} for i in range(6)]
    path = tmp_path / "cohort.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    assert read_manifest(path, {"patient_id": "ID"}).table["patient_id"].tolist()[:2] == ["000", "001"]


# -- problems of the whole file stay fatal -----------------------------------------------------------------------

def test_a_missing_file(tmp_path):
    with pytest.raises(CohortError, match="manifest not found; point 'cohort.manifest'"):
        read_manifest(tmp_path / "nope.csv")


@pytest.mark.parametrize("sep, named", [(";", "';'"), ("\t", "tabs"), ("|", "'|'")])
def test_another_separator_is_named(tmp_path, sep, named):
    path = tmp_path / "cohort.csv"
    path.write_text("\n".join(sep.join(r) for r in [BASE] + [[f"P{i}", "a", "b", str(i % 2)] for i in range(6)]))
    with pytest.raises(CohortError) as err:
        read_manifest(path)
    assert str(err.value) == (f"{path}: the manifest seems to be separated by {named} — save it as comma-separated "
                              "CSV (read with commas, its header is 1 column(s) and lacks ['patient_id', 'image', "
                              "'mask', 'er'])")


def test_a_missing_column_without_another_separator_names_the_columns_only(tmp_path):
    path = tmp_path / "cohort.csv"
    path.write_text("patient_id,image,er\nA,a,1\n")
    with pytest.raises(CohortError, match=r"missing column\(s\) \['mask'\]; the manifest needs") as err:
        read_manifest(path)
    assert "separated" not in str(err.value)


@pytest.mark.parametrize("content, match", [
    (b"", "the file is empty"),
    (b"patient_id,image,mask,er\nA,a,b,1\nB,a,b,22,5\nC,a,b,1,x,y\n",
     r"2 row\(s\) have more fields than the header's 4: line 3 \(5 fields\), line 4 \(6 fields\); a comma inside a "
     r"value\? quote the value"),
    (b'patient_id,image,mask,er\nA,"a,b,1\n', "cannot be parsed as comma-separated CSV"),
    ("patient_id,image,mask,er\nJos\u00e9,a,b,1\n".encode("latin-1"), "not UTF-8 text"),
    (b"PK\x03\x04rest-of-a-workbook", "spreadsheet workbook"),
])
def test_an_unreadable_file(tmp_path, content, match):
    path = tmp_path / "cohort.csv"
    path.write_bytes(content)
    with pytest.raises(CohortError, match=match):
        read_manifest(path)


@pytest.mark.parametrize("header, columns", [("patient_id,image,mask,er,er", None),
                                             ("patient_id,image,mask,er,recurrence", {"er": "recurrence"})])
def test_a_column_given_twice_is_refused(tmp_path, header, columns):
    path = tmp_path / "cohort.csv"
    path.write_text(header + "\n" + "".join(f"G{i},a,b,{i % 2},{i % 2}\n" for i in range(6)))
    with pytest.raises(CohortError, match=r"column\(s\) \['er'\] appear more than once in the header"):
        read_manifest(path, columns)


def test_trailing_empty_fields_are_fine(tmp_path):
    path = tmp_path / "cohort.csv"
    path.write_text("patient_id,image,mask,er\n" + "".join(f"G{i},a,b,{i % 2},,\n" for i in range(6)))
    result = read_manifest(path)
    assert result.problems.empty and result.table["patient_id"].tolist() == GOOD_IDS


def test_a_header_only_manifest(tmp_path):
    with pytest.raises(CohortError, match="the manifest has a header but no patients; add one row per patient"):
        read_manifest(write(tmp_path, []))


def test_three_patients_are_too_few_to_split(tmp_path):
    path = write(tmp_path, good(3))
    with pytest.raises(CohortError) as err:
        read_manifest(path)
    assert str(err.value) == (f"{path}: 3 patients: at least 6 are needed for a train/validation split with both "
                              "outcomes in each set (3 of each outcome: 2 to train the models, 1 to validate)")


def test_too_few_of_one_outcome(tmp_path):
    rows = [patient(f"P{i}", int(i < 2)) for i in range(8)]
    with pytest.raises(CohortError, match=r"only 2 of 8 patients have er = 1: 3 of each outcome are needed"):
        read_manifest(write(tmp_path, rows))


@pytest.mark.parametrize("er", [0, 1])
def test_one_outcome_only(tmp_path, er):
    with pytest.raises(CohortError, match=f"all patients have er = {er}: the models need both outcomes; add "
                                          f"patients with er = {1 - er}"):
        read_manifest(write(tmp_path, [patient(f"P{i}", er) for i in range(8)]))


def test_too_few_usable_patients_lists_the_excluded_rows(tmp_path):
    rows = good()[:5] + [patient("P9", "x")]
    with pytest.raises(CohortError) as err:
        read_manifest(write(tmp_path, rows))
    message = str(err.value)
    assert "5 usable patients (1 of 6 rows excluded, listed below): at least 6 are needed" in message
    assert message.splitlines()[-1] == ("  excluded: patient P9, row 7, column 'er': found 'x', not 0 or 1: patient "
                                        "excluded; give 1 (recurrence within 2 years of resection) or 0 (none)")


def test_every_row_excluded(tmp_path):
    with pytest.raises(CohortError, match="no usable patient: every row was excluded"):
        read_manifest(write(tmp_path, [patient(f"P{i}", "") for i in range(3)]))
