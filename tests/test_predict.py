"""Scoring new patients (``hcc_utils.predict`` and ``python -m hcc_utils predict``) with a run's model bundle."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from _bundle_run import new_manifest

from hcc_utils import artifacts, mil
from hcc_utils.__main__ import main
from hcc_utils.bundle import MODEL_SLUGS, load_bundle
from hcc_utils.cnn import ARCHITECTURE_NAMES
from hcc_utils.cohort import load_cohort
from hcc_utils.predict import load_cnn, one_patient_manifest, predict_patients, read_new_manifest, slice_probabilities
from hcc_utils.run_folder import RunFolder
from hcc_utils.stack import make_stack

pytestmark = pytest.mark.slow  # the session's smoke book (tests/conftest.py), built once per session


@pytest.fixture(scope="module")
def run(smoke_run):
    """The session's smoke run folder (tests/conftest.py); only read here (what a test spoils is a copy)."""
    return smoke_run.run_dir


@pytest.fixture(scope="module")
def model(run):
    return load_bundle(run)


def test_the_run_s_validation_patients_get_their_probabilities_back(run, model, tmp_path):
    manifest = read_new_manifest(new_manifest(run, tmp_path / "in"), model)
    table = predict_patients(model, manifest.table, tmp_path / "out", manifest.problems, progress=False,
                             reports=False)
    assert (tmp_path / "out" / artifacts.NEW_PREDICTIONS).is_file()
    assert not list((tmp_path / "out").glob(f"*/{artifacts.NEW_PATIENT_REPORT}"))
    assert list(table.columns) == ["patient_id", "status", *[f"{s}_{c}" for s in MODEL_SLUGS
                                                             for c in ("prob", "class")], "flags"]
    assert (table["status"] == "scored").all(), table["flags"].tolist()
    scored = table.set_index("patient_id")
    for slug in MODEL_SLUGS:
        book = artifacts.read_patient_predictions(RunFolder(run), slug).query("split == 'validation'")
        book = book.set_index("patient_id")["prob"]
        assert sorted(book.index) == sorted(scored.index)
        assert (scored.loc[book.index, f"{slug}_prob"] - book).abs().max() <= 1e-9, slug
        cut = model.models[slug].threshold
        assert (scored.loc[book.index, f"{slug}_class"] == (book >= cut).astype(int)).all()


def test_the_cnn_and_the_idf_give_the_run_s_slice_probabilities_and_mil_features(run, model):
    folder = RunFolder(run)
    slices = artifacts.read_slice_predictions(folder)
    slices = slices[slices["architecture"] == ARCHITECTURE_NAMES[model.architecture]]
    patients = load_cohort(model.params, folder).query("split == 'validation'").head(3)
    network, device = load_cnn(model)
    for row in patients.itertuples(index=False):
        stack = make_stack(row.image, row.mask, model.params.preprocess, model.params.slices, row.patient_id)
        prob = slice_probabilities(network, device, np.round(stack.images * 255).astype(np.uint8), model)
        book = slices.loc[slices["patient_id"] == row.patient_id, "prob"].to_numpy()
        assert np.abs(prob - book).max() < 1e-6, row.patient_id
    features = mil.mil_features(slices, [], idf=model.idf, label_threshold=model.params.mil.label_threshold)
    saved = artifacts.read_mil_features(folder)
    assert np.abs(features.loc[saved.index].to_numpy() - saved.to_numpy()).max() <= 1e-12


def test_a_bad_patient_is_excluded_with_the_reason_and_the_others_are_scored(run, model, tmp_path, capsys):
    path = new_manifest(run, tmp_path / "in", limit=3)
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    bad = rows.at[1, "patient_id"]
    rows.at[1, "mask"] = str(tmp_path / "in" / "gone_mask.nii.gz")
    rows.to_csv(path, index=False)
    manifest = read_new_manifest(path, model)
    table = predict_patients(model, manifest.table, tmp_path / "out", manifest.problems, progress=False)
    row = table.set_index("patient_id").loc[bad]
    assert row["status"] == "excluded"
    assert f"patient {bad}" in row["flags"] and "'gone_mask.nii.gz'" in row["flags"]
    assert "not found" in row["flags"] or "does not exist" in row["flags"]
    assert row[[f"{s}_prob" for s in MODEL_SLUGS]].isna().all()
    others = table[table["patient_id"] != bad]
    assert len(others) == 2 and (others["status"] == "scored").all()
    assert others[[f"{s}_prob" for s in MODEL_SLUGS]].notna().all().all()

    code = main(["predict", "--model", str(run), "--manifest", str(path), "--out", str(tmp_path / "cli")])
    printed = capsys.readouterr().out
    assert code == 1 and "scored 2 of 3 patient(s)" in printed and f"excluded: patient {bad}" in printed


