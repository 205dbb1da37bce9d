"""Notebook 11's comparators (``hcc_utils.comparators``, ``comparators_run``, ``comparators_inputs``): the pooled
scores by hand, the cut-off's training-only rows, the table's DeLong tests, the params section, and the smoke
book's chapter (one row per comparator with CIs; the learned comparators fitted on training patients only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcc_utils import artifacts, comparators
from hcc_utils.config import ParamsError, params_from_dict
from hcc_utils.run_folder import RunFolder

BASE_FILE = Path(__file__).resolve().parents[1] / "params" / "smoke.yaml"
BASE = {"name": "t", "cohort": {"synthetic": {"n": 20, "seed": 7, "image_size": 64}}}


def _slices() -> pd.DataFrame:
    probs = {"a": [0.1, 0.2, 0.9], "b": [0.5, 0.5, 0.5], "c": [0.0, 1.0, 0.3]}
    return pd.DataFrame([{"patient_id": pid, "offset": offset, "prob": p}
                         for pid, values in probs.items() for offset, p in zip([-1, 0, 1], values, strict=True)])


def test_pooled_scores_equal_a_hand_computation():
    pooled = comparators.pooled_scores(_slices())
    assert pooled.loc["a", "central"] == 0.2 and pooled.loc["c", "central"] == 1.0
    assert pooled.loc["a", "mean"] == pytest.approx((0.1 + 0.2 + 0.9) / 3, abs=1e-15)
    assert pooled.loc["a", "max"] == 0.9 and pooled.loc["c", "max"] == 1.0
    assert pooled.loc["a", "noisy_or"] == pytest.approx(1 - 0.9 * 0.8 * 0.1, abs=1e-15)
    assert pooled.loc["b", "noisy_or"] == pytest.approx(1 - 0.5 ** 3, abs=1e-15)
    assert pooled.loc["c", "noisy_or"] == 1.0  # one certain slice makes the patient certain


def test_pooling_needs_the_central_slice():
    with pytest.raises(ValueError, match="offset 0"):
        comparators.pooled_scores(_slices().query("offset != 0"))


@pytest.mark.parametrize(("offsets", "label"), [
    ([-2, -1, 0, 1, 2], "0, ±1, ±2"), (list(range(-9, 10)), "every slice within ±9"),
    ([-9, -7, -4, -2, -1, 0, 1, 2, 4, 7, 9], "0, ±1, ±2, ±4, ±7, ±9"), ([0, 1, 3], "0, +1, +3")])
def test_offset_labels(offsets, label):
    assert comparators.offset_label(offsets) == label


def _patients(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    split = np.where(np.arange(n) < 28, "train", "validation")
    role = np.where(split == "validation", "validation", np.where(np.arange(n) % 4 == 0, "inner_validation",
                                                                  "inner_train"))
    return pd.DataFrame({"patient_id": [f"P{i:02d}" for i in range(n)], "split": split, "role": role,
                         "er": (rng.random(n) < 0.4).astype(int) | (np.arange(n) % 5 == 0)})


def test_a_score_s_cut_off_comes_from_inner_validation_rows_only():
    patients = _patients()
    score = pd.Series(np.linspace(0, 1, len(patients)), index=patients["patient_id"])
    comp = comparators.score_comparator("s", "central_slice", score, patients, "leak_free")
    chosen = comp.scores.loc[comp.scores["cut_rows"], "patient_id"]
    assert set(chosen) == set(patients.loc[patients["role"] == "inner_validation", "patient_id"])
    compat = comparators.score_comparator("s", "central_slice", score, patients, "onekey_compat")
    assert set(compat.scores.loc[compat.scores["cut_rows"], "patient_id"]) == \
        set(patients.loc[patients["split"] == "train", "patient_id"])


def test_the_table_s_cut_off_never_reads_validation_rows_and_delong_is_paired_with_dl_mil():
    patients = _patients()
    rng = np.random.default_rng(1)
    reference = pd.Series(rng.random(len(patients)) + patients["er"].to_numpy() * 0.5,
                          index=patients["patient_id"])
    other = pd.Series(rng.random(len(patients)), index=patients["patient_id"])

    def table(other_scores: pd.Series) -> pd.DataFrame:
        ref = comparators.score_comparator("ref", "reference", reference, patients, "leak_free")
        same = comparators.score_comparator("same", "pooling", reference * 2, patients, "leak_free")
        comp = comparators.score_comparator("other", "pooling", other_scores, patients, "leak_free")
        return comparators.evaluate([ref, same, comp], 0.95)

    first = table(other)
    assert list(first.columns) == list(artifacts.COMPARATORS.columns)
    assert first.loc[1, "delong_z"] == 0 and first.loc[1, "delong_p"] == 1  # the same ranking as DL-MIL
    assert (first["auc_low"] <= first["auc"]).all() and (first["auc"] <= first["auc_high"]).all()
    validation = patients["split"].eq("validation").to_numpy()
    shuffled = other.copy()
    shuffled[validation] = rng.permutation(shuffled[validation].to_numpy())
    second = table(shuffled)
    assert second.loc[2, "threshold"] == first.loc[2, "threshold"]  # the cut-off is the training rows'
    assert second.loc[2, "auc"] != first.loc[2, "auc"]


def test_comparators_params_section():
    params = params_from_dict(BASE)
    assert params.comparators.run == ["central_slice", "pooling", "plh_only", "bow_only", "abmil", "offsets",
                                      "cnn3d"]
    assert params.comparators.offset_sets[1] == list(range(-9, 10))
    custom = params_from_dict({**BASE, "comparators": {"run": ["pooling"], "offset_sets": [[2, 0, -2]]}})
    assert custom.comparators.offset_sets == [[-2, 0, 2]]
    for bad, message in (({"run": ["pooling", "pooling"]}, "more than once"), ({"run": ["3d"]}, "run"),
                         ({"offset_sets": [[]]}, "empty"), ({"offset_sets": [[0, 0]]}, "repeats"),
                         ({"offset_sets": [[40]]}, "beyond 30"), ({"cnn3d": {"size": 4}}, "size")):
        with pytest.raises(ParamsError, match=message):
            params_from_dict({**BASE, "comparators": bad})


def test_the_smoke_book_s_comparators_table_has_every_comparator_with_its_interval(smoke_run):
    run = RunFolder(smoke_run.run_dir)
    table = artifacts.read_table(run, artifacts.COMPARATORS)
    names = table["comparator"].tolist()
    assert names[0].startswith("DL-MIL")
    for expected in ("Central slice only", "Pooling: mean", "Pooling: max", "Pooling: noisy-OR", "PLH only",
                     "BoW only", "ABMIL (gated attention)", "Offsets 0, ±1, ±2 (5 slices)",
                     "Offsets every slice within ±9 (19 slices)"):
        assert expected in names
    assert any(name.startswith("3D CNN") for name in names)
    scores = artifacts.read_table(run, artifacts.COMPARATOR_PREDICTIONS)
    assert set(scores["comparator"]) == set(names)
    assert table["auc"].notna().all()
    ranks = scores.query("split == 'validation'").groupby("comparator")["score"].nunique() > 1
    ranking = table["comparator"].map(ranks).to_numpy()  # a constant score has AUC 0.5 and no interval, as Table 4
    assert table.loc[ranking, ["auc_low", "auc_high"]].notna().all().all()
    assert table.loc[~ranking, ["auc_low", "auc_high"]].isna().all().all()
    validation = artifacts.read_split(run).query("split == 'validation'")
    assert (table["n_validation"] == table["n_validation"].iloc[0]).all()
    assert table["n_validation"].iloc[0] <= len(validation)


def test_the_learned_comparators_saw_training_patients_only(smoke_run):
    run = RunFolder(smoke_run.run_dir)
    roles = artifacts.read_table(run, artifacts.CNN_ROLES).set_index("patient_id")["role"]
    for name in ("abmil", "cnn3d"):
        fit = json.loads(artifacts.COMPARATOR_FIT.path(run, name=name).read_text())
        assert fit["fit_ids"] and fit["select_ids"]
        assert set(roles[fit["fit_ids"]]) == {"inner_train"}, name
        assert set(roles[fit["select_ids"]]) == {"inner_validation"}, name
        assert 1 <= fit["best_epoch"] <= len(fit["history"])
    attention = artifacts.read_table(run, artifacts.COMPARATOR_ATTENTION)
    sums = attention.groupby("patient_id")["weight"].sum()
    assert np.allclose(sums, 1.0, atol=1e-5)


def test_the_published_table_reads_like_table_4():
    from hcc_utils import paper_tables

    frame = pd.DataFrame([
        {"comparator": "DL-MIL (the paper's design)", "family": "the paper's design", "n_validation": 57,
         "auc": 0.8412, "auc_low": 0.7401, "auc_high": 0.9423, "accuracy": 0.8, "sensitivity": 0.75,
         "specificity": 0.82, "threshold": 0.4, "delong_z": np.nan, "delong_p": np.nan, "seconds": 0.0},
        {"comparator": "Pooling: mean", "family": "simple pooling", "n_validation": 57, "auc": 0.5,
         "auc_low": np.nan, "auc_high": np.nan, "accuracy": 0.3, "sensitivity": 1.0, "specificity": 0.0,
         "threshold": 0.5, "delong_z": -3.1, "delong_p": 0.0004, "seconds": 12.34}])
    table = paper_tables.comparators(frame)
    assert table.loc[0, "AUC (95% CI)"] == "0.84 (0.74-0.94)" and table.loc[1, "AUC (95% CI)"].startswith("0.50 (")
    assert table.loc[1, "p vs DL-MIL"] == "< 0.001" and table.loc[1, "Time (s)"] == "12.3"
    assert list(table.columns) == ["Comparator", "Tests", "n", "AUC (95% CI)", "Accuracy", "Sensitivity",
                                   "Specificity", "p vs DL-MIL", "Time (s)"]


def test_new_slices_come_from_the_cached_stack_s_plan_and_are_cached(tmp_path):
    """Slices at offsets the 2.5D cache lacks are cut from the same plan: at a shared offset they equal the
    cached stack's pixels exactly. The pass is cached under a key of its settings; a bad file excludes only its
    patient, with a message naming it."""
    from hcc_utils.cohort import ensure_synthetic
    from hcc_utils.comparators_inputs import _inputs_one, extra_offsets
    from hcc_utils.config import load_params
    from hcc_utils.stack import make_stack

    params = load_params(BASE_FILE)
    manifest = ensure_synthetic(params.cohort.synthetic)
    row = pd.read_csv(manifest, dtype=str).iloc[0]
    image, mask = str(manifest.parent / row["image"]), str(manifest.parent / row["mask"])
    cached = np.round(make_stack(image, mask, params.preprocess, params.slices).images * 255).astype(np.uint8)
    assert extra_offsets([[-2, 0, 3], [0, 1]], params.slices.offsets) == [3]
    cache = str(tmp_path / "p.npz")
    made = _inputs_one("P1", image, mask, params.preprocess, params.slices, [-2, 0, 3], (16, 5.0), cache, None)
    assert made["status"] == "made"
    offsets = params.slices.offsets
    assert np.array_equal(made["slices"][0], cached[offsets.index(-2)])
    assert np.array_equal(made["slices"][1], cached[offsets.index(0)])
    assert made["volume"].shape == (16, 16, 16) and made["volume"].dtype == np.uint8
    again = _inputs_one("P1", image, mask, params.preprocess, params.slices, [-2, 0, 3], (16, 5.0), cache, None)
    assert again["status"] == "cached" and np.array_equal(again["slices"], made["slices"])
    other = _inputs_one("P1", image, mask, params.preprocess, params.slices, [0, 4], (16, 5.0), cache, None)
    assert other["status"] == "made"
    bad = _inputs_one("P2", image, str(tmp_path / "missing.nii.gz"), params.preprocess, params.slices, [3], None,
                      str(tmp_path / "q.npz"), None)
    assert bad["status"] == "excluded" and "P2" in bad["message"]


def test_an_unforeseen_failure_excludes_the_patient_without_its_folder_names(tmp_path, monkeypatch):
    from hcc_utils.comparators_inputs import _inputs_one
    from hcc_utils.config import load_params

    private = tmp_path / "Doe^Jane_1960"
    private.mkdir()
    params = load_params(BASE_FILE)

    def broken(*_args, **_kwargs):
        raise RuntimeError(f"cannot read {private / 'ct.nii.gz'}")

    monkeypatch.setattr("hcc_utils.io.read_image", broken)
    out = _inputs_one("P3", str(private / "ct.nii.gz"), str(private / "m.nii.gz"), params.preprocess,
                      params.slices, [3], None, str(tmp_path / "c.npz"), None)
    assert out["status"] == "excluded" and "P3" in out["message"] and "RuntimeError" in out["message"]
    assert "Doe^Jane" not in out["message"] and "ct.nii.gz" in out["message"]
