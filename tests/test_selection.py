"""Feature selection (hcc_utils.selection) on constructed data with known structure."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hcc_utils import selection
from hcc_utils.config import SelectionConfig

FAST = {"lasso_n_alphas": 30, "lasso_folds": 5}


def _constructed(seed: int = 0, n: int = 120) -> tuple[pd.DataFrame, pd.Series]:
    """``signal`` differs between groups, ``duplicate`` is signal plus a little noise, the rest is noise."""
    rng = np.random.default_rng(seed)
    index = pd.Index([f"P{i:03d}" for i in range(n)], name="patient_id")
    y = pd.Series((rng.random(n) < 0.4).astype(int), index=index)
    signal = 10 + 3 * y.to_numpy() + rng.normal(0, 2, n)  # ~1.5 SD group difference
    x = pd.DataFrame({"noise_a": rng.normal(5, 1, n), "signal": signal,
                      "duplicate": 0.5 * signal + rng.normal(0, 0.05, n),
                      "noise_b": rng.exponential(2, n), "noise_c": rng.normal(0, 100, n)}, index=index)
    return x, y


def test_signal_survives_duplicate_removed_by_correlation():
    x, y = _constructed()
    result = selection.select_features(x, y, SelectionConfig(**FAST))
    uni = result.univariate.set_index("feature")
    assert uni.loc["signal", "kept"] and uni.loc["duplicate", "kept"]
    corr = result.correlation.set_index("feature")
    pair = corr.loc[["signal", "duplicate"]]
    assert pair["kept"].sum() == 1  # exactly one of the pair survives the correlation step
    dropped = pair.index[~pair["kept"]][0]
    kept = pair.index[pair["kept"]][0]
    assert corr.loc[dropped, "correlated_with"] == kept
    assert uni.loc[kept, "p"] <= uni.loc[dropped, "p"]  # the one with the stronger group difference stays
    assert "|r|" in corr.loc[dropped, "reason"]
    assert kept in result.selected


def test_correlation_order_is_by_p_then_input_order():
    rng = np.random.default_rng(1)
    a = rng.normal(size=50)
    x = pd.DataFrame({"first": a, "second": 2 * a + 1, "third": rng.normal(size=50)})
    p = pd.Series({"first": 0.3, "second": 0.01, "third": 0.2})
    table = selection.correlation_step(x, p, 0.9).set_index("feature")
    assert table.index.tolist() == ["second", "third", "first"]
    assert table.loc["second", "kept"] and not table.loc["first", "kept"]
    tied = selection.correlation_step(x, pd.Series({"first": 0.1, "second": 0.1, "third": 0.1}), 0.9)
    assert tied.set_index("feature").loc["first", "kept"]  # ties: input order, the earlier one stays


def test_noise_dropped_by_lasso_most_of_the_time():
    cfg = SelectionConfig(**FAST)
    kept_noise, kept_signal = [], []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        y = pd.Series((rng.random(100) < 0.4).astype(int))
        x = pd.DataFrame(rng.normal(size=(100, 5)), columns=[f"noise{i}" for i in range(5)])
        x["signal"] = y + rng.normal(0, 0.7, 100)
        x = (x - x.mean()) / x.std(ddof=0)
        table, _ = selection.lasso_step(x, y, cfg, [])
        kept = table.set_index("feature")["kept"]
        kept_noise.append(kept.drop("signal").mean())
        kept_signal.append(kept["signal"])
    assert np.mean(kept_noise) < 0.5
    assert np.mean(kept_signal) == 1.0


def test_zscore_uses_training_statistics_and_drops_constants():
    x, y = _constructed()
    x["constant"] = 4.2
    result = selection.select_features(x, y, SelectionConfig(**FAST))
    np.testing.assert_allclose(result.scaler.mean_, x.mean().to_numpy())
    np.testing.assert_allclose(result.scaler.scale_[:-1], x.std(ddof=0).to_numpy()[:-1])
    z = result.zscore.set_index("feature")
    assert not z.loc["constant", "kept"] and "constant" in z.loc["constant", "reason"]
    assert "constant" not in result.univariate["feature"].tolist()
    decisions = result.decisions().set_index("feature")
    assert decisions.loc["constant", "left_at"] == "z-score"


def test_test_choice_follows_normality():
    rng = np.random.default_rng(2)
    y = pd.Series([0] * 60 + [1] * 40)
    x = pd.DataFrame({"normal": rng.normal(size=100) + 0.8 * y, "skewed": rng.lognormal(0, 1.5, 100) * (1 + y)})
    cfg = SelectionConfig()
    table = selection.univariate_tests(x, y, cfg).set_index("feature")
    assert table.loc["normal", "test"] == "t-test" and table.loc["skewed", "test"] == "Mann-Whitney U"
    ner, er = x.loc[y == 0, "normal"], x.loc[y == 1, "normal"]
    assert table.loc["normal", "p"] == pytest.approx(stats.ttest_ind(er, ner).pvalue)
    welch = selection.univariate_tests(x, y, SelectionConfig(ttest_equal_var=False)).set_index("feature")
    assert welch.loc["normal", "test"] == "Welch t-test"
    assert welch.loc["normal", "p"] == pytest.approx(stats.ttest_ind(er, ner, equal_var=False).pvalue)


def test_fallback_keeps_best_k_with_warning():
    rng = np.random.default_rng(3)
    y = pd.Series((rng.random(60) < 0.5).astype(int))
    x = pd.DataFrame(rng.normal(size=(60, 6)), columns=list("abcdef"))
    cfg = SelectionConfig(p_threshold=1e-9, fallback_k=2, **FAST)
    with pytest.warns(selection.SelectionWarning, match="univariate"):
        result = selection.select_features(x, y, cfg)
    uni = result.univariate
    best_two = uni.nsmallest(2, "p")["feature"].tolist()
    assert sorted(uni.loc[uni["kept"], "feature"]) == sorted(best_two)
    assert result.selected and set(result.selected) <= set(best_two)
    assert any("univariate" in w for w in result.warnings)
    with pytest.raises(selection.SelectionError, match="univariate"):
        selection.select_features(x, y, SelectionConfig(p_threshold=1e-9, fallback="error", **FAST))


def test_degenerate_data_never_crashes():
    y = pd.Series([0, 1] * 10)
    x = pd.DataFrame({"c1": np.ones(20), "c2": np.zeros(20)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", selection.SelectionWarning)
        result = selection.select_features(x, y, SelectionConfig(**FAST))
    assert result.selected  # something to model with, and the reasons are recorded
    assert len(result.warnings) >= 2


def test_lasso_path_data_and_fold_reduction():
    x, y = _constructed(n=40)
    y.iloc[:] = 0
    y.iloc[:6] = 1  # 6 ER patients: 10-fold stratified CV is impossible
    x.loc[y == 1, "signal"] += 6
    with pytest.warns(selection.SelectionWarning, match="6-fold"):
        result = selection.select_features(x, y, SelectionConfig(lasso_n_alphas=20))
    path = result.lasso_path
    assert path.n_folds == 6
    assert path.coef_path.shape == (20, len(result.lasso)) and len(path.mse_mean) == 20
    assert path.alpha == pytest.approx(path.alphas[np.argmin(path.mse_mean)])
    chosen = path.coef_path.iloc[int(np.argmin(np.abs(path.alphas - path.alpha)))]
    lasso = result.lasso.set_index("feature")["coefficient"]
    np.testing.assert_allclose(chosen[lasso.index], lasso, atol=1e-4)
    assert result.coefficients.index.tolist() == sorted(result.selected, key=lambda f: lasso[f])


def test_funnel_is_consistent_and_deterministic():
    x, y = _constructed(seed=4)
    cfg = SelectionConfig(**FAST)
    result = selection.select_features(x, y, cfg)
    tables = list(result.step_tables().values())
    for before, after in zip(tables, tables[1:], strict=False):
        assert sorted(before.loc[before["kept"], "feature"]) == sorted(after["feature"])
    funnel = result.funnel()
    assert funnel["step"].tolist() == selection.STEPS
    assert funnel["kept"].iloc[-1] == len(result.selected)
    again = selection.select_features(x, y, cfg)
    assert again.selected == result.selected
    pd.testing.assert_frame_equal(again.lasso, result.lasso)


def test_bad_input_names_feature_and_patient():
    x, y = _constructed(n=30)
    x.loc["P007", "signal"] = np.nan
    with pytest.raises(selection.SelectionError, match=r"signal.*P007"):
        selection.select_features(x, y, SelectionConfig())
    x, y = _constructed(n=30)
    with pytest.raises(selection.SelectionError, match="0/1"):
        selection.select_features(x, y * 2, SelectionConfig())
    with pytest.raises(selection.SelectionError, match="at least 2"):
        selection.select_features(x, pd.Series([1] + [0] * 29, index=x.index), SelectionConfig())


def test_steps_can_be_skipped_but_constants_still_leave():
    x, y = _constructed()
    x["constant"] = 1.0
    result = selection.select_features(x, y, SelectionConfig(**FAST), steps=())
    assert result.selected == ["noise_a", "signal", "duplicate", "noise_b", "noise_c"]
    assert result.lasso_path is None
    assert result.funnel()["dropped"].tolist() == [1, 0, 0, 0]
    with pytest.raises(ValueError, match="unknown selection step"):
        selection.select_features(x, y, SelectionConfig(**FAST), steps=("pca",))


def _collinear(seed: int, n: int, copies: int) -> tuple[pd.DataFrame, pd.Series]:
    """Near-copies of two latent variables: coordinate descent needs many iterations at small penalties."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 2))
    x = pd.DataFrame(np.repeat(base, copies, axis=1) + 0.01 * rng.normal(size=(n, 2 * copies)),
                     columns=[f"f{j:02d}" for j in range(2 * copies)])
    y = pd.Series((base[:, 0] - base[:, 1] + 0.3 * rng.normal(size=n) > 0).astype(int))
    return x, y


