"""Clinical variables: Table 2 (baseline characteristics), variable selection and the Clinical model.

docs/method.md sections 5-6, paper Table 2: per set (train, validation), NER vs ER, mean +- SD for continuous
variables and n (%) per level for categorical ones, with the p-value and the test used. Continuous:
Shapiro-Wilk per group decides Student's t-test or Mann-Whitney U (``selection.univariate_tests``, the shared
recipe's own test). Categorical: chi-square, or Fisher's exact test when an expected count is below 5
(``clinical.categorical_test``; the paper's p-values match Yates-corrected chi-square throughout). Tests use
the observed values.

The Clinical model takes the variables with training p < ``clinical.p_threshold`` (paper: AFP and gender)
through the shared recipe (``modeling.fit_recipe``, no selection step after the z-score). The variables are chosen
once on all training patients, before the recipe; the recipe's out-of-fold predictions do not redo that choice.
Codings: gender M = 1, F = 0; alcohol 1 = yes. Missing values of the model's inputs follow ``clinical.missing``:
``median_impute_train`` fills with the training median (continuous) or mode (categorical) and reports the counts;
``drop_patient`` leaves out patients missing a selected variable.

Example::

    >>> table2(cohort, params)                 # variable, set, NER, ER, p, test
    >>> model = fit_clinical_model(cohort, params, run)
    >>> model.selected, model.imputation
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from hcc_utils.cohort import SPLITS
from hcc_utils.config import Params
from hcc_utils.modeling import RecipeResult, fit_recipe
from hcc_utils.run_folder import RunFolder
from hcc_utils.selection import univariate_tests

LABELS = {"age": "Age", "bmi": "BMI", "hbsag": "HBsAg", "afp": "AFP", "alb": "ALB", "ast": "AST",
          "alt": "ALT", "gender": "Gender", "alcohol": "Alcohol consumption history"}
LEVELS = {"gender": {0: "Female", 1: "Male"}, "alcohol": {0: "No", 1: "Yes"}}
TABLE2_STATS = ("n", "mean", "sd", "median", "q1", "q3", "percent")
TABLE2_COLUMNS = ["variable", "set", "NER", "ER", "p", "test", "kind", "level",
                  *(f"{group}_{stat}" for group in ("ner", "er") for stat in TABLE2_STATS)]
"""Table 2's columns: the paper's text cells (NER, ER), then the numbers behind them per group (``ner_*``, ``er_*``):
n (patients with a value; for a level row, at that level), mean, SD, median, quartiles, percent (level rows).
``kind``: patients, continuous, categorical (a variable's header row) or level."""


class ClinicalError(ValueError):
    """Clinical data the analysis cannot use; the message names the variable and what to do."""


def encode(cohort: pd.DataFrame, params: Params) -> pd.DataFrame:
    """The clinical variables as numbers (index patient_id): gender M -> 1, F -> 0; missing stays NaN."""
    cfg = params.clinical
    columns = cfg.continuous + cfg.categorical
    absent = [c for c in columns if c not in cohort.columns]
    if absent:
        raise ClinicalError(f"clinical variable(s) {absent} are not in the manifest; map them with "
                            "cohort.columns or remove them from clinical.continuous / clinical.categorical")
    table = cohort.set_index(cohort["patient_id"].astype(str))[columns].copy()
    if "gender" in table:
        table["gender"] = table["gender"].map({"M": 1, "F": 0, 1: 1, 0: 0})
    return table.apply(pd.to_numeric, errors="coerce").astype(float)


def _numbers(values: pd.Series, prefix: str) -> dict:
    """A continuous variable's summary in one group (observed values only): n, mean, SD, median, quartiles."""
    values = values.dropna().astype(float)
    q1, median, q3 = values.quantile([0.25, 0.5, 0.75]).tolist() if len(values) else (np.nan,) * 3
    return {f"{prefix}_n": len(values), f"{prefix}_mean": values.mean() if len(values) else np.nan,
            f"{prefix}_sd": values.std(ddof=1) if len(values) > 1 else np.nan, f"{prefix}_median": median,
            f"{prefix}_q1": q1, f"{prefix}_q3": q3}


def _mean_sd(values: pd.Series) -> str:
    values = values.dropna()
    if len(values) < 2:
        return f"{values.mean():.2f}" if len(values) else "–"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def categorical_test(counts: pd.DataFrame, params: Params) -> tuple[float, str]:
    """p-value and test name for a levels x groups table of counts (levels with no patient removed)."""
    cfg = params.clinical
    counts = counts.loc[counts.sum(axis=1) > 0, counts.sum(axis=0) > 0]
    if counts.shape[0] < 2 or counts.shape[1] < 2:
        return np.nan, "not tested (one level only)"
    table = counts.to_numpy()
    chi2 = stats.chi2_contingency(table, correction=cfg.yates_correction)
    if cfg.categorical_test == "chi2_or_fisher" and chi2.expected_freq.min() < 5:
        if table.shape == (2, 2):
            return float(stats.fisher_exact(table).pvalue), "Fisher's exact"
        return float(chi2.pvalue), "chi-square (expected count < 5)"
    yates = cfg.yates_correction and table.shape == (2, 2)
    return float(chi2.pvalue), "chi-square (Yates)" if yates else "chi-square"


def compare_groups(values: pd.Series, er: pd.Series, kind: str, params: Params) -> tuple[float, str]:
    """ER vs NER test of one variable on the patients where it is observed: (p, test name)."""
    observed = values.notna()
    values, er = values[observed], er[observed].astype(int)
    if er.nunique() < 2 or er.value_counts().min() < 2:
        return np.nan, "not tested (fewer than 2 patients in a group)"
    if values.nunique() < 2:
        return np.nan, "not tested (constant)"
    if kind == "categorical":
        return categorical_test(pd.crosstab(values, er), params)
    result = univariate_tests(values.to_frame(), er, params.selection).iloc[0]
    return float(result["p"]), str(result["test"])


def _rows_for_set(encoded: pd.DataFrame, er: pd.Series, name: str, params: Params) -> list[dict]:
    cfg = params.clinical
    groups = {0: er[er == 0].index, 1: er[er == 1].index}
    rows = [{"variable": "Patients, n", "set": name, "NER": str(len(groups[0])), "ER": str(len(groups[1])),
             "p": np.nan, "test": "", "kind": "patients", "ner_n": len(groups[0]), "er_n": len(groups[1])}]
    for var in cfg.continuous:
        p, test = compare_groups(encoded[var], er, "continuous", params)
        rows.append({"variable": LABELS.get(var, var), "set": name,
                     "NER": _mean_sd(encoded.loc[groups[0], var]),
                     "ER": _mean_sd(encoded.loc[groups[1], var]), "p": p, "test": test, "kind": "continuous",
                     **_numbers(encoded.loc[groups[0], var], "ner"), **_numbers(encoded.loc[groups[1], var], "er")})
    for var in cfg.categorical:
        p, test = compare_groups(encoded[var], er, "categorical", params)
        rows.append({"variable": LABELS.get(var, var), "set": name, "NER": "", "ER": "", "p": p,
                     "test": test, "kind": "categorical"})
        observed = encoded[var].dropna()
        levels = LEVELS.get(var) or {v: f"{v:g}" for v in sorted(observed.unique())}
        for value, level in levels.items():
            cells = {}
            for group, ids in groups.items():
                seen = observed.reindex(ids).dropna()
                n = int((seen == value).sum())
                share = f"{n} ({100 * n / len(seen):.2f}%)" if len(seen) else "–"
                prefix = "ner" if group == 0 else "er"
                cells |= {prefix.upper(): share, f"{prefix}_n": n,
                          f"{prefix}_percent": 100 * n / len(seen) if len(seen) else np.nan}
            rows.append({"variable": f"{LABELS.get(var, var)}: {level}", "set": name, **cells, "p": np.nan,
                         "test": "", "kind": "level", "level": level})
    return rows


def table2(cohort: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Table 2: baseline characteristics by ER group, for train and validation separately (observed values).

    Columns ``TABLE2_COLUMNS``: variable, set, NER, ER, p, test, then kind, level and the numbers behind each
    cell. Continuous rows read "mean ± SD"; each categorical variable has a header row with its p-value and one row
    per level with "n (%)" (percent of the group's observed values). ``hcc_utils.paper_tables.table2`` lays it
    out as the paper does (median (IQR) where the test was Mann-Whitney U).
    """
    encoded = encode(cohort, params)
    er = cohort.set_index(cohort["patient_id"].astype(str))["er"].astype(int)
    split = cohort.set_index(cohort["patient_id"].astype(str))["split"]
    rows = []
    for name in SPLITS:
        ids = split.index[split == name]
        if len(ids):
            rows += _rows_for_set(encoded.loc[ids], er.loc[ids], name, params)
    return pd.DataFrame(rows, columns=TABLE2_COLUMNS)


def missing_table(cohort: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Missing values per variable and set (variable, set, missing, n), for the book."""
    encoded = encode(cohort, params)
    split = cohort.set_index(cohort["patient_id"].astype(str))["split"]
    rows = [{"variable": var, "set": name, "missing": int(encoded.loc[split == name, var].isna().sum()),
             "n": int((split == name).sum())} for var in encoded.columns for name in SPLITS]
    return pd.DataFrame(rows)


def select_variables(cohort: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Training-set tests of every clinical variable: variable, kind, test, p, selected, note.

    Selected: p < ``clinical.p_threshold``. A variable constant on the training patients is not tested and not
    selected (noted). When nothing is selected, ``selection.fallback`` applies: ``best_k`` keeps the
    ``selection.fallback_k`` variables with the smallest p (noted), ``error`` raises.
    """
    cfg = params.clinical
    train = cohort[cohort["split"] == "train"]
    encoded = encode(train, params)
    er = train.set_index(train["patient_id"].astype(str))["er"].astype(int)
    rows = []
    for kind, names in (("continuous", cfg.continuous), ("categorical", cfg.categorical)):
        for var in names:
            p, test = compare_groups(encoded[var], er, kind, params)
            selected = bool(np.isfinite(p) and p < cfg.p_threshold)
            note = ("constant on the training patients: not selected" if test == "not tested (constant)"
                    else f"p {'<' if selected else '>='} {cfg.p_threshold}" if np.isfinite(p) else test)
            rows.append({"variable": var, "kind": kind, "test": test, "p": p, "selected": selected,
                         "note": note})
    table = pd.DataFrame(rows)
    if not table["selected"].any():
        if params.selection.fallback == "error":
            raise ClinicalError(f"no clinical variable has training p < {cfg.p_threshold}; set "
                                "selection.fallback: best_k to model the best ones anyway")
        best = table["p"].dropna().nsmallest(params.selection.fallback_k).index
        table.loc[best, "selected"] = True
        table.loc[best, "note"] += " -> kept by fallback (smallest p)"
        warnings.warn(f"no clinical variable has training p < {cfg.p_threshold}; the Clinical model uses the "
                      f"{len(best)} with the smallest p", UserWarning, stacklevel=2)
    return table


def model_inputs(cohort: pd.DataFrame, params: Params,
                 variables: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model's input table (index patient_id) under ``clinical.missing``, and what was done per variable.

    The report has variable, set, missing, action, value (the training median / mode, or patients dropped).
    """
    encoded = encode(cohort, params)[variables]
    split = cohort.set_index(cohort["patient_id"].astype(str))["split"]
    train = split.index[split == "train"]
    rows = []
    if params.clinical.missing == "median_impute_train":
        for var in variables:
            kind = "categorical" if var in params.clinical.categorical else "continuous"
            observed = encoded.loc[train, var].dropna()
            if observed.empty:
                raise ClinicalError(f"variable {var!r} is missing for every training patient; remove it from "
                                    f"clinical.{kind}")
            fill = float(observed.median() if kind == "continuous" else observed.mode().min())
            action = f"filled with the training {'median' if kind == 'continuous' else 'mode'}"
            for name in SPLITS:
                n = int(encoded.loc[split == name, var].isna().sum())
                rows.append({"variable": var, "set": name, "missing": n, "action": action, "value": fill})
            encoded[var] = encoded[var].fillna(fill)
    else:
        incomplete = encoded.isna().any(axis=1)
        for name in SPLITS:
            rows.append({"variable": ", ".join(variables), "set": name,
                         "missing": int((incomplete & (split == name)).sum()),
                         "action": "patients dropped", "value": np.nan})
        encoded = encoded[~incomplete]
    return encoded, pd.DataFrame(rows, columns=["variable", "set", "missing", "action", "value"])


@dataclass
class ClinicalModel:
    """The Clinical chapter of notebook 05: the training tests, the model's inputs and the recipe's result."""

    tests: pd.DataFrame
    selected: list[str]
    features: pd.DataFrame
    imputation: pd.DataFrame
    recipe: RecipeResult
    notes: list[str] = field(default_factory=list)
    name: str = "Clinical"  # with ``notes``, what ``notebook.show_notes`` reads


def fit_clinical_model(cohort: pd.DataFrame, params: Params, run: RunFolder | None = None) -> ClinicalModel:
    """Select variables on the training patients, apply the missing-value policy, fit the recipe as
    "Clinical".

    As in the paper, the variables with p < ``clinical.p_threshold`` in training (Table 2's tests) go straight
    to the recipe's SMOTE + ExtraTrees (``modeling.fit_recipe`` with no further selection step; the z-score only
    drops a variable constant in training).
    """
    tests = select_variables(cohort, params)
    selected = tests.loc[tests["selected"], "variable"].tolist()
    features, imputation = model_inputs(cohort, params, selected)
    notes = [f"{row.variable}: {row.note}" for row in tests.itertuples() if "not selected" in row.note
             or "fallback" in row.note]
    ids = cohort.set_index(cohort["patient_id"].astype(str))
    recipe = fit_recipe(features, ids["er"], ids["split"], params, "Clinical", run, selection_steps=())
    dropped = sorted(set(selected) - set(recipe.features))
    if dropped:
        notes.append(f"constant in training, left out of the model: {dropped}")
    return ClinicalModel(tests=tests, selected=selected, features=features, imputation=imputation,
                         recipe=recipe, notes=notes + recipe.notes)
