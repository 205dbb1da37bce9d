"""hcc_utils.incremental: the continuous NRI and the IDI against a hand-computed example, their bootstrap intervals
and the table of notebook 06."""

import numpy as np
import pandas as pd
import pytest

from hcc_utils import artifacts, incremental
from hcc_utils.config import params_from_dict
from hcc_utils.model_predictions import ModelPredictions
from hcc_utils.run_folder import RunFolder

Y = [1, 1, 1, 0, 0, 0, 0]
P_OLD = [0.4, 0.5, 0.6, 0.3, 0.2, 0.5, 0.4]
P_NEW = [0.6, 0.7, 0.5, 0.2, 0.3, 0.3, 0.4]


def test_nri_and_idi_match_a_hand_computed_example():
    """Three events, four non-events.

    Events (old -> new): 0.4 -> 0.6 up, 0.5 -> 0.7 up, 0.6 -> 0.5 down.
        NRI_events = P(up | event) - P(down | event) = 2/3 - 1/3 = 1/3.
    Non-events: 0.3 -> 0.2 down, 0.2 -> 0.3 up, 0.5 -> 0.3 down, 0.4 -> 0.4 tie (neither).
        NRI_nonevents = P(down | non-event) - P(up | non-event) = 2/4 - 1/4 = 1/4.
    NRI = 1/3 + 1/4 = 7/12 = 0.58333.
    IDI: events' differences new - old are 0.2, 0.2, -0.1, mean 0.3 / 3 = 0.1; non-events' -0.1, 0.1, -0.2, 0.0,
        mean -0.2 / 4 = -0.05; IDI = 0.1 - (-0.05) = 0.15.
    """
    result = incremental.nri_idi(Y, P_NEW, P_OLD)
    assert result["nri_events"] == pytest.approx(1 / 3)
    assert result["nri_nonevents"] == pytest.approx(1 / 4)
    assert result["nri"] == pytest.approx(7 / 12)
    assert result["idi"] == pytest.approx(0.15)


def test_identical_models_give_zero():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=40)
    y = np.tile([0, 1], 20)
    result = incremental.bootstrap(y, p, p, n_boot=200, seed=3)
    for key in ("nri", "nri_events", "nri_nonevents", "idi", "nri_low", "nri_high", "idi_low", "idi_high"):
        assert result[key] == 0.0, key


def test_swapping_the_models_flips_the_sign():
    forward, backward = incremental.nri_idi(Y, P_NEW, P_OLD), incremental.nri_idi(Y, P_OLD, P_NEW)
    for key in ("nri", "nri_events", "nri_nonevents", "idi"):
        assert backward[key] == pytest.approx(-forward[key])


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y = np.tile([0, 0, 1], 30)
    p_old = rng.uniform(size=90)
    p_new = np.clip(p_old + 0.2 * (y - 0.5) + rng.normal(0, 0.05, 90), 0, 1)
    a = incremental.bootstrap(y, p_new, p_old, n_boot=500, seed=7)
    assert a == incremental.bootstrap(y, p_new, p_old, n_boot=500, seed=7)
    assert a != incremental.bootstrap(y, p_new, p_old, n_boot=500, seed=8)
    assert a["nri_low"] <= a["nri"] <= a["nri_high"] and a["idi_low"] <= a["idi"] <= a["idi_high"]
    assert a["idi_low"] > 0 and a["nri_low"] > 0  # a real improvement is found
    narrow = incremental.bootstrap(y, p_new, p_old, n_boot=500, seed=7, level=0.5)
    assert a["idi_high"] - a["idi_low"] > narrow["idi_high"] - narrow["idi_low"]


@pytest.mark.parametrize("y, message", [([1, 1, 1], "one event and one non-event"), ([0, 1, 2], "0")])
def test_bad_inputs_are_named(y, message):
    with pytest.raises(ValueError, match=message):
        incremental.nri_idi(y, [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])


def _frames(models=("DL-MIL", "Radiomics", "Clinical", "Combined"), n=60) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(5)
    er = np.tile([0, 1, 0], n // 3)
    split = np.where(np.arange(n) < 40, "train", "validation")
    frames = {}
    for k, model in enumerate(models):
        prob = np.clip(0.3 + 0.1 * k * er + rng.normal(0, 0.1, n), 0, 1)
        oof = np.where(split == "train", np.clip(prob + rng.normal(0, 0.05, n), 0, 1), prob)
        frames[model] = pd.DataFrame({"patient_id": [f"P{i:02d}" for i in range(n)], "split": split, "er": er,
                                      "prob": prob, "prob_oof": oof})
    return frames


PARAMS = params_from_dict({"cohort": {"synthetic": {"n": 20, "image_size": 64}}})


def test_the_table_has_each_pair_on_both_sets(tmp_path):
    preds = ModelPredictions(frames=_frames())
    run = RunFolder(tmp_path / "run")
    table = incremental.write_nri_idi(preds, PARAMS, run, n_boot=200)
    assert list(table.columns) == list(artifacts.NRI_IDI.columns)
    assert table[["dataset", "new", "old"]].values.tolist() == [
        ["validation", "Combined", "Clinical"], ["train (out-of-fold)", "Combined", "Clinical"],
        ["validation", "DL-MIL", "Clinical"], ["train (out-of-fold)", "DL-MIL", "Clinical"]]
    assert table["n"].tolist() == [20, 40, 20, 40] and table.attrs["notes"] == []
    frames = _frames()
    val = {m: f[f["split"] == "validation"] for m, f in frames.items()}
    expected = incremental.nri_idi(val["Combined"]["er"], val["Combined"]["prob"], val["Clinical"]["prob"])
    assert table.loc[0, "nri"] == pytest.approx(expected["nri"]) and table.loc[0, "idi"] == pytest.approx(
        expected["idi"])
    train = {m: f[f["split"] == "train"] for m, f in frames.items()}
    expected = incremental.nri_idi(train["DL-MIL"]["er"], train["DL-MIL"]["prob_oof"], train["Clinical"]["prob_oof"])
    assert table.loc[3, "idi"] == pytest.approx(expected["idi"])
    written = artifacts.read_table(run, artifacts.NRI_IDI)
    assert len(written) == 4


def test_a_run_without_the_combined_model_keeps_the_dl_mil_rows():
    preds = ModelPredictions(frames=_frames(("DL-MIL", "Radiomics", "Clinical")))
    table = incremental.nri_idi_table(preds, PARAMS, n_boot=100)
    assert set(table["new"]) == {"DL-MIL"} and len(table) == 2
    assert table.attrs["notes"] == ["Combined vs Clinical: no predictions of Combined; left out"]
