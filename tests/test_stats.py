"""hcc_utils.stats, .calibration and .sample_size against independent references.

References: (1) DeLong's structural components computed directly from every case-control pair (no ranks);
(2) published results of the R package pROC on its aSAH data set; (3) dcurves' own ``dca`` on the example data
in its wheel; (4) scikit-learn for AUC and logistic regression; (5) the paper's MedCalc sample size (13 + 13).
"""

import warnings
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from hcc_utils import calibration, sample_size, stats

# ----------------------------------------------------------------------------------------------------------
# Reference 1: DeLong, DeLong & Clarke-Pearson (1988) from all case-control pairs, O(m n) per score vector
# ----------------------------------------------------------------------------------------------------------


def slow_delong(y, scores):
    """AUCs and covariance from the placements psi(x_i, y_j) = 1, 1/2, 0 of every (case, control) pair."""
    y = np.asarray(y)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    m, n = pos.shape[1], neg.shape[1]
    return psi.mean(axis=(1, 2)), np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n


def tied_data(seed: int, n: int = 90):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = np.round(0.8 * y + rng.normal(0, 1, n), 1)  # ties within and across classes
    b = np.round(0.5 * a + 0.4 * y + rng.normal(0, 0.8, n), 1)
    c = rng.integers(1, 5, n).astype(float)  # an ordinal score: heavy ties
    return y, np.vstack([a, b, c])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fast_delong_equals_all_pairs_computation_with_ties(seed):
    y, scores = tied_data(seed)
    aucs, cov = stats.delong_covariance(y, scores)
    ref_aucs, ref_cov = slow_delong(y, scores)
    np.testing.assert_allclose(aucs, ref_aucs, rtol=0, atol=1e-13)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-11, atol=1e-16)
    for k in range(3):
        assert aucs[k] == pytest.approx(roc_auc_score(y, scores[k]), abs=1e-13)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_auc_ci_and_delong_test_equal_the_all_pairs_formulas(seed):
    y, (a, b, c) = tied_data(seed)
    ref_aucs, ref_cov = slow_delong(y, np.vstack([a, b, c]))
    auc, low, high = stats.auc_ci(y, a, level=0.9)
    half = norm.ppf(0.95) * np.sqrt(ref_cov[0, 0])
    assert (auc, low, high) == pytest.approx((ref_aucs[0], ref_aucs[0] - half, ref_aucs[0] + half), abs=1e-12)
    for j, other in ((1, b), (2, c)):
        z, p = stats.delong_test(y, a, other)
        ref_z = (ref_aucs[0] - ref_aucs[j]) / np.sqrt(ref_cov[0, 0] + ref_cov[j, j] - 2 * ref_cov[0, j])
        assert z == pytest.approx(ref_z, rel=1e-10)
        assert p == pytest.approx(2 * norm.sf(abs(ref_z)), rel=1e-9)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6), st.integers(0, 6)), min_size=4, max_size=40))
def test_delong_property_matches_all_pairs(rows):
    y = np.array([r[0] for r in rows])
    a = np.array([r[1] for r in rows], dtype=float)
    b = np.array([r[2] for r in rows], dtype=float)
    if min(y.sum(), len(y) - y.sum()) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        with pytest.raises(ValueError):
            stats.delong_test(y, a, b)
        return
    aucs, cov = stats.delong_covariance(y, np.vstack([a, b]))
    ref_aucs, ref_cov = slow_delong(y, np.vstack([a, b]))
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-14)
    var_diff = ref_cov[0, 0] + ref_cov[1, 1] - 2 * ref_cov[0, 1]
    if var_diff < 1e-14 and abs(ref_aucs[0] - ref_aucs[1]) > 1e-12:  # e.g. placements differing by a constant
        with pytest.raises(ValueError, match="variance of their difference is 0"):
            stats.delong_test(y, a, b)
        return
    assert stats.delong_test(y, a, b)[0] == pytest.approx(-stats.delong_test(y, b, a)[0], abs=1e-12)


