"""Feature selection shared by the DL-MIL, Radiomics and Clinical models (docs/method.md section 5; paper Fig. 4a-c).

Four steps, each fitted on the rows passed in only: all training patients for the final model, or one CV fold's
training rows (``fold_selection.FeatureSelector``, the first step of ``modeling.fit_recipe``'s pipeline, is refitted
in every fold). Each step returns a table of what survived and why, so a notebook can show the funnel:

1. **z-score**: ``StandardScaler`` with the training means and SDs. A feature that is constant on the training
   patients carries no information and is dropped here (with the reason).
2. **univariate**: per feature, Shapiro-Wilk on each outcome group (ER, NER); when both look normal
   (p >= ``normality_alpha``, at least 3 patients per group) Student's t-test (Welch's with
   ``ttest_equal_var: false``), otherwise the two-sided Mann-Whitney U test. Keep ``p < p_threshold``.
3. **correlation**: greedy filter on the training Pearson r. Features are visited in order of univariate p
   (ascending; ties in input order); a feature is kept unless ``|r| > correlation_threshold`` with a feature
   already kept, so of each highly correlated pair the one with the stronger group difference stays.
4. **Lasso**: ``LassoCV`` (least squares on the 0/1 label, as the original tooling) over ``lasso_n_alphas``
   penalties with stratified, shuffled, seeded ``lasso_folds``-fold CV (fewer folds when the minority class has
   fewer training patients, with a warning); lambda = the alpha with the smallest mean CV MSE; keep the features
   with a non-zero coefficient. When coordinate descent stops at ``lasso_max_iter``, scikit-learn's
   ``ConvergenceWarning`` lines are counted into one warning (recorded and raised, as below) that says whether the
   final fit at the chosen lambda is among them.

When nothing survives a step, ``fallback: best_k`` keeps the ``fallback_k`` inputs of that step with the smallest
univariate p (a warning is recorded in ``SelectionResult.warnings`` and raised as ``SelectionWarning``);
``fallback: error`` raises ``SelectionError``. Selection never fails silently and never crashes on weak data.

Example::

    result = select_features(x_train, y_train, params.selection)
    result.funnel()          # features in / out per step
    result.selected          # the final list, in input order
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LassoCV, lasso_path
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from hcc_utils.config import SelectionConfig

STEPS = ["z-score", "univariate", "correlation", "lasso"]


class SelectionError(ValueError):
    """Selection cannot proceed (bad input, or no feature survived a step with ``fallback: error``)."""


class SelectionWarning(UserWarning):
    """A step kept no feature and the fallback was used, or the CV folds were reduced."""


@dataclass
class LassoPath:
    """Data of Fig. 4b: the CV curve (mean squared error per alpha) and the coefficient path."""

    alphas: np.ndarray  # descending, as LassoCV
    mse_mean: np.ndarray  # mean CV MSE per alpha (units of the squared 0/1 label)
    mse_sd: np.ndarray  # SD of the CV MSE over folds
    alpha: float  # the chosen lambda
    coef_path: pd.DataFrame  # index alpha, one column per feature (z-score units)
    n_folds: int


@dataclass
class SelectionResult:
    """The funnel of one selection: per-step tables (feature, ..., kept, reason) and the final list."""

    features_in: list[str]
    scaler: StandardScaler  # fitted on the training rows of all input features
    zscore: pd.DataFrame  # feature, mean, sd, kept, reason
    univariate: pd.DataFrame  # feature, shapiro_p_ner, shapiro_p_er, test, statistic, p, kept, reason
    correlation: pd.DataFrame  # feature, p, max_abs_r, correlated_with, kept, reason
    lasso: pd.DataFrame  # feature, coefficient, kept, reason
    lasso_path: LassoPath | None
    selected: list[str]
    warnings: list[str] = field(default_factory=list)

    def step_tables(self) -> dict[str, pd.DataFrame]:
        return dict(zip(STEPS, [self.zscore, self.univariate, self.correlation, self.lasso], strict=True))

    def funnel(self) -> pd.DataFrame:
        """One row per step: features in, features kept, features dropped."""
        rows = [{"step": step, "features_in": len(table), "kept": int(table["kept"].sum()),
                 "dropped": int((~table["kept"]).sum())} for step, table in self.step_tables().items()]
        return pd.DataFrame(rows)

    def decisions(self) -> pd.DataFrame:
        """One row per input feature: the step where it left (``selected`` if it never did) and the reason."""
        rows = {f: {"feature": f, "left_at": "selected", "reason": ""} for f in self.features_in}
        for step, table in self.step_tables().items():
            for row in table.itertuples():
                if not row.kept:
                    rows[row.feature].update(left_at=step, reason=row.reason)
        return pd.DataFrame(rows.values())

    @property
    def coefficients(self) -> pd.Series:
        """Lasso coefficients of the selected features (Fig. 4c), z-score units, sorted by value."""
        table = self.lasso.set_index("feature")["coefficient"]
        return table.reindex(self.selected).sort_values()


def _ranked(features: list[str], p: pd.Series) -> list[str]:
    """``features`` by univariate p ascending (missing p last), ties in input order."""
    key = p.reindex(features).fillna(np.inf).to_numpy()
    return [features[i] for i in np.argsort(key, kind="stable")]


def _apply_fallback(table: pd.DataFrame, step: str, p: pd.Series, cfg: SelectionConfig,
                    notes: list[str]) -> pd.DataFrame:
    """Keep the best ``fallback_k`` inputs of a step that kept nothing (or raise with ``fallback: error``)."""
    if table["kept"].any() or table.empty:
        return table
    message = (f"{step}: no feature survived; " + ("stopping (fallback: error)" if cfg.fallback == "error" else
               f"keeping the {min(cfg.fallback_k, len(table))} with the smallest univariate p (fallback: best_k)"))
    if cfg.fallback == "error":
        raise SelectionError(message + "; set selection.fallback: best_k to go on with a weak feature set")
    best = _ranked(table["feature"].tolist(), p)[: cfg.fallback_k]
    table = table.copy()
    chosen = table["feature"].isin(best)
    table.loc[chosen, "kept"] = True
    table.loc[chosen, "reason"] = table.loc[chosen, "reason"] + " -> kept by fallback (best p)"
    notes.append(message)
    warnings.warn(message, SelectionWarning, stacklevel=3)
    return table


def zscore_step(x_train: pd.DataFrame) -> tuple[StandardScaler, pd.DataFrame]:
    """Fit the training z-score; drop features constant on the training patients."""
    scaler = StandardScaler().fit(x_train)
    sd = x_train.std(ddof=0)
    constant = (sd <= 1e-12 * np.maximum(1.0, x_train.abs().max())).to_numpy()
    table = pd.DataFrame({"feature": x_train.columns, "mean": scaler.mean_, "sd": np.sqrt(scaler.var_),
                          "kept": ~constant,
                          "reason": np.where(constant, "constant on training patients", "varies")})
    return scaler, table


def _shapiro_p(values: np.ndarray) -> float:
    if len(values) < 3 or np.ptp(values) == 0:
        return np.nan
    return float(stats.shapiro(values).pvalue)


def univariate_tests(x_train: pd.DataFrame, y_train: pd.Series, cfg: SelectionConfig) -> pd.DataFrame:
    """Per feature, ER vs NER on the training patients: Shapiro-Wilk per group, then t-test or Mann-Whitney U.

    Returns feature, shapiro_p_ner, shapiro_p_er, test ("t-test", "Welch t-test" or "Mann-Whitney U"),
    statistic, p (two-sided), mean_ner, mean_er. Also used by notebook 04 for Fig. 4a.
    """
    y = y_train.to_numpy().astype(int)
    rows = []
    for feature in x_train.columns:
        values = x_train[feature].to_numpy(dtype=float)
        ner, er = values[y == 0], values[y == 1]
        p_ner, p_er = _shapiro_p(ner), _shapiro_p(er)
        normal = bool(p_ner >= cfg.normality_alpha and p_er >= cfg.normality_alpha)  # NaN -> not normal
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            if normal:
                test = "t-test" if cfg.ttest_equal_var else "Welch t-test"
                res = stats.ttest_ind(er, ner, equal_var=cfg.ttest_equal_var)
            else:
                test = "Mann-Whitney U"
                res = stats.mannwhitneyu(er, ner, alternative="two-sided")
        rows.append({"feature": feature, "shapiro_p_ner": p_ner, "shapiro_p_er": p_er, "test": test,
                     "statistic": float(res.statistic), "p": float(res.pvalue), "mean_ner": float(ner.mean()),
                     "mean_er": float(er.mean())})
    return pd.DataFrame(rows)


def univariate_step(xz_train: pd.DataFrame, y_train: pd.Series, cfg: SelectionConfig) -> pd.DataFrame:
    """``univariate_tests`` plus kept (``p < p_threshold``) and the reason."""
    table = univariate_tests(xz_train, y_train, cfg)
    kept = (table["p"] < cfg.p_threshold).to_numpy()  # NaN p (no variation at all) -> dropped
    table["kept"] = kept
    table["reason"] = [f"{t}: p = {p:.3g} {'<' if k else '>='} {cfg.p_threshold}" if np.isfinite(p)
                       else f"{t}: no p (no variation)" for t, p, k in zip(table["test"], table["p"], kept,
                                                                           strict=True)]
    return table


def correlation_step(xz_train: pd.DataFrame, p: pd.Series, threshold: float) -> pd.DataFrame:
    """Greedy |Pearson r| filter: visit by p ascending, drop a feature too correlated with one already kept."""
    order = _ranked(list(xz_train.columns), p)
    with np.errstate(all="ignore"):
        r = xz_train[order].corr(method="pearson")
    kept: list[str] = []
    rows = []
    for feature in order:
        partners = r.loc[feature, kept].abs() if kept else pd.Series(dtype=float)
        partners = partners[partners > threshold]
        if len(partners):
            partner = partners.idxmax()
            rows.append({"feature": feature, "p": p.get(feature, np.nan), "max_abs_r": partners.max(),
                         "correlated_with": partner, "kept": False,
                         "reason": f"|r| = {partners.max():.3f} > {threshold} with {partner} (smaller p, kept)"})
        else:
            best = r.loc[feature, kept].abs().max() if kept else np.nan
            kept.append(feature)
            rows.append({"feature": feature, "p": p.get(feature, np.nan), "max_abs_r": best,
                         "correlated_with": "", "kept": True,
                         "reason": f"|r| <= {threshold} with every feature kept before it"})
    return pd.DataFrame(rows)


@contextlib.contextmanager
def _convergence_recorded() -> Iterator[list[str]]:
    """Collect scikit-learn's ``ConvergenceWarning`` messages (for a note) instead of printing them; every other
    warning is re-issued unchanged."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield messages
    for item in caught:
        if issubclass(item.category, ConvergenceWarning):
            messages.append(str(item.message))
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno, source=item.source)


