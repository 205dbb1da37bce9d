"""The Combined model: the DL-MIL score and the Clinical model's variables in one logistic regression, drawn as a
nomogram (docs/method.md section 5, "Combined"; not in the paper, issue 16).

Inputs, per patient:

- the **DL-MIL score**: ``logit(p)`` of DL-MIL's probability of ER, ``p`` clipped to ``[EPS, 1 - EPS]`` first
  (ExtraTrees gives exactly 0 or 1). For a training patient ``p`` is its OUT-OF-FOLD probability (``prob_oof`` of
  ``predictions/dl_mil_patients.csv``: the DL-MIL recipe fitted without the patient's CV fold), so the regression
  learns how much an out-of-sample score is worth, not how well ExtraTrees separates its own training patients
  (the apparent ``prob`` would get a weight it never earns on new patients). For a validation patient ``p`` is the
  final DL-MIL model's ``prob``;
- the **clinical variables** the Clinical model uses (``models/clinical_features.json``), encoded and with missing
  values handled as for the Clinical model (``clinical.model_inputs``: ``clinical.missing``, training medians or
  modes only).

**Model.** scikit-learn's ``LogisticRegression`` on the z-scored inputs (scaler fitted on training patients),
*weakly* penalised: L2 with ``C = PENALTY_C`` (100). With one score and a few clinical variables on 100-odd
training patients the penalty moves a coefficient by well under 1 % (it adds ``|b|^2 / 200`` to a log-likelihood
whose curvature is of the order of the number of patients), so the estimates are, to the printed digits, the
maximum-likelihood ones a nomogram is read as. It is there for small or well-separated training sets (a strong
DL-MIL score on the smoke book's 33 training patients): unpenalised, the coefficients of separable data have no
finite estimate and the solver stops wherever its iterations end; with the weak penalty they stay finite and
reproducible. The coefficients are reported on the raw scale (per unit of each variable, per unit of logit for
the score): ``b_raw = b_z / sd`` and the intercept shifted by ``sum(b_z * mean / sd)``, training mean and SD.

**Coefficients table** (``tables/combined_coefficients.csv``): term, coefficient (raw units, the fit above), odds
ratio ``exp(coefficient)``, its Wald confidence interval at ``evaluation.ci_level`` and Wald p, the last three
from an unpenalised statsmodels ``Logit`` on the same training rows (maximum likelihood: its estimates agree with
the coefficient column to the penalty's < 1 %). When the training patients are separable, or the fit does not
converge, the interval and p are left empty with a note.

**Predictions.** Only training rows reach the scaler and the regression. ``prob``: the model fitted on all
training patients (apparent for them). ``prob_oof``: for training patients, stratified K-fold on the training
patients (``model.cv_folds``, fewer when an outcome group is smaller, seeded by ``model.seed``), the scaler and the
regression refitted without the patient's fold; for validation patients equal to ``prob``. Two choices are not
redone per fold: the clinical variables (chosen by Table 2's tests on all training patients, as for the Clinical
model) and the training patients' DL-MIL scores (already out-of-fold, from DL-MIL's own folds).

Example::

    >>> combined = fit_from_run(load_cohort(params, run), params, run)   # writes the files below
    >>> combined.coefficients                   # term, coefficient, odds_ratio, or_low, or_high, p
    >>> combined.nomogram_axes()                # for plots.nomogram

Writes ``predictions/combined_patients.csv`` (``artifacts.PATIENT_PREDICTIONS``), ``models/combined.joblib``,
``models/combined_features.json`` and ``tables/combined_coefficients.csv``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.special import logit
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hcc_utils import artifacts, clinical, model_registry
from hcc_utils.config import Params
from hcc_utils.run_folder import RunFolder

NAME = "Combined"
SCORE_TERM = "dl_mil_score"
"""The DL-MIL score's column: logit of DL-MIL's P(ER) (out-of-fold for training patients)."""
INTERCEPT_TERM = "(intercept)"
EPS = 1e-3
"""Probabilities are clipped to [EPS, 1 - EPS] before the logit (the score spans -6.9 to 6.9)."""
PENALTY_C = 100.0
"""Inverse L2 strength of the regression on z-scored inputs (module docstring)."""
COEFFICIENT_COLUMNS = list(artifacts.COMBINED_COEFFICIENTS.columns)
TERM_LABELS = {SCORE_TERM: "DL-MIL score (logit P)"}


class CombinedError(ValueError):
    """Inputs the Combined model cannot use; the message says which and what to do."""


@dataclass
class CombinedModel:
    """The Combined section of notebook 05.

    Attributes:
        variables: the clinical variables (from the Clinical model); terms: the score, then those variables.
        inputs: every patient's model inputs (index patient_id): the score (logit units) and the variables (their
            own units, after ``clinical.missing``).
        er, split: per patient (index patient_id).
        pipeline: StandardScaler -> LogisticRegression, fitted on the training patients.
        intercept, raw: the fitted intercept and coefficients per term on the raw scale (log-odds per unit).
        coefficients: the table (``COEFFICIENT_COLUMNS``): the intercept row, then one row per term.
        predictions: patient_id, split, er, prob, prob_oof (fractions; module docstring).
        imputation: what ``clinical.model_inputs`` did per variable; n_folds: the out-of-fold folds.
    """

    variables: list[str]
    terms: list[str]
    inputs: pd.DataFrame
    er: pd.Series
    split: pd.Series
    pipeline: Pipeline
    intercept: float
    raw: pd.Series
    coefficients: pd.DataFrame
    predictions: pd.DataFrame
    imputation: pd.DataFrame
    n_folds: int
    notes: list[str] = field(default_factory=list)
    name: str = NAME  # with ``notes``, what ``notebook.show_notes`` reads

    def training_inputs(self) -> pd.DataFrame:
        """The training patients' inputs: what the regression was fitted on."""
        return self.inputs.loc[self.split == "train", self.terms]

    def nomogram_axes(self) -> pd.DataFrame:
        """One row per term for ``plots.nomogram``: term, label, coefficient (log-odds per unit), low and high (the
        training range), levels (value -> label for a categorical variable, else None)."""
        train = self.training_inputs()
        rows = [{"term": term, "label": TERM_LABELS.get(term, clinical.LABELS.get(term, term)),
                 "coefficient": float(self.raw[term]), "low": float(train[term].min()),
                 "high": float(train[term].max()), "levels": clinical.LEVELS.get(term)} for term in self.terms]
        return pd.DataFrame(rows)


