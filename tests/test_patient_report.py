"""The pieces of ``predict``'s patient report and of the model card that need no run (fast)."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest

from hcc_utils import model_card
from hcc_utils.config import Params
from hcc_utils.patient_report import percentile, scrub
from hcc_utils.plots.report import png_base64, training_position_figure
from hcc_utils.run_folder import RunFolder


@pytest.mark.parametrize("text, kept, gone", [
    ("patient P1: image '/data/site/P1/ct.nii.gz' is tilted", "patient P1: image", "/data/site"),
    ("Clinical: 'afp' missing, filled with 20 (training median)", "'afp' missing, filled with 20", None),
    ("mask 'HOSP-123_mask.nii.gz' has 2 labels", "has 2 labels", "HOSP-123"),
    (r"file C:\scans\P1\ct.nii read", "read", "scans"),
])
def test_flags_lose_folders_and_file_names(text, kept, gone):
    out = scrub(text)
    assert kept in out and (gone is None or gone not in out), out


def test_flags_lose_the_other_patients_ids():
    text = "patient P1: the same image as patient(s) P10, P1-b (identical voxels)"
    assert scrub(text, {"P10", "P1-b"}) == "patient P1: the same image as patient(s) another patient, another " \
        "patient (identical voxels)"


def test_percentile_counts_ties_half():
    assert percentile(np.array([0.1, 0.2, 0.3, 0.4]), 0.25) == 50.0
    assert percentile(np.array([0.1, 0.2, 0.2, 0.4]), 0.2) == 50.0
    assert percentile(np.array([0.1, 0.2]), 0.9) == 100.0
    assert np.isnan(percentile(np.array([]), 0.5))


def test_the_training_position_figure_embeds_as_png():
    rows = [{"name": "DL-MIL", "prob": 0.7, "cutoff": 0.5, "training": np.linspace(0, 1, 30), "percentile": 70.0},
            {"name": "Clinical", "prob": 0.2, "cutoff": 0.4, "training": np.array([]), "percentile": float("nan")}]
    encoded = png_base64(training_position_figure(rows, "P1"))
    assert base64.b64decode(encoded).startswith(b"\x89PNG")


def test_the_card_counts_exclusions_by_stage(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert model_card.excluded_line(run) == "none"
    run.exclusions_file.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"patient_id": ["A", "B", "B", "C"], "stage": ["inputs", "slices", "radiomics", "radiomics"],
                  "severity": ["excluded", "excluded", "excluded", "warning"], "file": "", "message": "m"}).to_csv(
        run.exclusions_file, index=False)
    line = model_card.excluded_line(run)
    assert line.startswith("2 (") and "1 at input files" in line and "1 at radiomics extraction" in line


def test_the_card_names_the_limitations_that_apply():
    params = Params.model_validate({"name": "t", "cohort": {"synthetic": {}}})
    table = pd.DataFrame({"n": [15], "low": [0.4], "high": [0.9]})
    text = "\n".join(model_card.limitations(params, table, 48))
    assert "Single centre" in text and "Synthetic data" in text and "15 validation patients" in text
    assert "48 px" in text
    real = Params.model_validate({"name": "t", "cohort": {"manifest": "cohort.csv"}})
    text = "\n".join(model_card.limitations(real, pd.DataFrame({"n": [300], "low": [0.7], "high": [0.8]}), 224))
    assert "Synthetic" not in text and "CPU-sized" not in text and "Wide" not in text