def _convergence_notes(fit_warnings: list[str], path_warnings: list[str], lasso: LassoCV,
                       max_iter: int) -> list[str]:
    """What the book says when coordinate descent stopped at ``lasso_max_iter`` (the LassoCV fits decide the
    features; the separate path only draws Fig. 4b)."""
    notes = []
    final = int(np.max(lasso.n_iter_)) >= max_iter
    if fit_warnings or final:
        where = ("including the final fit at the chosen lambda, whose coefficients decide the kept features"
                 if final else "in the cross-validation fits only; the final fit at the chosen lambda converged")
        notes.append(f"lasso: coordinate descent did not converge within selection.lasso_max_iter = {max_iter} "
                     f"iterations ({len(fit_warnings)} ConvergenceWarning(s) from LassoCV, {where}); raising "
                     "selection.lasso_max_iter may change the chosen lambda or the kept features")
    if path_warnings:
        notes.append(f"lasso: the coefficient path drawn in Fig. 4b did not converge at {len(path_warnings)} "
                     f"penalty(ies) within {max_iter} iterations (the figure only; the selection is unaffected)")
    return notes


def lasso_step(xz_train: pd.DataFrame, y_train: pd.Series, cfg: SelectionConfig,
               notes: list[str]) -> tuple[pd.DataFrame, LassoPath]:
    """LassoCV on the z-scored training features; keep non-zero coefficients. Returns the table and Fig. 4b data."""
    y = y_train.to_numpy().astype(float)
    minority = int(min(y.sum(), len(y) - y.sum()))
    n_folds = min(cfg.lasso_folds, minority)
    if n_folds < cfg.lasso_folds:
        message = (f"lasso: {n_folds}-fold CV instead of {cfg.lasso_folds} (only {minority} training patients "
                   "in the smaller outcome group)")
        notes.append(message)
        warnings.warn(message, SelectionWarning, stacklevel=3)
    folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=cfg.lasso_seed).split(xz_train, y))
    x = xz_train.to_numpy(dtype=float)
    with _convergence_recorded() as fit_warnings:
        lasso = LassoCV(alphas=cfg.lasso_n_alphas, cv=folds, max_iter=cfg.lasso_max_iter,
                        random_state=cfg.lasso_seed).fit(x, y)
    with _convergence_recorded() as path_warnings:
        # LassoCV fits an intercept; the same path on centred data gives the same coefficients.
        _, coefs, _ = lasso_path(x - x.mean(axis=0), y - y.mean(), alphas=lasso.alphas_,
                                 max_iter=cfg.lasso_max_iter)
    for message in _convergence_notes(fit_warnings, path_warnings, lasso, cfg.lasso_max_iter):
        notes.append(message)
        warnings.warn(message, SelectionWarning, stacklevel=3)
    coef = pd.Series(lasso.coef_, index=xz_train.columns)
    kept = (coef != 0).to_numpy()
    table = pd.DataFrame({"feature": coef.index, "coefficient": coef.to_numpy(), "kept": kept,
                          "reason": [f"coefficient {c:+.4f} at lambda = {lasso.alpha_:.4g}" if k else
                                     f"coefficient 0 at lambda = {lasso.alpha_:.4g}" for c, k in zip(coef, kept,
                                                                                                     strict=True)]})
    path = LassoPath(alphas=np.asarray(lasso.alphas_), mse_mean=lasso.mse_path_.mean(axis=1),
                     mse_sd=lasso.mse_path_.std(axis=1), alpha=float(lasso.alpha_),
                     coef_path=pd.DataFrame(coefs.T, index=pd.Index(lasso.alphas_, name="alpha"),
                                            columns=xz_train.columns),
                     n_folds=n_folds)
    return table, path


