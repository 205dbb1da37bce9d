"""Sample size and power for testing one AUC against a null value (the paper's "Sample size" paragraph).

Method: the variance of the AUC of Hanley & McNeil (1982, Radiology 143:29-36), in the large-sample form used
by MedCalc ("Sample size: area under ROC curve") and by PASS ("Tests for One ROC Curve"). With ``n_pos``
positives, ``n_neg = ratio * n_pos`` negatives and::

    Q1 = A / (2 - A),   Q2 = 2 A^2 / (1 + A)
    n_pos * Var(AUC) ~= V(A) = (Q1 - A^2) / ratio + (Q2 - A^2)

Q1 (two positives both outscoring one negative) varies with the negatives drawn, so its term is divided by
``n_neg``; Q2 (one positive outscoring two negatives) varies with the positives drawn, so its term by ``n_pos``.
This is the large-sample limit of ``hanley_mcneil_se``: ``Var(AUC) ~= (Q1 - A^2) / n_neg + (Q2 - A^2) / n_pos``.
(Issue 14 item 3: the ratio used to divide the Q2 term; at ``ratio`` 1, the paper's design, the two agree.)

The smallest group sizes detecting AUC ``A1`` against the null ``A0`` with two-sided level alpha and power
``1 - beta`` are::

    n_pos = ceil( (z_{1-alpha/2} sqrt(V(A0)) + z_{1-beta} sqrt(V(A1)))^2 / (A1 - A0)^2 )
    n_neg = ceil(ratio * n_pos)

The paper's inputs (AUC 0.8 vs 0.5, alpha 0.05 two-sided, power 0.8, 1:1) give n_pos = 12.56 -> 13 ER +
13 NER, the 26 cases the paper reports from MedCalc. (Hanley & McNeil's finite-sample standard error, which
keeps the ``A(1 - A)`` term and the ``n - 1`` factors, would ask for 14 + 14; MedCalc's 13 + 13 is the
large-sample form.)

Example::

    >>> auc_sample_size(auc=0.8, null_auc=0.5, alpha=0.05, power=0.8, ratio=1.0).n_positive
    13
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

METHOD = ("Hanley & McNeil (1982) variance of the AUC, large-sample form (as MedCalc 'Sample size: area "
          "under ROC curve' and PASS 'Tests for One ROC Curve'), normal approximation")
PAPER_INPUTS = {"auc": 0.8, "null_auc": 0.5, "alpha": 0.05, "power": 0.8, "ratio": 1.0, "two_sided": True}
"""The paper's MedCalc inputs ("Sample size" paragraph)."""
PAPER_SIZE = (13, 13)
"""ER and NER patients the paper reports for ``PAPER_INPUTS``."""


def _check_auc(value: float, name: str) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def hanley_mcneil_variance_function(auc: float, ratio: float = 1.0) -> float:
    """``V(A) = (Q1 - A^2) / ratio + (Q2 - A^2)``: n_pos times the large-sample variance of the AUC.

    ``ratio`` is negatives (NER) per positive (ER). Example: AUC 0.8, 40 ER and 120 NER give ``V / 40 = 0.00200``
    (a variance of the AUC, unitless), against 0.00201 from ``hanley_mcneil_se(0.8, 40, 120) ** 2`` and 0.00201
    over 4000 simulated cohorts (tests/test_stats.py).
    """
    _check_auc(auc, "auc")
    if ratio <= 0:
        raise ValueError(f"ratio (negatives per positive) must be > 0, got {ratio}")
    q1 = auc / (2 - auc)
    q2 = 2 * auc**2 / (1 + auc)
    return (q1 - auc**2) / ratio + (q2 - auc**2)


def hanley_mcneil_se(auc: float, n_positive: int, n_negative: int) -> float:
    """Hanley & McNeil's (1982, eq. 2) finite-sample standard error of an AUC with the given group sizes."""
    _check_auc(auc, "auc")
    if n_positive < 1 or n_negative < 1:
        raise ValueError("both groups need at least one patient")
    q1 = auc / (2 - auc)
    q2 = 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_positive - 1) * (q1 - auc**2) + (n_negative - 1) * (q2 - auc**2)) / (
        n_positive * n_negative)
    return math.sqrt(var)


