"""Comparison of the models (docs/method.md section 6, the paper's Table 4 and Fig. 5; the fourth, Combined, is
not the paper's): Table 4, DeLong tests, ROC, decision and calibration curves, the sample-size check, and
(synthetic cohorts only) the oracle AUC. The NRI and IDI over the Clinical model are ``hcc_utils.incremental``'s.

Input: stage 05's per-patient prediction files, read by ``hcc_utils.model_predictions``; the models and their
order come from ``hcc_utils.model_registry``. Validation rows always use ``prob`` (the final model, fitted on
training patients only); training rows use ``prob`` (apparent: the final model on its own training patients, as
the paper reports) or ``prob_oof`` (out-of-fold: every step of the recipe fitted without the patient's CV fold),
by ``params.evaluation.train_predictions``. Youden's cut-off is always chosen on ``prob_oof``. A model whose file
is missing (e.g. radiomics disabled) is skipped with a note. Outputs (docs/architecture.md formats):
``tables/table4_models.csv`` and ``tables/delong.csv``.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from hcc_utils import artifacts, calibration, sample_size, stats
from hcc_utils.cohort import SPLITS, ground_truth_path
from hcc_utils.config import EvaluationConfig, Params
from hcc_utils.model_predictions import ModelPredictions, load_predictions  # noqa: F401  (notebook 06 calls it)
from hcc_utils.run_folder import RunFolder
from hcc_utils.synth import truth as synth_truth

TABLE4_COLUMNS = list(artifacts.TABLE4.columns)
DELONG_COLUMNS = list(artifacts.DELONG.columns)
ORACLE_COLUMNS = ["model", "n", "auc", "auc_low", "auc_high", "oracle_auc", "oracle_low", "oracle_high"]


@contextmanager
def _about(model: str, split: str):
    """Re-raise a statistics error with the model and set it concerns."""
    try:
        yield
    except stats.DegenerateScoreError:
        raise
    except ValueError as exc:
        raise ValueError(f"{model}, {split} set: {exc}") from exc


def _auc_with_ci(y, score, level: float, notes: list[str], what: str) -> tuple[float, float, float]:
    """AUC and DeLong CI; for a constant score the AUC (0.5) with a NaN interval and a note."""
    try:
        return stats.auc_ci(y, score, level)
    except stats.DegenerateScoreError as exc:
        notes.append(f"{what}: {exc}; interval left empty")
        return stats.auc(y, score), float("nan"), float("nan")


def thresholds_for(preds: ModelPredictions, evaluation: EvaluationConfig) -> dict[str, float]:
    """Each model's cut-off (a probability of ER): the fixed one, or the one maximising Youden's J on its training
    patients' OUT-OF-FOLD predictions (``prob_oof``, whatever ``evaluation.train_predictions`` says), applied
    unchanged to validation (docs/method.md section 6).

    Not the apparent predictions: ExtraTrees nearly separates its own training patients, so any cut-off between
    the two groups' apparent scores maximises J and the choice would be arbitrary.
    """
    cut = {}
    for model in preds.models:
        if evaluation.threshold == "fixed":
            cut[model] = evaluation.fixed_threshold
        else:
            train = preds.out_of_fold_scores(model)
            with _about(model, "train"):
                cut[model] = stats.youden_threshold(train["er"], train["score"])
    return cut


def threshold_table(preds: ModelPredictions, evaluation: EvaluationConfig) -> pd.DataFrame:
    """Each model's cut-off and where it comes from (for the notebook)."""
    source = ("fixed (params.evaluation.fixed_threshold)" if evaluation.threshold == "fixed"
              else "Youden's J on the out-of-fold training predictions (prob_oof)")
    return pd.DataFrame([{"model": m, "threshold": t, "chosen": source}
                         for m, t in thresholds_for(preds, evaluation).items()])


def table4(preds: ModelPredictions, evaluation: EvaluationConfig) -> pd.DataFrame:
    """Table 4: accuracy, AUC (DeLong CI), sensitivity, specificity per model and set (fractions).

    A model with a constant score gets AUC 0.5 with an empty interval; ``attrs["notes"]`` says so.
    """
    cut = thresholds_for(preds, evaluation)
    rows, notes = [], []
    for split in SPLITS:
        for model in preds.models:
            s = preds.scores(model, split)
            with _about(model, split):
                auc, low, high = _auc_with_ci(s["er"], s["score"], evaluation.ci_level, notes,
                                              f"{model}, {split} set")
                metrics = stats.classification_metrics(s["er"], s["score"], cut[model])
            rows.append({"dataset": split, "model": model, "accuracy": metrics["accuracy"], "auc": auc,
                         "auc_low": low, "auc_high": high, "sensitivity": metrics["sensitivity"],
                         "specificity": metrics["specificity"]})
    table = pd.DataFrame(rows, columns=TABLE4_COLUMNS)
    table.attrs["notes"] = notes
    return table