def _check_inputs(x_train: pd.DataFrame, y_train: pd.Series) -> None:
    if not x_train.index.equals(y_train.index):
        raise SelectionError("features and labels must have the same patients in the same order")
    if x_train.shape[1] == 0:
        raise SelectionError("no features to select from")
    non_numeric = [c for c in x_train.columns if not pd.api.types.is_numeric_dtype(x_train[c])]
    if non_numeric:
        raise SelectionError(f"non-numeric feature column(s) {non_numeric[:5]}; encode them before selection")
    missing = x_train.isna()
    if missing.any().any():
        feature = missing.any().idxmax()
        patients = x_train.index[missing[feature]].tolist()
        raise SelectionError(f"feature {feature!r} is missing for training patient(s) {patients[:5]}; impute "
                             "or exclude them before selection")
    if not set(np.unique(y_train)) <= {0, 1}:
        raise SelectionError(f"labels must be 0/1, got {sorted(np.unique(y_train))[:5]}")
    counts = np.bincount(y_train.to_numpy().astype(int), minlength=2)
    if counts.min() < 2:
        raise SelectionError(f"need at least 2 training patients in each outcome group, have NER {counts[0]}, "
                             f"ER {counts[1]}")


def _not_applied(features: list[str], step: str) -> pd.DataFrame:
    return pd.DataFrame({"feature": features, "kept": True, "reason": f"{step} step not applied"})


