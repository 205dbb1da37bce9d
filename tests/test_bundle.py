"""The model bundle (``hcc_utils.bundle``): what notebook 05 writes, and what loading it refuses or warns about."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator

from hcc_utils import artifacts, mil
from hcc_utils.bundle import MODEL_SLUGS, BundleError, BundleVersionWarning, load_bundle, sha256
from hcc_utils.run_folder import RunFolder

pytestmark = pytest.mark.slow  # the session's smoke book (tests/conftest.py), built once per session


class Sneaky(BaseEstimator):
    """A type no bundle should hold: skops would construct it when loading."""


@pytest.fixture(scope="module")
def run(smoke_run):
    """The session's smoke run folder (tests/conftest.py); only read here (what a test spoils is a copy)."""
    return smoke_run.run_dir


@pytest.fixture
def copy(run, tmp_path):
    """A copy of the run's bundle folder, free to spoil."""
    folder = tmp_path / artifacts.BUNDLE_DIR
    shutil.copytree(run / artifacts.BUNDLE_DIR, folder)
    return folder


def _index(folder):
    return json.loads((folder / "bundle.json").read_text())


def test_the_bundle_holds_the_three_models_and_no_pickle(run):
    folder = run / artifacts.BUNDLE_DIR
    index = _index(folder)
    assert index["models"] == list(MODEL_SLUGS)
    assert set(index["files"]) == {p.name for p in folder.iterdir()} - {"bundle.json"}
    assert not [p for p in folder.iterdir() if p.suffix in (".joblib", ".pkl", ".pickle")]
    assert all(sha256(folder / name) == digest for name, digest in index["files"].items())
    model = load_bundle(run)
    assert set(model.models) == set(MODEL_SLUGS)
    for slug, entry in model.models.items():
        summary = artifacts.read_model_summary(RunFolder(run), slug)
        assert entry.features == summary["features"]
        assert entry.threshold == model.params.evaluation.fixed_threshold  # smoke.yaml: threshold fixed
    assert model.architecture == artifacts.read_cnn_choice(RunFolder(run))["key"]
    assert set(model.idf) == {f"p{i:02d}" for i in range(11)} | {"y0", "y1"}


def test_the_bundle_carries_its_model_card_and_the_training_probabilities(run):
    folder = run / artifacts.BUNDLE_DIR
    index = _index(folder)
    for artifact in (artifacts.BUNDLE_CARD, artifacts.BUNDLE_TRAINING):
        assert artifacts.bundle_file(folder, artifact).name in index["files"]
    training = load_bundle(run).training_probabilities()
    for slug in MODEL_SLUGS:
        book = artifacts.read_patient_predictions(RunFolder(run), slug).query("split == 'train'")["prob_oof"]
        assert np.allclose(training.loc[training["model"] == slug, "prob"].to_numpy(), book.to_numpy())
    card = artifacts.bundle_file(folder, artifacts.BUNDLE_CARD).read_text(encoding="utf-8")
    for section in ("## Intended use", "Not a medical device", "## Cohort", "## Protocol", "`leak_free`",
                    "## Models", "## Limitations", "Synthetic data", "## Scoring a patient", "hcc_utils predict"):
        assert section in card, section
    split = artifacts.read_split(RunFolder(run))
    assert f"Patients of the split: {len(split)}; early recurrence (ER) in {int(split['er'].sum())}" in card
    for name in ("DL-MIL", "Radiomics", "Clinical"):
        assert re.search(rf"\| {name} \| \d+ \| [01]\.\d{{3}} \(", card), name
    assert str(run) not in card


def test_the_idf_reproduces_the_fitted_features():
    rng = np.random.default_rng(0)
    preds = pd.DataFrame({"patient_id": np.repeat([f"P{i}" for i in range(9)], 11), "prob": rng.random(99)})
    train = [f"P{i}" for i in range(6)]
    idf = mil.fit_idf(preds, train)
    fitted = mil.mil_features(preds, train)
    given = mil.mil_features(preds, [], idf=idf)
    assert np.array_equal(fitted.to_numpy(), given.to_numpy())
    assert not np.array_equal(mil.mil_features(preds, train, idf_on="all").to_numpy(), given.to_numpy())


def test_a_changed_pipeline_file_is_refused_naming_it(copy):
    with open(copy / "radiomics.skops", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match=r"'radiomics\.skops' changed since the bundle was written"):
        load_bundle(copy)


def test_a_missing_file_is_refused_naming_it(copy):
    (copy / "cnn.pt").unlink()
    with pytest.raises(BundleError, match=r"'cnn\.pt' of the bundle is missing"):
        load_bundle(copy.parent)


def test_an_untrusted_type_is_refused_naming_it(copy):
    import skops.io as sio

    sio.dump(Sneaky(), copy / "dl_mil.skops")
    index = _index(copy)
    index["files"]["dl_mil.skops"] = sha256(copy / "dl_mil.skops")  # a bundle made to look whole
    (copy / "bundle.json").write_text(json.dumps(index))
    with pytest.raises(BundleError, match=r"'dl_mil\.skops' holds type\(s\) this project does not trust: "
                                          r"test_bundle\.Sneaky"):
        load_bundle(copy)


def test_another_package_version_warns_naming_it(copy):
    index = _index(copy)
    index["packages"]["scikit-learn"] = "0.1.0"
    (copy / "bundle.json").write_text(json.dumps(index))
    with pytest.warns(BundleVersionWarning, match=r"scikit-learn .* is installed, but the bundle was written with "
                                                  r"scikit-learn 0\.1\.0"):
        model = load_bundle(copy)
    assert set(model.models) == set(MODEL_SLUGS)


def test_no_bundle_says_what_to_do(tmp_path):
    with pytest.raises(BundleError, match="holds no model bundle"):
        load_bundle(tmp_path)


def test_a_pipeline_whose_smote_keeps_a_kd_tree_is_trusted(tmp_path):
    """On cohorts the size of the default one, SMOTE's fitted neighbour search is a k-d tree (scikit-learn's
    'auto' for few features and many minority patients): the bundle trusts it, writes and loads the pipeline, and
    the loaded pipeline predicts what the fitted one does."""
    import skops.io as sio

    from hcc_utils.bundle import frozen_pipeline, load_pipeline, refuse_untrusted
    from hcc_utils.config import params_from_dict
    from hcc_utils.modeling import build_pipeline

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(140, 4)), columns=list("abcd"))
    y = pd.Series((x["a"] + rng.normal(0, 1, 140) > 0.6).astype(int))
    params = params_from_dict({"cohort": {"synthetic": {"n": 8}}})
    pipeline = build_pipeline(params.selection, params.model, 5).fit(x, y)
    assert type(pipeline.named_steps["smote"].nn_k_._tree).__name__ in ("KDTree", "BallTree")
    path = tmp_path / "model.skops"
    sio.dump(frozen_pipeline(pipeline), path)
    assert any("KDTree" in t or "BallTree" in t for t in refuse_untrusted(path))
    np.testing.assert_allclose(load_pipeline(path).predict_proba(x), pipeline.predict_proba(x))
