"""Correlation of the selected MIL features with pathology (docs/method.md section 6; paper Table 5, Fig. 6).

For each selected feature and each pathological indicator, Pearson's r with its two-sided p (t-test with n - 2
degrees of freedom) and a Fisher-z confidence interval::

    z = atanh(r),  se = 1 / sqrt(n - 3),  CI = tanh(z -+ z_(1-alpha/2) * se)

computed by ``scipy.stats.pearsonr`` (its ``confidence_interval`` is this Fisher-z interval). Indicators are
coded as in the manifest: MVI grade M0/M1/M2 -> 0/1/2, Ki-67 index as a fraction, Edmondson-Steiner grade I-IV ->
1-4. Missing pathology values are left out pair by pair, so each cell has its own n. A cell that cannot be computed
(a constant feature or indicator, fewer than 4 pairs) gives a warning naming the feature and indicator and is left
empty (r, CI and p missing) instead of scipy's NaN-with-warning output.

Example::

    features, pathology = load_inputs(run, params)
    corr = correlate_with_pathology(features, pathology, level=0.95)
    corr.table          # Table 5: feature, indicator, r, r_low, r_high, p
    corr.n              # pairs per cell (feature x indicator)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from hcc_utils import artifacts
from hcc_utils.cohort import ground_truth_path, load_cohort
from hcc_utils.config import Params
from hcc_utils.model_registry import DL_MIL
from hcc_utils.run_folder import RunFolder
from hcc_utils.synth import truth as synth_truth

INDICATORS = {"mvi_grade": "MVI grade", "ki67": "Ki-67", "edmondson": "Edmondson-Steiner grade"}
"""manifest column -> name in Table 5"""
TABLE5_COLUMNS = list(artifacts.TABLE5.columns)
MIN_PAIRS = 4
"""fewest complete pairs with a defined Fisher-z interval (se = 1/sqrt(n - 3))"""
LATENT_NAMES = {synth_truth.INVASIVENESS_COLUMN: "latent invasiveness",
                synth_truth.PROLIFERATION_COLUMN: "latent proliferation"}
"""ground_truth.csv latent column (``hcc_utils.synth.truth``) -> name of the reference row"""


class PathologyWarning(UserWarning):
    """A correlation cell left empty (constant input or too few pairs)."""


@dataclass(frozen=True)
class PearsonResult:
    """Pearson r, its Fisher-z interval and two-sided p over ``n`` complete pairs (NaN when undefined)."""

    r: float
    low: float
    high: float
    p: float
    n: int
    note: str = ""
    """why r is undefined (empty when it is defined)"""


@dataclass(frozen=True)
class PathologyCorrelation:
    """Table 5 (``table``, the docs/architecture.md columns) and the number of pairs per cell (``n``)."""

    table: pd.DataFrame
    """feature, indicator, r, r_low, r_high, p: one row per feature and indicator"""
    n: pd.DataFrame
    """complete pairs, features as rows, indicators as columns"""

    def with_n(self) -> pd.DataFrame:
        """``table`` with the n of each cell as a last column (for display)."""
        n = self.n.stack().reset_index()
        n.columns = ["feature", "indicator", "n"]
        return self.table.merge(n, on=["feature", "indicator"], how="left")


def pearson_cell(x, y, level: float = 0.95, label: str = "", warn: bool = True) -> PearsonResult:
    """One cell of Table 5: Pearson r of ``x`` and ``y`` over the pairs where both are present.

    The arithmetic is scipy's ``pearsonr`` and its Fisher-z ``confidence_interval``; this adds pairwise deletion
    of missing values and turns undefined cells into a warning and an empty result.

    Args:
        x, y: equal-length numeric sequences; NaN/None marks a missing value.
        level: confidence level of the interval (fraction, e.g. 0.95).
        label: what is being correlated, for the warning, as "FEATURE vs INDICATOR".
        warn: issue the ``PathologyWarning`` (else only ``note`` says why the cell is empty).

    Returns:
        A ``PearsonResult``; r, CI and p are NaN (with a ``PathologyWarning``) when a variable is constant over
        the complete pairs or there are fewer than ``MIN_PAIRS`` of them.
    """
    x = pd.to_numeric(pd.Series(np.asarray(x, dtype=object)), errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(pd.Series(np.asarray(y, dtype=object)), errors="coerce").to_numpy(dtype=float)
    what = label or "correlation"
    if x.shape != y.shape:
        raise ValueError(f"{what}: x and y differ in length ({len(x)} vs {len(y)})")
    complete = np.isfinite(x) & np.isfinite(y)
    x, y = x[complete], y[complete]
    n = int(complete.sum())
    note = ""
    if n < MIN_PAIRS:
        note = f"{what}: only {n} patient(s) with both values (need {MIN_PAIRS}); cell left empty"
    else:
        names = what.split(" vs ") if what.count(" vs ") == 1 else ["x", "y"]
        constant = [name for name, values in zip(names, (x, y), strict=True) if np.ptp(values) == 0]
        if constant:
            verb = "is" if len(constant) == 1 else "are"
            note = (f"{what}: {' and '.join(constant)} {verb} constant over the {n} patients with both values, "
                    "so Pearson r is undefined; cell left empty")
    if note:
        if warn:
            warnings.warn(note, PathologyWarning, stacklevel=2)
        return PearsonResult(math.nan, math.nan, math.nan, math.nan, n, note)
    result = stats.pearsonr(x, y)
    ci = result.confidence_interval(confidence_level=level)
    return PearsonResult(float(result.statistic), float(ci.low), float(ci.high), float(result.pvalue), n)


def correlate_with_pathology(features: pd.DataFrame, pathology: pd.DataFrame, level: float = 0.95,
                             indicators: dict[str, str] | None = None) -> PathologyCorrelation:
    """Table 5: Pearson r (Fisher-z CI, p) of every column of ``features`` with every pathological indicator.

    Args:
        features: one row per patient (index patient_id), one column per selected MIL feature.
        pathology: one row per patient (index patient_id) with the indicator columns (``mvi_grade``, ``ki67``,
            ``edmondson``); patients are matched on the index, those without features are ignored.
        level: confidence level (fraction).
        indicators: column -> displayed name; default ``INDICATORS``.

    Empty cells come with one ``PathologyWarning`` each, or one per feature that is constant over all patients.
    """
    indicators = INDICATORS if indicators is None else indicators
    missing = [c for c in indicators if c not in pathology.columns]
    if missing:
        raise KeyError(f"pathology table lacks indicator column(s) {missing}; expected {list(indicators)}")
    joined = features.join(pathology[list(indicators)], how="left", rsuffix="_indicator")
    rows, counts, notes = [], {}, []
    for feature in features.columns:
        known = features[feature].dropna()
        if known.nunique() == 1:
            notes.append(f"{feature} is {known.iloc[0]:g} for all {len(known)} patients, so its correlations are "
                         "undefined; its Table 5 cells are left empty")
        for column, name in indicators.items():
            indicator = column if column not in features.columns else f"{column}_indicator"
            res = pearson_cell(joined[feature], joined[indicator], level, f"{feature} vs {name}", warn=False)
            rows.append({"feature": feature, "indicator": name, "r": res.r, "r_low": res.low,
                         "r_high": res.high, "p": res.p})
            counts[(feature, name)] = res.n
            if res.note and known.nunique() != 1:
                notes.append(res.note)
    for note in notes:
        warnings.warn(note, PathologyWarning, stacklevel=2)
    table = pd.DataFrame(rows, columns=TABLE5_COLUMNS)
    n = pd.Series(counts).unstack().reindex(index=list(features.columns), columns=list(indicators.values()))
    return PathologyCorrelation(table, n.astype(int))


def pathology_summary(pathology: pd.DataFrame) -> pd.DataFrame:
    """Per indicator: its coding, patients with a value, missing, mean and SD (the n behind Table 5's cells)."""
    coding = {"mvi_grade": "M0/M1/M2 -> 0/1/2", "ki67": "fraction of positive tumour cells",
              "edmondson": "grade I-IV -> 1-4"}
    rows = [{"indicator": name, "coding": coding.get(column, ""), "n": int(pathology[column].notna().sum()),
             "missing": int(pathology[column].isna().sum()), "mean": pathology[column].mean(),
             "sd": pathology[column].std()} for column, name in INDICATORS.items()]
    return pd.DataFrame(rows)


def significance_stars(p: float) -> str:
    """'***' p < 0.001, '**' p < 0.01, '*' p < 0.05, '' otherwise or missing (paper Fig. 6)."""
    if p is None or not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


# -- inputs from the run folder and the cohort ----------------------------------------------------------------

def pathology_inputs(mil_features: pd.DataFrame, selected: list[str], cohort: pd.DataFrame,
                     patients: str = "all") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The selected features and the pathology of the patients in ``patients`` (all, train or validation).

    ``mil_features`` is indexed by patient_id; ``cohort`` is ``cohort.load_cohort``'s table (with ``split``).
    Only patients with MIL features take part (excluded patients have none).
    """
    if patients not in ("all", "train", "validation"):
        raise ValueError(f"pathology.patients must be 'all', 'train' or 'validation', got {patients!r}")
    absent = [f for f in selected if f not in mil_features.columns]
    if absent:
        raise KeyError(f"selected feature(s) {absent} are not columns of the MIL feature table")
    cohort = cohort.assign(patient_id=cohort["patient_id"].astype(str)).set_index("patient_id")
    ids = [p for p in mil_features.index.astype(str) if p in cohort.index]
    if patients != "all":
        ids = [p for p in ids if cohort.at[p, "split"] == patients]
    if not ids:
        raise ValueError(f"no patients with MIL features in the '{patients}' set")
    features = mil_features.set_axis(mil_features.index.astype(str)).loc[ids, list(selected)]
    return features, cohort.loc[ids, list(INDICATORS) + ["split"]]


def load_inputs(run: RunFolder, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`pathology_inputs` from the run folder (MIL table, DL-MIL selected features) and the cohort."""
    mil_features = artifacts.read_mil_features(run)
    selected = artifacts.read_model_summary(run, DL_MIL.slug)["features"]
    return pathology_inputs(mil_features, selected, load_cohort(params, run), params.pathology.patients)


def write_table5(corr: PathologyCorrelation, run: RunFolder) -> pd.DataFrame:
    """Write Table 5 (``artifacts.TABLE5``; empty cells stay empty) and return it."""
    artifacts.write_table(run, artifacts.TABLE5, corr.table[TABLE5_COLUMNS])
    return corr.table


@dataclass(frozen=True)
class LatentReference:
    """Notebook 08's reference: the latent biology's correlation with pathology, or why there is none."""

    correlation: PathologyCorrelation | None
    """the latents' Table 5 (``correlate_with_pathology``); None without usable ground truth"""
    note: str
    """why there is no reference (not a synthetic cohort, or its ground truth ignored); empty when there is one"""

    def with_n(self) -> pd.DataFrame | None:
        """``correlation.with_n()``, or None when there is no reference (then show ``note``)."""
        return None if self.correlation is None else self.correlation.with_n()


NO_GROUND_TRUTH = (f"Not a synthetic cohort: no {synth_truth.GROUND_TRUTH_FILE} beside the manifest, so there is "
                   "no latent reference.")
"""``LatentReference.note`` for a cohort without ground truth"""


def latent_reference(params: Params, patient_ids=None) -> pd.DataFrame | None:
    """The synthetic cohort's latent invasiveness and proliferation (``ground_truth.csv``), or None.

    Only for the latent reference in notebook 08; the modelling code never reads ground truth. Read with
    ``hcc_utils.synth.truth.matching_ground_truth`` (its latent columns), renamed by ``LATENT_NAMES`` and
    indexed by patient_id (``patient_ids`` selects and orders them). Returns None for a user's manifest or a
    synthetic cohort not generated yet (no ground truth), and None with a ``GroundTruthIgnored`` warning saying
    why when the file there does not describe this cohort (a latent column or one of ``patient_ids`` missing).
    """
    path = ground_truth_path(params)
    if path is None:
        return None
    latent, note = _latents(path, patient_ids)
    if latent is None:
        warnings.warn(note, synth_truth.GroundTruthIgnored, stacklevel=2)
    return latent


def _latents(path, patient_ids) -> tuple[pd.DataFrame | None, str]:
    """:func:`latent_reference` from the file at ``path``, or None and why it was ignored."""
    columns = list(LATENT_NAMES)
    truth, why = synth_truth.matching_ground_truth(path, columns, patient_ids)
    if truth is None:
        return None, f"{why}; there is no latent reference."
    latent = truth.set_index(synth_truth.PATIENT_ID)[columns].rename(columns=LATENT_NAMES)
    if patient_ids is not None:
        latent = latent.loc[[str(p) for p in patient_ids]]
    return latent, ""


def reference_correlation(params: Params, pathology: pd.DataFrame, level: float = 0.95) -> LatentReference:
    """On a synthetic cohort: the latent biology's correlation with the same indicators, the same patients.

    A reference, not a ceiling: the images and the pathology are both generated from these latents, so the
    latents' correlation is what a feature that measured one latent exactly would show on these patients. A MIL
    feature can exceed it, by chance (the intervals are wide at these n), by mixing both latents, or by following
    an indicator non-linearly. Without usable ground truth (a user's cohort, or a ``ground_truth.csv`` that does
    not describe this cohort) the reference's ``correlation`` is None and its ``note`` says why.
    """
    path = ground_truth_path(params)
    if path is None:
        return LatentReference(None, NO_GROUND_TRUTH)
    latent, note = _latents(path, pathology.index)
    if latent is None:
        return LatentReference(None, note)
    return LatentReference(correlate_with_pathology(latent, pathology, level), "")
