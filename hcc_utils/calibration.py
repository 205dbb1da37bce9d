"""Calibration of predicted probabilities (docs/method.md section 6): calibration curve, Brier score, calibration
intercept and slope by logistic recalibration.

- Calibration curve: patients grouped into bins of predicted probability (equal-count ``"quantile"`` bins by
  default, or equal-width ``"uniform"`` bins); per bin the mean predicted probability against the observed
  fraction with ER (scikit-learn's ``calibration_curve``).
- Brier score: mean squared difference between probability and outcome (0 is perfect; a constant prediction at
  the prevalence p scores p(1 - p)).
- Calibration intercept ("calibration-in-the-large"): alpha in ``logit P(y=1) = alpha + logit(prob)``, the
  logit of the prediction entering as an offset; 0 is ideal, > 0 means risks are underestimated on average.
- Calibration slope: beta in ``logit P(y=1) = a + beta * logit(prob)``; 1 is ideal, < 1 means predictions are
  too extreme (overfitting), > 1 too modest. Both are fitted by maximum likelihood with statsmodels (binomial
  GLM), as in Van Calster et al. (2016, J Clin Epidemiol 74:167) and Steyerberg's *Clinical Prediction
  Models*.

Tree ensembles output probabilities of exactly 0 or 1; they are clipped to ``[eps, 1 - eps]`` before the
logit. When the predictions separate the outcomes perfectly (common for apparent training predictions of
ExtraTrees) the slope has no finite maximum-likelihood estimate and is reported as NaN, with the reason in
``note``. A logistic fit that does not converge within ``max_iter`` IRLS iterations, or fails, also gives NaN
with the reason in ``note`` (statsmodels reports non-convergence only through ``converged``); statsmodels'
convergence and separation warnings raised during a fit are turned into that note, and any other warning is
passed on unchanged. ``comparison.calibration_table`` shows the note beside the numbers.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.special import logit
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationError, PerfectSeparationWarning

from hcc_utils.stats import check_inputs

DEFAULT_EPS = 1e-3
DEFAULT_MAX_ITER = 100  # statsmodels' own default for IRLS
EXPECTED_WARNINGS = (ConvergenceWarning, PerfectSeparationWarning)
"""The statsmodels warnings a logistic recalibration can raise; each becomes part of the ``note``."""


def _checked_probabilities(y_true, prob) -> tuple[np.ndarray, np.ndarray]:
    y, p = check_inputs(y_true, prob, "prob")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"prob must be probabilities in [0, 1], found range [{p.min():g}, {p.max():g}]")
    return y, p


def calibration_curve_table(y_true, prob, n_bins: int = 5, strategy: str = "quantile") -> pd.DataFrame:
    """Observed fraction with ER against mean predicted probability per bin (empty bins are left out).

    Returns:
        DataFrame with columns ``mean_predicted``, ``observed_fraction`` (both fractions), one row per bin.
    """
    if strategy not in ("quantile", "uniform"):
        raise ValueError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    y, p = _checked_probabilities(y_true, prob)
    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    return pd.DataFrame({"mean_predicted": predicted, "observed_fraction": observed})


def brier_score(y_true, prob) -> float:
    """Brier score: mean of (prob - y)^2 over patients (a fraction in [0, 1], lower is better)."""
    y, p = _checked_probabilities(y_true, prob)
    return float(brier_score_loss(y, p))


def _separated(lp: np.ndarray, y: np.ndarray) -> bool:
    """True when the linear predictor orders the two classes without overlap, ties at the boundary allowed
    (complete or quasi-complete separation: the slope MLE is infinite)."""
    lo0, hi0 = lp[y == 0].min(), lp[y == 0].max()
    lo1, hi1 = lp[y == 1].min(), lp[y == 1].max()
    return bool(hi0 <= lo1 or hi1 <= lo0)


def _logistic_fit(what: str, y: np.ndarray, exog: np.ndarray, offset: np.ndarray | None,
                  max_iter: int) -> tuple[np.ndarray | None, str]:
    """A binomial GLM's coefficients, or ``None`` and why (not converged, failed); ``EXPECTED_WARNINGS`` are
    turned into the returned text, every other warning is re-issued as it came."""
    problem = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EXPECTED_WARNINGS)
        try:
            fit = sm.GLM(y, exog, family=sm.families.Binomial(), offset=offset).fit(maxiter=max_iter)
        except (PerfectSeparationError, np.linalg.LinAlgError, ValueError) as exc:
            fit, problem = None, f"{what} fit failed ({type(exc).__name__}: {exc})"
    expected = []
    for item in caught:
        if issubclass(item.category, EXPECTED_WARNINGS):
            expected.append(f"{item.category.__name__}: {item.message}")
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno, source=item.source)
    if fit is not None and not fit.converged:
        problem = f"{what} fit did not converge in {max_iter} IRLS iteration(s)"
    if fit is not None and not problem and not np.all(np.isfinite(fit.params)):
        problem = f"{what} fit gave a non-finite estimate"
    if problem:
        said = "; ".join(dict.fromkeys(expected))
        return None, problem + (f" (statsmodels: {said})" if said else "") + f"; {what} left empty"
    if expected:  # converged, finite, yet warned: keep the value, say what statsmodels said
        return fit.params, f"{what} fit warned ({'; '.join(dict.fromkeys(expected))})"
    return fit.params, ""


def calibration_intercept_slope(y_true, prob, eps: float = DEFAULT_EPS,
                                max_iter: int = DEFAULT_MAX_ITER) -> dict[str, float | str]:
    """Calibration intercept (calibration-in-the-large) and slope by logistic recalibration.

    Args:
        y_true: 0/1 outcomes.
        prob: predicted probabilities in [0, 1].
        eps: probabilities are clipped to ``[eps, 1 - eps]`` before the logit (trees output exact 0 and 1).
        max_iter: IRLS iterations allowed per logistic fit.

    Returns:
        ``{"intercept", "slope", "note"}`` (intercept and slope on the logit scale). ``slope`` is NaN, and
        ``note`` says why, when the predictions separate the outcomes perfectly or do not vary; either value is
        NaN, with the reason in ``note``, when its fit did not converge or failed.
    """
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    y, p = _checked_probabilities(y_true, prob)
    lp = logit(np.clip(p, eps, 1 - eps))
    params, intercept_note = _logistic_fit("intercept", y, np.ones((len(y), 1)), lp, max_iter)
    intercept = float("nan") if params is None else float(params[0])
    notes = [intercept_note] if intercept_note else []
    if np.ptp(lp) == 0:
        notes.append("predictions do not vary; slope undefined")
        return {"intercept": intercept, "slope": float("nan"), "note": "; ".join(notes)}
    if _separated(lp, y):
        notes.append("the predictions do not overlap between the outcomes (one group scores at least as high as "
                     "the other, ties allowed: quasi-complete separation); slope unbounded")
        return {"intercept": intercept, "slope": float("nan"), "note": "; ".join(notes)}
    params, slope_note = _logistic_fit("slope", y, sm.add_constant(lp), None, max_iter)
    notes += [slope_note] if slope_note else []
    slope = float("nan") if params is None else float(params[1])
    return {"intercept": intercept, "slope": slope, "note": "; ".join(notes)}


def calibration_summary(y_true, prob, eps: float = DEFAULT_EPS,
                        max_iter: int = DEFAULT_MAX_ITER) -> dict[str, float | str]:
    """Brier score, calibration intercept and slope of one set of predictions.

    Returns:
        ``{"n", "brier", "intercept", "slope", "note"}``; ``note`` is empty unless a value is missing or a fit
        warned (``calibration_intercept_slope``).
    """
    y, p = _checked_probabilities(y_true, prob)
    return {"n": len(y), "brier": brier_score(y, p), **calibration_intercept_slope(y, p, eps, max_iter)}
