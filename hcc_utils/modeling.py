"""The selection-and-model recipe shared by the DL-MIL, Radiomics and Clinical models (docs/method.md section 5).

``fit_recipe`` is the one entry point. The whole recipe is one imbalanced-learn ``Pipeline``::

    FeatureSelector (z-score, univariate tests, correlation filter, LassoCV) -> StandardScaler -> SMOTE
        -> ExtraTreesClassifier

tuned by ``GridSearchCV`` (StratifiedKFold, scoring roc_auc, the grid of ``params.model``) on the training
patients only. Every step is fitted inside each CV fold: the feature selection (``fold_selection.FeatureSelector``
around ``selection.select_features``), the scaler and SMOTE see only that fold's training rows, never its held-out
rows nor a validation patient. The selection does not depend on the ExtraTrees parameters, so the fitted steps
before the trees are cached per fold (the pipeline's ``memory``, a joblib cache in a temporary folder): each fold
fits the selection once, not once per grid candidate. The best configuration is refitted on all training
patients; that final pipeline takes the raw feature table (all columns, by name) and ``predict_proba`` returns
the ER probability. The grid search and the out-of-fold refits run in ``model.n_jobs`` processes, or on the Dask
cluster of ``params.compute`` (``hcc_utils.compute.joblib_backend``; the same numbers).

Training probabilities come twice: apparent (``prob``: the final pipeline on the patients it was fitted on,
optimistic: ExtraTrees nearly separates its own training patients) and out-of-fold (``prob_oof``: the best
configuration refitted, selection included, on each CV fold's training rows and predicting its held-out rows, the
same folds as the grid search). Out-of-fold rows are out-of-sample for every fitted step; only the choice among
the grid's candidates used the same folds. Validation probabilities come from the final pipeline.

Small cohorts: the CV folds are reduced to the size of the smaller outcome group, and SMOTE's ``k_neighbors`` to
one less than the smallest minority count of any training fold (SMOTE is left out when that is 0); both with a
note in ``RecipeResult.notes``. The selection's fallbacks and Lasso fold reductions of the fold fits are noted
too, with the number of folds.

Example::

    patients = load_cohort(params, run).set_index("patient_id")
    result = fit_recipe(features, patients["er"], patients["split"], params, "DL-MIL", run)
    result.features, result.best_params, result.cv_auc
    result.selection_stability  # per feature: CV folds that selected it, and whether the final fit did
    result.predictions.head()   # patient_id, split, er, prob, prob_oof
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

import joblib
import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from sklearn.base import clone
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.preprocessing import StandardScaler

from hcc_utils import artifacts, model_registry, stats
from hcc_utils.compute import joblib_backend
from hcc_utils.config import ModelConfig, Params, SelectionConfig
from hcc_utils.fold_selection import ALL_STEPS, FeatureSelector, fold_notes, selection_stability
from hcc_utils.run_folder import RunFolder
from hcc_utils.selection import SelectionResult

PREDICTION_COLUMNS = list(artifacts.PATIENT_PREDICTION_COLUMNS)


class RecipeError(ValueError):
    """Inputs the recipe cannot use; the message names the patients or features and what to do."""


@dataclass
class RecipeResult:
    """Everything ``fit_recipe`` produced for one model.

    Attributes:
        name: the model's name in tables ("DL-MIL", "Radiomics", "Clinical").
        selection: the final fit's funnel (``selection.SelectionResult``, on all training patients): per step
            the surviving features and why (Fig. 4b,c, S1).
        features: the final fit's selected features, in input order.
        selection_stability: feature, folds_selected, n_folds, in_final: every feature the final fit or a CV
            fold's fit selected, and in how many of the ``n_folds`` fold fits (``fold_selection``).
        pipeline: the fitted imblearn Pipeline (FeatureSelector -> StandardScaler -> SMOTE -> ExtraTrees),
            refitted on all training patients with the best parameters; ``predict_proba`` takes the raw table.
        grid: one row per grid candidate: n_estimators, max_depth, min_samples_split, mean_auc, sd_auc (over the
            CV folds), rank.
        best_params: the chosen ExtraTrees parameters; cv_auc: their mean CV AUC on the training folds.
        predictions: patient_id, split, er, prob, prob_oof (probabilities of ER, 0-1). ``prob``: the final
            pipeline's probability; for training patients it is apparent (the model scoring the patients it was
            fitted on: optimistic). ``prob_oof``: out-of-sample for everyone: for a training patient, the
            pipeline fitted (selection, scaler, SMOTE, trees) without its CV fold; for a validation patient,
            equal to ``prob``.
        cv_folds: the held-out training patients of each CV fold (grid search and out-of-fold predictions).
        smote_k_neighbors: SMOTE's k as used (None: SMOTE off). notes: reductions and fallbacks, for the book.
    """

    name: str
    selection: SelectionResult
    features: list[str]
    selection_stability: pd.DataFrame
    pipeline: Pipeline
    grid: pd.DataFrame
    best_params: dict
    cv_auc: float
    predictions: pd.DataFrame
    cv_folds: list[list[str]]
    smote_k_neighbors: int | None
    notes: list[str] = field(default_factory=list)


def build_pipeline(selection_cfg: SelectionConfig, cfg: ModelConfig, k_neighbors: int | None,
                   steps: tuple[str, ...] = ALL_STEPS, memory=None) -> Pipeline:
    """The unfitted recipe pipeline: FeatureSelector -> StandardScaler -> SMOTE -> ExtraTrees.

    ``steps``: the selection steps after the z-score (``()`` for the clinical model); ``k_neighbors=None`` leaves
    SMOTE out; ``memory``: a ``joblib.Memory`` caching the fitted steps before the trees (None: no cache). Tables
    flow as DataFrames (patient ids and feature names kept).
    """
    sampler = SMOTE(k_neighbors=k_neighbors, random_state=cfg.seed) if k_neighbors else "passthrough"
    return Pipeline([("select", FeatureSelector(selection_cfg, tuple(steps))),
                     ("scale", StandardScaler().set_output(transform="pandas")),
                     ("smote", sampler), ("model", ExtraTreesClassifier(random_state=cfg.seed, n_jobs=1))],
                    memory=memory)


def param_grid(cfg: ModelConfig) -> dict[str, list]:
    """The grid of docs/method.md section 5 (from ``params.model``), addressed to the pipeline's ExtraTrees step."""
    return {"model__n_estimators": list(cfg.n_estimators), "model__max_depth": list(cfg.max_depth),
            "model__min_samples_split": list(cfg.min_samples_split)}


