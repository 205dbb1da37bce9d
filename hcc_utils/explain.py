"""SHAP explanation of the DL-MIL model (docs/method.md section 6; paper Fig. 5e-g).

The DL-MIL model is an imbalanced-learn pipeline: FeatureSelector (the selection funnel, keeping the selected MIL
columns) -> StandardScaler (training statistics) -> SMOTE -> ExtraTreesClassifier (``hcc_utils.modeling.fit_recipe``;
the final fit, on all training patients). SHAP's ``TreeExplainer`` explains the fitted ExtraTrees on the features
*as the trees see them*: the selected columns after z-scoring (SMOTE only resamples while fitting and is skipped
here, as at prediction time).

What is explained is the predicted probability of early recurrence, P(ER). A scikit-learn forest's
``predict_proba`` is the mean over trees of the class fractions in the leaf reached, so the tree-path-dependent
SHAP values of the forest's raw output are already on the probability scale: for every patient
``base value + sum of SHAP values = P(ER)``, which :func:`explain_model` checks to 1e-6. No background data is
needed (the trees' own training cover weights the paths).

Example::

    model = load_dl_mil(run)
    result = explain_model(model.pipeline, model.features, model.selected)
    patient = choose_patient(model.predictions)          # validation patient nearest the median risk
    fig = plots.shap.waterfall_figure(result, patient)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shap

from hcc_utils import artifacts
from hcc_utils.model_registry import DL_MIL
from hcc_utils.run_folder import RunFolder

OUTPUT_NAME = "P(ER)"
ADDITIVITY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class DLMILModel:
    """The fitted DL-MIL model with its inputs, as saved by ``modeling.fit_recipe`` in the run folder."""

    pipeline: object
    """fitted imblearn Pipeline; ``predict_proba`` takes the raw MIL feature table"""
    features: pd.DataFrame
    """raw MIL features (26 columns), indexed by patient_id, rows of the patients in ``predictions``"""
    selected: list[str]
    """the selected features, in the order the model uses them"""
    predictions: pd.DataFrame
    """patient_id, split, er, prob, prob_oof"""


@dataclass(frozen=True)
class ShapResult:
    """SHAP values of P(ER) for a set of patients.

    ``explanation`` has one row per patient: ``values`` (n, k) SHAP values in probability units, ``base_values``
    (n,) the forest's expected P(ER), ``data`` the z-scored features the trees see, ``display_data`` the raw
    feature values (fractions / TF-IDF weights) shown next to the names in the waterfall and force plots.
    """

    explanation: shap.Explanation
    patient_ids: list[str]
    probability: np.ndarray
    """``pipeline.predict_proba`` for the positive class, aligned with ``patient_ids``"""

    @property
    def feature_names(self) -> list[str]:
        return list(self.explanation.feature_names)

    def row(self, patient_id: str) -> shap.Explanation:
        """The one-patient explanation (for the waterfall and force plots)."""
        if patient_id not in self.patient_ids:
            raise KeyError(f"patient {patient_id!r} was not explained; explain_model was given "
                           f"{len(self.patient_ids)} other patients")
        return self.explanation[self.patient_ids.index(patient_id)]

    def additivity_gap(self) -> float:
        """Largest |base value + sum of SHAP values - P(ER)| over the explained patients (probability units)."""
        total = self.explanation.values.sum(axis=1) + self.explanation.base_values
        return float(np.max(np.abs(total - self.probability))) if len(self.probability) else 0.0

    def subset(self, patient_ids) -> ShapResult:
        """The same explanation restricted to ``patient_ids`` (e.g. validation patients for the beeswarm)."""
        wanted = set(patient_ids)
        rows = [i for i, pid in enumerate(self.patient_ids) if pid in wanted]
        if not rows:
            raise ValueError("none of the requested patients were explained")
        return ShapResult(self.explanation[rows], [self.patient_ids[i] for i in rows], self.probability[rows])


# -- loading from the run folder ------------------------------------------------------------------------------

def load_dl_mil(run: RunFolder) -> DLMILModel:
    """Read the DL-MIL model, its selected features, predictions and the MIL feature table from ``run``.

    Raises:
        ArtifactMissing: naming the missing file and the notebook that writes it.
    """
    predictions = artifacts.read_patient_predictions(run, DL_MIL.slug)
    features = artifacts.read_mil_features(run)
    missing = sorted(set(predictions["patient_id"]) - set(features.index))
    if missing:
        raise ValueError(f"{artifacts.MIL_FEATURES.path(run)}: no MIL features for {len(missing)} patient(s) of "
                         f"the DL-MIL predictions (e.g. {missing[:3]}); rerun notebooks 04 and 05")
    return DLMILModel(pipeline=artifacts.read_pipeline(run, DL_MIL.slug),
                      features=features.loc[predictions["patient_id"]],
                      selected=artifacts.read_model_summary(run, DL_MIL.slug)["features"], predictions=predictions)


# -- the explanation ------------------------------------------------------------------------------------------

def _steps(pipeline) -> list[tuple[str, object]]:
    if not hasattr(pipeline, "steps"):
        raise TypeError(f"expected a fitted (imblearn) Pipeline, got {type(pipeline).__name__}")
    return list(pipeline.steps)


def model_input(pipeline, features: pd.DataFrame, feature_names: list[str] | None = None) -> pd.DataFrame:
    """The features as the pipeline's final estimator sees them (selected and z-scored), one row per patient.

    For the recipe's pipeline: the FeatureSelector keeps the final fit's selected columns, the StandardScaler
    z-scores them with the training means and SDs.

    Every step before the classifier is applied with ``transform``; samplers (SMOTE, anything with
    ``fit_resample``) are skipped, as imblearn does at prediction time. Column names come from the steps'
    ``get_feature_names_out`` when they all provide it, otherwise from ``feature_names`` (the selected list).
    """
    transformed = features
    names: list[str] | None = list(features.columns)
    for _, step in _steps(pipeline)[:-1]:
        if step is None or step == "passthrough" or hasattr(step, "fit_resample"):
            continue
        if names is not None:
            try:
                names = [str(n) for n in step.get_feature_names_out(names)]
            except (AttributeError, ValueError, TypeError):
                names = None
        transformed = step.transform(transformed)
    if isinstance(transformed, pd.DataFrame):
        names = [str(c) for c in transformed.columns]
    values = np.asarray(transformed, dtype=float)
    if names is None or len(names) != values.shape[1]:
        if feature_names is None or len(feature_names) != values.shape[1]:
            raise ValueError(f"cannot name the {values.shape[1]} model inputs: the pipeline's steps do not give "
                             f"feature names and feature_names has {len(feature_names or [])} entries")
        names = list(feature_names)
    return pd.DataFrame(values, index=features.index, columns=names)


def _positive_column(classifier) -> int:
    classes = list(getattr(classifier, "classes_", []))
    if 1 not in classes:
        raise ValueError(f"the classifier's classes are {classes}; expected the ER coding 0/1")
    return classes.index(1)


def explain_model(pipeline, features: pd.DataFrame, feature_names: list[str] | None = None) -> ShapResult:
    """SHAP values of P(ER) for every row of ``features`` (raw MIL table indexed by patient_id).

    Uses ``shap.TreeExplainer`` (tree-path-dependent, the forest's raw output = probability) on the final
    estimator, fed with :func:`model_input`.

    Raises:
        RuntimeError: when base value + SHAP values differ from ``predict_proba`` by more than 1e-6 for a patient
            (the explanation would not be of this model's probability).
    """
    classifier = _steps(pipeline)[-1][1]
    inputs = model_input(pipeline, features, feature_names)
    positive = _positive_column(classifier)
    explainer = shap.TreeExplainer(classifier)
    raw = explainer(inputs.to_numpy())
    values = raw.values[..., positive] if raw.values.ndim == 3 else raw.values
    base = raw.base_values[..., positive] if np.ndim(raw.base_values) == 2 else raw.base_values
    base = np.broadcast_to(np.asarray(base, dtype=float), (len(inputs),)).copy()
    probability = pipeline.predict_proba(features)[:, positive]
    gap = np.abs(values.sum(axis=1) + base - probability)
    if len(gap) and gap.max() > ADDITIVITY_TOLERANCE:
        worst = inputs.index[int(gap.argmax())]
        raise RuntimeError(f"SHAP values do not add up to P(ER) (patient {worst}: off by {gap.max():.2e}); "
                           "the classifier is not a scikit-learn tree ensemble explained on its probability")
    display = features[inputs.columns] if set(inputs.columns) <= set(features.columns) else None
    explanation = shap.Explanation(
        values=values, base_values=base, data=inputs.to_numpy(),
        display_data=None if display is None else display.to_numpy(dtype=float),
        feature_names=list(inputs.columns), output_names=OUTPUT_NAME)
    return ShapResult(explanation, [str(p) for p in inputs.index], probability)


def patients_in(predictions: pd.DataFrame, patients: str = "all") -> list[str]:
    """Patient ids of ``predictions`` in the ``train`` or ``validation`` split, or ``all``."""
    if patients not in ("all", "train", "validation"):
        raise ValueError(f"patients must be 'all', 'train' or 'validation', got {patients!r}")
    rows = predictions if patients == "all" else predictions[predictions["split"] == patients]
    return rows["patient_id"].astype(str).tolist()


def choose_patient(predictions: pd.DataFrame, patient: str | None = None) -> str:
    """The patient for the waterfall and force plots.

    ``patient`` when given (it must be in ``predictions``); otherwise the validation patient whose predicted
    P(ER) is closest to the median over validation patients (ties: the smaller patient id).
    """
    predictions = predictions.reset_index(drop=True)
    ids = predictions["patient_id"].astype(str)
    if patient is not None:
        if str(patient) not in set(ids):
            raise ValueError(f"explain.patient = {patient!r} has no DL-MIL prediction; choose a patient_id of "
                             "the DL-MIL predictions of notebook 05, or leave it empty for the median-risk patient")
        return str(patient)
    validation = predictions.assign(patient_id=ids)[predictions["split"] == "validation"]
    if validation.empty:
        raise ValueError("no validation patients to choose from; set explain.patient in the params file")
    distance = (validation["prob"] - validation["prob"].median()).abs()
    ranked = validation.assign(distance=distance).sort_values(["distance", "patient_id"])
    return str(ranked["patient_id"].iloc[0])


def check_predictions(result: ShapResult, predictions: pd.DataFrame, tolerance: float = 1e-6) -> float:
    """Largest difference between the explained P(ER) and ``prob`` of the saved predictions; warns above
    ``tolerance`` (the model file and the predictions file would then come from different fits)."""
    saved = predictions.assign(patient_id=predictions["patient_id"].astype(str)).set_index("patient_id")["prob"]
    gap = float(np.max(np.abs(saved.reindex(result.patient_ids).to_numpy() - result.probability)))
    if not gap <= tolerance:
        warnings.warn(f"the DL-MIL model's P(ER) differs from its saved predictions "
                      f"({artifacts.PATIENT_PREDICTIONS.pattern.format(slug=DL_MIL.slug)}) by up to {gap:.2e}: "
                      "the two files come from different fits; rerun notebook 05_models", stacklevel=2)
    return gap


def describe_patient(result: ShapResult, predictions: pd.DataFrame, patient_id: str) -> str:
    """One line about the explained patient: split, observed outcome, predicted P(ER)."""
    row = predictions.assign(patient_id=predictions["patient_id"].astype(str)).set_index("patient_id").loc[patient_id]
    outcome = "early recurrence" if int(row["er"]) == 1 else "no early recurrence"
    prob = result.probability[result.patient_ids.index(patient_id)]
    return f"Patient {patient_id} ({row['split']} set, observed: {outcome}): predicted {OUTPUT_NAME} = {prob:.3f}"


def importance_table(result: ShapResult) -> pd.DataFrame:
    """Per feature: mean |SHAP| (overall contribution) and mean SHAP (net direction), most important first."""
    values = result.explanation.values
    table = pd.DataFrame({"feature": result.feature_names, "mean_abs_shap": np.abs(values).mean(axis=0),
                          "mean_shap": values.mean(axis=0)})
    return table.sort_values("mean_abs_shap", ascending=False, ignore_index=True)


def patient_table(result: ShapResult, patient_id: str) -> pd.DataFrame:
    """One patient's features: raw value, z-score the trees see, SHAP value; by |SHAP|, then base and P(ER)."""
    row = result.row(patient_id)
    raw = row.display_data if row.display_data is not None else np.full(len(row.values), np.nan)
    table = pd.DataFrame({"feature": result.feature_names, "value": raw, "z": row.data, "shap": row.values})
    table = table.reindex(table["shap"].abs().sort_values(ascending=False).index).reset_index(drop=True)
    ends = pd.DataFrame({"feature": ["base value (expected P(ER))", "P(ER) = base + sum of SHAP"],
                         "shap": [float(row.base_values), float(row.base_values) + float(row.values.sum())]})
    return pd.concat([table, ends], ignore_index=True)
