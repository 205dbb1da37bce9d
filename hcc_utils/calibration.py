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
``note``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.special import logit
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from hcc_utils.stats import check_inputs

DEFAULT_EPS = 1e-3


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
    """True when the linear predictor orders the two classes without overlap (the slope MLE is infinite)."""
    lo0, hi0 = lp[y == 0].min(), lp[y == 0].max()
    lo1, hi1 = lp[y == 1].min(), lp[y == 1].max()
    return bool(hi0 <= lo1 or hi1 <= lo0)


def calibration_intercept_slope(y_true, prob, eps: float = DEFAULT_EPS) -> dict[str, float | str]:
    """Calibration intercept (calibration-in-the-large) and slope by logistic recalibration.

    Args:
        y_true: 0/1 outcomes.
        prob: predicted probabilities in [0, 1].
        eps: probabilities are clipped to ``[eps, 1 - eps]`` before the logit (trees output exact 0 and 1).

    Returns:
        ``{"intercept", "slope", "note"}``; ``slope`` is NaN (and ``note`` says why) when the predictions
        separate the outcomes perfectly or do not vary.
    """
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    y, p = _checked_probabilities(y_true, prob)
    lp = logit(np.clip(p, eps, 1 - eps))
    ones = np.ones((len(y), 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter is checked through the fit results below
        intercept = float(sm.GLM(y, ones, family=sm.families.Binomial(), offset=lp).fit().params[0])
        if np.ptp(lp) == 0:
            return {"intercept": intercept, "slope": float("nan"),
                    "note": "predictions do not vary; slope undefined"}
        if _separated(lp, y):
            return {"intercept": intercept, "slope": float("nan"),
                    "note": "predictions separate the outcomes perfectly; slope unbounded"}
        fit = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
    return {"intercept": intercept, "slope": float(fit.params[1]), "note": ""}


def calibration_summary(y_true, prob, eps: float = DEFAULT_EPS) -> dict[str, float | str]:
    """Brier score, calibration intercept and slope of one set of predictions.

    Returns:
        ``{"n", "brier", "intercept", "slope", "note"}``.
    """
    y, p = _checked_probabilities(y_true, prob)
    return {"n": len(y), "brier": brier_score(y, p), **calibration_intercept_slope(y, p, eps)}