def _lasso_only(x, y, **cfg):
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        result = selection.select_features(x, y, SelectionConfig(lasso_folds=3, **cfg), steps=("lasso",))
    return result, [w.category for w in shown]


def test_lasso_convergence_warnings_are_recorded_not_silenced():
    x, y = _collinear(seed=0, n=60, copies=6)
    result, shown = _lasso_only(x, y, lasso_max_iter=100, lasso_n_alphas=10)
    from sklearn.exceptions import ConvergenceWarning

    assert ConvergenceWarning not in shown  # scikit-learn's own lines are turned into the note ...
    assert selection.SelectionWarning in shown  # ... which is also raised, as every selection fallback
    note = next(w for w in result.warnings if "did not converge within selection.lasso_max_iter = 100" in w)
    assert "ConvergenceWarning(s) from LassoCV, including the final fit at the chosen lambda" in note
    assert any("Fig. 4b" in w for w in result.warnings)


def test_lasso_note_says_when_only_cross_validation_fits_did_not_converge():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 1))
    x = pd.DataFrame(base + 0.02 * rng.normal(size=(40, 8)), columns=list("abcdefgh"))
    y = pd.Series((base[:, 0] + rng.normal(size=40) > 0).astype(int))
    result, _ = _lasso_only(x, y, lasso_max_iter=100, lasso_n_alphas=20)
    assert any("in the cross-validation fits only; the final fit at the chosen lambda converged" in w
               for w in result.warnings)
    converged, shown = _lasso_only(*_constructed(), lasso_n_alphas=20)  # the default 10,000 iterations
    assert not any("converge" in w for w in converged.warnings) and not shown
