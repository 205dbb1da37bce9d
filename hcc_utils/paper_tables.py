"""The paper's table style for display: machine-readable frames in, text frames out (the CSVs keep their columns).

Each ``table*`` function takes the frame a stage module writes (``tables/*.csv``, same columns) and returns a frame of
strings with column headers in words, as the paper prints its tables (Cen et al. 2025, Tables 2-5):

- Table 2 (:func:`table2`): one row per characteristic, per set NER | ER | p; n (%) for categorical variables,
  mean ± SD or median (IQR) for continuous ones (median when the set's test was Mann-Whitney U);
- Tables 3 and 4 (:func:`table3`, :func:`table4`): "AUC (95% CI)" as ``0.84 (0.74-0.94)``, accuracy, sensitivity
  and specificity as fractions (the paper prints fractions, not percentages), rows grouped by architecture/model;
- Table 5 (:func:`table5`): per indicator, r (95% CI) and p;
- DeLong's tests (:func:`delong`): one row per pair of models.

Estimates have :data:`DIGITS` decimals (the paper prints three; two is the precision a cohort of a few hundred
patients supports). p-values read ``< 0.001``, ``0.012`` or ``0.34`` (:func:`format_p`); a missing value is
:data:`MISSING`. Notes a table needs below it (abbreviations, the tests behind p) are in ``attrs["footnote"]``.
"""

from __future__ import annotations

import math

import pandas as pd

DIGITS = 2
MISSING = "–"
SET_NAMES = {"train": "Training", "validation": "Validation"}
METRIC_NAMES = {"accuracy": "Accuracy", "sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV",
                "npv": "NPV"}
TEST_MARKS = "\u1d43\u1d47\u1d9c\u1d48\u1d49\u1da0\u1d4d"
"""Superscript a, b, c, ... marking which test gave a p-value (Table 2)."""


def _missing(value) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def format_p(p) -> str:
    """A p-value as journals print it: ``< 0.001``; three decimals below 0.1 (``0.012``); two from 0.1 (``0.34``)."""
    if _missing(p):
        return MISSING
    p = float(p)
    if p < 0.001:
        return "< 0.001"
    if round(p, 3) < 0.1:
        return f"{p:.3f}"
    return f"{p:.2f}"


def format_number(value, digits: int = DIGITS) -> str:
    """``value`` with ``digits`` decimals; missing as :data:`MISSING`."""
    return MISSING if _missing(value) else f"{float(value):.{digits}f}"


def format_interval(low, high, digits: int = DIGITS) -> str:
    """``0.74-0.94``; ``-0.36 to -0.08`` when a bound is negative (a hyphen would read as a minus sign)."""
    if _missing(low) or _missing(high):
        return MISSING
    sep = " to " if min(float(low), float(high)) < 0 else "-"
    return f"{format_number(low, digits)}{sep}{format_number(high, digits)}"


def format_estimate(value, low, high, digits: int = DIGITS) -> str:
    """An estimate with its interval: ``0.84 (0.74-0.94)``; ``0.50 (–)`` without an interval."""
    if _missing(value):
        return MISSING
    return f"{format_number(value, digits)} ({format_interval(low, high, digits)})"


def set_name(name: str) -> str:
    """``train`` -> ``Training``, ``validation`` -> ``Validation``; another label with a capital first letter."""
    return SET_NAMES.get(name, name[:1].upper() + name[1:])


def _ordered(values: pd.Series) -> list:
    """The distinct values in order of first appearance."""
    return list(dict.fromkeys(values.tolist()))


def _performance(frame: pd.DataFrame, who: str, header: str, digits: int) -> pd.DataFrame:
    """Tables 3 and 4: one block of rows per ``who`` (its order in ``frame``), training then validation."""
    order = {name: i for i, name in enumerate(_ordered(frame[who]))}
    sets = {name: i for i, name in enumerate(_ordered(frame["dataset"]))}
    rows = sorted(frame.to_dict("records"), key=lambda r: (order[r[who]], sets[r["dataset"]]))
    cells = {header: [r[who] for r in rows], "Set": [set_name(str(r["dataset"])) for r in rows]}
    if "n" in frame:
        cells["n"] = [MISSING if _missing(r["n"]) else str(int(r["n"])) for r in rows]
    if "accuracy" in frame:
        cells["Accuracy"] = [format_number(r["accuracy"], digits) for r in rows]
    cells["AUC (95% CI)"] = [format_estimate(r["auc"], r["auc_low"], r["auc_high"], digits) for r in rows]
    for metric in (m for m in METRIC_NAMES if m != "accuracy" and m in frame):
        cells[METRIC_NAMES[metric]] = [format_number(r[metric], digits) for r in rows]
    out = pd.DataFrame(cells)
    out.attrs["footnote"] = ("AUC, area under the ROC curve, with its 95% DeLong confidence interval; accuracy, "
                             "sensitivity and specificity are fractions.")
    return out