def test_each_scored_patient_gets_a_self_contained_one_page_report(run, model, tmp_path):
    path = new_manifest(run, tmp_path / "in", limit=3)
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows.at[2, "mask"] = str(tmp_path / "in" / "gone_mask.nii.gz")
    rows.to_csv(path, index=False)
    manifest = read_new_manifest(path, model)
    table = predict_patients(model, manifest.table, tmp_path / "out", manifest.problems, progress=False)
    reports = sorted((tmp_path / "out").glob(f"*/{artifacts.NEW_PATIENT_REPORT}"))
    scored = table.query("status == 'scored'")["patient_id"].tolist()
    assert len(scored) == 2 and reports == sorted(artifacts.patient_report(tmp_path / "out", p) for p in scored)
    training = model.training_probabilities()
    assert set(training["model"]) == set(MODEL_SLUGS) and training["prob"].between(0, 1).all()
    ids = set(rows["patient_id"])
    for pid, report in zip(scored, reports, strict=True):
        text = report.read_text(encoding="utf-8")
        for section in ("Probabilities of early recurrence", "percentile among training patients", "2.5D stack",
                        "Grad-CAM on the central slices", "DL-MIL explained (SHAP)", "Notes", "not a medical device"):
            assert section in text, (section, report)
        assert text.count('src="data:image/png;base64,') == 4
        assert 'src="http' not in text and "href=" not in text
        assert str(tmp_path) not in text and str(run) not in text and "/tmp" not in text and "/home" not in text
        words = re.sub(r"base64,[A-Za-z0-9+/=]+", "", text).replace("</", "")
        assert not re.search(r"(?<![A-Za-z0-9])/[A-Za-z_.-]+/", words), "an absolute path"
        assert f"Patient {pid}" in text and not [other for other in ids - {pid} if other in words]


def test_a_new_patient_manifest_needs_no_outcome_and_no_cohort(tmp_path):
    path = tmp_path / "new.csv"
    path.write_text("patient_id,image,mask,afp\nP1,ct.nii.gz,m.nii.gz,<20\n,ct2.nii.gz,m2.nii.gz,\n")
    manifest = one_patient_manifest("ct.nii.gz", "m.nii.gz", {"afp": "abc"}, "P9")
    assert manifest.table["patient_id"].tolist() == ["P9"] and manifest.table["afp"].isna().all()
    assert "'abc' is not a number" in manifest.problems["message"].iloc[0]
    from hcc_utils.manifest_check import read_manifest

    result = read_manifest(path, outcome=False)
    assert result.table["patient_id"].tolist() == ["P1"] and result.table.at[0, "afp"] == 20
    assert "no patient_id in row 3" in result.excluded["message"].iloc[0]


def test_one_patient_from_the_command_line(run, tmp_path, capsys):
    row = pd.read_csv(new_manifest(run, tmp_path / "in", limit=1), dtype=str).iloc[0]
    out = tmp_path / "out"
    code = main(["predict", "--model", str(run), "--image", row["image"], "--mask", row["mask"],
                 "--clinical", "age=61", "gender=M", "--patient-id", "NEW1", "--out", str(out)])
    assert code == 0, capsys.readouterr()
    table = pd.read_csv(out / artifacts.NEW_PREDICTIONS, dtype={"patient_id": str})
    assert table["patient_id"].tolist() == ["NEW1"] and table.at[0, "status"] == "scored"
    assert artifacts.patient_report(out, "NEW1").is_file()
    plain = tmp_path / "plain"
    assert main(["predict", "--model", str(run), "--image", row["image"], "--mask", row["mask"], "--no-report",
                 "--out", str(plain)]) == 0
    assert [p.name for p in plain.iterdir()] == [artifacts.NEW_PREDICTIONS]
    if "afp" in load_bundle(run).models["clinical"].features:
        assert "Clinical: 'afp' missing, filled with " in table.at[0, "flags"]
    assert main(["predict", "--model", str(run), "--image", row["image"], "--mask", row["mask"],
                 "--out", str(out)]) == 2  # not empty, no --force
    assert "is not empty" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--image", "ct.nii.gz"], "--image needs --mask"),
    ([], "give either --manifest"),
    (["--manifest", "new.csv", "--mask", "m.nii.gz"], "--mask and --clinical go with --image"),
    (["--image", "ct.nii.gz", "--mask", "m.nii.gz", "--clinical", "age"], "write NAME=VALUE"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, argv, message):
    assert main(["predict", "--model", str(tmp_path), "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_a_folder_without_a_bundle_exits_2(tmp_path, capsys):
    code = main(["predict", "--model", str(tmp_path), "--out", str(tmp_path / "out"), "--image", "ct.nii.gz",
                 "--mask", "m.nii.gz"])
    assert code == 2 and "holds no model bundle" in capsys.readouterr().err


def test_an_unknown_clinical_name_is_refused():
    with pytest.raises(ValueError, match="--clinical weight=...: not a manifest column"):
        one_patient_manifest("ct.nii.gz", "m.nii.gz", {"weight": "80"})


def test_an_unreachable_dask_scheduler_is_a_clear_error(run, tmp_path, capsys, monkeypatch):
    from hcc_utils import compute

    monkeypatch.setattr(compute, "CONNECT_TIMEOUT_S", 1)
    row = pd.read_csv(new_manifest(run, tmp_path / "in", limit=1), dtype=str).iloc[0]
    code = main(["predict", "--model", str(run), "--image", row["image"], "--mask", row["mask"], "--no-report",
                 "--dask", "tcp://127.0.0.1:9", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "cannot connect to the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
