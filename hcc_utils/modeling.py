"""The selection-and-model recipe shared by the DL-MIL, Radiomics and Clinical models (docs/method.md section 5).

``fit_recipe`` is the one entry point: feature selection (``hcc_utils.selection``) on the training patients,
then an imbalanced-learn ``Pipeline``::

    selected columns (ColumnTransformer) -> StandardScaler -> SMOTE -> ExtraTreesClassifier

tuned by ``GridSearchCV`` (StratifiedKFold, scoring roc_auc, the grid of ``params.model``) on the training
patients only. Because SMOTE and the scaler are steps of the pipeline, every CV fit sees only that fold's training
rows: SMOTE never synthesises from a held-out fold or a validation patient. The refitted pipeline takes the raw
feature table (all columns, by name) and ``predict_proba`` returns the ER probability.

Training probabilities come twice: apparent (the final pipeline on the patients it was fitted on, optimistic) and
out-of-fold (``cross_val_predict`` of the best configuration with the same folds, honest). Validation
probabilities come from the final pipeline.

Small cohorts: the CV folds are reduced to the size of the smaller outcome group, and SMOTE's ``k_neighbors`` to
one less than the smallest minority count of any training fold (SMOTE is left out when that is 0); both with a
note in ``RecipeResult.notes``.

Example::

    patients = load_cohort(params).set_index("patient_id")
    result = fit_recipe(features, patients["er"], patients["split"], params, "DL-MIL", run)
    result.features, result.best_params, result.cv_auc
    result.predictions.head()   # patient_id, split, er, prob, prob_oof
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import joblib
import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.metrics import confusion_matrix, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict
from sklearn.preprocessing import StandardScaler

from hcc_utils.config import ModelConfig, Params
from hcc_utils.run_folder import RunFolder
from hcc_utils.selection import SelectionResult, select_features

MODEL_SLUGS = {"DL-MIL": "dl_mil", "Radiomics": "radiomics", "Clinical": "clinical"}
PREDICTION_COLUMNS = ["patient_id", "split", "er", "prob", "prob_oof"]


class RecipeError(ValueError):
    """Inputs the recipe cannot use; the message names the patients or features and what to do."""


@dataclass
class RecipeResult:
    """Everything ``fit_recipe`` produced for one model.

    Attributes:
        name: the model's name in tables ("DL-MIL", "Radiomics", "Clinical").
        selection: the funnel (``selection.SelectionResult``): per step the surviving features and why.
        features: the selected features, in input order.
        pipeline: the fitted imblearn Pipeline (selected columns -> StandardScaler -> SMOTE -> ExtraTrees),
            refitted on all training patients with the best parameters; ``predict_proba`` takes the raw table.
        grid: one row per grid candidate: n_estimators, max_depth, min_samples_split, mean_auc, sd_auc (over the
            CV folds), rank.
        best_params: the chosen ExtraTrees parameters; cv_auc: their mean CV AUC on the training folds.
        predictions: patient_id, split, er, prob, prob_oof. ``prob``: the final pipeline's probability (apparent
            for training patients). ``prob_oof``: out-of-sample for everyone: out-of-fold for training
            patients, equal to ``prob`` for validation patients.
        cv_folds: the held-out training patients of each CV fold (grid search and out-of-fold predictions).
        smote_k_neighbors: SMOTE's k as used (None: SMOTE off). notes: reductions and fallbacks, for the book.
    """

    name: str
    selection: SelectionResult
    features: list[str]
    pipeline: Pipeline
    grid: pd.DataFrame
    best_params: dict
    cv_auc: float
    predictions: pd.DataFrame
    cv_folds: list[list[str]]
    smote_k_neighbors: int | None
    notes: list[str] = field(default_factory=list)


def model_slug(name: str) -> str:
    """File-name form of a model name: "DL-MIL" -> "dl_mil" (also for names outside ``MODEL_SLUGS``)."""
    return MODEL_SLUGS.get(name) or re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def build_pipeline(features: list[str], cfg: ModelConfig, k_neighbors: int | None) -> Pipeline:
    """The unfitted recipe pipeline; ``k_neighbors=None`` leaves SMOTE out. Tables flow as DataFrames (ids kept)."""
    select = ColumnTransformer([("selected", "passthrough", list(features))], remainder="drop",
                               verbose_feature_names_out=False).set_output(transform="pandas")
    sampler = SMOTE(k_neighbors=k_neighbors, random_state=cfg.seed) if k_neighbors else "passthrough"
    return Pipeline([("select", select), ("scale", StandardScaler().set_output(transform="pandas")),
                     ("smote", sampler), ("model", ExtraTreesClassifier(random_state=cfg.seed, n_jobs=1))])


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


def fit_recipe(features: pd.DataFrame, labels: pd.Series, split: pd.Series, params: Params, name: str,
               run: RunFolder | None = None,
               selection_steps: tuple[str, ...] = ("univariate", "correlation", "lasso")) -> RecipeResult:
    """Select features and fit SMOTE + ExtraTrees on the training patients; predict every patient.

    Args:
        features: one row per patient (index patient_id), numeric columns, no missing values.
        labels: 0/1 ER per patient (index patient_id; may hold more patients than ``features``).
        split: "train" / "validation" per patient (index patient_id), e.g. ``load_cohort(params)``'s column.
        params: the run's parameters (``params.selection``, ``params.model`` are used).
        name: "DL-MIL", "Radiomics" or "Clinical" (any name works; the slug names the files).
        run: when given, writes ``models/<slug>.joblib``, ``models/<slug>_features.json``,
            ``predictions/<slug>_patients.csv``, ``tables/<slug>_selection.csv`` and ``tables/<slug>_grid.csv``.
        selection_steps: the selection steps after the z-score (see ``selection.select_features``); the
            clinical model passes ``()`` because its variables were chosen by Table 2's tests.

    Only training rows reach the selection, the scaler, SMOTE, the grid search and the final fit; validation
    rows are only ever passed to ``predict_proba``.
    """
    table = _aligned_inputs(features, labels, split)
    feature_names = [c for c in table.columns if c not in ("__er", "__split")]
    x_train, y_train = training_table(features, labels, split)
    counts = y_train.value_counts()
    if len(counts) < 2 or counts.min() < 2:
        raise RecipeError(f"{name}: need at least 2 training patients in each outcome group, have "
                          f"{counts.to_dict()}")

    selection = select_features(x_train, y_train, params.selection, steps=selection_steps)
    notes = list(selection.warnings)
    folds = _folds(y_train, params.model, notes)
    k = _smote_k(y_train, folds, params.model, notes)
    pipeline = build_pipeline(selection.selected, params.model, k)
    search = GridSearchCV(pipeline, param_grid(params.model), scoring="roc_auc", cv=folds,
                          n_jobs=params.model.n_jobs, refit=True, error_score="raise")
    search.fit(x_train, y_train)
    best = search.best_estimator_
    oof = cross_val_predict(clone(best), x_train, y_train, cv=folds, method="predict_proba",
                            n_jobs=params.model.n_jobs)[:, 1]

    prob = best.predict_proba(table[feature_names])[:, 1]
    predictions = pd.DataFrame({"patient_id": table.index, "split": table["__split"].to_numpy(),
                                "er": table["__er"].to_numpy(), "prob": prob, "prob_oof": prob})
    predictions.loc[predictions["split"] == "train", "prob_oof"] = oof
    best_params = {key.removeprefix("model__"): value for key, value in search.best_params_.items()}
    result = RecipeResult(name=name, selection=selection, features=selection.selected, pipeline=best,
                          grid=_grid_table(search), best_params=best_params, cv_auc=float(search.best_score_),
                          predictions=predictions, cv_folds=[x_train.index[test].tolist() for _, test in folds],
                          smote_k_neighbors=k, notes=notes)
    if run is not None:
        save_recipe(result, run)
    return result


def save_recipe(result: RecipeResult, run: RunFolder) -> None:
    """Write the fitted pipeline, its feature list, the predictions and the selection/grid tables."""
    slug = model_slug(result.name)
    joblib.dump(result.pipeline, run.models / f"{slug}.joblib")
    meta = {"model": result.name, "features": result.features, "best_params": result.best_params,
            "cv_auc": result.cv_auc, "smote_k_neighbors": result.smote_k_neighbors, "notes": result.notes}
    (run.models / f"{slug}_features.json").write_text(json.dumps(meta, indent=2, default=str))
    result.predictions.to_csv(run.predictions / f"{slug}_patients.csv", index=False)
    result.selection.decisions().to_csv(run.tables / f"{slug}_selection.csv", index=False)
    result.grid.to_csv(run.tables / f"{slug}_grid.csv", index=False)


def load_model(run: RunFolder, name: str) -> tuple[Pipeline, list[str]]:
    """The saved pipeline of model ``name`` and its selected features (for SHAP and notebook 06)."""
    slug = model_slug(name)
    path = run.models / f"{slug}.joblib"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run notebook 05_models first")
    meta = json.loads((run.models / f"{slug}_features.json").read_text())
    return joblib.load(path), list(meta["features"])


def load_patient_predictions(run: RunFolder, name: str) -> pd.DataFrame:
    """``predictions/<slug>_patients.csv``: patient_id, split, er, prob, prob_oof."""
    path = run.predictions / f"{model_slug(name)}_patients.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run notebook 05_models first")
    return pd.read_csv(path, dtype={"patient_id": str})


def recipe_metrics(predictions: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Accuracy, AUC, sensitivity, specificity (fractions) on train (apparent), train (out-of-fold), validation.

    A quick look for notebook 05; Table 4 with DeLong CIs is notebook 06's (``hcc_utils.stats``).
    """
    sets = [("train (apparent)", "train", "prob"), ("train (out-of-fold)", "train", "prob_oof"),
            ("validation", "validation", "prob")]
    rows = []
    for label, subset, column in sets:
        part = predictions[predictions["split"] == subset]
        if part.empty:
            continue
        y, p = part["er"].to_numpy(), part[column].to_numpy()
        tn, fp, fn, tp = confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1]).ravel()
        auc = roc_auc_score(y, p) if len(np.unique(y)) == 2 else np.nan
        rows.append({"dataset": label, "n": len(part), "accuracy": (tp + tn) / len(part), "auc": auc,
                     "sensitivity": tp / (tp + fn) if tp + fn else np.nan,
                     "specificity": tn / (tn + fp) if tn + fp else np.nan})
    return pd.DataFrame(rows)


def show_notes(result: RecipeResult):
    """The recipe's warnings and reductions as a Markdown block for the book (nothing to report says so)."""
    from IPython.display import Markdown

    if not result.notes:
        return Markdown(f"*{result.name}: no fallback or reduction was needed.*")
    lines = "\n".join(f"- {note}" for note in result.notes)
    return Markdown(f"**{result.name}: notes and warnings**\n\n{lines}")