def table3(frame: pd.DataFrame, digits: int = DIGITS) -> pd.DataFrame:
    """Table 3 (``tables/table3_slice_cnn.csv``: dataset, architecture, accuracy, auc, auc_low, auc_high,
    sensitivity, specificity) in the paper's style: Architecture, Set, Accuracy, AUC (95% CI), Sensitivity,
    Specificity."""
    return _performance(frame, "architecture", "Architecture", digits)


def table4(frame: pd.DataFrame, digits: int = DIGITS) -> pd.DataFrame:
    """Table 4 (``tables/table4_models.csv``: dataset, model, accuracy, auc, auc_low, auc_high, sensitivity,
    specificity) in the paper's style: Model, Set, Accuracy, AUC (95% CI), Sensitivity, Specificity."""
    return _performance(frame, "model", "Model", digits)


def table5(frame: pd.DataFrame, digits: int = DIGITS) -> pd.DataFrame:
    """Table 5 (``tables/table5_pathology.csv``: feature, indicator, r, r_low, r_high, p; optionally n) in the
    paper's style: one row per feature, per indicator "r (95% CI)" and "p" (and "n" when it differs between
    cells; a single n goes to the footnote)."""
    features, indicators = _ordered(frame["feature"]), _ordered(frame["indicator"])
    cells = {(r["feature"], r["indicator"]): r for r in frame.to_dict("records")}
    n_values = set(frame["n"].dropna().astype(int)) if "n" in frame else set()
    columns: dict[tuple[str, str], list[str]] = {("", "Feature"): features}
    for indicator in indicators:
        found = [cells.get((f, indicator)) for f in features]
        columns[(indicator, "r (95% CI)")] = [MISSING if c is None else format_estimate(c["r"], c["r_low"],
                                                                                        c["r_high"], digits)
                                              for c in found]
        columns[(indicator, "p")] = [MISSING if c is None else format_p(c["p"]) for c in found]
        if len(n_values) > 1:
            columns[(indicator, "n")] = [MISSING if c is None or _missing(c["n"]) else str(int(c["n"]))
                                         for c in found]
    out = pd.DataFrame(columns)
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    note = ("r, Pearson's correlation coefficient with its Fisher-z confidence interval. |r| < 0.3: weak, "
            "0.3 ≤ |r| < 0.5: moderate correlation.")
    if len(n_values) == 1:
        note += f" n = {n_values.pop()} patients in every cell."
    out.attrs["footnote"] = note
    return out


def delong(frame: pd.DataFrame, digits: int = DIGITS) -> pd.DataFrame:
    """DeLong's tests (``tables/delong.csv``: dataset, model_a, model_b, auc_a, auc_b, z, p): Set, Comparison,
    AUCs ("0.84 vs 0.68"), z, p."""
    return pd.DataFrame({
        "Set": [set_name(str(s)) for s in frame["dataset"]],
        "Comparison": [f"{a} vs {b}" for a, b in zip(frame["model_a"], frame["model_b"], strict=True)],
        "AUCs": [f"{format_number(a, digits)} vs {format_number(b, digits)}"
                 for a, b in zip(frame["auc_a"], frame["auc_b"], strict=True)],
        "z": [format_number(z, digits) for z in frame["z"]],
        "p": [format_p(p) for p in frame["p"]],
    })


def comparators(frame: pd.DataFrame, digits: int = DIGITS) -> pd.DataFrame:
    """Notebook 11's table (``tables/comparators.csv``) in Table 4's style: Comparator, Tests, n, AUC (95% CI),
    Accuracy, Sensitivity, Specificity, p against DL-MIL (DeLong), Time (s)."""
    out = pd.DataFrame({
        "Comparator": frame["comparator"], "Tests": frame["family"],
        "n": [MISSING if _missing(n) else str(int(n)) for n in frame["n_validation"]],
        "AUC (95% CI)": [format_estimate(a, lo, hi, digits)
                         for a, lo, hi in zip(frame["auc"], frame["auc_low"], frame["auc_high"], strict=True)],
        **{METRIC_NAMES[m]: [format_number(v, digits) for v in frame[m]]
           for m in ("accuracy", "sensitivity", "specificity")},
        "p vs DL-MIL": [format_p(p) for p in frame["delong_p"]],
        "Time (s)": [MISSING if _missing(t) else f"{float(t):.1f}" for t in frame["seconds"]],
    })
    out.attrs["footnote"] = ("Validation patients. AUC, area under the ROC curve, with its 95% DeLong confidence "
                             "interval; accuracy, sensitivity and specificity (fractions) at the cut-off chosen on "
                             "training patients only; p, DeLong's paired test against DL-MIL.")
    return out


