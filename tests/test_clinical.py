"""Clinical variables: Table 2 tests and format, variable selection, missing values, the Clinical model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hcc_utils import clinical
from hcc_utils.config import params_from_dict
from hcc_utils.run_folder import RunFolder

SMALL = {"model": {"n_estimators": [10], "max_depth": [2], "min_samples_split": [2], "cv_folds": 3},
         "selection": {"lasso_n_alphas": 10, "lasso_folds": 3}}


def _params(**clinical_cfg):
    return params_from_dict({"cohort": {"manifest": "unused.csv"}, **SMALL, "clinical": clinical_cfg})


def _cohort(seed: int = 0, n_train: int = 120, n_validation: int = 60) -> pd.DataFrame:
    """ER in alternating patients; age normal (ER 8 years younger), AFP log-normal (higher in ER), few women
    (expected counts below 5), alcohol common and unrelated, the other labs unrelated noise. P000 is a
    woman."""
    rng = np.random.default_rng(seed)
    n = n_train + n_validation
    er = np.arange(n) % 2
    gender = np.full(n, "M", dtype=object)
    gender[[0, 2, 4, 6, 1, n_train, n_train + 2, n_train + 1]] = "F"  # NER women 4+2, ER 1+1: expected < 5
    return pd.DataFrame({
        "patient_id": [f"P{i:03d}" for i in range(n)],
        "er": er,
        "split": ["train"] * n_train + ["validation"] * n_validation,
        "age": rng.normal(56 - 8 * er, 9),
        "bmi": rng.normal(22, 3, n),
        "hbsag": rng.normal(1000, 300, n),
        "afp": np.exp(rng.normal(4.5 + 1.2 * er, 1.3)),
        "alb": rng.normal(40, 5, n),
        "ast": rng.normal(60, 15, n),
        "alt": rng.normal(55, 15, n),
        "gender": gender,
        "alcohol": (rng.random(n) < 0.4).astype(int),
    })


def _row(table: pd.DataFrame, variable: str, set_name: str = "train") -> pd.Series:
    return table[(table["variable"] == variable) & (table["set"] == set_name)].iloc[0]


def test_table2_uses_the_right_test_and_scipy_p_values():
    cohort = _cohort()
    params = _params()
    table = clinical.table2(cohort, params)
    assert list(table.columns)[:6] == ["variable", "set", "NER", "ER", "p", "test"]
    assert list(table.columns) == clinical.TABLE2_COLUMNS
    for set_name in ("train", "validation"):
        part = cohort[cohort["split"] == set_name]
        ner, er = part[part["er"] == 0], part[part["er"] == 1]
        age = _row(table, "Age", set_name)
        assert age["test"] == "t-test"
        assert age["p"] == pytest.approx(stats.ttest_ind(er["age"], ner["age"]).pvalue, rel=1e-12)
        afp = _row(table, "AFP", set_name)
        assert afp["test"] == "Mann-Whitney U"
        assert afp["p"] == pytest.approx(stats.mannwhitneyu(er["afp"], ner["afp"]).pvalue, rel=1e-12)
        gender_counts = pd.crosstab(part["gender"], part["er"]).to_numpy()
        assert stats.chi2_contingency(gender_counts).expected_freq.min() < 5
        gender = _row(table, "Gender", set_name)
        assert gender["test"] == "Fisher's exact"
        assert gender["p"] == pytest.approx(stats.fisher_exact(gender_counts).pvalue, rel=1e-12)
        alcohol_counts = pd.crosstab(part["alcohol"], part["er"]).to_numpy()
        alcohol = _row(table, "Alcohol consumption history", set_name)
        assert alcohol["test"] == "chi-square (Yates)"
        assert alcohol["p"] == pytest.approx(stats.chi2_contingency(alcohol_counts).pvalue, rel=1e-12)
    # the paper's convention: chi-square (Yates) even with small expected counts
    paper = clinical.table2(cohort, _params(categorical_test="chi2"))
    counts = pd.crosstab(cohort.loc[cohort["split"] == "train", "gender"],
                         cohort.loc[cohort["split"] == "train", "er"]).to_numpy()
    assert _row(paper, "Gender")["p"] == pytest.approx(stats.chi2_contingency(counts).pvalue, rel=1e-12)


def test_table2_cells_are_formatted_like_the_paper():
    cohort = _cohort()
    table = clinical.table2(cohort, _params())
    train = cohort[cohort["split"] == "train"]
    ner_age = train.loc[train["er"] == 0, "age"]
    assert _row(table, "Age")["NER"] == f"{ner_age.mean():.2f} ± {ner_age.std(ddof=1):.2f}"
    n_female_er = int(((train["gender"] == "F") & (train["er"] == 1)).sum())
    assert _row(table, "Gender: Female")["ER"] == f"{n_female_er} ({100 * n_female_er / 60:.2f}%)"
    assert _row(table, "Patients, n", "validation")[["NER", "ER"]].tolist() == ["30", "30"]
    age = _row(table, "Age")
    assert age["kind"] == "continuous" and age["ner_n"] == 60
    assert age[["ner_mean", "ner_sd", "ner_median"]].tolist() == pytest.approx(
        [ner_age.mean(), ner_age.std(ddof=1), ner_age.median()])
    assert age[["ner_q1", "ner_q3"]].tolist() == pytest.approx(ner_age.quantile([0.25, 0.75]).tolist())
    female = _row(table, "Gender: Female")
    assert female["kind"] == "level" and female["level"] == "Female" and female["er_n"] == n_female_er
    assert female["er_percent"] == pytest.approx(100 * n_female_er / 60)
    assert set(table["set"]) == {"train", "validation"}
    assert {"Gender: Female", "Gender: Male", "Alcohol consumption history: No",
            "Alcohol consumption history: Yes"} <= set(table["variable"])


def test_gender_is_coded_male_1_female_0():
    cohort = _cohort().head(4).assign(gender=["M", "F", None, "M"])
    encoded = clinical.encode(cohort, _params())
    assert encoded["gender"].tolist()[:2] == [1.0, 0.0] and np.isnan(encoded["gender"].iloc[2])


def test_selection_uses_training_patients_and_skips_a_constant_variable():
    cohort = _cohort()
    cohort.loc[cohort["split"] == "train", "bmi"] = 22.0
    tests = clinical.select_variables(cohort, _params()).set_index("variable")
    assert tests.loc["age", "selected"] and tests.loc["afp", "selected"]
    assert not tests.loc["bmi", "selected"] and "constant" in tests.loc["bmi", "note"]
    # validation rows never change the selection
    shuffled = cohort.copy()
    val = shuffled["split"] == "validation"
    shuffled.loc[val, ["age", "afp"]] = shuffled.loc[val, ["age", "afp"]].to_numpy()[::-1] * 10
    again = clinical.select_variables(shuffled, _params()).set_index("variable")
    pd.testing.assert_series_equal(tests["p"], again["p"])


def test_no_significant_variable_falls_back_or_raises():
    rng = np.random.default_rng(5)
    cohort = _cohort()
    for var in ("age", "afp"):
        cohort[var] = rng.permutation(cohort[var].to_numpy())
    cohort["gender"] = "M"
    params = _params(p_threshold=1e-9)
    with pytest.warns(UserWarning, match="smallest p"):
        tests = clinical.select_variables(cohort, params)
    assert tests["selected"].sum() == params.selection.fallback_k
    strict = params_from_dict({"cohort": {"manifest": "unused.csv"}, "clinical": {"p_threshold": 1e-9},
                               "selection": {"fallback": "error"}})
    with pytest.raises(clinical.ClinicalError, match="no clinical variable"):
        clinical.select_variables(cohort, strict)


def test_missing_values_are_imputed_with_training_statistics_only():
    cohort = _cohort()
    cohort.loc[[0, 2, 150], "afp"] = np.nan
    cohort.loc[[4, 151], "gender"] = None
    params = _params()
    features, report = clinical.model_inputs(cohort, params, ["afp", "gender"])
    train = cohort[cohort["split"] == "train"]
    assert features.loc["P000", "afp"] == pytest.approx(train["afp"].median())
    assert features.loc["P151", "gender"] == 1.0  # training mode: male
    assert not features.isna().any().any()
    counts = report.set_index(["variable", "set"])["missing"]
    assert counts[("afp", "train")] == 2 and counts[("afp", "validation")] == 1
    assert counts[("gender", "validation")] == 1
    changed = cohort.copy()
    changed.loc[changed["split"] == "validation", "afp"] *= 100
    again, _ = clinical.model_inputs(changed, params, ["afp", "gender"])
    assert again.loc["P000", "afp"] == features.loc["P000", "afp"]

    dropped, report = clinical.model_inputs(cohort, _params(missing="drop_patient"), ["afp", "gender"])
    assert len(dropped) == len(cohort) - 5 and "P150" not in dropped.index
    assert report["action"].eq("patients dropped").all()


def test_clinical_model_copes_with_a_variable_constant_in_training(tmp_path):
    cohort = _cohort()
    cohort.loc[cohort["split"] == "train", "alcohol"] = 0
    run = RunFolder(tmp_path / "run")
    model = clinical.fit_clinical_model(cohort, _params(), run)
    assert "alcohol" not in model.selected and {"age", "afp"} <= set(model.selected)
    assert any("alcohol" in note and "constant" in note for note in model.notes)
    predictions = pd.read_csv(run.predictions / "clinical_patients.csv")
    assert len(predictions) == len(cohort) and predictions["prob"].between(0, 1).all()
    val = predictions[predictions["split"] == "validation"]
    assert stats.mannwhitneyu(val.loc[val["er"] == 1, "prob"], val.loc[val["er"] == 0, "prob"],
                              alternative="greater").pvalue < 0.05
    assert (run.models / "clinical.joblib").is_file()


def test_a_missing_clinical_column_is_named():
    with pytest.raises(clinical.ClinicalError, match="afp"):
        clinical.table2(_cohort().drop(columns=["afp"]), _params())