def _aligned_inputs(features: pd.DataFrame, labels: pd.Series, split: pd.Series) -> pd.DataFrame:
    """Features' patients with their er and split; errors name the patients."""
    features = features.copy()
    features.index = features.index.astype(str)
    labels = labels.copy()
    labels.index = labels.index.astype(str)
    split = split.copy()
    split.index = split.index.astype(str)
    if features.index.duplicated().any():
        raise RecipeError(f"duplicate patients in the feature table: "
                          f"{features.index[features.index.duplicated()].tolist()[:5]}")
    for what, series in (("label (er)", labels), ("split", split)):
        missing = features.index.difference(series.dropna().index).tolist()
        if missing:
            raise RecipeError(f"no {what} for patient(s) {missing[:5]}; pass the cohort's columns indexed by "
                              "patient_id")
    bad_split = sorted(set(split.loc[features.index]) - {"train", "validation"})
    if bad_split:
        raise RecipeError(f"split values must be 'train' or 'validation', got {bad_split}")
    missing = features.isna()
    if missing.any().any():
        feature = missing.any().idxmax()
        raise RecipeError(f"feature {feature!r} is missing for patient(s) "
                          f"{features.index[missing[feature]].tolist()[:5]}; impute (training statistics) or "
                          "exclude them before modelling")
    table = features.assign(__er=labels.loc[features.index].astype(int).to_numpy(),
                            __split=split.loc[features.index].to_numpy())
    return table