def paired_scores(preds: ModelPredictions, split: str, models: list[str] | None = None) -> pd.DataFrame:
    """``patient_id, er`` and one score column per model, on the patients that every model scored."""
    models = models or preds.models
    merged = None
    for model in models:
        s = preds.scores(model, split).rename(columns={"score": model})
        merged = s if merged is None else merged.merge(s.drop(columns="er"), on="patient_id", how="inner")
    return merged.reset_index(drop=True)


def delong_table(preds: ModelPredictions) -> pd.DataFrame:
    """DeLong's test for every pair of models on each set, on the patients both models scored.

    Pairs are in the registry's order (DL-MIL vs Radiomics, DL-MIL vs Clinical, Radiomics vs Clinical); ``z > 0``
    when model_a has the higher AUC. ``attrs["notes"]`` lists pairs compared on fewer patients than either
    model's own rows, and pairs without a test (a constant score: z and p left empty).
    """
    rows, notes = [], []
    for split in SPLITS:
        for a, b in combinations(preds.models, 2):
            pair = paired_scores(preds, split, [a, b])
            n_a, n_b = len(preds.scores(a, split)), len(preds.scores(b, split))
            if len(pair) < max(n_a, n_b):
                notes.append(f"{split}: {a} vs {b} on the {len(pair)} patients both scored "
                             f"({n_a} and {n_b})")
            with _about(f"{a} vs {b}", split):
                try:
                    z, p = stats.delong_test(pair["er"], pair[a], pair[b])
                except stats.DegenerateScoreError as exc:
                    notes.append(f"{split}: {a} vs {b} not tested: {exc}")
                    z, p = float("nan"), float("nan")
                auc_a, auc_b = stats.auc(pair["er"], pair[a]), stats.auc(pair["er"], pair[b])
            rows.append({"dataset": split, "model_a": a, "model_b": b, "auc_a": auc_a, "auc_b": auc_b,
                         "z": z, "p": p})
    table = pd.DataFrame(rows, columns=DELONG_COLUMNS)
    table.attrs["notes"] = notes
    return table