# -- Table 2 --------------------------------------------------------------------------------------------------

TABLE2_NUMBERS = tuple(f"{g}_{stat}" for g in ("ner", "er") for stat in ("n", "mean", "sd", "median", "q1", "q3",
                                                                        "percent"))
"""The numeric columns of ``clinical.table2`` the paper style is made from (besides kind, level, p, test)."""


INDENT = "\u2003"
"""An em space: level rows sit under their variable (HTML keeps it, unlike a leading space)."""
SUMMARY_NAMES = {False: "mean ± SD", True: "median (IQR)"}


def _decimals(centre) -> int:
    """Decimals by the size of the mean or median, as journals print them: none from 100 (AFP 309), one from 10
    (age 54.9), two below (Ki-67 0.23)."""
    size = 0.0 if _missing(centre) else abs(float(centre))
    return 0 if size >= 100 else 1 if size >= 10 else 2


def _summary(row: dict, g: str, median: bool) -> str:
    """One group's cell (``g``: ``ner`` or ``er``) of a continuous or level row."""
    if row["kind"] == "level":
        return MISSING if _missing(row[f"{g}_percent"]) else f"{int(row[f'{g}_n'])} ({row[f'{g}_percent']:.1f}%)"
    if _missing(row[f"{g}_mean"]):
        return MISSING
    if median:
        d = _decimals(row[f"{g}_median"])
        return f"{format_number(row[f'{g}_median'], d)} ({format_interval(row[f'{g}_q1'], row[f'{g}_q3'], d)})"
    d = _decimals(row[f"{g}_mean"])
    sd = "" if _missing(row[f"{g}_sd"]) else f" ± {format_number(row[f'{g}_sd'], d)}"
    return format_number(row[f"{g}_mean"], d) + sd


def _label(row: dict, median: bool) -> str:
    """A row's Characteristic: a level indented under its variable, the summary named after a variable."""
    if row["kind"] == "level":
        return INDENT + str(row["level"])
    return f"{row['variable']}, {'n (%)' if row['kind'] == 'categorical' else SUMMARY_NAMES[median]}"


def table2(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 2 (``tables/table2_baseline.csv``, ``clinical.table2``) in the paper's layout: a Characteristic column,
    then per set NER (n=..) | ER (n=..) | p under "Training set (n=..)" and "Validation set (n=..)".

    A continuous variable reads median (IQR) when its test was Mann-Whitney U in any set (the data did not look
    normal), else mean ± SD, and its label says which; a categorical variable's levels read n (%) of the group's
    patients with a value. Each p carries a superscript letter naming its test, explained in ``attrs["footnote"]``.
    """
    absent = [c for c in ("kind", "level", *TABLE2_NUMBERS) if c not in frame.columns]
    if absent:
        raise ValueError(f"Table 2 lacks column(s) {absent}: it was made by an older version of "
                         "hcc_utils.clinical.table2; rerun notebook 05_models")
    records = frame.to_dict("records")
    cell = {(r["set"], r["variable"]): r for r in records}
    variables = {r["variable"]: r for r in records if r["kind"] != "patients"}
    median = {v: any(r["variable"] == v and "Mann-Whitney" in str(r["test"]) for r in records) for v in variables}
    columns = {("", "Characteristic"): [_label(r, median[v]) for v, r in variables.items()]}
    tests: dict[str, str] = {}
    for s in _ordered(frame["set"]):
        patients = next(r for r in records if r["set"] == s and r["kind"] == "patients")
        counts = {g: int(patients[f"{g}_n"]) for g in ("ner", "er")}
        top = f"{set_name(str(s))} set (n={sum(counts.values())})"
        rows = [cell.get((s, v)) for v in variables]
        for g, group in (("ner", "NER"), ("er", "ER")):
            columns[(top, f"{group} (n={counts[g]})")] = [
                MISSING if r is None else "" if r["kind"] == "categorical" else _summary(r, g, median[v])
                for v, r in zip(variables, rows, strict=True)]
        p_cells = []
        for r in rows:
            if r is None or r["kind"] == "level":
                p_cells.append("")
                continue
            test = str(r["test"]) if isinstance(r["test"], str) else ""
            mark = tests.setdefault(test, TEST_MARKS[len(tests) % len(TEST_MARKS)]) if test else ""
            p_cells.append(format_p(r["p"]) + mark)
        columns[(top, "p")] = p_cells
    out = pd.DataFrame(columns)
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    note = "ER, early recurrence; NER, non-early recurrence; SD, standard deviation; IQR, interquartile range."
    if tests:
        note += " p: " + "; ".join(f"{mark} {test}" for test, mark in tests.items()) + "."
    out.attrs["footnote"] = note
    return out
