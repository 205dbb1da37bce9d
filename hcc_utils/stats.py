"""Discrimination statistics for Table 3/4 and Fig. 5 (docs/method.md section 6): AUC with DeLong CI, DeLong's test
for paired ROC curves, accuracy/sensitivity/specificity at a threshold, Youden's J, net benefit.

Conventions (every function here):

- ``y_true`` holds 0/1 outcomes (1 = early recurrence); a higher score means "more likely 1". There is no
  automatic direction flip (pROC's ``direction="auto"``): a model worse than chance gets an AUC below 0.5.
- A patient is called positive when ``score >= threshold``.
- Bad input raises ``ValueError`` saying what is wrong: lengths that differ, NaN or infinite scores, labels
  other than 0/1, only one class present, fewer than 2 patients of a class for a DeLong variance. A constant
  score raises ``DegenerateScoreError`` (a ``ValueError``): its AUC of 0.5 carries no information and DeLong's
  variance is 0, so a confidence interval would be a silent, meaningless number.

AUC variance (DeLong, DeLong & Clarke-Pearson 1988), computed with the fast algorithm of Sun & Xu (2014, IEEE
Signal Process. Lett. 21:1389): midranks of each score among the positives (``T_x``), among the negatives
(``T_y``) and among all patients (``T_z``) give the placement values in O(n log n)::

    V10_i = (T_z_i - T_x_i) / n        for each of the m positives  (fraction of negatives it outranks)
    V01_j = 1 - (T_z_j - T_y_j) / m    for each of the n negatives  (fraction of positives that outrank it)
    AUC   = mean(V10) = mean(V01)
    S     = cov(V10) / m + cov(V01) / n   (sample covariances across score vectors, ddof = 1)

Ties count one half (midranks), as in pROC and the Mann-Whitney U statistic.

Example::

    >>> value, low, high = auc_ci([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.7])
    >>> round(value, 3), round(low, 3), high
    (0.889, 0.581, 1.0)
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps
from sklearn.metrics import roc_auc_score


class DegenerateScoreError(ValueError):
    """Scores that admit no DeLong interval or test: a constant score, or two scores whose AUC difference has
    zero variance. (A ``ValueError``, so callers that only expect bad input still catch it.)"""


def _as_labels(y_true, n: int | None = None) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be one-dimensional, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise ValueError(f"y_true has {len(y)} values but the scores have {n}; they must describe the same "
                         "patients")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError(f"y_true has {int(np.isnan(y).sum())} NaN value(s); every patient needs an outcome "
                         "0 or 1")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:  # True and False compare equal to 1 and 0
        raise ValueError(f"y_true must hold 0/1 outcomes, found values {sorted(values, key=str)[:5]}")
    return y.astype(int)


def _as_scores(score, name: str = "score") -> np.ndarray:
    s = np.asarray(score, dtype=float)
    if s.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {s.shape}")
    bad = ~np.isfinite(s)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} NaN or infinite value(s) (positions "
                         f"{np.flatnonzero(bad)[:5].tolist()}); drop or fix those patients first")
    return s


def _check_both_classes(y: np.ndarray) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        only = "1 (ER)" if n_pos else "0 (no ER)"
        raise ValueError(f"y_true has only one class ({len(y)} patients, all {only}); AUC, sensitivity and "
                         "specificity need patients of both classes")


def check_inputs(y_true, score, name: str = "score") -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(y, score)`` arrays: same length, finite scores, 0/1 labels with both classes present."""
    s = _as_scores(score, name)
    y = _as_labels(y_true, len(s))
    _check_both_classes(y)
    return y, s


def _check_not_constant(s: np.ndarray, name: str) -> None:
    if np.ptp(s) == 0:
        raise DegenerateScoreError(f"{name} is constant ({s[0]:g} for every patient): it does not rank "
                                   "patients, its AUC is 0.5 by construction and DeLong's variance is 0, "
                                   "so no interval or test is defined")