def select_features(x_train: pd.DataFrame, y_train: pd.Series, cfg: SelectionConfig,
                    steps: tuple[str, ...] = ("univariate", "correlation", "lasso")) -> SelectionResult:
    """Run the steps on the training patients (rows) and return the funnel.

    Args:
        x_train: training patients only (index patient_id), numeric features, no missing values.
        y_train: 0/1 outcome (ER = 1) aligned with ``x_train``.
        cfg: ``params.selection``.
        steps: which of ``univariate``, ``correlation``, ``lasso`` to apply after the z-score (always applied,
            it drops features constant in training). The clinical model skips all three: its variables were
            already chosen by the paper's own tests (Table 2).
    """
    unknown = set(steps) - {"univariate", "correlation", "lasso"}
    if unknown:
        raise ValueError(f"unknown selection step(s) {sorted(unknown)}")
    _check_inputs(x_train, y_train)
    notes: list[str] = []
    scaler, ztable = zscore_step(x_train)
    xz = pd.DataFrame(scaler.transform(x_train), index=x_train.index, columns=x_train.columns)
    all_p = univariate_tests(xz, y_train, cfg).set_index("feature")["p"]
    ztable = _apply_fallback(ztable, "z-score", all_p, cfg, notes)

    current = ztable.loc[ztable["kept"], "feature"].tolist()
    utable = (_apply_fallback(univariate_step(xz[current], y_train, cfg), "univariate", all_p, cfg, notes)
              if "univariate" in steps else _not_applied(current, "univariate"))

    current = utable.loc[utable["kept"], "feature"].tolist()
    ctable = (correlation_step(xz[current], all_p, cfg.correlation_threshold)
              if "correlation" in steps else _not_applied(current, "correlation"))

    current = ctable.loc[ctable["kept"], "feature"].tolist()
    path = None
    if "lasso" in steps:
        ltable, path = lasso_step(xz[current], y_train, cfg, notes)
        ltable = _apply_fallback(ltable, "lasso", all_p, cfg, notes)
    else:
        ltable = _not_applied(current, "lasso").assign(coefficient=np.nan)

    chosen = set(ltable.loc[ltable["kept"], "feature"])
    selected = [f for f in x_train.columns if f in chosen]
    return SelectionResult(features_in=list(x_train.columns), scaler=scaler, zscore=ztable, univariate=utable,
                           correlation=ctable, lasso=ltable, lasso_path=path, selected=selected, warnings=notes)