def dl_mil_score(predictions: pd.DataFrame) -> pd.Series:
    """The DL-MIL score per patient (index patient_id): logit of ``prob_oof`` for training patients and of
    ``prob`` for validation patients, clipped to [EPS, 1 - EPS] first."""
    table = predictions.assign(patient_id=predictions["patient_id"].astype(str)).set_index("patient_id")
    train = table["split"] == "train"
    prob = pd.to_numeric(table["prob"].where(~train, table["prob_oof"]), errors="coerce")
    bad = table.index[~np.isfinite(prob) | (prob < 0) | (prob > 1)].tolist()
    if bad:
        raise CombinedError(f"DL-MIL predictions: no usable probability (prob_oof for training patients, prob for "
                            f"validation ones) for patients {bad[:5]}; re-run notebook 05's DL-MIL section")
    return pd.Series(logit(prob.clip(EPS, 1 - EPS).to_numpy(float)), index=table.index, name=SCORE_TERM)


def _pipeline() -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(C=PENALTY_C, max_iter=5000))])


def _raw_coefficients(pipeline: Pipeline, terms: list[str]) -> tuple[float, pd.Series]:
    scaler, model = pipeline.named_steps["scale"], pipeline.named_steps["model"]
    raw = model.coef_[0] / scaler.scale_
    return float(model.intercept_[0] - np.sum(raw * scaler.mean_)), pd.Series(raw, index=terms)


def _wald(x: pd.DataFrame, y: pd.Series, level: float, notes: list[str]) -> pd.DataFrame:
    """Unpenalised maximum likelihood (statsmodels): odds-ratio Wald CI and p per term (index: the intercept term,
    then ``x``'s columns); NaN with a note when the training patients are separable or the fit fails."""
    index = [INTERCEPT_TERM, *x.columns]
    empty = pd.DataFrame({"or_low": np.nan, "or_high": np.nan, "p": np.nan}, index=index)
    exog = sm.add_constant(x.to_numpy(float), has_constant="add")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = sm.Logit(y.to_numpy(float), exog).fit(disp=0, maxiter=200)
    except Exception as exc:  # noqa: BLE001 (statsmodels raises several kinds; each becomes the note)
        notes.append(f"odds-ratio intervals and p left empty: the unpenalised fit failed ({exc})")
        return empty
    trouble = [str(w.message) for w in caught if "separation" in str(w.message).lower()
               or "converge" in str(w.message).lower()]
    if trouble or not fit.mle_retvals.get("converged", False):
        notes.append("odds-ratio intervals and p left empty: the training patients are (quasi-)separable or the "
                     f"unpenalised fit did not converge ({'; '.join(trouble) or 'not converged'})")
        return empty
    low, high = np.asarray(fit.conf_int(1 - level)).T
    return pd.DataFrame({"or_low": np.exp(low), "or_high": np.exp(high), "p": np.asarray(fit.pvalues)},
                        index=index)


def _folds(y: pd.Series, params: Params, notes: list[str]) -> list:
    minority = int(y.value_counts().min()) if y.nunique() == 2 else 0
    if minority < 2:
        raise CombinedError(f"Combined model: need at least 2 training patients in each outcome group, have "
                            f"{y.value_counts().to_dict()}")
    n_folds = min(params.model.cv_folds, minority)
    if n_folds < params.model.cv_folds:
        notes.append(f"out-of-fold predictions: {n_folds}-fold CV instead of {params.model.cv_folds} (only "
                     f"{minority} training patients in the smaller outcome group)")
    cv = StratifiedKFold(n_folds, shuffle=True, random_state=params.model.seed)
    return list(cv.split(np.zeros(len(y)), y))


