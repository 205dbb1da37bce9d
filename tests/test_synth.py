"""The embedded synthetic cohort (hcc_utils.synth): determinism, statistics, geometry, readers, manifest."""

from __future__ import annotations

import ast
import contextlib
import gzip
import io
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hcc_utils import synth
from hcc_utils.cohort import MANIFEST_COLUMNS, load_manifest
from hcc_utils.synth import truth as synth_truth
from hcc_utils.synth.params import SyntheticCohort

SMALL = {"n": 8, "seed": 7, "image_size": 128}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """A tiny cohort generated in this process (n_jobs=1)."""
    out = tmp_path_factory.mktemp("synth_a")
    return synth.generate_cohort(SyntheticCohort(**SMALL), out, n_jobs=1, progress=False)


@pytest.fixture(scope="module")
def cohort_again(tmp_path_factory) -> Path:
    """The same cohort through the CLI entry point, which renders with two worker processes."""
    out = tmp_path_factory.mktemp("synth_b") / "cohort"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert synth.main_cli(SMALL["n"], SMALL["seed"], out, SMALL["image_size"]) is None
    assert printed.getvalue().strip() == str(out / "cohort.csv"), "the CLI prints the manifest path"
    return out / "cohort.csv"


@pytest.fixture(scope="module")
def large_sample() -> pd.DataFrame:
    return synth.sample_clinical(SyntheticCohort(), 123, n=20_000)


def _files(manifest: Path) -> dict[str, bytes]:
    root = manifest.parent
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_whatever_n_jobs(cohort, cohort_again):
    a, b = _files(cohort), _files(cohort_again)
    assert set(a) == set(b)
    assert len([f for f in a if f.endswith(".nii.gz")]) == 3 * SMALL["n"]
    for name in a:
        assert a[name] == b[name], f"{name} differs between two generations with the same seed"


def test_gzip_streams_carry_no_timestamp_or_name(cohort):
    data = (cohort.parent / "images" / "HCC0001.nii.gz").read_bytes()
    assert data[:2] == b"\x1f\x8b"
    assert data[4:8] == b"\x00\x00\x00\x00", "gzip mtime must be 0"
    assert not data[3] & 0x08, "gzip header must not store a file name"


def test_another_seed_gives_another_cohort(tmp_path, cohort):
    table = synth.sample_clinical(SyntheticCohort(**{**SMALL, "seed": 8}), 8)
    assert not np.allclose(table["invasiveness"], synth.sample_clinical(SyntheticCohort(**SMALL), 7)["invasiveness"])


def test_refuses_to_overwrite_a_cohort(cohort):
    with pytest.raises(FileExistsError, match="already exists"):
        synth.generate_cohort(SyntheticCohort(**SMALL), cohort.parent, n_jobs=1, progress=False)


def synth_cli(capsys, *args) -> tuple[int, list[str]]:
    """``python -m hcc_utils synth ...`` as a user calls it: the exit code and the ``error:`` lines on stderr."""
    from hcc_utils.__main__ import main

    code = main(["synth", *map(str, args)])
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err
    return code, printed.err.strip().splitlines()


@pytest.mark.parametrize(("option", "line"), [
    (["--n", "3"], "error: --n 3: the generator needs at least 8 and at most 100000 (patients)"),
    (["--n", "-1"], "error: --n -1: the generator needs at least 8 and at most 100000 (patients)"),
    (["--image-size", "10"], "error: --image-size 10: the generator needs at least 64 and at most 1024 (in-plane "
                             "matrix, pixels)"),
    (["--seed", "-2"], "error: --seed -2: the generator needs at least 0"),
])
def test_synth_cli_option_out_of_range_is_one_line(tmp_path, capsys, option, line):
    assert synth_cli(capsys, *option, "--out", tmp_path / "out") == (2, [line])
    assert not (tmp_path / "out").exists()