def test_auc_ci_is_clipped_to_the_unit_interval():
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    score = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9, 0.75, 0.65])
    auc, low, high = stats.auc_ci(y, score)
    assert high == 1.0 and 0 <= low < auc < 1
    assert stats.auc_ci([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == (1.0, 1.0, 1.0)  # pROC: zero-width at AUC 1


# ----------------------------------------------------------------------------------------------------------
# Reference 2: pROC on its aSAH data (Robin et al. 2011, BMC Bioinformatics 12:77)
# Data: pROC's data set `aSAH` (https://github.com/xrobin/pROC, data/aSAH.rda; Turck et al. 2010, Intensive
# Care Med 36:107-115), 113 patients in the data set's row order: outcome (1 = Poor, 41 patients), s100b,
# wfns, ndka.
# Published values: pROC's own test suite, https://github.com/xrobin/pROC/tree/master/tests/testthat
#   test-auc.R:      auc(r.wfns) = 0.823678861788618, auc(r.ndka) = 0.611957994579946
#   test-var.R:      var(r.wfns) = 0.00146991470882363, var(r.ndka) = 0.0031908105493913,
#                    var(r.s100b) = 0.00266868245717244
#   test-ci.auc.R:   ci.auc(r.ndka) = (0.501244999271703, 0.611957994579946, 0.722670989888189)
#   test-roc.test.R: roc.test(r.wfns, r.s100b): Z = 2.20898359144091, p = 0.0271757822291882
#                    roc.test(r.wfns, r.ndka):  Z = 2.79777591868904, p = 0.00514557970691098
#                    roc.test(r.ndka, r.s100b): Z = -1.39077002573558, p = 0.164295175223054
#                    roc.test(r.wfns, r.wfns):  Z = 0, p = 1
# and pROC's documentation (?ci.auc, ?roc): s100b AUC 0.7314, 95% CI 0.6301-0.8326 (DeLong).
# The paired Z values depend on which s100b, wfns and ndka belong to the same patient, so matching them to
# 1e-10 also checks that the rows below are transcribed in pairs.
# ----------------------------------------------------------------------------------------------------------

ASAH = """outcome,s100b,wfns,ndka
0,0.13,1,3.01\n0,0.14,1,8.54\n0,0.10,1,8.09\n0,0.04,1,10.42\n1,0.13,3,17.40\n1,0.10,2,12.75\n0,0.47,5,6.00
1,0.16,4,13.20\n0,0.18,1,15.54\n0,0.10,2,6.01\n1,0.12,5,15.96\n0,0.10,2,17.86\n1,0.44,5,5.18\n1,0.71,5,8.90
0,0.04,1,13.41\n0,0.08,2,20.75\n1,0.49,5,11.60\n0,0.04,2,16.11\n1,0.07,2,32.37\n1,0.33,5,54.82\n1,0.09,2,32.41
0,0.09,1,49.94\n1,0.07,1,40.34\n0,0.11,1,9.47\n0,0.07,1,6.29\n0,0.17,2,12.53\n0,0.07,1,6.54\n0,0.11,2,6.30
0,0.13,1,80.30\n0,0.19,1,12.80\n0,0.05,3,9.80\n0,0.16,4,9.81\n1,0.41,2,9.85\n0,0.14,1,18.21\n0,0.34,4,5.03
1,0.35,5,14.04\n1,0.48,4,21.93\n0,0.09,1,8.02\n1,0.96,4,7.42\n1,0.25,2,8.38\n0,0.50,5,6.59\n0,0.46,5,9.63
0,0.16,1,13.12\n0,0.07,1,7.96\n0,0.43,2,14.34\n0,0.45,4,41.43\n0,0.11,1,7.63\n0,0.08,1,7.06\n0,0.09,2,12.59
1,0.86,5,13.56\n1,0.52,5,3.87\n0,0.08,2,9.44\n0,0.06,1,7.66\n0,0.13,2,12.98\n1,2.07,5,419.19\n0,0.10,1,27.19
0,0.14,2,22.27\n0,0.15,2,9.95\n1,0.07,2,21.22\n0,0.06,1,11.73\n1,0.77,5,10.40\n0,0.05,1,58.83\n0,0.09,1,6.39
1,0.30,2,11.09\n1,0.03,5,12.22\n1,0.09,2,13.67\n0,0.04,1,17.21\n1,0.23,4,22.63\n1,0.70,5,12.90\n0,0.09,2,9.70
1,0.27,4,21.57\n1,0.71,4,8.23\n1,0.08,1,72.57\n1,0.26,4,15.54\n0,0.08,1,10.51\n0,0.16,2,10.60\n0,0.09,1,14.57
1,0.13,4,5.19\n1,0.10,2,9.63\n0,0.08,1,4.61\n1,0.11,2,21.48\n0,0.33,3,17.30\n0,0.11,2,12.71\n0,0.28,4,9.44
0,0.07,2,11.07\n0,0.10,1,19.46\n0,0.32,4,10.83\n1,0.22,5,5.37\n0,0.07,1,11.97\n0,0.05,1,7.75\n0,0.24,5,9.83
0,0.38,4,10.55\n0,0.10,2,28.49\n0,0.15,2,8.53\n0,0.08,1,12.57\n0,0.14,1,12.90\n0,0.10,1,46.83\n0,0.07,3,11.68
0,0.04,1,12.67\n0,0.19,2,9.01\n1,0.56,5,9.57\n1,0.14,2,34.06\n1,0.58,2,11.72\n1,0.32,5,14.26\n1,0.82,5,47.61
1,0.74,5,11.67\n0,0.15,2,24.58\n0,0.47,4,10.33\n0,0.17,4,13.87\n1,0.44,5,15.89\n0,0.15,1,22.43\n0,0.50,1,6.79
0,0.48,1,13.45
"""


@pytest.fixture(scope="module")
def asah():
    table = pd.read_csv(StringIO(ASAH))
    assert len(table) == 113 and table["outcome"].sum() == 41
    return table


def test_auc_and_delong_variance_reproduce_proc_on_asah(asah):
    y = asah["outcome"]
    aucs, cov = stats.delong_covariance(y, asah[["wfns", "ndka", "s100b"]].to_numpy().T)
    assert aucs[0] == pytest.approx(0.823678861788618, rel=1e-12)
    assert aucs[1] == pytest.approx(0.611957994579946, rel=1e-12)
    assert aucs[2] == pytest.approx(0.7314, abs=5e-5)
    np.testing.assert_allclose(np.diag(cov), [0.00146991470882363, 0.0031908105493913, 0.00266868245717244],
                               rtol=1e-10)


def test_auc_ci_reproduces_proc_ci_auc(asah):
    assert stats.auc_ci(asah["outcome"], asah["ndka"]) == pytest.approx(
        (0.611957994579946, 0.501244999271703, 0.722670989888189), rel=1e-10)
    auc, low, high = stats.auc_ci(asah["outcome"], asah["s100b"])
    assert (round(auc, 4), round(low, 4), round(high, 4)) == (0.7314, 0.6301, 0.8326)


@pytest.mark.parametrize("a, b, z, p", [
    ("wfns", "s100b", 2.20898359144091, 0.0271757822291882),
    ("wfns", "ndka", 2.79777591868904, 0.00514557970691098),
    ("ndka", "s100b", -1.39077002573558, 0.164295175223054),
])
def test_delong_test_reproduces_proc_roc_test(asah, a, b, z, p):
    got_z, got_p = stats.delong_test(asah["outcome"], asah[a], asah[b])
    assert got_z == pytest.approx(z, rel=1e-10)
    assert got_p == pytest.approx(p, rel=1e-9)
    assert stats.delong_test(asah["outcome"], asah[b], asah[a]) == pytest.approx((-z, p), rel=1e-9)


def test_identical_curves_give_z0_p1_as_proc(asah):
    assert stats.delong_test(asah["outcome"], asah["wfns"], asah["wfns"]) == (0.0, 1.0)
    # a monotone transform ranks the patients identically: same AUC, same placements
    assert stats.delong_test(asah["outcome"], asah["ndka"], np.log(asah["ndka"])) == (0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------
# Degenerate input: a clear error, never a silent number
# ----------------------------------------------------------------------------------------------------------

Y = np.array([0, 1, 0, 1, 1, 0])
S = np.array([0.2, 0.7, 0.4, 0.9, 0.3, 0.1])


@pytest.mark.parametrize("func", [
    lambda y, s: stats.auc_ci(y, s),
    lambda y, s: stats.delong_test(y, s, s[::-1].copy()),
    lambda y, s: stats.classification_metrics(y, s),
    lambda y, s: stats.youden_threshold(y, s),
    lambda y, s: stats.net_benefit(y, s, [0.1, 0.5]),
    lambda y, s: calibration.calibration_summary(y, s),
])
@pytest.mark.parametrize("y, s, message", [
    (np.ones(6, int), S, "only one class"),
    (np.zeros(6, int), S, "only one class"),
    (Y, np.where(np.arange(6) == 2, np.nan, S), "NaN"),
    (Y, np.where(np.arange(6) == 2, np.inf, S), "infinite"),
    (Y[:5], S, "same patients"),
    (np.array([0, 1, 2, 1, 1, 0]), S, "0/1"),
    (np.array([0, 1, np.nan, 1, 1, 0]), S, "NaN"),
])
def test_bad_input_raises_a_clear_error(func, y, s, message):
    with pytest.raises(ValueError, match=message):
        func(y, s)


def test_delong_needs_two_patients_per_class():
    with pytest.raises(ValueError, match="at least 2"):
        stats.auc_ci([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4])


def test_constant_scores_raise():
    with pytest.raises(ValueError, match="constant"):
        stats.auc_ci(Y, np.full(6, 0.3))
    with pytest.raises(ValueError, match="constant"):
        stats.delong_test(Y, S, np.full(6, 0.3))
    with pytest.raises(ValueError, match="constant"):
        stats.youden_threshold(Y, np.full(6, 0.3))


def test_net_benefit_and_level_arguments_are_checked():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        stats.net_benefit(Y, S, [0.5, 1.0])
    with pytest.raises(ValueError, match="probabilities"):
        stats.net_benefit(Y, S * 2, [0.5])
    with pytest.raises(ValueError, match="level"):
        stats.auc_ci(Y, S, level=95)


# ----------------------------------------------------------------------------------------------------------
# Threshold metrics and Youden's J
# ----------------------------------------------------------------------------------------------------------


def test_classification_metrics_by_hand():
    # called positive (>= 0.4): 0.7, 0.4, 0.9 -> TP 2 (0.7, 0.9), FP 1 (0.4); TN 2, FN 1 (0.3)
    m = stats.classification_metrics(Y, S, threshold=0.4)
    assert m == {"accuracy": 4 / 6, "sensitivity": 2 / 3, "specificity": 2 / 3, "threshold": 0.4}
    assert stats.classification_metrics(Y, S)["sensitivity"] == 2 / 3  # 0.5 default


def test_youden_threshold_maximises_j_over_all_cuts():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 80)
    p = np.round(expit(1.2 * y + rng.normal(0, 1, 80)), 2)
    cut = stats.youden_threshold(y, p)
    best = max(stats.classification_metrics(y, p, t)["sensitivity"] + stats.classification_metrics(y, p, t)[
        "specificity"] for t in np.unique(p))
    m = stats.classification_metrics(y, p, cut)
    assert m["sensitivity"] + m["specificity"] == pytest.approx(best)
    assert cut not in set(p)  # midway between two training scores


# ----------------------------------------------------------------------------------------------------------
# Reference 3: dcurves on the example data shipped in its wheel
# ----------------------------------------------------------------------------------------------------------


def test_net_benefit_matches_dcurves_on_its_example_data():
    import dcurves

    data = pd.read_csv(Path(dcurves.data) / "df_binary.csv")
    thresholds = [i / 100 for i in range(100)]
    ref = dcurves.dca(data=data, outcome="cancer", modelnames=["cancerpredmarker", "famhistory"],
                      thresholds=thresholds)
    y = data["cancer"].astype(int)
    for model, prob in (("cancerpredmarker", data["cancerpredmarker"]), ("famhistory", data["famhistory"]),
                        ("all", np.ones(len(data)))):
        expected = ref.loc[ref["model"] == model, "net_benefit"].to_numpy(dtype=float)
        np.testing.assert_allclose(stats.net_benefit(y, prob, thresholds), expected, rtol=0, atol=1e-12)
    assert (ref.loc[ref["model"] == "none", "net_benefit"] == 0).all()


def test_net_benefit_formula_by_hand():
    # t = 0.5: treated 0.7, 0.9 (TP) -> NB = 2/6 - 0 ; t = 0.25: treated 0.7, 0.4, 0.9, 0.3 -> TP 3, FP 1
    nb = stats.net_benefit(Y, S, [0.5, 0.25])
    assert nb == pytest.approx([2 / 6, 3 / 6 - 1 / 6 * (0.25 / 0.75)])


# ----------------------------------------------------------------------------------------------------------
# Calibration: statsmodels fit against scikit-learn and a root-finder
# ----------------------------------------------------------------------------------------------------------


def calibration_data(seed=0, n=3000, sharpen=1.0):
    rng = np.random.default_rng(seed)
    lp = rng.normal(-0.3, 1.2, n)
    y = (rng.random(n) < expit(lp)).astype(int)
    return y, expit(sharpen * lp)


def test_calibration_slope_and_intercept_against_independent_fits():
    y, p = calibration_data(sharpen=2.0)  # too extreme: slope near 1/2
    got = calibration.calibration_intercept_slope(y, p)
    lp = logit(np.clip(p, calibration.DEFAULT_EPS, 1 - calibration.DEFAULT_EPS))
    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(lp[:, None], y)
    assert got["slope"] == pytest.approx(ref.coef_[0, 0], rel=1e-5)
    assert got["slope"] == pytest.approx(0.5, abs=0.08)
    root = brentq(lambda a: np.sum(y - expit(a + lp)), -5, 5, xtol=1e-14)
    assert got["intercept"] == pytest.approx(root, abs=1e-7)
    well = calibration.calibration_summary(*calibration_data(seed=1))
    assert well["slope"] == pytest.approx(1, abs=0.12) and well["intercept"] == pytest.approx(0, abs=0.1)


def test_brier_and_curve_by_hand():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.3, 0.6, 0.8])
    assert calibration.brier_score(y, p) == pytest.approx((0.01 + 0.09 + 0.16 + 0.04) / 4)
    curve = calibration.calibration_curve_table(y, p, n_bins=2, strategy="uniform")
    assert curve["mean_predicted"].tolist() == pytest.approx([0.2, 0.7])
    assert curve["observed_fraction"].tolist() == [0.0, 1.0]


