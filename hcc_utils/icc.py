"""Reader agreement: ICC(3,1) per feature between two readers' feature tables (docs/method.md section 5).

The radiomics model keeps features whose ICC(3,1) (two-way mixed effects, consistency, single rater; Shrout &
Fleiss 1979, computed by ``pingouin.intraclass_corr``) between the two readers' masks is above
``radiomics.icc_threshold`` (paper: 0.75)::

    >>> table = icc_table(reader1_features, reader2_features)   # feature, icc, ci_low, ci_high
    >>> reliable_features(table, 0.75)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pingouin
from joblib import Parallel, delayed


def _icc3(values: np.ndarray) -> tuple[float, float, float]:
    """ICC(3,1) (two-way mixed, consistency, single rater) and its 95% CI via ``pingouin.intraclass_corr``."""
    values = values - values.mean(axis=0)
    if not np.ptp(values) > 0:
        return np.nan, np.nan, np.nan  # no between-patient variation in either reading
    # ICC(3,1) and its F-based CI are unchanged by a shift per reader and one common scale; centring each
    # reader avoids the cancellation that a large mean over a small spread (e.g. wavelet-LLL intensities, a
    # reader's offset) causes in the ANOVA sums of squares.
    values = values / values.std()
    n = values.shape[0]
    long = pd.DataFrame({"patient": np.tile(np.arange(n), 2), "reader": np.repeat([1, 2], n),
                         "value": values.T.ravel()})
    with np.errstate(all="ignore"):
        table = pingouin.intraclass_corr(long, targets="patient", raters="reader", ratings="value")
    row = table.loc[table["Type"].isin(["ICC3", "ICC(C,1)"])].iloc[0]
    return float(row["ICC"]), float(row["CI95"][0]), float(row["CI95"][1])


@contextlib.contextmanager
def _full_precision_ci() -> Iterator[None]:
    """pingouin rounds its CI95 column to 2 decimals by default; keep full precision for the table."""
    old = dict(pingouin.options)
    pingouin.options["round.column.CI95"] = None
    try:
        yield
    finally:
        pingouin.options.clear()
        pingouin.options.update(old)


def icc_table(reader1: pd.DataFrame, reader2: pd.DataFrame, n_jobs: int = 1) -> pd.DataFrame:
    """ICC(3,1) per feature between two readers' feature tables, on the patients both have.

    Returns feature, icc, ci_low, ci_high (95%); NaN for a feature constant over both readers.
    """
    common = reader1.index.intersection(reader2.index)
    features = [f for f in reader1.columns if f in reader2.columns]
    if len(common) < 3:
        raise ValueError(f"ICC needs at least 3 patients with both readers' features, have {len(common)}")
    a = reader1.loc[common, features].to_numpy(float)
    b = reader2.loc[common, features].to_numpy(float)
    with _full_precision_ci():
        if n_jobs == 1:
            values = [_icc3(np.column_stack([a[:, j], b[:, j]])) for j in range(len(features))]
        else:
            pairs = (np.column_stack([a[:, j], b[:, j]]) for j in range(len(features)))
            values = Parallel(n_jobs=n_jobs, batch_size=64)(delayed(_icc3)(pair) for pair in pairs)
    table = pd.DataFrame(values, columns=["icc", "ci_low", "ci_high"])
    table.insert(0, "feature", features)
    return table


def reliable_features(icc: pd.DataFrame, threshold: float) -> list[str]:
    """Features with ICC above ``threshold`` (paper: ICC > 0.75), in table order."""
    return icc.loc[icc["icc"] > threshold, "feature"].tolist()
