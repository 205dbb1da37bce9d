"""hcc_utils.comparison and hcc_utils.plots.comparison on small synthetic per-patient prediction files."""

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from hcc_utils import cohort, comparison, model_predictions, sample_size, stats
from hcc_utils.artifacts import ArtifactMissing
from hcc_utils.config import params_from_dict
from hcc_utils.run_folder import RunFolder

matplotlib.use("Agg")

SIGNAL = {"DL-MIL": 2.5, "Radiomics": 1.2, "Clinical": 0.6}


def make_predictions(n: int = 70, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Per-patient predictions as stage 05 writes them: 50 training and 20 validation patients."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    split = np.where(np.arange(n) < 50, "train", "validation")
    er = np.tile([0, 1, 0, 1, 0], n // 5 + 1)[:n]
    frames = {}
    for model, signal in SIGNAL.items():
        prob = np.round(expit(signal * (er - 0.5) * 2 + rng.normal(0, 1, n)), 2)  # rounding: ties
        oof = np.where(split == "train", np.round(expit(0.5 * signal * (er - 0.5) + rng.normal(0, 1, n)), 2),
                       np.nan)
        frames[model] = pd.DataFrame({"patient_id": ids, "split": split, "er": er, "prob": prob,
                                      "prob_oof": oof})
    return frames


def write(run: RunFolder, frames: dict[str, pd.DataFrame]) -> None:
    for model, frame in frames.items():
        frame.to_csv(model_predictions.predictions_file(run, model), index=False)


def make_params(**evaluation):
    return params_from_dict({"cohort": {"synthetic": {"n": 20, "image_size": 64}}, "evaluation": evaluation})


@pytest.fixture
def run(tmp_path) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    write(run, make_predictions())
    return run


# ----------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------


def test_a_missing_model_is_skipped_with_a_note(tmp_path):
    run = RunFolder(tmp_path / "run")
    frames = make_predictions()
    write(run, {m: frames[m] for m in ("DL-MIL", "Clinical")})
    preds = comparison.load_predictions(run)
    assert preds.models == ["DL-MIL", "Clinical"]
    assert any(note.startswith("Radiomics") for note in preds.notes) and "Radiomics" in preds.describe()
    evaluation = make_params().evaluation
    assert len(comparison.table4(preds, evaluation)) == 4
    assert comparison.delong_table(preds)[["model_a", "model_b"]].drop_duplicates().values.tolist() == [
        ["DL-MIL", "Clinical"]]


def test_no_prediction_file_at_all_says_what_to_do(tmp_path):
    with pytest.raises(ArtifactMissing, match="notebook 05_models"):
        comparison.load_predictions(RunFolder(tmp_path / "empty"))


def test_bad_files_name_the_file_and_the_patients(tmp_path):
    run = RunFolder(tmp_path / "run")
    frames = make_predictions()
    frames["DL-MIL"].loc[3, "prob"] = np.nan
    write(run, frames)
    with pytest.raises(ValueError, match=r"dl_mil_patients\.csv.*P003"):
        comparison.load_predictions(run)
    frames = make_predictions()
    write(run, {"DL-MIL": frames["DL-MIL"].drop(columns="prob_oof")})
    with pytest.raises(ValueError, match=r"dl_mil_patients\.csv.*prob_oof"):
        comparison.load_predictions(run)


def test_out_of_fold_rows_must_be_complete_only_when_used(tmp_path):
    run = RunFolder(tmp_path / "run")
    frames = make_predictions()
    frames["Clinical"].loc[0, "prob_oof"] = np.nan
    write(run, frames)
    comparison.load_predictions(run, "apparent")
    with pytest.raises(ValueError, match=r"clinical_patients\.csv.*prob_oof.*P000"):
        comparison.load_predictions(run, "out_of_fold")


def test_outcomes_that_differ_between_files_are_refused(tmp_path):
    run = RunFolder(tmp_path / "run")
    frames = make_predictions()
    frames["Radiomics"].loc[5, "er"] = 1 - frames["Radiomics"].loc[5, "er"]
    write(run, frames)
    with pytest.raises(ValueError, match="P005"):
        comparison.load_predictions(run)


# ----------------------------------------------------------------------------------------------------------
# Table 4 and DeLong
# ----------------------------------------------------------------------------------------------------------


def test_table4_format_and_values(run):
    preds = comparison.load_predictions(run)
    table = comparison.table4(preds, make_params().evaluation)
    assert list(table.columns) == comparison.TABLE4_COLUMNS
    expected = [[d, m] for d in ("train", "validation") for m in SIGNAL]
    assert table[["dataset", "model"]].values.tolist() == expected
    frame = make_predictions()["Radiomics"]
    val = frame[frame["split"] == "validation"]
    row = table[(table["dataset"] == "validation") & (table["model"] == "Radiomics")].iloc[0]
    auc_ci = stats.auc_ci(val["er"], val["prob"])
    assert (row["auc"], row["auc_low"], row["auc_high"]) == pytest.approx(auc_ci)
    metrics = stats.classification_metrics(val["er"], val["prob"], 0.5)
    assert row["accuracy"] == pytest.approx(metrics["accuracy"])
    assert row["sensitivity"] == pytest.approx(metrics["sensitivity"])


def test_out_of_fold_option_changes_training_rows_only(run):
    evaluation = make_params().evaluation
    apparent = comparison.table4(comparison.load_predictions(run, "apparent"), evaluation)
    oof = comparison.table4(comparison.load_predictions(run, "out_of_fold"), evaluation)
    pd.testing.assert_frame_equal(apparent[apparent["dataset"] == "validation"],
                                  oof[oof["dataset"] == "validation"])
    frame = make_predictions()["DL-MIL"]
    train = frame[frame["split"] == "train"]
    assert oof.loc[(oof["dataset"] == "train") & (oof["model"] == "DL-MIL"), "auc"].item() == pytest.approx(
        stats.auc_ci(train["er"], train["prob_oof"])[0])


def test_youden_threshold_is_fitted_on_out_of_fold_training_rows_only(tmp_path):
    evaluation = make_params(threshold="youden").evaluation
    frames = make_predictions()
    run_a, run_b = RunFolder(tmp_path / "a"), RunFolder(tmp_path / "b")
    write(run_a, frames)
    shuffled = {m: f.copy() for m, f in frames.items()}
    rng = np.random.default_rng(1)
    for f in shuffled.values():  # validation scores and apparent training scores scrambled: neither may move it
        f["prob"] = rng.permutation(f["prob"].to_numpy())
    write(run_b, shuffled)
    cut_a = comparison.thresholds_for(comparison.load_predictions(run_a), evaluation)
    assert cut_a == comparison.thresholds_for(comparison.load_predictions(run_b), evaluation)
    apparent_rows = comparison.load_predictions(run_a, "apparent")
    assert cut_a == comparison.thresholds_for(apparent_rows, evaluation)  # whatever train_predictions says
    train = frames["DL-MIL"][frames["DL-MIL"]["split"] == "train"]
    assert cut_a["DL-MIL"] == stats.youden_threshold(train["er"], train["prob_oof"])
    assert cut_a["DL-MIL"] != stats.youden_threshold(train["er"], train["prob"])
    assert comparison.threshold_table(apparent_rows, evaluation)["chosen"].str.contains("out-of-fold").all()
    table = comparison.table4(comparison.load_predictions(run_a), evaluation)
    val = frames["DL-MIL"][frames["DL-MIL"]["split"] == "validation"]
    row = table[(table["dataset"] == "validation") & (table["model"] == "DL-MIL")].iloc[0]
    expected = stats.classification_metrics(val["er"], val["prob"], cut_a["DL-MIL"])
    assert row["sensitivity"] == expected["sensitivity"]
    frames["Radiomics"].loc[3, "prob_oof"] = np.nan  # a training row: Youden cannot be chosen
    write(run_a, frames)
    with pytest.raises(ValueError, match=r"radiomics_patients\.csv \(Radiomics\).*prob_oof.*P003"):
        comparison.thresholds_for(comparison.load_predictions(run_a), evaluation)


def test_delong_table_format_pairs_and_values(run):
    table = comparison.delong_table(comparison.load_predictions(run))
    assert list(table.columns) == comparison.DELONG_COLUMNS
    assert table[["dataset", "model_a", "model_b"]].values.tolist() == [
        [d, a, b] for d in ("train", "validation")
        for a, b in (("DL-MIL", "Radiomics"), ("DL-MIL", "Clinical"), ("Radiomics", "Clinical"))]
    frames = make_predictions()
    val = {m: f[f["split"] == "validation"] for m, f in frames.items()}
    row = table[(table["dataset"] == "validation") & (table["model_b"] == "Clinical")
                & (table["model_a"] == "DL-MIL")].iloc[0]
    z, p = stats.delong_test(val["DL-MIL"]["er"], val["DL-MIL"]["prob"], val["Clinical"]["prob"])
    assert (row["z"], row["p"]) == pytest.approx((z, p))
    assert row["auc_a"] == pytest.approx(stats.auc_ci(val["DL-MIL"]["er"], val["DL-MIL"]["prob"])[0])
    assert table.attrs["notes"] == []


def test_delong_pairs_on_the_patients_both_models_scored(tmp_path):
    run = RunFolder(tmp_path / "run")
    frames = make_predictions()
    frames["Radiomics"] = frames["Radiomics"][frames["Radiomics"]["patient_id"] != "P060"]
    write(run, frames)
    table = comparison.delong_table(comparison.load_predictions(run))
    assert any("validation: DL-MIL vs Radiomics on the 19 patients" in n for n in table.attrs["notes"])
    dl = frames["DL-MIL"]
    dl = dl[(dl["split"] == "validation") & (dl["patient_id"] != "P060")]
    rad = frames["Radiomics"][frames["Radiomics"]["split"] == "validation"]
    row = table[(table["dataset"] == "validation") & (table["model_b"] == "Radiomics")].iloc[0]
    z, _ = stats.delong_test(dl["er"], dl["prob"].to_numpy(), rad["prob"].to_numpy())
    assert row["z"] == pytest.approx(z)


def test_a_constant_model_gets_empty_intervals_with_a_note_not_a_crash(tmp_path):
    run = RunFolder(tmp_path / "run")
    frames = make_predictions()
    clinical = frames["Clinical"]
    clinical.loc[clinical["split"] == "validation", "prob"] = 0.4
    write(run, frames)
    preds = comparison.load_predictions(run)
    t4 = comparison.table4(preds, make_params().evaluation)
    row = t4[(t4["dataset"] == "validation") & (t4["model"] == "Clinical")].iloc[0]
    assert row["auc"] == 0.5 and np.isnan(row["auc_low"]) and np.isnan(row["auc_high"])
    assert row["specificity"] == 1.0  # 0.4 < 0.5: nobody called positive
    assert any("Clinical, validation set" in n and "constant" in n for n in t4.attrs["notes"])
    dl = comparison.delong_table(preds)
    tested = dl[(dl["dataset"] == "validation") & (dl["model_b"] == "Clinical")]
    assert tested["z"].isna().all() and (tested["auc_b"] == 0.5).all()
    assert sum("not tested" in n for n in dl.attrs["notes"]) == 2


def test_errors_name_the_model_and_the_set(tmp_path):
    run = RunFolder(tmp_path / "run")
    frames = make_predictions()
    for frame in frames.values():
        frame.loc[frame["split"] == "validation", "er"] = 0
    write(run, frames)
    with pytest.raises(ValueError, match="DL-MIL, validation set: .*only one class"):
        comparison.table4(comparison.load_predictions(run), make_params().evaluation)


def test_write_tables_writes_the_architecture_formats(run):
    preds = comparison.load_predictions(run)
    comparison.write_tables(preds, make_params().evaluation, run)
    t4 = pd.read_csv(run.tables / "table4_models.csv")
    dl = pd.read_csv(run.tables / "delong.csv")
    assert list(t4.columns) == comparison.TABLE4_COLUMNS and len(t4) == 6
    assert list(dl.columns) == comparison.DELONG_COLUMNS and len(dl) == 6
    assert set(t4["dataset"]) == {"train", "validation"} and set(t4["model"]) == set(SIGNAL)


# ----------------------------------------------------------------------------------------------------------
# Curves and the sample-size table
# ----------------------------------------------------------------------------------------------------------


def test_decision_curves_through_dcurves_equal_net_benefit(run):
    evaluation = make_params().evaluation
    preds = comparison.load_predictions(run)
    table = comparison.decision_curve_table(preds, evaluation)
    thresholds = comparison.dca_thresholds(evaluation)
    assert thresholds[0] == 0 and thresholds[-1] == pytest.approx(0.99) and len(thresholds) == 100
    assert set(table["model"]) == {*SIGNAL, "Treat all", "Treat none"}
    for dataset in ("train", "validation"):
        part = table[table["dataset"] == dataset]
        s = preds.scores("DL-MIL", dataset)
        got = part.loc[part["model"] == "DL-MIL", "net_benefit"].to_numpy()
        np.testing.assert_allclose(got, stats.net_benefit(s["er"], s["score"], thresholds), atol=1e-12)
        everyone = part.loc[part["model"] == "Treat all", "net_benefit"].to_numpy()
        treat_all = stats.net_benefit(s["er"], np.ones(len(s)), thresholds)
        np.testing.assert_allclose(everyone, treat_all, atol=1e-12)
        assert (part.loc[part["model"] == "Treat none", "net_benefit"] == 0).all()


def test_roc_and_calibration_tables(run):
    evaluation = make_params().evaluation
    preds = comparison.load_predictions(run)
    roc = comparison.roc_curve_table(preds)
    first = roc.groupby(["dataset", "model"]).first()
    assert (first["fpr"] == 0).all() and (roc.groupby(["dataset", "model"])["tpr"].last() == 1).all()
    summary = comparison.calibration_table(preds)
    assert len(summary) == 6 and summary["brier"].between(0, 1).all()
    curves = comparison.calibration_curve_table(preds, evaluation)
    assert curves.groupby(["dataset", "model"]).size().max() <= evaluation.calibration_bins


def test_calibration_table_shows_why_a_value_is_missing(run, monkeypatch):
    import statsmodels.api as sm

    from hcc_utils import calibration

    class NoConvergence(sm.GLM):
        def fit(self, *args, **kwargs):
            return super().fit(*args, **{**kwargs, "maxiter": 1})

    monkeypatch.setattr(calibration.sm, "GLM", NoConvergence)
    table = comparison.calibration_table(comparison.load_predictions(run))
    assert table["note"].str.contains("did not converge").all() and table["slope"].isna().all()


def test_sample_size_table_beside_the_runs_sets(run):
    table = comparison.sample_size_table(make_params().evaluation, comparison.load_predictions(run))
    assert table.iloc[0][["set", "ER", "NER"]].tolist() == ["required", 13, 13]
    assert table.set_index("set").loc["train", ["ER", "NER"]].tolist() == [20, 30]
    assert table.set_index("set").loc["train", "power"] == pytest.approx(sample_size.auc_power(20, 30))
    assert "Hanley & McNeil" in table.attrs["method"]
    assert table.attrs["summary"].startswith("AUC 0.8 against 0.5, two-sided alpha 0.05, power 0.8, 1 NER per ER: "
                                             "at least 13 ER + 13 NER")
    assert "These are the paper's inputs, and the result matches the paper's 13 + 13" in table.attrs["summary"]


def test_sample_size_summary_says_what_this_runs_inputs_give():
    table = comparison.sample_size_table(make_params(sample_size_auc=0.75, sample_size_ratio=2.0).evaluation)
    assert table.iloc[0][["ER", "NER"]].tolist() == [15, 30]
    summary = table.attrs["summary"]
    assert "0.75 against 0.5" in summary and "2 NER per ER: at least 15 ER + 30 NER" in summary
    assert "not the paper's inputs (auc, ratio differ), so the paper's 13 + 13 does not apply" in summary


# ----------------------------------------------------------------------------------------------------------
# Oracle (synthetic cohorts only)
# ----------------------------------------------------------------------------------------------------------


def write_cohort(folder: Path, frames: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = next(iter(frames.values()))
    truth = expit(2.0 * (base["er"] - 0.5) * 2 + np.random.default_rng(3).normal(0, 0.5, len(base)))
    truth_table = pd.DataFrame({"patient_id": base["patient_id"], "invasiveness": 0.0, "er_probability": truth})
    truth_table.to_csv(folder / "ground_truth.csv", index=False)
    base[["patient_id", "er"]].to_csv(folder / "cohort.csv", index=False)
    return folder / "cohort.csv"


def test_oracle_table_puts_model_auc_beside_the_true_probability(run, tmp_path):
    frames = make_predictions()
    manifest = write_cohort(tmp_path / "cohort", frames)
    table = comparison.oracle_table(make_params(), run, manifest=manifest)
    assert list(table.columns) == comparison.ORACLE_COLUMNS and table["model"].tolist() == list(SIGNAL)
    truth = pd.read_csv(tmp_path / "cohort" / "ground_truth.csv", dtype={"patient_id": str})
    val = frames["DL-MIL"][frames["DL-MIL"]["split"] == "validation"].merge(truth, on="patient_id")
    assert table["oracle_auc"].iloc[0] == pytest.approx(stats.auc_ci(val["er"], val["er_probability"])[0])
    assert table["n"].tolist() == [20, 20, 20] and "er_probability" in table.attrs["note"]
    assert "expected best AUC, not a ceiling" in table.attrs["note"]
    assert "on these 20 patients a model can beat it by chance" in table.attrs["note"]


def test_the_oracle_is_the_expected_best_not_a_ceiling():
    # outcomes drawn from the true probability; a model = that probability plus noise, on 58 patients
    rng = np.random.default_rng(0)
    oracle, model = [], []
    for _ in range(400):
        truth = expit(rng.normal(0, 1.5, 58))
        er = (rng.random(58) < truth).astype(int)
        if 0 < er.sum() < 58:
            oracle.append(stats.auc(er, truth))
            model.append(stats.auc(er, truth + rng.normal(0, 0.15, 58)))
    oracle, model = np.array(oracle), np.array(model)
    assert model.mean() < oracle.mean()  # on average the oracle is best ...
    assert (model > oracle).mean() > 0.1  # ... yet a noisier model beats it on many single sets


IGNORED = "ground_truth.csv beside the manifest does not describe this cohort ({}): ignored; the oracle " \
          "comparison is unavailable."


def test_oracle_reads_the_true_probability_by_its_schema_name(run, tmp_path):
    manifest = write_cohort(tmp_path / "cohort", make_predictions())
    truth_file = manifest.parent / "ground_truth.csv"
    pd.read_csv(truth_file).rename(columns={"er_probability": "p_er"}).to_csv(truth_file, index=False)
    table = comparison.oracle_table(make_params(), run, manifest=manifest)
    assert table.empty and list(table.columns) == comparison.ORACLE_COLUMNS
    assert table.attrs["note"] == IGNORED.format("column er_probability missing")


def test_oracle_ignores_a_stale_ground_truth_beside_a_users_manifest(run, tmp_path):
    manifest = write_cohort(tmp_path / "PID123_DOE", make_predictions())
    params = params_from_dict({"cohort": {"manifest": str(manifest)}})
    truth_file = manifest.parent / "ground_truth.csv"
    truth = pd.read_csv(truth_file, dtype={"patient_id": str})
    before = truth_file.read_bytes()

    def note_for(table: pd.DataFrame) -> str:
        table.to_csv(truth_file, index=False)
        oracle = comparison.oracle_table(params, run)
        assert oracle.empty and "PID123_DOE" not in oracle.attrs["note"]
        return oracle.attrs["note"]

    stale = truth[~truth["patient_id"].isin(["P051", "P060"])]
    assert note_for(stale) == IGNORED.format("patients P051, P060 missing")
    foreign = truth.assign(patient_id=[f"Q{i}" for i in range(len(truth))])
    assert note_for(foreign) == IGNORED.format("patients P050, P051, P052, P053, P054 (and 15 more) missing")
    twice = pd.concat([truth, truth[truth["patient_id"] == "P055"]])
    assert note_for(twice) == IGNORED.format("patient P055 listed more than once")
    blank = truth.assign(er_probability=np.where(truth["patient_id"] == "P066", np.nan, truth["er_probability"]))
    assert note_for(blank) == IGNORED.format("column er_probability empty or not a number for patient P066")
    assert note_for(truth.drop(columns="patient_id")) == IGNORED.format("column patient_id missing")
    truth_file.write_bytes(b"")
    assert comparison.oracle_table(params, run).attrs["note"].startswith(
        "ground_truth.csv beside the manifest does not describe this cohort (it cannot be read as CSV: ")
    truth_file.write_bytes(before)
    assert comparison.oracle_table(params, run)["model"].tolist() == list(SIGNAL)


def test_oracle_is_unavailable_without_ground_truth(run, tmp_path):
    manifest = tmp_path / "mine" / "cohort.csv"
    manifest.parent.mkdir()
    manifest.write_text("patient_id,image,mask,er\n")
    params = params_from_dict({"cohort": {"manifest": str(manifest)}})
    table = comparison.oracle_table(params, run)
    assert table.empty and "unavailable" in table.attrs["note"]


def test_oracle_finds_a_generated_synthetic_cohort_and_never_generates_one(run, tmp_path, monkeypatch):
    calls = []

    def generate_cohort(cfg, out, n_jobs=None):
        calls.append(out)
        write_cohort(Path(out), make_predictions())

    monkeypatch.setattr("hcc_utils.synth.generate_cohort", generate_cohort)
    monkeypatch.setenv("HCC_DATA_DIR", str(tmp_path / "data"))
    params = make_params()
    before = comparison.oracle_table(params, run)
    assert before.empty and calls == []  # not generated by the comparison
    cohort.ensure_synthetic(params.cohort.synthetic)  # what notebook 01 does
    after = comparison.oracle_table(params, run)
    assert len(calls) == 1 and after["model"].tolist() == list(SIGNAL)


# ----------------------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------------------


def test_figures_show_every_model_on_both_sets(run):
    from hcc_utils.plots import comparison as plots

    evaluation = make_params().evaluation
    preds = comparison.load_predictions(run)
    t4 = comparison.table4(preds, evaluation)
    fig = plots.roc_curves(comparison.roc_curve_table(preds), t4, train_label="apparent")
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    auc = t4[(t4["dataset"] == "validation") & (t4["model"] == "DL-MIL")]["auc"].item()
    assert len(fig.axes) == 2 and f"DL-MIL: AUC {auc:.3f}" in labels[0]
    assert "apparent" in fig.axes[0].get_title()
    fig = plots.decision_curves(comparison.decision_curve_table(preds, evaluation))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [*SIGNAL, "Treat all", "Treat none"]
    fig = plots.calibration_curves(comparison.calibration_curve_table(preds, evaluation),
                                   comparison.calibration_table(preds))
    assert len(fig.axes[0].get_lines()) == len(SIGNAL) + 1


def test_four_models_with_the_combined_one(tmp_path):
    """The Combined model's file makes a fourth model everywhere: Table 4, six DeLong pairs, the decision curves,
    the figures (its registry colour, its legend entry) and the oracle table."""
    from hcc_utils import model_registry
    from hcc_utils.plots import comparison as plots

    run = RunFolder(tmp_path / "run")
    frames = make_predictions()
    rng = np.random.default_rng(9)
    frames["Combined"] = frames["DL-MIL"].assign(
        prob=np.clip(frames["DL-MIL"]["prob"] + rng.normal(0, 0.05, 70), 0, 1).round(2),
        prob_oof=frames["Clinical"]["prob_oof"])
    write(run, frames)
    preds = comparison.load_predictions(run)
    models = ["DL-MIL", "Radiomics", "Clinical", "Combined"]
    assert preds.models == models and preds.notes == []
    evaluation = make_params().evaluation
    t4, delong = comparison.write_tables(preds, evaluation, run)
    assert t4["model"].tolist() == models * 2
    pairs = delong[delong["dataset"] == "validation"][["model_a", "model_b"]].values.tolist()
    assert len(pairs) == 6 and pairs[-1] == ["Clinical", "Combined"] and ["DL-MIL", "Combined"] in pairs
    dca = comparison.decision_curve_table(preds, evaluation)
    fig = plots.decision_curves(dca)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [*models, "Treat all", "Treat none"]
    fig = plots.roc_curves(comparison.roc_curve_table(preds), t4)
    lines = fig.axes[1].get_lines()
    colours = [matplotlib.colors.to_hex(line.get_color()) for line in lines[:4]]
    assert colours == [model_registry.colour(m) for m in models]
    assert "Combined: AUC" in fig.axes[1].get_legend().get_texts()[3].get_text()
    manifest = write_cohort(tmp_path / "cohort", frames)
    assert comparison.oracle_table(make_params(), run, manifest=manifest)["model"].tolist() == models