def test_synth_cli_reports_every_bad_option_and_an_unusable_folder(tmp_path, capsys, monkeypatch):
    code, lines = synth_cli(capsys, "--n", "3", "--image-size", "2000", "--out", tmp_path / "out")
    assert code == 2 and [line.split(":")[1] for line in lines] == [" --n 3", " --image-size 2000"]
    (tmp_path / "afile").write_text("")
    assert synth_cli(capsys, "--out", tmp_path / "afile") == (
        2, ["error: --out 'afile' is a file, not a folder; choose a folder"])
    assert synth_cli(capsys, "--out", tmp_path / "afile" / "cohort") == (
        2, ["error: --out 'cohort': 'afile' above it is a file, not a folder; choose another --out"])

    def unwritable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "PID123_DOE" / "images"))

    monkeypatch.setattr("hcc_utils.synth.generator.generate_cohort", unwritable)
    assert synth_cli(capsys, "--out", tmp_path / "out") == (
        2, ["error: 'images': Permission denied; check the path and its permissions"])


def test_a_pydantic_error_outside_the_options_is_still_one_line_per_value():
    from pydantic import ValidationError

    from hcc_utils.__main__ import error_lines

    with pytest.raises(ValidationError) as err:
        SyntheticCohort(n=3, ki67_mean=0.1, ki67_sd=0.45)
    assert error_lines(err.value) == ["n 3: Input should be greater than or equal to 8"]
    with pytest.raises(ValidationError) as err:
        SyntheticCohort(ki67_mean=0.1, ki67_sd=0.45)
    [line] = error_lines(err.value)
    assert line.startswith("SyntheticCohort: Value error, ki67_sd 0.45 is too large for ki67_mean 0.1")


def test_synth_cli_never_writes_into_a_folder_with_files_without_force(cohort, tmp_path, capsys):
    before = _files(cohort)
    assert synth_cli(capsys, "--n", 8, "--out", cohort.parent) == (
        2, [f"error: --out '{cohort.parent.name}' is not empty; choose another folder or add --force (which "
            "overwrites only the files this command writes)"])
    assert _files(cohort) == before
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "cohort.csv").write_text("patient_id\nold\n")
    assert synth_cli(capsys, "--n", 8, "--seed", 7, "--image-size", 64, "--out", out)[0] == 2
    assert (out / "cohort.csv").read_text() == "patient_id\nold\n" and not (out / "images").exists()
    code, progress = synth_cli(capsys, "--n", 8, "--seed", 7, "--image-size", 64, "--out", out, "--force")
    assert code == 0 and not any(line.startswith("error") for line in progress)
    assert (out / "notes.txt").read_text() == "mine" and len(pd.read_csv(out / "cohort.csv")) == 8


def test_manifest_round_trips_through_the_cohort_loader(cohort):
    raw = pd.read_csv(cohort)
    assert list(raw.columns) == MANIFEST_COLUMNS
    assert list(raw["patient_id"]) == [f"HCC{i:04d}" for i in range(1, SMALL["n"] + 1)]
    assert not raw["image"].str.startswith("/").any(), "paths must be relative to the manifest"
    table = load_manifest(cohort)
    assert len(table) == SMALL["n"]
    for col in ("image", "mask", "mask_reader2"):
        assert all(Path(p).is_file() for p in table[col])
    assert set(table["gender"]) <= {"M", "F"}
    assert table["ki67"].between(0, 1).all()
    assert set(table["edmondson"]) <= {1, 2, 3, 4} and set(table["mvi_grade"]) <= {0, 1, 2}
    assert table[["age", "bmi", "hbsag", "afp", "alb", "ast", "alt", "alcohol"]].notna().all().all()


def test_manifest_matches_the_clinical_draw_of_the_same_seed(cohort):
    manifest = pd.read_csv(cohort, dtype={"gender": str})
    draw = synth.sample_clinical(SyntheticCohort(**SMALL), SMALL["seed"])
    for col in ("er", "age", "gender", "afp", "mvi_grade", "ki67", "edmondson", "scanner"):
        assert manifest[col].tolist() == draw[col].tolist(), col


