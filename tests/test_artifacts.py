"""The registry of run-folder files (hcc_utils.artifacts) and of models (hcc_utils.model_registry)."""

from __future__ import annotations

import pandas as pd
import pytest

from hcc_utils import artifacts, model_registry
from hcc_utils.run_folder import RunFolder


def registry() -> dict[str, artifacts.Artifact]:
    return {k: v for k, v in vars(artifacts).items() if isinstance(v, artifacts.Artifact)}


def test_every_artifact_has_its_own_place_and_a_writer():
    patterns = [a.pattern for a in registry().values()]
    assert len(patterns) == len(set(patterns))
    assert all(a.writer and a.what for a in registry().values())


def test_a_missing_file_names_itself_and_the_notebook_that_writes_it(tmp_path):
    run = RunFolder(tmp_path / "run")
    with pytest.raises(artifacts.ArtifactMissing, match=r"mil_features\.csv not found: run 04_mil_features"):
        artifacts.read_mil_features(run)
    with pytest.raises(FileNotFoundError, match=r"dl_mil_patients\.csv not found: run 05_models first"):
        artifacts.read_patient_predictions(run, "dl_mil")


def test_a_missing_column_names_the_file_the_columns_and_the_writer(tmp_path):
    run = RunFolder(tmp_path / "run")
    pd.DataFrame({"patient_id": ["a"], "split": ["train"]}).to_csv(run.tables / "cohort_split.csv", index=False)
    with pytest.raises(artifacts.ArtifactSchemaError, match=r"cohort_split\.csv: missing column\(s\) \['er'\].*"
                                                            r"rerun 01_preprocessing"):
        artifacts.read_split(run)
    with pytest.raises(artifacts.ArtifactSchemaError, match=r"lacks column\(s\) \['er'\]"):
        artifacts.write_table(run, artifacts.SPLIT, pd.DataFrame({"patient_id": ["a"], "split": ["train"]}))


def test_round_trips_keep_ids_as_text_and_the_old_layout(tmp_path):
    run = RunFolder(tmp_path / "run")
    split = pd.DataFrame({"patient_id": ["007", "010"], "er": [1, 0], "split": ["train", "validation"]})
    path = artifacts.write_split(run, split)
    assert path == run.root / "tables" / "cohort_split.csv"
    pd.testing.assert_frame_equal(artifacts.read_split(run), split)
    features = pd.DataFrame(0.5, index=pd.Index(["007"], name="patient_id"),
                            columns=list(artifacts.MIL_FEATURE_COLUMNS))
    artifacts.write_mil_features(run, features)
    pd.testing.assert_frame_equal(artifacts.read_mil_features(run), features)
    artifacts.write_json(run, artifacts.RADIOMICS_CACHE, {}, stem="007", reader="reader1")
    assert [p.name for p in artifacts.RADIOMICS_CACHE.existing(run)] == ["007_reader1.json"]


def test_odd_patient_ids_get_safe_file_names():
    assert artifacts.file_stem("P001") == "P001"
    odd = artifacts.file_stem("../Doe^John 1970")
    assert odd.startswith("p") and "/" not in odd and "Doe" not in odd


def test_the_model_registry_names_each_model_once():
    assert model_registry.names() == ["DL-MIL", "Radiomics", "Clinical", "Combined"]
    assert len({m.slug for m in model_registry.MODELS}) == len(model_registry.MODELS)
    assert model_registry.colour("Treat all") and model_registry.colour("Nobody") is None
    with pytest.raises(KeyError, match="DL-MIL"):
        model_registry.spec("DL MIL")
