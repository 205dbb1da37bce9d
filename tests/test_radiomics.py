"""Radiomics: PyRadiomics extraction (fast path = plain call), lung1 baseline, ICC(3,1), the cohort loop, the
model."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

matplotlib.use("Agg")

from _volumes import blobs, realdata_dir, volume, with_lesion, write  # noqa: E402

from hcc_utils import radiomics  # noqa: E402
from hcc_utils.config import params_from_dict  # noqa: E402
from hcc_utils.icc import icc_table, reliable_features  # noqa: E402
from hcc_utils.plots import radiomics as radiomics_plots  # noqa: E402
from hcc_utils.radiomics_model import (  # noqa: E402
    family_counts,
    feature_parts,
    fill_validation_gaps,
    finite_features,
    fit_radiomics_model,
)
from hcc_utils.run_folder import RunFolder  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
ALL_CLASSES = {c: None for c in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")}
ORIGINAL_1MM = {"imageType": {"Original": {}}, "featureClass": ALL_CLASSES,
                "setting": {"binWidth": 25, "interpolator": "sitkBSpline", "resampledPixelSpacing": [1, 1, 1],
                            "padDistance": 5, "label": 1, "additionalInfo": False}}


def _relative_difference(reference: dict, values: dict) -> pd.Series:
    assert set(reference) == set(values)
    ref = pd.Series(reference, dtype=float)
    got = pd.Series(values, dtype=float).reindex(ref.index)
    both_nan = ref.isna() & got.isna()
    return ((got - ref).abs() / ref.abs().clip(lower=1e-300)).where(~both_nan, 0.0)


def _lesion_volume(seed: int, radius_vox=(3, 7, 8), shape=(20, 48, 48)):
    """A small CT-like volume (0.8 x 0.8 x 3 mm) with a textured lesion, and its mask."""
    image = volume(shape_zyx=shape, seed=seed)
    mask = blobs(image, [tuple(s // 2 for s in shape)], [radius_vox])
    values = sitk.GetArrayFromImage(with_lesion(image, mask, hu=100.0)).astype(np.int16)
    inside = sitk.GetArrayViewFromImage(mask) > 0
    values[inside] += np.random.default_rng(seed).normal(0, 30, inside.sum()).astype(np.int16)
    textured = sitk.GetImageFromArray(values)
    textured.CopyInformation(image)
    return textured, mask


def _shifted(mask: sitk.Image, shift_x: int) -> sitk.Image:
    """Reader 2: the same lesion outlined one voxel to the side (a slightly different contour)."""
    array = np.roll(sitk.GetArrayFromImage(mask), shift_x, axis=2)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(mask)
    return out


# ------------------------------------------------------------------------------------------- extraction


def test_settings_files_validate_with_pyradiomics_schema():
    default = radiomics.load_extractor(PROJECT / "params" / "radiomics_default.yaml")
    assert set(default.enabledImagetypes) == {"Original", "LoG", "Wavelet"}
    assert default.enabledImagetypes["LoG"]["sigma"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert default.settings["binWidth"] == 25 and default.settings["resampledPixelSpacing"] == [1, 1, 1]
    assert default.settings["additionalInfo"] is False
    smoke = radiomics.load_extractor(PROJECT / "params" / "radiomics_smoke.yaml")
    assert smoke.settings["resampledPixelSpacing"] == [1, 1, 1] and smoke.settings["binWidth"] == 25
    with pytest.raises(radiomics.RadiomicsError, match="binWidth"):
        radiomics.load_extractor({"setting": {"binWidth": "wide"}})
    with pytest.raises(radiomics.RadiomicsError, match="not found"):
        radiomics.load_extractor(PROJECT / "params" / "no_such_file.yaml")


@pytest.mark.realdata
def test_lung1_original_features_match_pyradiomics_baseline():
    folder = realdata_dir("pyradiomics_lung1")
    baseline = {}
    settings = None
    for path in sorted((folder / "baseline").glob("baseline_*.csv")):
        table = pd.read_csv(path, index_col=0)
        if "lung1" not in table.columns:
            continue
        column = table["lung1"]
        if settings is None and isinstance(column.get("diagnostics_Configuration_Settings"), str):
            settings = ast.literal_eval(column["diagnostics_Configuration_Settings"])
        rows = column[column.index.str.startswith("original_")].dropna()
        baseline.update(rows.astype(float).to_dict())
    assert settings is not None and len(baseline) > 90
    params = {"setting": {k: v for k, v in settings.items() if v is not None},
              "imageType": {"Original": {}}, "featureClass": ALL_CLASSES}
    features = radiomics.extract_features(folder / "lung1_image.nrrd", folder / "lung1_label.nrrd", params)
    missing = sorted(set(baseline) - set(features))
    assert not missing, f"baseline features not computed: {missing}"
    ref = pd.Series(baseline)
    got = pd.Series(features).reindex(ref.index)
    relative = (got - ref).abs() / ref.abs().clip(lower=1e-300)
    assert relative.max() <= 1e-9, relative.sort_values().tail(3)
    assert {n.split("_")[1] for n in baseline} >= {"shape", "firstorder", "glcm", "glrlm", "glszm", "gldm",
                                                  "ngtdm"}


@pytest.mark.realdata
def test_fast_path_equals_plain_call_with_resampling_on_real_ct():
    folder = realdata_dir("pyradiomics_lung1")
    image, mask = folder / "lung1_image.nrrd", folder / "lung1_label.nrrd"
    settings = PROJECT / "params" / "radiomics_smoke.yaml"
    plain = radiomics.extract_reference(image, mask, settings, diagnostics=True)
    fast = radiomics.extract_features(image, mask, settings)
    assert any(k.startswith("log-sigma") for k in fast)
    assert _relative_difference(plain, fast).max() <= 1e-12


def test_fast_path_equals_plain_call_with_filters_and_anisotropic_voxels(tmp_path):
    image, mask = _lesion_volume(seed=3)
    image_path, mask_path = write(image, tmp_path / "ct.nii.gz"), write(mask, tmp_path / "mask.nii.gz")
    settings = {**ORIGINAL_1MM, "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 3.0]}, "Wavelet": {}},
                "featureClass": {"firstorder": None, "glcm": None, "glszm": None, "shape": None}}
    plain = radiomics.extract_reference(image_path, mask_path, settings, diagnostics=True)
    fast = radiomics.extract_features(image_path, mask_path, settings)
    assert len(fast) > 300 and any(k.startswith("wavelet-HHH") for k in fast)
    assert _relative_difference(plain, fast).max() <= 1e-12
    # also with in-memory images (as read back: NIfTI stores geometry in float32) and normalisation on (done
    # on the whole image, as PyRadiomics does)
    normalised = {**settings, "setting": {**settings["setting"], "normalize": True, "normalizeScale": 100}}
    plain = radiomics.extract_reference(image_path, mask_path, normalised)
    image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
    assert _relative_difference(plain, radiomics.extract_features(image, mask, normalised)).max() <= 1e-12


def test_largest_tumours_go_first(tmp_path):
    sizes = {"small": 10, "large": 3000, "medium": 400}
    for name, size in sizes.items():
        (tmp_path / f"{name}.nii.gz").write_bytes(b"x" * size)
    masks = [tmp_path / f"{n}.nii.gz" for n in sizes] + [tmp_path / "missing.nii.gz"]
    assert radiomics.largest_first(masks) == [1, 2, 0, 3]


def test_extract_patient_reports_a_bad_mask_and_keeps_the_other_reader(tmp_path):
    image, mask = _lesion_volume(seed=4)
    empty = sitk.Image(mask.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(mask)
    out = radiomics.extract_patient(write(image, tmp_path / "ct.nii.gz"),
                                    {"reader1": write(mask, tmp_path / "m1.nii.gz"),
                                     "reader2": write(empty, tmp_path / "m2.nii.gz")}, ORIGINAL_1MM, "P1")
    assert out["reader1"]["error"] is None and out["reader1"]["features"]["original_shape_VoxelVolume"] > 0
    assert out["reader2"]["features"] is None and out["reader2"]["error"]


# ------------------------------------------------------------------------------------------- ICC


def _readers(n=40, n_features=4, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(n, n_features)) * [1, 10, 100, 0.01][:n_features]
    ids = pd.Index([f"P{i:02d}" for i in range(n)], name="patient_id")
    cols = [f"original_firstorder_F{j}" for j in range(n_features)]
    r1 = pd.DataFrame(truth, index=ids, columns=cols)
    noisy = truth + rng.normal(size=truth.shape) * noise * truth.std(axis=0)
    r2 = pd.DataFrame(noisy, index=ids, columns=cols)
    return r1, r2


def test_icc_is_one_for_identical_readers_and_drops_with_noise():
    r1, _ = _readers()
    identical = icc_table(r1, r1.copy())
    assert list(identical.columns) == ["feature", "icc", "ci_low", "ci_high"]
    assert np.allclose(identical["icc"], 1.0)
    iccs = [icc_table(*_readers(noise=s, seed=1))["icc"].mean() for s in (0.1, 0.5, 1.5)]
    assert 1.0 > iccs[0] > iccs[1] > iccs[2]
    table = icc_table(*_readers(noise=0.5, seed=1))
    assert (table["ci_low"] < table["icc"]).all() and (table["icc"] < table["ci_high"]).all()


def test_icc3_matches_two_way_mixed_consistency_formula_and_ignores_reader_offset():
    r1, r2 = _readers(noise=0.6, seed=2)
    r2 = r2 + 1000.0  # a systematic bias: consistency ICC(3,1) ignores it
    icc = icc_table(r1, r2).set_index("feature")["icc"]
    for feature in r1.columns:
        x = np.column_stack([r1[feature], r2[feature]])
        n, k = x.shape
        grand = x.mean()
        ms_rows = k * ((x.mean(axis=1) - grand) ** 2).sum() / (n - 1)
        resid = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + grand
        ms_error = (resid ** 2).sum() / ((n - 1) * (k - 1))
        assert icc[feature] == pytest.approx((ms_rows - ms_error) / (ms_rows + (k - 1) * ms_error), rel=1e-9)


def test_icc_of_a_constant_feature_is_nan_and_not_reliable():
    r1, r2 = _readers(noise=0.1)
    r1["original_shape_Flat"] = 5.0
    r2["original_shape_Flat"] = 5.0
    table = icc_table(r1, r2)
    assert np.isnan(table.set_index("feature").loc["original_shape_Flat", "icc"])
    assert "original_shape_Flat" not in reliable_features(table, 0.75)


# ------------------------------------------------------------------------------------------- cohort + model


def _cohort(tmp_path, n=16, bad_reader1=(), bad_reader2=()):
    rows = []
    for i in range(n):
        pid = f"HCC{i:03d}"
        er = i % 2
        image, mask = _lesion_volume(seed=10 + i, radius_vox=(3, 5 + er * 2 + i % 3, 6 + i % 4))
        reader2 = _shifted(mask, 1 if i % 4 else -1)
        if pid in bad_reader1:
            mask = sitk.Image(mask.GetSize(), sitk.sitkUInt8)
            mask.CopyInformation(image)
        rows.append({"patient_id": pid, "image": str(write(image, tmp_path / "img" / f"{pid}.nii.gz")),
                     "mask": str(write(mask, tmp_path / "masks" / f"{pid}_reader1.nii.gz")),
                     "mask_reader2": (str(tmp_path / "nowhere.nii.gz") if pid in bad_reader2 else
                                      str(write(reader2, tmp_path / "masks" / f"{pid}_reader2.nii.gz"))),
                     "er": er, "split": "validation" if i % 4 == 3 else "train"})
    return pd.DataFrame(rows)


def _params(tmp_path, **radiomics_cfg):
    settings = tmp_path / "radiomics.yaml"
    settings.write_text(yaml.safe_dump({**ORIGINAL_1MM, "featureClass": {"shape": None, "firstorder": None,
                                                                         "glcm": None}}))
    return params_from_dict({"cohort": {"manifest": str(tmp_path / "cohort.csv")},
                             "radiomics": {"settings": str(settings), "n_jobs": 1, **radiomics_cfg},
                             "model": {"n_estimators": [10], "max_depth": [2], "min_samples_split": [2],
                                       "cv_folds": 3},
                             "selection": {"lasso_n_alphas": 10, "lasso_folds": 3, "p_threshold": 0.5}})


def test_extract_cohort_caches_records_failures_and_reads_reader2_of_training_patients_only(tmp_path,
                                                                                            monkeypatch):
    cohort = _cohort(tmp_path, n=8, bad_reader1=("HCC001",), bad_reader2=("HCC002",))
    params = _params(tmp_path)
    run = RunFolder(tmp_path / "run")
    r1, r2 = radiomics.extract_cohort(cohort, params, run, n_jobs=2)
    train = set(cohort.loc[cohort["split"] == "train", "patient_id"])
    assert "HCC001" not in r1.index and len(r1) == 7
    assert set(r2.index) == train - {"HCC001", "HCC002"}  # leak_free: no validation patient's second reading
    issues = run.exclusions("radiomics").set_index("patient_id")
    assert issues.loc["HCC001", "severity"] == "excluded" and issues.loc["HCC002", "severity"] == "warning"
    assert "HCC001" in run.excluded_ids()
    assert (run.cache / "radiomics" / "HCC000_reader1.json").is_file()
    cached = json.loads((run.cache / "radiomics" / "HCC000_reader1.json").read_text())
    assert cached["features"]["original_shape_VoxelVolume"] == r1.loc["HCC000", "original_shape_VoxelVolume"]

    def no_extraction(*args, **kwargs):
        raise AssertionError("cached patients must not be extracted again")

    monkeypatch.setattr(radiomics, "extract_patient", no_extraction)
    cohort_ok = cohort[~cohort["patient_id"].isin(["HCC001", "HCC002"])]
    again1, again2 = radiomics.extract_cohort(cohort_ok, params, run)
    pd.testing.assert_frame_equal(again1, r1.loc[again1.index])
    compat = params.model_copy(update={"protocol": "onekey_compat"})
    assert set(radiomics.icc_patient_ids(cohort_ok, compat)) == set(cohort_ok["patient_id"])
    limited = _params(tmp_path, icc_max_patients=3)
    assert len(radiomics.icc_patient_ids(cohort_ok, limited)) == 3


def test_radiomics_model_filters_by_icc_on_training_patients_and_fits_the_recipe(tmp_path):
    cohort = _cohort(tmp_path, n=16)
    params = _params(tmp_path, icc_threshold=0.5)
    run = RunFolder(tmp_path / "run")
    model = fit_radiomics_model(cohort, params, run)
    train = set(cohort.loc[cohort["split"] == "train", "patient_id"])
    assert set(model.icc_patients) == train
    assert set(model.reliable) == set(model.icc.loc[model.icc["icc"] > 0.5, "feature"])
    assert set(model.recipe.features) <= set(model.reliable)
    funnel = model.funnel()
    assert funnel["step"].tolist()[:3] == ["extracted", "finite", "ICC"]
    assert funnel["kept"].is_monotonic_decreasing
    assert (run.models / "radiomics.joblib").is_file() and (run.tables / "radiomics_icc.csv").is_file()
    predictions = pd.read_csv(run.predictions / "radiomics_patients.csv")
    assert len(predictions) == 16 and predictions["prob"].between(0, 1).all()
    assert set(model.selected_table()["feature"]) == set(model.recipe.features)


@pytest.mark.filterwarnings("ignore::hcc_utils.selection.SelectionWarning")  # 12 patients: fallback
def test_radiomics_model_without_second_readings_skips_icc_with_a_note(tmp_path):
    cohort = _cohort(tmp_path, n=12).assign(mask_reader2=pd.NA)
    model = fit_radiomics_model(cohort, _params(tmp_path), RunFolder(tmp_path / "run"))
    assert model.icc.empty and model.reliable == model.finite
    assert any("ICC filtering skipped" in note for note in model.notes)


def test_finite_features_are_decided_on_training_rows_and_validation_gaps_get_the_training_median():
    table = pd.DataFrame({"a": [1.0, 2.0, 4.0, np.nan], "b": [np.nan, 1.0, 1.0, 1.0],
                          "c": [3.0, 5.0, 9.0, np.inf]}, index=["T1", "T2", "T3", "V1"])
    training = ["T1", "T2", "T3"]
    assert finite_features(table, training) == ["a", "c"]  # b: missing for a training patient
    filled, gaps = fill_validation_gaps(table[["a", "c"]], training)
    assert filled.loc["V1"].tolist() == [2.0, 5.0]  # the training medians
    assert filled.loc[training].equals(table.loc[training, ["a", "c"]])
    assert gaps[["patient_id", "feature", "training_median"]].values.tolist() == [["V1", "a", 2.0],
                                                                                  ["V1", "c", 5.0]]
    assert np.isnan(gaps["value"].iloc[0]) and np.isinf(gaps["value"].iloc[1])


def _feature_cohort(n=40, seed=0):
    """A cohort of features (no images): 3 informative features and 3 noise features, every 4th patient in
    validation, reader 2 a noisy copy of reader 1 for the training patients."""
    rng = np.random.default_rng(seed)
    ids = [f"HCC{i:03d}" for i in range(n)]
    er = np.arange(n) % 2
    values = rng.normal(size=(n, 6)) + np.outer(er, [1.5, 1.2, 1.0, 0, 0, 0])
    cols = [f"original_firstorder_F{j}" for j in range(6)]
    reader1 = pd.DataFrame(values, index=pd.Index(ids, name="patient_id"), columns=cols)
    cohort = pd.DataFrame({"patient_id": ids, "er": er, "mask_reader2": "r2.nii.gz",
                           "split": ["validation" if i % 4 == 3 else "train" for i in range(n)]})
    train = cohort.loc[cohort["split"] == "train", "patient_id"].tolist()
    reader2 = reader1.loc[train] + rng.normal(scale=0.05, size=(len(train), 6))
    return cohort, reader1, reader2


def test_radiomics_model_keeps_a_feature_missing_only_for_validation_and_drops_one_missing_in_training(
        tmp_path, monkeypatch):
    cohort, reader1, reader2 = _feature_cohort()
    validation = cohort.loc[cohort["split"] == "validation", "patient_id"].tolist()
    gappy = reader1.copy()
    gappy.loc[validation[0], "original_firstorder_F0"] = np.nan
    gappy.loc[validation[1], ["original_firstorder_F0", "original_firstorder_F1"]] = np.inf
    gappy.loc["HCC000", "original_firstorder_F5"] = np.nan  # a training patient
    params = _params(tmp_path, icc_threshold=0.5)
    fitted = {}
    for name, table in (("complete", reader1), ("gappy", gappy)):
        monkeypatch.setattr(radiomics, "extract_cohort", lambda *args, t=table, **kwargs: (t, reader2))
        fitted[name] = fit_radiomics_model(cohort, params, RunFolder(tmp_path / name))
    model = fitted["gappy"]
    assert "original_firstorder_F0" in model.finite and "original_firstorder_F1" in model.finite
    assert "original_firstorder_F5" not in model.finite
    train = cohort.loc[cohort["split"] == "train", "patient_id"]
    median = reader1.loc[train, "original_firstorder_F0"].median()
    gaps = model.validation_gaps
    assert len(gaps) == 3 and set(gaps["patient_id"]) == set(validation[:2])
    assert gaps.loc[gaps["feature"] == "original_firstorder_F0", "training_median"].tolist() == [median] * 2
    note = next(n for n in model.notes if "training median" in n)
    assert "3 validation value(s)" in note and f"{validation[0]} (1)" in note and f"{validation[1]} (2)" in note
    assert any("1 feature(s) without a finite value for every training patient" in n for n in model.notes)
    predictions = pd.read_csv(tmp_path / "gappy" / "predictions" / "radiomics_patients.csv")
    assert predictions["prob"].notna().all() and len(predictions) == len(cohort)


def test_no_validation_value_changes_which_radiomics_features_are_kept(tmp_path, monkeypatch):
    cohort, reader1, reader2 = _feature_cohort(seed=1)
    validation = cohort.loc[cohort["split"] == "validation", "patient_id"].tolist()
    scrambled = reader1.copy()
    scrambled.loc[validation] = np.nan  # every validation value gone ...
    scrambled.loc[validation[0]] = 1e6  # ... or absurd
    params = _params(tmp_path, icc_threshold=0.5)
    kept = {}
    for name, table in (("original", reader1), ("scrambled", scrambled)):
        monkeypatch.setattr(radiomics, "extract_cohort", lambda *args, t=table, **kwargs: (t, reader2))
        model = fit_radiomics_model(cohort, params, RunFolder(tmp_path / name))
        kept[name] = (model.finite, model.reliable, model.recipe.features)
    assert kept["original"] == kept["scrambled"]
    assert kept["original"][0] == list(reader1.columns)


# ------------------------------------------------------------------------------------------- names + figures


def test_feature_names_split_into_family_and_class():
    names = ["original_shape_Sphericity", "log-sigma-3-0-mm-3D_glcm_Idm", "wavelet-LLH_firstorder_Mean",
             "wavelet-HHH_glcm_Imc1"]
    parts = feature_parts(names)
    assert parts["family"].tolist() == ["Original", "LoG", "Wavelet", "Wavelet"]
    assert parts["feature_class"].tolist() == ["shape", "glcm", "firstorder", "glcm"]
    counts = family_counts(names)
    assert counts.loc["Wavelet", "glcm"] == 1 and counts.loc["total", "total"] == 4


def test_figures_are_drawn():
    names = ["original_shape_Sphericity", "log-sigma-3-0-mm-3D_glcm_Idm", "wavelet-LLH_firstorder_Mean"]
    icc = pd.DataFrame({"feature": names, "icc": [0.95, 0.4, np.nan], "ci_low": 0.0, "ci_high": 1.0})
    funnel = pd.DataFrame({"step": ["extracted", "ICC", "lasso"], "kept": [3, 2, 0]})
    for fig in (radiomics_plots.feature_types(names, names[:1]), radiomics_plots.feature_types(names, []),
                radiomics_plots.icc_distribution(icc, 0.75), radiomics_plots.selection_funnel(funnel)):
        assert fig.axes
        matplotlib.pyplot.close(fig)