@dataclass(frozen=True)
class AUCSampleSize:
    """Minimum group sizes for a test of one AUC against a null value."""

    n_positive: int
    n_negative: int
    n_positive_exact: float
    auc: float
    null_auc: float
    alpha: float
    power: float
    ratio: float
    two_sided: bool
    method: str = METHOD

    @property
    def total(self) -> int:
        return self.n_positive + self.n_negative

    def summary(self) -> str:
        """One sentence for the book: these inputs, the sizes they give and how that compares with the paper's
        13 + 13 (said only when the inputs are the paper's; otherwise which inputs differ)."""
        side = "two-sided" if self.two_sided else "one-sided"
        text = (f"AUC {self.auc:g} against {self.null_auc:g}, {side} alpha {self.alpha:g}, power {self.power:g}, "
                f"{self.ratio:g} NER per ER: at least {self.n_positive} ER + {self.n_negative} NER "
                f"({self.total} patients; {self.n_positive_exact:.2f} ER before rounding up).")
        mine = {"auc": self.auc, "null_auc": self.null_auc, "alpha": self.alpha, "power": self.power,
                "ratio": self.ratio, "two_sided": self.two_sided}
        differ = [k for k, v in PAPER_INPUTS.items() if not math.isclose(float(mine[k]), float(v))]
        paper = f"{PAPER_SIZE[0]} + {PAPER_SIZE[1]}"
        if differ:
            return text + (f" These are not the paper's inputs ({', '.join(differ)} differ), so the paper's "
                           f"{paper} does not apply.")
        same = (self.n_positive, self.n_negative) == PAPER_SIZE
        return text + (f" These are the paper's inputs, and the result {'matches' if same else 'differs from'} "
                       f"the paper's {paper} (MedCalc).")


def _z_alpha(alpha: float, two_sided: bool) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return norm.ppf(1 - alpha / 2) if two_sided else norm.ppf(1 - alpha)


def auc_sample_size(auc: float = 0.8, null_auc: float = 0.5, alpha: float = 0.05, power: float = 0.8,
                    ratio: float = 1.0, two_sided: bool = True) -> AUCSampleSize:
    """Smallest numbers of positives (ER) and negatives (NER) to detect ``auc`` against ``null_auc``.

    Args:
        auc: the AUC under the alternative hypothesis.
        null_auc: the AUC under the null hypothesis (0.5: no discrimination).
        alpha: type I error (two-sided unless ``two_sided=False``).
        power: 1 - type II error.
        ratio: negatives per positive (1.0 for 1:1).
    """
    _check_auc(auc, "auc")
    _check_auc(null_auc, "null_auc")
    if auc == null_auc:
        raise ValueError("auc and null_auc are equal: there is no difference to detect")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    z_a, z_b = _z_alpha(alpha, two_sided), norm.ppf(power)
    root = z_a * math.sqrt(hanley_mcneil_variance_function(null_auc, ratio)) + z_b * math.sqrt(
        hanley_mcneil_variance_function(auc, ratio))
    n_pos = float(root**2 / (auc - null_auc) ** 2)
    n_pos_int = math.ceil(n_pos - 1e-9)
    return AUCSampleSize(n_positive=n_pos_int, n_negative=math.ceil(ratio * n_pos_int - 1e-9),
                         n_positive_exact=n_pos, auc=auc, null_auc=null_auc, alpha=alpha, power=power,
                         ratio=ratio, two_sided=two_sided)


def auc_power(n_positive: int, n_negative: int, auc: float = 0.8, null_auc: float = 0.5, alpha: float = 0.05,
              two_sided: bool = True) -> float:
    """Power (a fraction) of the same test with the given group sizes (e.g. the paper's 23 ER + 35 NER)."""
    _check_auc(auc, "auc")
    _check_auc(null_auc, "null_auc")
    if n_positive < 1 or n_negative < 1:
        raise ValueError("both groups need at least one patient")
    ratio = n_negative / n_positive
    v0 = hanley_mcneil_variance_function(null_auc, ratio)
    v1 = hanley_mcneil_variance_function(auc, ratio)
    z_alpha = _z_alpha(alpha, two_sided)
    z = (abs(auc - null_auc) * math.sqrt(n_positive) - z_alpha * math.sqrt(v0)) / math.sqrt(v1)
    return float(norm.cdf(z))