def write_tables(preds: ModelPredictions, evaluation: EvaluationConfig, run: RunFolder
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute and write Table 4 and the DeLong tests (``artifacts.TABLE4``, ``DELONG``); return both tables."""
    performance, delong = table4(preds, evaluation), delong_table(preds)
    artifacts.write_table(run, artifacts.TABLE4, performance)
    artifacts.write_table(run, artifacts.DELONG, delong)
    return performance, delong


def roc_curve_table(preds: ModelPredictions) -> pd.DataFrame:
    """Empirical ROC curves: ``dataset, model, fpr, tpr`` (fractions), all cut-offs kept."""
    parts = []
    for split in SPLITS:
        for model in preds.models:
            s = preds.scores(model, split)
            with _about(model, split):
                y, score = stats.check_inputs(s["er"], s["score"])
            fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
            parts.append(pd.DataFrame({"dataset": split, "model": model, "fpr": fpr, "tpr": tpr}))
    return pd.concat(parts, ignore_index=True)


def dca_thresholds(evaluation: EvaluationConfig) -> np.ndarray:
    """The decision-curve threshold probabilities ``start, start + step, ..., stop`` (stop included)."""
    start, stop, step = evaluation.dca_thresholds
    return np.round(np.arange(start, stop + step / 2, step), 10)


def decision_curve_table(preds: ModelPredictions, evaluation: EvaluationConfig) -> pd.DataFrame:
    """Net benefit per threshold for each model, "Treat all" and "Treat none", on each set (Fig. 5c,d).

    Computed by ``dcurves.dca`` (the field's reference implementation; ``stats.net_benefit`` agrees with it)
    on the patients every model scored, so the reference lines share one prevalence.

    Returns:
        ``dataset, model, threshold, net_benefit`` (threshold a probability, net benefit a fraction of
        patients).
    """
    from dcurves import dca

    thresholds = dca_thresholds(evaluation)
    parts = []
    for split in SPLITS:
        data = paired_scores(preds, split)
        data = data.assign(er=data["er"].astype(bool))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            result = dca(data=data, outcome="er", modelnames=preds.models, thresholds=list(thresholds))
        result = result[["model", "threshold", "net_benefit"]].assign(dataset=split)
        parts.append(result.replace({"model": {"all": "Treat all", "none": "Treat none"}}))
    table = pd.concat(parts, ignore_index=True)[["dataset", "model", "threshold", "net_benefit"]]
    return table.astype({"threshold": float, "net_benefit": float})


def calibration_table(preds: ModelPredictions) -> pd.DataFrame:
    """Brier score, calibration intercept and slope per model and set (``note`` says why a slope is NaN)."""
    rows = []
    for split in SPLITS:
        for model in preds.models:
            s = preds.scores(model, split)
            with _about(model, split):
                summary = calibration.calibration_summary(s["er"], s["score"])
            rows.append({"dataset": split, "model": model, **summary})
    return pd.DataFrame(rows, columns=["dataset", "model", "n", "brier", "intercept", "slope", "note"])


def calibration_curve_table(preds: ModelPredictions, evaluation: EvaluationConfig) -> pd.DataFrame:
    """Calibration curves: ``dataset, model, mean_predicted, observed_fraction`` per bin."""
    parts = []
    for split in SPLITS:
        for model in preds.models:
            s = preds.scores(model, split)
            with _about(model, split):
                curve = calibration.calibration_curve_table(s["er"], s["score"], evaluation.calibration_bins,
                                                            evaluation.calibration_strategy)
            parts.append(curve.assign(dataset=split, model=model))
    return pd.concat(parts, ignore_index=True)[["dataset", "model", "mean_predicted", "observed_fraction"]]


def sample_size_table(evaluation: EvaluationConfig, preds: ModelPredictions | None = None) -> pd.DataFrame:
    """The required ER/NER numbers (Hanley & McNeil 1982, as MedCalc) beside this run's sets and their power (a
    fraction; ``sample_size.auc_power`` with each set's own NER/ER ratio).

    ``attrs["method"]`` names the method; ``attrs["summary"]`` says what this run's ``evaluation.sample_size_*``
    inputs give, and whether they are the paper's (``sample_size.AUCSampleSize.summary``).
    """
    need = sample_size.auc_sample_size(evaluation.sample_size_auc, evaluation.sample_size_null_auc,
                                       evaluation.sample_size_alpha, evaluation.sample_size_power,
                                       evaluation.sample_size_ratio)
    rows = [{"set": "required", "ER": need.n_positive, "NER": need.n_negative,
             "power": evaluation.sample_size_power}]
    if preds is not None:
        first = next(iter(preds.frames.values()))
        for split in SPLITS:
            er = first.loc[first["split"] == split, "er"]
            n_pos, n_neg = int(er.sum()), int(len(er) - er.sum())
            power = (sample_size.auc_power(n_pos, n_neg, need.auc, need.null_auc, need.alpha)
                     if n_pos and n_neg else float("nan"))
            rows.append({"set": split, "ER": n_pos, "NER": n_neg, "power": power})
    table = pd.DataFrame(rows)
    table.attrs["method"] = need.method
    table.attrs["summary"] = need.summary()
    return table


def oracle_table(params: Params, run: RunFolder, manifest: Path | str | None = None) -> pd.DataFrame:
    """Synthetic cohorts only: each model's validation AUC beside the oracle AUC on the same patients.

    The oracle is the true ER probability of the generator (``ground_truth.csv`` beside the manifest, read with
    ``hcc_utils.synth.truth.matching_ground_truth``; column ``PROBABILITY_COLUMN``). Each outcome was drawn from
    that probability, so no score ranks patients better on average: the oracle AUC is the *expected* best AUC,
    not a ceiling. On one small validation set (58 patients in the paper's design) a model can beat it by chance,
    so read the two intervals, not just the two values. Ground truth is read here and nowhere else in the
    comparison. ``manifest`` overrides
    the cohort that ``params`` names. When there is no ground truth (a user's cohort, or a synthetic one not
    generated yet), or the file there does not describe this cohort (a validation patient or the column missing:
    a stale file, or another cohort's), the table is empty and ``attrs["note"]`` says why.
    """
    empty = pd.DataFrame(columns=ORACLE_COLUMNS)
    path = synth_truth.ground_truth_file(manifest) if manifest is not None else ground_truth_path(params)
    if path is None or not path.is_file():
        empty.attrs["note"] = ("No ground truth for this cohort (only a generated synthetic cohort has "
                               f"{synth_truth.GROUND_TRUTH_FILE}); the oracle comparison is unavailable.")
        return empty
    column = synth_truth.PROBABILITY_COLUMN
    preds = load_predictions(run, params.evaluation.train_predictions)
    patients = [p for model in preds.models for p in preds.scores(model, "validation")["patient_id"]]
    table, why = synth_truth.matching_ground_truth(path, [column], patients)
    if table is None:
        empty.attrs["note"] = f"{why}; the oracle comparison is unavailable."
        return empty
    truth = table.set_index(synth_truth.PATIENT_ID)[column]
    rows, notes = [], []
    for model in preds.models:
        s = preds.scores(model, "validation")
        oracle = truth.loc[s["patient_id"].astype(str)].to_numpy(dtype=float)
        level = params.evaluation.ci_level
        with _about(model, "validation"):
            auc, low, high = _auc_with_ci(s["er"], s["score"], level, notes, model)
            o_auc, o_low, o_high = _auc_with_ci(s["er"], oracle, level, notes, "oracle")
        rows.append({"model": model, "n": len(s), "auc": auc, "auc_low": low, "auc_high": high,
                     "oracle_auc": o_auc, "oracle_low": o_low, "oracle_high": o_high})
    table = pd.DataFrame(rows, columns=ORACLE_COLUMNS)
    n = max(table["n"], default=0)
    table.attrs["note"] = " ".join([f"Oracle: the generator's true ER probability ('{column}' of "
                                    "ground_truth.csv) on the same validation patients. It is the expected best "
                                    "AUC, not a ceiling: no model does better on average over cohorts drawn "
                                    f"alike, but on these {n} patients a model can beat it by chance.", *notes])
    return table
