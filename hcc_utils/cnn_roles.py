"""Who trains which slice CNN: the inner split of the training patients and the cross-fit folds (docs/method.md
section 3).

Both are patient-level partitions of the *training* patients, stratified by ER and seeded by ``params.seed``;
validation patients are never in either. Neither is ever silent about a partition it cannot stratify:

- ``patient_roles``: under ``leak_free`` the inner training patients fit the networks, the inner validation
  patients choose the epoch and the architecture (``cnn.inner_validation_fraction``). When an outcome group is
  too small to stratify, the split is drawn at random instead, with a note (``InnerSplitWarning``).
- ``cross_fit_folds``: with ``cnn.cross_fit_folds = K`` (leak_free), K folds; the network of fold k learns on the
  other folds and scores fold k (``hcc_utils.cnn_cross_fit``). Each fold must hold patients of both outcomes, so K
  is at most the smaller outcome group's count of training patients; a larger K is refused
  (``CrossFitError``), with the counts.

Example::

    >>> roles = patient_roles(patients, "leak_free", 0.2, seed=0)     # patient_id -> inner_train, ...
    >>> folds = cross_fit_folds(patients, k=5, seed=0)                # training patient_id -> 1..5
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split


class InnerSplitWarning(UserWarning):
    """The inner CNN split could not be stratified by ER (docs/method.md section 3)."""


class CrossFitError(ValueError):
    """``cnn.cross_fit_folds`` does not fit the training patients; the message gives the counts and the fix."""


def patient_roles(patients: pd.DataFrame, protocol: str, inner_fraction: float, seed: int) -> pd.Series:
    """Each patient's role, indexed by patient_id: ``inner_train``/``inner_validation``/``validation``
    (leak_free: the inner split is stratified by ER, by patient, seeded) or ``train``/``validation``.

    When an outcome group has too few training patients to stratify (tiny cohorts), the inner split is drawn
    without stratification, and that is said, never silent: ``attrs["inner_split_note"]`` gives the counts, the
    scikit-learn reason and, when the inner validation patients all share one outcome, the consequence (no epoch
    has a selection AUC); ``attrs["inner_split"]`` is a short label ("stratified by ER", or "NOT stratified: ..."),
    which ``cnn.training_plan`` shows as a column; ``cnn.train_and_predict`` raises the note as an
    ``InnerSplitWarning``. Both are empty under ``onekey_compat`` (no inner split).
    """
    roles = pd.Series(np.where(patients["split"] == "train", "train", "validation"),
                      index=patients["patient_id"].astype(str), name="role")
    roles.attrs.update(inner_split="", inner_split_note="")
    if protocol != "leak_free":
        return roles
    train = patients[patients["split"] == "train"]
    ids = train["patient_id"].astype(str)
    label, note = "stratified by ER", ""
    try:
        _, inner_val = train_test_split(ids, test_size=inner_fraction, stratify=train["er"], random_state=seed)
    except ValueError as exc:  # too few patients of a class to stratify (tiny cohorts)
        _, inner_val = train_test_split(ids, test_size=inner_fraction, random_state=seed)
        n_er, inner_er = int(train["er"].sum()), train.set_index(ids)["er"].loc[inner_val.to_numpy()]
        counts = (f"{n_er} ER and {len(train) - n_er} NER training patients; the inner validation set has "
                  f"{int(inner_er.sum())} ER and {int(len(inner_er) - inner_er.sum())} NER")
        label = f"NOT stratified by ER (random): {counts}"
        note = f"the inner split is NOT stratified by ER (random instead): {counts} (scikit-learn: {exc})"
        if inner_er.nunique() < 2:
            label += "; one outcome only: no selection AUC, last epoch kept"
            note += ("; with one outcome only, no epoch has a defined selection AUC, so each network keeps its "
                     "last epoch and the architecture is the first listed (or cnn.downstream_architecture)")
    roles[roles == "train"] = "inner_train"
    roles.loc[inner_val.to_numpy()] = "inner_validation"
    roles.attrs.update(inner_split=label, inner_split_note=note)
    return roles


def cross_fit_folds(patients: pd.DataFrame, k: int, seed: int) -> pd.Series:
    """The cross-fit fold (1..K) of each training patient, indexed by patient_id (name ``fold``): K folds by
    patient, stratified by ER (``StratifiedKFold``, shuffled, seeded by ``seed``). Validation patients are left out.

    ``attrs["note"]`` says how the folds were drawn ("stratified by ER: 5 folds of 26-27 training patients").

    Raises:
        CrossFitError: ``k`` below 2, or above the smaller outcome group's count of training patients (a fold
            would hold no patient of that outcome, and stratification is impossible); the message gives the
            counts and the largest K that works.
    """
    train = patients[patients["split"] == "train"]
    ids, er = train["patient_id"].astype(str).to_numpy(), train["er"].astype(int).to_numpy()
    n_er, n_ner = int(er.sum()), int(len(er) - er.sum())
    if k < 2:
        raise CrossFitError(f"cnn.cross_fit_folds = {k}: cross-fitting needs K >= 2 folds (0 or null: off)")
    if k > min(n_er, n_ner):
        largest = (f"K can be at most {min(n_er, n_ner)}" if min(n_er, n_ner) >= 2
                   else "no K >= 2 works: turn cross-fitting off (cnn.cross_fit_folds: 0)")
        raise CrossFitError(
            f"cnn.cross_fit_folds = {k}: the training patients hold {n_er} ER and {n_ner} NER, so {k} folds "
            f"stratified by ER cannot all hold patients of both outcomes; {largest}, or use a larger cohort")
    folds = pd.Series(0, index=pd.Index(ids, name="patient_id"), name="fold")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(ids, er), start=1):
        folds.iloc[held_out] = fold
    sizes = folds.value_counts()
    folds.attrs["note"] = (f"stratified by ER: {k} folds of {sizes.min()}"
                           f"{'' if sizes.min() == sizes.max() else f'-{sizes.max()}'} training patients")
    return folds


__all__ = ["CrossFitError", "InnerSplitWarning", "cross_fit_folds", "patient_roles"]