def test_separated_predictions_give_nan_slope_with_a_reason():
    out = calibration.calibration_summary([0, 0, 1, 1], [0.0, 0.2, 0.9, 1.0])
    assert np.isnan(out["slope"]) and "separation" in out["note"] and np.isfinite(out["intercept"])


def test_a_logistic_fit_that_does_not_converge_is_left_empty_with_a_note():
    y, p = calibration_data(seed=2, n=200, sharpen=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left to the console
        out = calibration.calibration_summary(y, p, max_iter=1)
    assert np.isnan(out["intercept"]) and np.isnan(out["slope"])
    assert "intercept fit did not converge in 1 IRLS iteration(s)" in out["note"]
    assert "slope fit did not converge" in out["note"]
    assert calibration.calibration_summary(y, p)["note"] == ""  # the default converges


class FailingGLM(sm.GLM):
    def fit(self, *args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")


class WarningGLM(sm.GLM):
    category = ConvergenceWarning

    def fit(self, *args, **kwargs):
        warnings.warn("maximum likelihood optimization failed to converge", self.category, stacklevel=2)
        return super().fit(*args, **kwargs)


def test_a_failed_logistic_fit_is_a_note_not_an_error(monkeypatch):
    monkeypatch.setattr(calibration.sm, "GLM", FailingGLM)
    out = calibration.calibration_summary(*calibration_data(seed=3, n=200))
    assert np.isnan(out["intercept"]) and np.isnan(out["slope"]) and np.isfinite(out["brier"])
    assert "intercept fit failed (LinAlgError: Singular matrix)" in out["note"]


def test_statsmodels_warnings_become_the_note_and_other_warnings_are_not_hidden(monkeypatch):
    monkeypatch.setattr(calibration.sm, "GLM", WarningGLM)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        out = calibration.calibration_summary(*calibration_data(seed=3, n=200))
    assert not shown and np.isfinite(out["slope"])
    assert "slope fit warned (ConvergenceWarning: maximum likelihood optimization failed" in out["note"]
    monkeypatch.setattr(WarningGLM, "category", UserWarning)
    with pytest.warns(UserWarning, match="maximum likelihood"):
        out = calibration.calibration_summary(*calibration_data(seed=3, n=200))
    assert out["note"] == ""


# ----------------------------------------------------------------------------------------------------------
# Reference 5: the paper's sample size (MedCalc, Hanley & McNeil 1982)
# ----------------------------------------------------------------------------------------------------------


def test_sample_size_reproduces_the_papers_13_plus_13():
    need = sample_size.auc_sample_size(auc=0.8, null_auc=0.5, alpha=0.05, power=0.8, ratio=1.0)
    assert (need.n_positive, need.n_negative, need.total) == (13, 13, 26)
    assert "Hanley & McNeil" in need.method
    assert sample_size.auc_power(13, 13) >= 0.8 > sample_size.auc_power(12, 12)


def test_sample_size_behaves_with_its_inputs():
    base = sample_size.auc_sample_size()
    assert sample_size.auc_sample_size(auc=0.7).n_positive > base.n_positive
    assert sample_size.auc_sample_size(power=0.9).n_positive > base.n_positive
    assert sample_size.auc_sample_size(two_sided=False).n_positive <= base.n_positive
    two = sample_size.auc_sample_size(ratio=2.0)
    assert two.n_negative == pytest.approx(2 * two.n_positive, abs=1) and two.n_positive <= base.n_positive
    # the large-sample variance function is the finite-sample Hanley-McNeil variance without its small terms
    big = 10_000
    assert sample_size.hanley_mcneil_se(0.8, big, big) ** 2 * big == pytest.approx(
        sample_size.hanley_mcneil_variance_function(0.8), rel=1e-3)
    with pytest.raises(ValueError, match="no difference"):
        sample_size.auc_sample_size(auc=0.5)


@pytest.mark.parametrize("ratio", [1 / 3, 0.5, 2.0, 3.0])
def test_variance_function_is_the_large_sample_standard_error_with_unequal_groups(ratio):
    # the Q1 term shrinks with the negatives, the Q2 term with the positives (Hanley & McNeil 1982, eq. 2)
    n_pos = 30_000
    n_neg = round(ratio * n_pos)
    assert sample_size.hanley_mcneil_se(0.8, n_pos, n_neg) ** 2 * n_pos == pytest.approx(
        sample_size.hanley_mcneil_variance_function(0.8, ratio), rel=2e-3)


def simulated_auc_variance(auc: float, n_pos: int, n_neg: int, reps: int = 4000, seed: int = 0) -> float:
    """Variance of the empirical AUC over seeded replicates of Hanley & McNeil's own model: exponential scores
    (negatives of mean 1, positives of mean A / (1 - A)), for which Q1 = A / (2 - A) and Q2 = 2 A^2 / (1 + A)
    hold exactly. (Equal-variance binormal scores have Q1 = Q2, so they cannot tell the two terms apart.)"""
    rng = np.random.default_rng(seed)
    pos = rng.exponential(auc / (1 - auc), (reps, n_pos))
    neg = rng.exponential(1.0, (reps, n_neg))
    below = (neg[:, None, :] < pos[:, :, None]).mean(axis=(1, 2))
    return float(np.var(below, ddof=1))


@pytest.mark.parametrize(("n_pos", "n_neg"), [(40, 120), (120, 40), (30, 30)])
def test_variance_function_agrees_with_simulation(n_pos, n_neg):
    simulated = simulated_auc_variance(0.8, n_pos, n_neg)
    formula = sample_size.hanley_mcneil_variance_function(0.8, n_neg / n_pos) / n_pos
    assert simulated == pytest.approx(formula, rel=0.08)  # 4000 replicates: a relative SE of about 2%
    assert simulated == pytest.approx(sample_size.hanley_mcneil_se(0.8, n_pos, n_neg) ** 2, rel=0.08)


def test_unequal_groups_at_auc_08_with_40_er_and_120_ner():
    # the case: simulation 0.00201, corrected formula 0.00200 (the swapped terms gave 0.00126)
    assert sample_size.hanley_mcneil_variance_function(0.8, 3.0) / 40 == pytest.approx(0.0020, abs=1e-6)
    assert sample_size.hanley_mcneil_variance_function(0.8, 1 / 3) / 120 == pytest.approx(0.00126, abs=1e-5)
    # positives carry the larger term at AUC 0.8, so more ER than NER gives the higher power
    assert sample_size.auc_power(30, 10) > sample_size.auc_power(10, 30)
    three = sample_size.auc_sample_size(ratio=3.0)
    assert (three.n_positive, three.n_negative) == (9, 27)
    assert sample_size.auc_power(9, 27) >= 0.8 > sample_size.auc_power(8, 24)