def fit_combined(cohort: pd.DataFrame, dl_mil: pd.DataFrame, variables: list[str], params: Params
                 ) -> CombinedModel:
    """Fit the Combined model on the training patients and predict every patient (module docstring).

    Args:
        cohort: ``cohort.load_cohort``: patient_id, er, split and the clinical columns.
        dl_mil: DL-MIL's per-patient predictions (``artifacts.read_patient_predictions(run, "dl_mil")``).
        variables: the clinical variables (the Clinical model's ``features``; may be empty).
        params: the run's parameters (``clinical``, ``model.cv_folds``, ``model.seed``, ``evaluation.ci_level``).

    Patients need a DL-MIL score and the variables (after ``clinical.missing``); the others are left out with a
    note. Only training rows reach the fits; validation rows are only predicted.
    """
    notes: list[str] = []
    ids = cohort.assign(patient_id=cohort["patient_id"].astype(str)).set_index("patient_id")
    score = dl_mil_score(dl_mil)
    values, imputation = clinical.model_inputs(cohort, params, list(variables))
    patients = [p for p in ids.index if p in score.index and p in values.index]
    missing = len(ids) - len(patients)
    if missing:
        notes.append(f"{missing} patient(s) of the cohort without a DL-MIL score or clinical values: left out")
    inputs = pd.concat([score.loc[patients], values.loc[patients]], axis=1)
    er, split = ids.loc[patients, "er"].astype(int), ids.loc[patients, "split"]
    dl_split = dl_mil.assign(patient_id=dl_mil["patient_id"].astype(str)).set_index("patient_id")["split"]
    moved = [p for p in patients if dl_split.loc[p] != split.loc[p]]
    if moved:
        raise CombinedError(f"patients {moved[:5]} are in another set in the DL-MIL predictions than in the cohort's "
                            "split; re-run notebook 05 from the start")
    train = split == "train"
    constant = [t for t in inputs.columns if inputs.loc[train, t].nunique() < 2]
    if constant:
        notes.append(f"constant on the training patients, left out: {constant}")
    terms = [t for t in inputs.columns if t not in constant]
    if not terms:
        raise CombinedError("Combined model: no input varies over the training patients")
    x_train, y_train = inputs.loc[train, terms], er[train]
    folds = _folds(y_train, params, notes)
    pipeline = _pipeline().fit(x_train, y_train)
    oof = np.full(len(y_train), np.nan)
    for fit_rows, held_out in folds:
        fold = clone(_pipeline()).fit(x_train.iloc[fit_rows], y_train.iloc[fit_rows])
        oof[held_out] = fold.predict_proba(x_train.iloc[held_out])[:, 1]
    prob = pipeline.predict_proba(inputs[terms])[:, 1]
    predictions = pd.DataFrame({"patient_id": patients, "split": split.to_numpy(), "er": er.to_numpy(),
                                "prob": prob, "prob_oof": prob})
    predictions.loc[train.to_numpy(), "prob_oof"] = oof
    intercept, raw = _raw_coefficients(pipeline, terms)
    wald = _wald(x_train, y_train, params.evaluation.ci_level, notes)
    coefficients = pd.DataFrame({"term": [INTERCEPT_TERM, *terms], "coefficient": [intercept, *raw]})
    coefficients["odds_ratio"] = np.exp(coefficients["coefficient"])
    coefficients = coefficients.join(wald, on="term")[COEFFICIENT_COLUMNS]
    return CombinedModel(variables=list(variables), terms=terms, inputs=inputs, er=er, split=split,
                         pipeline=pipeline, intercept=intercept, raw=raw, coefficients=coefficients,
                         predictions=predictions, imputation=imputation, n_folds=len(folds), notes=notes)


def save_combined(model: CombinedModel, run: RunFolder) -> None:
    """Write the pipeline, its summary, the predictions and the coefficients table (module docstring)."""
    slug = model_registry.spec(NAME).slug
    artifacts.write_pipeline(run, slug, model.pipeline)
    artifacts.write_model_summary(run, slug, {"model": NAME, "features": model.terms, "penalty_c": PENALTY_C,
                                              "intercept": model.intercept, "coefficients": model.raw.to_dict(),
                                              "n_folds": model.n_folds, "notes": model.notes})
    artifacts.write_patient_predictions(run, slug, model.predictions)
    artifacts.write_table(run, artifacts.COMBINED_COEFFICIENTS, model.coefficients)


def fit_from_run(cohort: pd.DataFrame, params: Params, run: RunFolder) -> CombinedModel:
    """Notebook 05: read DL-MIL's predictions and the Clinical model's variables from ``run``, fit, write."""
    dl_mil = artifacts.read_patient_predictions(run, model_registry.DL_MIL.slug)
    variables = artifacts.read_model_summary(run, model_registry.spec("Clinical").slug)["features"]
    model = fit_combined(cohort, dl_mil, variables, params)
    save_combined(model, run)
    return model