def training_table(features: pd.DataFrame, labels: pd.Series, split: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    """The training patients' features and 0/1 ER, checked as ``fit_recipe`` checks them (for figures, Fig. 4a)."""
    table = _aligned_inputs(features, labels, split)
    train = table[table["__split"] == "train"]
    return train.drop(columns=["__er", "__split"]), train["__er"].rename("er")


def _folds(y: pd.Series, cfg: ModelConfig, notes: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    minority = int(y.value_counts().min())
    n_folds = min(cfg.cv_folds, minority)
    if n_folds < cfg.cv_folds:
        notes.append(f"grid search: {n_folds}-fold CV instead of {cfg.cv_folds} (only {minority} training "
                     "patients in the smaller outcome group)")
    return list(StratifiedKFold(n_folds, shuffle=True, random_state=cfg.seed).split(np.zeros(len(y)), y))


def _smote_k(y: pd.Series, folds, cfg: ModelConfig, notes: list[str]) -> int | None:
    """SMOTE's k: at most one less than the smallest minority count among the training folds and the full set."""
    if not cfg.smote:
        return None
    smallest = min([int(y.value_counts().min())] +
                   [int(y.iloc[train].value_counts().min()) for train, _ in folds])
    k = min(cfg.smote_k_neighbors, smallest - 1)
    if k < 1:
        notes.append(f"SMOTE left out: a training fold has only {smallest} patient(s) of the minority class")
        return None
    if k < cfg.smote_k_neighbors:
        notes.append(f"SMOTE k_neighbors reduced from {cfg.smote_k_neighbors} to {k} (smallest training fold "
                     f"has {smallest} minority patients)")
    return k


def _grid_table(search: GridSearchCV) -> pd.DataFrame:
    res = search.cv_results_
    return pd.DataFrame({"n_estimators": res["param_model__n_estimators"],
                         "max_depth": [("None" if d is None else int(d)) for d in res["param_model__max_depth"]],
                         "min_samples_split": res["param_model__min_samples_split"],
                         "mean_auc": res["mean_test_score"], "sd_auc": res["std_test_score"],
                         "rank": res["rank_test_score"]}).sort_values("rank", kind="stable").reset_index(drop=True)


def _out_of_fold(pipeline: Pipeline, x_train: pd.DataFrame, y_train: pd.Series, folds,
                 n_jobs: int) -> tuple[np.ndarray, list[Pipeline]]:
    """Out-of-fold P(ER) of ``pipeline``'s configuration, refitted (every step) per fold; and the fold pipelines."""
    cv = cross_validate(clone(pipeline), x_train, y_train, cv=folds, scoring="roc_auc", return_estimator=True,
                        return_indices=True, n_jobs=n_jobs, error_score="raise")
    oof = np.full(len(y_train), np.nan)
    for estimator, test in zip(cv["estimator"], cv["indices"]["test"], strict=True):
        oof[test] = estimator.predict_proba(x_train.iloc[test])[:, 1]
    return oof, list(cv["estimator"])


def fit_recipe(features: pd.DataFrame, labels: pd.Series, split: pd.Series, params: Params, name: str,
               run: RunFolder | None = None, selection_steps: tuple[str, ...] = ALL_STEPS) -> RecipeResult:
    """Select features and fit SMOTE + ExtraTrees on the training patients, every step inside each CV fold;
    predict every patient.

    Args:
        features: one row per patient (index patient_id), numeric columns, no missing values.
        labels: 0/1 ER per patient (index patient_id; may hold more patients than ``features``).
        split: "train" / "validation" per patient (index patient_id), e.g. ``load_cohort(params, run)``'s column.
        params: the run's parameters (``params.selection``, ``params.model`` are used).
        name: "DL-MIL", "Radiomics" or "Clinical" (any name works; the slug names the files).
        run: when given, writes the model's files (``save_recipe``; slug from ``hcc_utils.model_registry``).
        selection_steps: the selection steps after the z-score (see ``selection.select_features``); the
            clinical model passes ``()`` because its variables were chosen by Table 2's tests.

    Only training rows reach the selection, the scaler, SMOTE, the grid search and the final fit, and each CV fit
    only its fold's training rows; validation rows are only ever passed to ``predict_proba``.
    """
    table = _aligned_inputs(features, labels, split)
    feature_names = [c for c in table.columns if c not in ("__er", "__split")]
    x_train, y_train = training_table(features, labels, split)
    counts = y_train.value_counts()
    if len(counts) < 2 or counts.min() < 3:
        raise RecipeError(f"{name}: need at least 3 training patients in each outcome group (so that every CV "
                          f"fold's selection is fitted on 2), have {counts.to_dict()}")

    notes: list[str] = []
    folds = _folds(y_train, params.model, notes)
    k = _smote_k(y_train, folds, params.model, notes)
    with tempfile.TemporaryDirectory(prefix="hcc_recipe_") as cache:
        pipeline = build_pipeline(params.selection, params.model, k, selection_steps,
                                  memory=joblib.Memory(cache, verbose=0))
        search = GridSearchCV(pipeline, param_grid(params.model), scoring="roc_auc", cv=folds,
                              n_jobs=params.model.n_jobs, refit=True, error_score="raise")
        with joblib_backend(params.compute):
            search.fit(x_train, y_train)
            oof, fold_pipelines = _out_of_fold(search.best_estimator_, x_train, y_train, folds,
                                               params.model.n_jobs)
    best = search.best_estimator_.set_params(memory=None)
    selection: SelectionResult = best.named_steps["select"].selection_
    fold_selectors = [fold.named_steps["select"] for fold in fold_pipelines]
    notes = (list(selection.warnings) + fold_notes([s.selection_.warnings for s in fold_selectors]) + notes)
    stability = selection_stability(list(x_train.columns), [s.selected_ for s in fold_selectors],
                                    selection.selected)

    prob = best.predict_proba(table[feature_names])[:, 1]
    predictions = pd.DataFrame({"patient_id": table.index, "split": table["__split"].to_numpy(),
                                "er": table["__er"].to_numpy(), "prob": prob, "prob_oof": prob})
    predictions.loc[predictions["split"] == "train", "prob_oof"] = oof
    best_params = {key.removeprefix("model__"): value for key, value in search.best_params_.items()}
    result = RecipeResult(name=name, selection=selection, features=selection.selected,
                          selection_stability=stability, pipeline=best, grid=_grid_table(search),
                          best_params=best_params, cv_auc=float(search.best_score_), predictions=predictions,
                          cv_folds=[x_train.index[test].tolist() for _, test in folds], smote_k_neighbors=k,
                          notes=notes)
    if run is not None:
        save_recipe(result, run)
    return result


def fit_fixed(features: pd.DataFrame, labels: pd.Series, split: pd.Series, params: Params, trees: dict,
              selection_steps: tuple[str, ...] = ALL_STEPS) -> pd.Series:
    """The recipe with ExtraTrees parameters given beforehand (``trees``: n_estimators, max_depth,
    min_samples_split): the selection, scaler, SMOTE and trees fitted once on the training patients, no grid
    search (notebook 09's refits, ``robustness.tuning: fixed``). SMOTE's k as ``fit_recipe``'s for the whole
    training set. Returns P(ER) of the validation patients (index patient_id).
    """
    table = _aligned_inputs(features, labels, split)
    x_train, y_train = training_table(features, labels, split)
    counts = y_train.value_counts()
    if len(counts) < 2 or counts.min() < 2:
        raise RecipeError(f"need at least 2 training patients in each outcome group, have {counts.to_dict()}")
    k = _smote_k(y_train, [], params.model, [])
    pipeline = build_pipeline(params.selection, params.model, k, selection_steps)
    pipeline.set_params(**{f"model__{name}": value for name, value in trees.items()})
    pipeline.fit(x_train, y_train)
    validation = table[table["__split"] == "validation"].drop(columns=["__er", "__split"])
    return pd.Series(pipeline.predict_proba(validation)[:, 1], index=validation.index, name="prob")


def save_recipe(result: RecipeResult, run: RunFolder) -> None:
    """Write the fitted pipeline, its summary (selected features, best parameters, notes), the predictions and
    the selection and grid tables (``hcc_utils.artifacts``: PIPELINE, MODEL_SUMMARY, PATIENT_PREDICTIONS,
    SELECTION, GRID)."""
    slug = model_registry.slug(result.name)
    artifacts.write_pipeline(run, slug, result.pipeline)
    summary = {"model": result.name, "features": result.features, "best_params": result.best_params,
               "cv_auc": result.cv_auc, "smote_k_neighbors": result.smote_k_neighbors, "notes": result.notes}
    artifacts.write_model_summary(run, slug, summary)
    artifacts.write_patient_predictions(run, slug, result.predictions)
    artifacts.write_table(run, artifacts.SELECTION, result.selection.decisions(), slug=slug)
    artifacts.write_table(run, artifacts.GRID, result.grid, slug=slug)


def recipe_metrics(predictions: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Accuracy, AUC, sensitivity, specificity (fractions, ``hcc_utils.stats``) on train (apparent), train
    (out-of-fold) and validation; a set with one outcome class only gets empty metrics.

    A quick look for notebook 05; Table 4 with DeLong CIs is notebook 06's.
    """
    sets = [("train (apparent)", "train", "prob"), ("train (out-of-fold)", "train", "prob_oof"),
            ("validation", "validation", "prob")]
    rows = []
    for label, subset, column in sets:
        part = predictions[predictions["split"] == subset]
        if part.empty:
            continue
        row = {"dataset": label, "n": len(part), "accuracy": np.nan, "auc": np.nan, "sensitivity": np.nan,
               "specificity": np.nan}
        try:
            metrics = stats.classification_metrics(part["er"], part[column], threshold)
            row.update(accuracy=metrics["accuracy"], auc=stats.auc(part["er"], part[column]),
                       sensitivity=metrics["sensitivity"], specificity=metrics["specificity"])
        except ValueError:
            pass
        rows.append(row)
    return pd.DataFrame(rows)