def test_ground_truth_holds_latents_probabilities_and_oracle_auc(cohort):
    truth = synth.read_ground_truth(cohort.parent)
    manifest = pd.read_csv(cohort)
    assert truth["patient_id"].tolist() == manifest["patient_id"].tolist()
    assert truth["er"].tolist() == manifest["er"].tolist()
    assert {"invasiveness", "proliferation", "er_probability", "oracle_auc"} <= set(truth.columns)
    assert truth["er_probability"].between(0, 1, inclusive="neither").all()
    assert truth["oracle_auc"].nunique() == 1 and 0 <= truth["oracle_auc"].iloc[0] <= 1
    assert synth.read_ground_truth(cohort)["patient_id"].tolist() == truth["patient_id"].tolist()
    assert list(truth.columns) == synth_truth.GROUND_TRUTH_COLUMNS
    with pytest.raises(FileNotFoundError, match="synthetic"):
        synth.read_ground_truth(cohort.parent / "images")


def test_ground_truth_reader_names_the_file_and_the_missing_column(tmp_path):
    path = tmp_path / synth_truth.GROUND_TRUTH_FILE
    pd.DataFrame({"patient_id": ["HCC0001"], "p_er": [0.3]}).to_csv(path, index=False)
    needed = [synth_truth.PATIENT_ID, synth_truth.PROBABILITY_COLUMN]
    with pytest.raises(synth_truth.GroundTruthError, match="er_probability") as err:
        synth_truth.read_ground_truth(tmp_path, columns=needed)
    assert str(path) in str(err.value) and "generate the cohort again" in str(err.value)
    pd.DataFrame({"patient_id": ["HCC0001"], "er_probability": [0.3]}).to_csv(path, index=False)
    for where in (tmp_path, tmp_path / synth_truth.MANIFEST_FILE, path):
        assert synth_truth.read_ground_truth(where, columns=needed)["er_probability"].tolist() == [0.3]
    with pytest.raises(synth_truth.GroundTruthError, match="invasiveness"):
        synth_truth.read_ground_truth(path)  # default: every column the generator writes


def _modules_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(sorted(m for m in sys.modules if m.startswith('hcc_utils')))"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    return ast.literal_eval(done.stdout)


def test_no_import_circle_between_the_run_params_and_the_generator():
    assert not [m for m in _modules_after("import hcc_utils.config") if m.startswith("hcc_utils.synth")]
    assert "hcc_utils.config" not in _modules_after("import hcc_utils.synth.generator")
    validated = _modules_after("from hcc_utils.config import load_params; load_params('params/smoke.yaml')")
    assert "hcc_utils.synth.params" in validated and "hcc_utils.synth.generator" not in validated


def test_package_exports_resolve():
    assert sorted(synth.__all__) == sorted(synth._EXPORTS)
    for name in synth.__all__:
        assert getattr(synth, name) is not None
    assert synth.SyntheticCohort is SyntheticCohort and synth.truth is synth_truth


