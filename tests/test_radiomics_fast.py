"""Exact, faster radiomics (hcc_utils.radiomics_fast, issue 18): every feature of the full bank equals a plain
PyRadiomics call to 1e-9 relative (1e-12 absolute near 0); the overrides one by one; diagnostics; threads."""

from __future__ import annotations

import ast
import copy
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from _volumes import realdata_dir
from radiomics import cShape, glcm, imageoperations
from radiomics.featureextractor import RadiomicsFeatureExtractor
from threadpoolctl import threadpool_info

from hcc_utils import radiomics, radiomics_fast, radiomics_shape
from hcc_utils.config import params_from_dict
from hcc_utils.run_folder import RunFolder

PROJECT = Path(__file__).resolve().parents[1]
FULL_BANK = PROJECT / "params" / "radiomics_default.yaml"
ALL_CLASSES = {c: [] for c in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")}


def plain_call(image: Path, mask: Path, settings) -> dict:
    """``RadiomicsFeatureExtractor(settings).execute(image_path, mask_path)``, no overrides."""
    assert imageoperations.getBinEdges is radiomics_fast._PYRADIOMICS["getBinEdges"]
    extractor = RadiomicsFeatureExtractor(str(settings) if isinstance(settings, Path) else copy.deepcopy(settings))
    return dict(extractor.execute(str(image), str(mask)))


def assert_same_features(plain: dict, project: dict) -> None:
    plain = {k: float(v) for k, v in plain.items() if not k.startswith("diagnostics_")}
    assert set(project) == set(plain) and len(plain) > 90
    ref = pd.Series(plain)
    got = pd.Series(project).reindex(ref.index)
    difference = (got - ref).abs()
    ok = (difference <= 1e-9 * ref.abs()) | (difference <= 1e-12) | (ref.isna() & got.isna())
    assert ok.all(), pd.DataFrame({"plain": ref, "project": got})[~ok].head()


# ------------------------------------------------------------------------------------------- all features


@pytest.fixture(scope="module")
def lung1() -> tuple[Path, Path]:
    folder = realdata_dir("pyradiomics_lung1")
    return folder / "lung1_image.nrrd", folder / "lung1_label.nrrd"


@pytest.mark.realdata
def test_full_bank_on_lung1_equals_a_plain_pyradiomics_call(lung1):
    project = radiomics.extract_features(*lung1, FULL_BANK)
    assert len(project) == 1302 and any(k.startswith("wavelet-HHH_glcm") for k in project)
    assert_same_features(plain_call(*lung1, FULL_BANK), project)


@pytest.mark.realdata
def test_lung1_baseline_settings_every_feature_equals_a_plain_call(lung1):
    """PyRadiomics' own lung1 baseline settings (no resampling), every feature of every class."""
    table = pd.read_csv(lung1[0].parent / "baseline" / "baseline_glcm.csv", index_col=0)
    settings = ast.literal_eval(table.loc["diagnostics_Configuration_Settings", "lung1"])
    params = {"setting": {k: v for k, v in settings.items() if v is not None}, "imageType": {"Original": {}},
              "featureClass": ALL_CLASSES}
    project = radiomics.extract_features(*lung1, params)
    assert "original_glcm_SumAverage" in project and "original_glcm_MCC" in project
    assert_same_features(plain_call(*lung1, params), project)


@pytest.fixture(scope="module")
def synthetic_tumours(tmp_path_factory) -> list[tuple[Path, Path]]:
    """Two tumours of the embedded generator (31 and 51 mm, 3 x 3 x 5 mm CT voxels resampled to 1 mm)."""
    from hcc_utils import synth

    folder = tmp_path_factory.mktemp("synth")
    manifest = synth.generate_cohort(synth.SyntheticCohort(n=8, seed=3, image_size=128), folder, n_jobs=1,
                                     progress=False)
    cohort = pd.read_csv(manifest).set_index("patient_id")
    return [(folder / cohort.at[pid, "image"], folder / cohort.at[pid, "mask"]) for pid in ("HCC0004", "HCC0001")]


@pytest.mark.parametrize("case", [0, 1])
def test_full_bank_on_synthetic_tumours_equals_a_plain_pyradiomics_call(synthetic_tumours, case):
    image, mask = synthetic_tumours[case]
    assert_same_features(plain_call(image, mask, FULL_BANK), radiomics.extract_features(image, mask, FULL_BANK))


# ------------------------------------------------------------------------------------------- the overrides


def _glcm(rng, n_levels: int, symmetric: bool, voxels: int = 1, angles: int = 13) -> SimpleNamespace:
    """A GLCM object as PyRadiomics' MCC method reads it: sparse counts, some grey levels without neighbours
    along some angles (empty rows and columns), normalised per angle."""
    counts = rng.poisson(rng.gamma(0.3, 20, (voxels, n_levels, n_levels, angles))).astype(float)
    counts *= rng.random(counts.shape) < 0.4
    for v in range(voxels):
        for a in range(angles):
            empty = rng.choice(n_levels, size=n_levels // 5, replace=False)
            counts[v, empty, :, a] = 0
            counts[v, :, empty, a] = 0
            kept = np.setdiff1d(np.arange(n_levels), empty)
            counts[v, kept[0], kept[-1], a] += 1  # no angle without a pair
    if symmetric:
        counts += counts.transpose(0, 2, 1, 3)
    p = counts / counts.sum((1, 2), keepdims=True)
    return SimpleNamespace(P_glcm=p, coefficients={"px": p.sum(2, keepdims=True), "py": p.sum(1, keepdims=True),
                                                   "eps": np.spacing(1)})


@pytest.mark.parametrize("n_levels", [24, 40, 90])
def test_mcc_from_the_symmetric_form_equals_pyradiomics_on_random_glcms(n_levels):
    rng = np.random.default_rng(n_levels)
    original = radiomics_fast._PYRADIOMICS["getMCCFeatureValue"]
    for symmetric in (True, False):
        for voxels in (1, 3):
            matrix = _glcm(rng, n_levels, symmetric, voxels)
            expected, got = original(matrix), radiomics_fast.mcc_symmetric(matrix)
            assert got.shape == expected.shape == (voxels,)
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    few = _glcm(rng, 5, True)  # below MCC_SYMMETRIC_FROM: PyRadiomics' own result
    assert radiomics_fast.mcc_symmetric(few) == original(few)
    broken = _glcm(rng, 30, True)
    broken.P_glcm[0, :, :, 2] = np.nan  # as PyRadiomics marks an empty angle
    with pytest.raises(np.linalg.LinAlgError):  # PyRadiomics' method: the feature becomes NaN, as before
        radiomics_fast.mcc_symmetric(broken)


def test_shape_coefficients_equal_pyradiomics_c_code_on_random_masks():
    rng = np.random.default_rng(0)
    for trial in range(24):
        size = rng.integers(3, 24, 3)
        if trial % 3 == 0:  # speckle
            mask = rng.random(size) < rng.uniform(0.1, 0.9)
        elif trial % 3 == 1:  # a rough ellipsoid
            grid = np.indices(size).astype(float)
            radius = rng.uniform(0.3, 0.6, 3) * size
            distance = sum(((g - s / 2) / r) ** 2 for g, s, r in zip(grid, size, radius, strict=True))
            mask = distance <= 1 + rng.normal(0, 0.2, size)
        else:  # one slice
            mask = np.zeros(size, dtype=bool)
            mask[rng.integers(size[0])] = rng.random(size[1:]) < 0.5
        mask = np.pad(mask, 1)
        spacing = np.ones(3) if trial % 2 else rng.uniform(0.3, 5, 3)
        area, volume, diameters = cShape.calculate_coefficients(mask, spacing)
        got = radiomics_shape.shape_coefficients(mask, spacing)
        assert got[0] == pytest.approx(area, rel=1e-12, abs=1e-12)
        assert got[1] == pytest.approx(volume, rel=1e-12, abs=1e-12)
        assert got[2] == diameters  # the same vertices and distances: bit-identical maxima


@pytest.mark.parametrize("settings", [{"binWidth": 25}, {"binWidth": 0.5}, {"binCount": 16}, {}])
def test_bin_edges_from_extremes_are_pyradiomics_own(settings):
    original = radiomics_fast._PYRADIOMICS["getBinEdges"]
    rng = np.random.default_rng(0)
    rois = [rng.normal(40, 300, 5000), rng.normal(0, 3, 7), np.full(20, 75.0), np.array([-1000.0, 3000.0]),
            np.array([1.0, np.nan, 5.0])][: 4 if "binCount" in settings else 5]  # histogram() refuses NaN
    for roi in rois:
        np.testing.assert_array_equal(radiomics_fast.bin_edges_from_extremes(roi, **settings),
                                      original(roi, **settings))


def test_overrides_are_installed_inside_the_block_only_even_nested_across_threads():
    originals = {name: owner.__dict__[name] for owner, name, _ in radiomics_fast._OVERRIDES}
    inside = threading.Event()
    leave = threading.Event()

    def worker():
        with radiomics_fast.exact_overrides():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=worker)
    with radiomics_fast.exact_overrides():
        assert glcm.RadiomicsGLCM.getMCCFeatureValue is radiomics_fast.mcc_symmetric
        thread.start()
        inside.wait(10)
    assert imageoperations.getBinEdges is radiomics_fast.bin_edges_from_extremes  # the thread is still inside
    leave.set()
    thread.join()
    assert {name: owner.__dict__[name] for owner, name, _ in radiomics_fast._OVERRIDES} == originals
    with pytest.raises(RuntimeError), radiomics_fast.exact_overrides():
        raise RuntimeError("an error inside PyRadiomics")
    assert imageoperations.getBinEdges is originals["getBinEdges"]


# ------------------------------------------------------------------------------------------- diagnostics


def _plain_diagnostics(image, mask, settings) -> dict:
    extractor = radiomics.load_extractor(copy.deepcopy(settings))
    extractor.settings["additionalInfo"] = True
    return {k: v for k, v in extractor.execute(str(image), str(mask)).items() if k.startswith("diagnostics_")}


def _assert_same_diagnostics(plain: dict, project: dict) -> None:
    got = {k: v for k, v in project.items() if k.startswith("diagnostics_")}
    assert list(got) == list(plain) and "diagnostics_Image-original_Hash" in got
    different = [k for k in plain if not np.array_equal(np.asarray(plain[k], dtype=object),
                                                        np.asarray(got[k], dtype=object))]
    assert not different, {k: (plain[k], got[k]) for k in different}


@pytest.mark.realdata
@pytest.mark.parametrize("resampled", [True, False])
def test_diagnostics_on_are_a_plain_calls_and_off_are_absent(lung1, resampled):
    settings = {"imageType": {"Original": {}}, "featureClass": {"firstorder": [], "shape": []},
                "setting": {"binWidth": 25, "label": 1, "additionalInfo": False}}
    if resampled:
        settings["setting"] |= {"interpolator": "sitkBSpline", "resampledPixelSpacing": [1, 1, 1],
                                "padDistance": 10}
    on = radiomics.extract_patient(lung1[0], {"reader1": lung1[1]}, settings, diagnostics=True)["reader1"]
    _assert_same_diagnostics(_plain_diagnostics(*lung1, settings), on["diagnostics"])
    off = radiomics.extract_patient(lung1[0], {"reader1": lung1[1]}, settings)["reader1"]
    assert off["diagnostics"] is None and off["features"] == on["features"]
    assert not any(k.startswith("diagnostics_") for k in off["features"])
    if resampled:  # extract_features: the diagnostics first, then the features, as PyRadiomics returns them
        assert radiomics.extract_features(*lung1, settings, diagnostics=True) == on["diagnostics"] | on["features"]


def test_cohort_cache_holds_diagnostics_when_asked_and_the_features_stay_the_same(synthetic_tumours, tmp_path,
                                                                                   monkeypatch):
    image, mask = synthetic_tumours[0]
    settings = tmp_path / "radiomics.yaml"
    settings.write_text(yaml.safe_dump({"imageType": {"Original": {}}, "featureClass": {"firstorder": None},
                                        "setting": {"binWidth": 25, "interpolator": "sitkBSpline",
                                                    "resampledPixelSpacing": [1, 1, 1], "label": 1}}))
    cohort = pd.DataFrame([{"patient_id": "P1", "image": str(image), "mask": str(mask), "mask_reader2": None,
                            "er": 0, "split": "train"}])
    run = RunFolder(tmp_path / "run")

    def params(diagnostics: bool):
        return params_from_dict({"cohort": {"manifest": str(tmp_path / "cohort.csv")},
                                 "radiomics": {"settings": str(settings), "n_jobs": 1, "diagnostics": diagnostics}})

    cache = run.cache / "radiomics" / "P1_reader1.json"
    off, _ = radiomics.extract_cohort(cohort, params(False), run)
    assert "diagnostics" not in json.loads(cache.read_text())
    on, _ = radiomics.extract_cohort(cohort, params(True), run)  # extracted again, for the diagnostics
    diagnostics = json.loads(cache.read_text())["diagnostics"]
    assert len(diagnostics["diagnostics_Image-original_Hash"]) == 40  # sha1 of the whole image
    pd.testing.assert_frame_equal(on, off)
    monkeypatch.setattr(radiomics, "extract_patient", None)  # from the cache, either way
    for diagnostics_on in (False, True):
        pd.testing.assert_frame_equal(radiomics.extract_cohort(cohort, params(diagnostics_on), run)[0], off)


# ------------------------------------------------------------------------------------------- threads


def _blas_threads() -> int:
    return max(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


def test_extract_patient_limits_blas_threads_in_the_worker_and_restores_them(synthetic_tumours, monkeypatch):
    image, mask = synthetic_tumours[0]
    before = _blas_threads()
    seen = []
    extract = radiomics._extract

    def spy(*args, **kwargs):
        seen.append(_blas_threads())
        return extract(*args, **kwargs)

    monkeypatch.setattr(radiomics, "_extract", spy)
    settings = {"imageType": {"Original": {}}, "featureClass": {"glcm": ["MCC"]},
                "setting": {"binWidth": 25, "interpolator": "sitkBSpline", "resampledPixelSpacing": [1, 1, 1]}}
    out = radiomics.extract_patient(image, {"reader1": mask}, settings, "P1", threads=1)
    assert out["reader1"]["error"] is None and seen == [1]
    assert _blas_threads() == before  # the parent keeps its own