def delong_covariance(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for k score vectors on the same patients (Sun & Xu 2014).

    Args:
        y_true: 0/1 outcomes, length N.
        scores: array (k, N) or a list of k score vectors.

    Returns:
        ``(aucs, cov)``: ``aucs`` shape (k,), ``cov`` shape (k, k).
    """
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    for i, row in enumerate(s):
        _as_scores(row, f"score vector {i}")
    y = _as_labels(y_true, s.shape[1])
    _check_both_classes(y)
    pos, neg = s[:, y == 1], s[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if min(m, n) < 2:
        raise ValueError(f"DeLong's variance needs at least 2 patients of each class, got {m} with 1 and {n} "
                         "with 0")
    t_x = sps.rankdata(pos, axis=1)
    t_y = sps.rankdata(neg, axis=1)
    t_z = sps.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    v10 = (t_z[:, :m] - t_x) / n
    v01 = 1.0 - (t_z[:, m:] - t_y) / m
    aucs = v10.mean(axis=1)
    return aucs, np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n


def auc(y_true, score) -> float:
    """ROC AUC alone (Mann-Whitney, ties count 1/2); defined for a constant score too (0.5)."""
    y, s = check_inputs(y_true, score)
    return float(roc_auc_score(y, s))


def auc_ci(y_true, score, level: float = 0.95) -> tuple[float, float, float]:
    """ROC AUC with a confidence interval from DeLong's variance (normal approximation, clipped to [0, 1]).

    Matches pROC's ``ci.auc(roc(y, score), method = "delong")``. A perfectly separating score has DeLong
    variance 0 and gets a zero-width interval ``(1, 1, 1)`` (as in pROC); a constant score raises
    ``ValueError``.

    Args:
        y_true: 0/1 outcomes.
        score: predicted probability or any score, higher = more likely 1.
        level: confidence level, a fraction in (0, 1).

    Returns:
        ``(auc, low, high)`` as floats.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be a fraction in (0, 1), got {level}")
    y, s = check_inputs(y_true, score)
    _check_not_constant(s, "score")
    aucs, cov = delong_covariance(y, s[None, :])
    auc, se = float(aucs[0]), float(np.sqrt(max(cov[0, 0], 0.0)))
    half = sps.norm.ppf(0.5 + level / 2) * se
    return auc, float(max(0.0, auc - half)), float(min(1.0, auc + half))


def delong_test(y_true, score_a, score_b) -> tuple[float, float]:
    """DeLong's test for two paired ROC curves (the same patients scored by two models).

    ``z = (AUC_a - AUC_b) / SE``, SE from the DeLong covariance of the two AUCs; the p-value is two-sided.
    Matches pROC's ``roc.test(roc(y, a), roc(y, b), method = "delong", paired = TRUE)``.

    Two scores that rank the patients identically (so their AUCs and placement values coincide) give ``z = 0,
    p = 1``, as pROC does. A constant score, or a difference with zero variance between different AUCs, raises
    ``ValueError``.

    Returns:
        ``(z, p)`` as floats.
    """
    a = _as_scores(score_a, "score_a")
    b = _as_scores(score_b, "score_b")
    if len(a) != len(b):
        raise ValueError(f"score_a has {len(a)} values and score_b {len(b)}; a paired test needs the same "
                         "patients")
    y, _ = check_inputs(y_true, a, "score_a")
    _check_not_constant(a, "score_a")
    _check_not_constant(b, "score_b")
    aucs, cov = delong_covariance(y, np.vstack([a, b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 1e-15 * max(1.0, float(cov[0, 0] + cov[1, 1])):
        if abs(diff) < 1e-12:
            return 0.0, 1.0
        raise DegenerateScoreError(f"the AUCs differ ({aucs[0]:.4f} vs {aucs[1]:.4f}) but the DeLong "
                                   "variance of their difference is 0 (perfect or degenerate ranking); the "
                                   "normal approximation does not apply")
    z = diff / np.sqrt(var)
    return float(z), float(2 * sps.norm.sf(abs(z)))


def classification_metrics(y_true, prob, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, sensitivity and specificity (fractions) when ``prob >= threshold`` is called positive.

    Returns:
        ``{"accuracy", "sensitivity", "specificity", "threshold"}``.
    """
    y, p = check_inputs(y_true, prob, "prob")
    called = p >= threshold
    tp = int(np.sum(called & (y == 1)))
    tn = int(np.sum(~called & (y == 0)))
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    return {"accuracy": (tp + tn) / len(y), "sensitivity": tp / n_pos, "specificity": tn / n_neg,
            "threshold": float(threshold)}


def youden_threshold(y_true, prob) -> float:
    """The cut-off maximising Youden's J = sensitivity + specificity - 1 (fit on TRAINING predictions only).

    Candidate cut-offs lie midway between consecutive distinct scores (pROC's convention), so the chosen
    cut-off classifies the training patients exactly as the optimal ``score >= s`` rule does while not sitting
    on a training score. Ties in J go to the higher cut-off (fewer patients called positive).
    """
    y, p = check_inputs(y_true, prob, "prob")
    _check_not_constant(p, "prob")
    levels = np.unique(p)  # ascending
    cuts = (levels[:-1] + levels[1:]) / 2
    called = p[None, :] >= cuts[:, None]
    sens = (called & (y == 1)).sum(axis=1) / y.sum()
    spec = (~called & (y == 0)).sum(axis=1) / (len(y) - y.sum())
    j = sens + spec - 1
    best = np.flatnonzero(j == j.max())[-1]
    return float(cuts[best])


def net_benefit(y_true, prob, thresholds) -> np.ndarray:
    """Net benefit of treating the patients whose predicted risk reaches each threshold (Vickers 2006).

    ``NB(t) = TP/n - FP/n * t / (1 - t)``, a patient being treated when ``prob >= t``. As in ``dcurves`` (the
    field's reference implementation, which this agrees with to 1e-12) a predicted probability of exactly 0 is
    never treated, so at t = 0 a model differs from "treat all" for the patients it rules out.

    Treat-all is ``net_benefit(y, np.ones(n), t)``; treat-none is 0 at every threshold.

    Args:
        y_true: 0/1 outcomes.
        prob: predicted probabilities in [0, 1].
        thresholds: threshold probabilities in [0, 1).

    Returns:
        numpy array of net benefit, one value per threshold (a fraction of patients; may be negative).
    """
    y, p = check_inputs(y_true, prob, "prob")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"prob must be probabilities in [0, 1], found range [{p.min():g}, {p.max():g}]")
    t = np.atleast_1d(np.asarray(thresholds, dtype=float))
    if not np.isfinite(t).all() or t.min() < 0 or t.max() >= 1:
        raise ValueError("thresholds must be finite probabilities in [0, 1) (t = 1 divides by zero)")
    treated = (p[None, :] >= t[:, None]) & (p[None, :] > 0)
    n = len(y)
    tp = (treated & (y == 1)).sum(axis=1) / n
    fp = (treated & (y == 0)).sum(axis=1) / n
    return tp - fp * t / (1 - t)