def test_image_geometry_affine_and_hu_range(cohort):
    cfg = SyntheticCohort(**SMALL)
    table = load_manifest(cohort)
    scanners = {s.name: s for s in cfg.scanners}
    for row in table.itertuples():
        image = nib.load(row.image)
        expected_xy = scanners[row.scanner].pixel_spacing_mm * 512 / cfg.image_size
        assert image.shape[:2] == (cfg.image_size, cfg.image_size)
        assert 30 <= image.shape[2] <= 50, "about 30-45 slices of 5 mm over the liver"
        np.testing.assert_allclose(image.header.get_zooms(), (expected_xy, expected_xy, 5.0), rtol=1e-6)
        assert image.get_data_dtype() == np.int16
        np.testing.assert_allclose(image.affine, image.get_qform(), atol=1e-5)
        assert 350 <= expected_xy * cfg.image_size <= 410, "field of view of an abdominal CT"

        itk = sitk.ReadImage(row.image)
        assert itk.GetPixelID() == sitk.sitkInt16
        np.testing.assert_allclose(itk.GetSpacing(), image.header.get_zooms(), rtol=1e-6)
        np.testing.assert_allclose(np.array(itk.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-6)
        lps_origin = image.affine[:3, 3] * np.array([-1, -1, 1])
        np.testing.assert_allclose(itk.GetOrigin(), lps_origin, atol=1e-3)

        hu = np.asarray(image.dataobj)
        assert hu.min() >= -1024 and hu.max() <= 3071
        assert (hu < -900).mean() > 0.15, "air around the body"
        assert hu.max() > 400, "bone"
        for mask_path in (row.mask, row.mask_reader2):
            mask = nib.load(mask_path)
            assert mask.shape == image.shape
            np.testing.assert_allclose(mask.affine, image.affine)
            values = np.asarray(mask.dataobj)
            assert set(np.unique(values)) == {0, 1}
            assert values.sum() > 50


def test_reader2_dice_in_range(cohort):
    table = load_manifest(cohort)
    truth = synth.read_ground_truth(cohort.parent)
    for row, recorded in zip(table.itertuples(), truth["reader2_dice"], strict=True):
        a = np.asarray(nib.load(row.mask).dataobj).astype(bool)
        b = np.asarray(nib.load(row.mask_reader2).dataobj).astype(bool)
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert 0.85 <= dice <= 0.95, f"{row.patient_id}: reader Dice {dice:.3f}"
        assert dice == pytest.approx(recorded, abs=1e-3)


def test_lesion_is_hyperenhancing_relative_to_liver(cohort):
    table = load_manifest(cohort)
    truth = synth.read_ground_truth(cohort.parent)
    excess = []
    for row, liver_hu in zip(table.itertuples(), truth["liver_hu"], strict=True):
        hu = np.asarray(nib.load(row.image).dataobj)
        mask = np.asarray(nib.load(row.mask).dataobj).astype(bool)
        excess.append(np.median(hu[mask]) - liver_hu)
    assert min(excess) > 0
    assert np.mean(excess) > 25


def test_lesion_volume_matches_its_diameter(cohort):
    truth = synth.read_ground_truth(cohort.parent)
    sphere_ml = np.pi / 6 * truth["lesion_diameter_mm"] ** 3 / 1000
    ratio = truth["lesion_volume_ml"] / sphere_ml
    assert ratio.between(0.5, 1.6).all()


def test_cohort_statistics_match_their_targets(large_sample):
    cfg = SyntheticCohort()
    s = large_sample
    assert s["er"].mean() == pytest.approx(cfg.er_prevalence, abs=0.015)
    assert s["er_probability"].mean() == pytest.approx(cfg.er_prevalence, abs=0.01)
    np.testing.assert_allclose(s["mvi_grade"].value_counts(normalize=True).sort_index(), cfg.mvi_shares, atol=0.015)
    np.testing.assert_allclose(s["edmondson"].value_counts(normalize=True).sort_index(), cfg.edmondson_shares,
                               atol=0.015)
    assert s["ki67"].between(0, 1).all()
    assert s["ki67"].mean() == pytest.approx(cfg.ki67_mean, abs=0.01)
    assert s["ki67"].std() == pytest.approx(cfg.ki67_sd, abs=0.015)
    assert (s["gender"] == "M").mean() == pytest.approx(cfg.male_share, abs=0.015)
    assert np.corrcoef(s["invasiveness"], s["proliferation"])[0, 1] == pytest.approx(cfg.latent_correlation,
                                                                                      abs=0.03)
    # Table 2's spread (pooled over groups), loosely
    assert s["age"].mean() == pytest.approx(52, abs=2) and s["age"].std() == pytest.approx(10.5, abs=1.5)
    assert s["bmi"].mean() == pytest.approx(22.2, abs=0.5)
    assert s["alb"].mean() == pytest.approx(39.5, abs=1)
    assert 300 < s["afp"].mean() < 600 and s["afp"].median() < s["afp"].mean(), "AFP right-skewed"
    assert 700 < s["hbsag"].mean() < 1400 and 40 < s["ast"].mean() < 100 and 40 < s["alt"].mean() < 100
    assert s["alcohol"].mean() == pytest.approx(0.35, abs=0.02)


def test_biology_links_er_pathology_afp_and_gender(large_sample):
    s = large_sample
    er = s["er"] == 1
    assert s.loc[er, "afp"].median() > 1.3 * s.loc[~er, "afp"].median()
    assert (s.loc[er, "gender"] == "M").mean() > (s.loc[~er, "gender"] == "M").mean()
    assert s["mvi_grade"].corr(s["invasiveness"]) > 0.5
    assert s["ki67"].corr(s["proliferation"], method="spearman") > 0.7
    assert 0.05 < s["edmondson"].corr(s["proliferation"]) < 0.5, "weakly linked"
    assert s.loc[er, "mvi_grade"].mean() > s.loc[~er, "mvi_grade"].mean()
    for col in ("age", "bmi", "alb", "hbsag", "alcohol"):
        assert abs(s[col].corr(s["er"])) < 0.03, f"{col} must carry no ER information"


PHENOTYPE = ["lesion_diameter_mm", "lesion_irregularity", "lesion_heterogeneity_hu", "lesion_necrosis_share",
             "lesion_capsule", "lesion_satellites", "lesion_peritumoral_enhancement", "lesion_enhancement_hu"]


def test_image_signal_controls_how_much_the_lesion_says_about_er():
    silent = synth.sample_clinical(SyntheticCohort(image_signal=0.0), 5, n=20_000)
    loud = synth.sample_clinical(SyntheticCohort(image_signal=1.0), 5, n=20_000)
    for col in PHENOTYPE:
        assert abs(silent[col].corr(silent["er"])) < 0.03, f"{col} follows ER with image_signal=0"
        assert abs(silent[col].corr(silent["invasiveness"])) < 0.03
    assert loud["lesion_diameter_mm"].corr(loud["er"]) > 0.1
    assert loud["lesion_capsule"].corr(loud["er"]) < -0.05
    # the traits' distributions do not depend on image_signal, only their link to biology
    assert silent["lesion_diameter_mm"].median() == pytest.approx(loud["lesion_diameter_mm"].median(), rel=0.05)
    assert loud["lesion_diameter_mm"].between(20, 100).all()


def test_clinical_signal_zero_makes_afp_and_gender_uninformative():
    s = synth.sample_clinical(SyntheticCohort(clinical_signal=0.0), 9, n=20_000)
    assert abs(np.log(s["afp"]).corr(s["er"])) < 0.03
    assert abs((s["gender"] == "M").astype(float).corr(s["er"])) < 0.03
    assert s["er"].mean() == pytest.approx(0.41, abs=0.015)


def test_shares_must_sum_to_one_and_ki67_must_fit_in_zero_one():
    with pytest.raises(ValueError, match="sum to 1"):
        SyntheticCohort(mvi_shares=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="ki67_sd"):
        SyntheticCohort(ki67_mean=0.1, ki67_sd=0.45)


def test_cache_key_follows_generator_version_and_fields():
    assert SyntheticCohort().cache_key() == SyntheticCohort().cache_key()
    assert SyntheticCohort().cache_key() != SyntheticCohort(image_signal=0.5).cache_key()
    assert isinstance(synth.GENERATOR_VERSION, str)


def test_nifti_writer_is_byte_stable(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    affine = np.diag([-0.7, -0.7, 5.0, 1.0])
    synth.write_nifti(array, affine, tmp_path / "a.nii.gz")
    synth.write_nifti(array, affine, tmp_path / "b.nii.gz")
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()
    back = nib.load(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(np.asarray(back.dataobj), array.T)
    assert gzip.decompress((tmp_path / "a.nii.gz").read_bytes())[:4] == (348).to_bytes(4, "little")
