"""Multi-instance learning features: each patient's 11 slice probabilities become 13 PLH and 13 BoW features.

docs/method.md section 4 (paper: "MIL Feature Extraction", Supplementary Material 1B). Every slice of a patient has a
positive-class (ER) probability ``p`` from the slice CNN and a predicted label ``p >= label_threshold`` (0.5).

Bins (13 per slice, two tokens per slice):

* probability bin: ``p`` rounded to one decimal, 11 bins 0.0, 0.1, ..., 1.0, named ``00`` .. ``10``
  (``01`` = bin 0.1). Rounding is numpy's: ``bin = rint(10 * p)``, halves to even *after* the floating-point
  multiplication, exactly what ``numpy.round(p, 1)`` and ``pandas.Series.round(1)`` (the original tooling) do.
  So 0.25 -> 0.2, 0.35 -> 0.4, 0.15 -> 0.2 (``10 * 0.15 == 1.5`` in binary), 0.05 -> 0.0; Python's built-in
  ``round`` differs on some of these (``round(0.15, 1) == 0.1``).
* label bin: the predicted label, named ``0`` / ``1``.

Features (26 columns, always all of them, in this order, also when a bin is empty for every patient)::

    PLH_00 .. PLH_10, PLH_0, PLH_1, BoW_00 .. BoW_10, BoW_0, BoW_1

* PLH (predicted likelihood histogram): the share (fraction, 0..1) of the patient's slices in each bin; the 11
  probability shares sum to 1 and so do the 2 label shares.
* BoW (bag of words): each patient is a document whose words are its slices' bin tokens, weighted by TF-IDF with
  scikit-learn's defaults: raw counts tf, smoothed ``idf = ln((1 + n) / (1 + df)) + 1`` with ``n`` the number of
  documents the idf is fitted on, then each row L2-normalised. As in the original tooling there are two separate
  transforms, one over the 11 probability tokens (those 11 columns normalised together) and one over the 2 label
  tokens (those 2 normalised together).

Which probabilities (``mil_inputs``, column ``prob_source``): validation patients always take the eval-mode pass
of the chosen checkpoint. Training patients take, under leak_free, the same pass (``eval``), or with
``cnn.cross_fit_folds`` the cross-fitted pass (``cross_fit``: each patient scored by a network that did not train
on it, ``hcc_utils.cnn_cross_fit``); under onekey_compat the chosen epoch's logged training-pass probabilities
(``train_pass``: augmented, train mode), as the original tooling did. ``mil.training_predictions`` overrides the
protocol's choice.

Leakage: the idf is the only fitted quantity. ``idf_on="train"`` (protocol ``leak_free``) fits it on the training
patients only; ``idf_on="all"`` (protocol ``onekey_compat``, as the original tooling) on every patient, so the
validation patients' slices change the training features. ``idf_on_for(params.protocol)`` maps one to the other.

Example::

    >>> preds = pd.DataFrame({"patient_id": ["a", "a", "b", "b"], "prob": [0.12, 0.71, 0.5, 0.5]})
    >>> mil_features(preds, train_ids=["a", "b"]).loc["a", ["PLH_01", "PLH_07", "PLH_0", "PLH_1"]].tolist()
    [0.5, 0.5, 0.5, 0.5]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer

from hcc_utils import artifacts
from hcc_utils.config import Params
from hcc_utils.run_folder import RunFolder

PROB_BINS = [f"{i:02d}" for i in range(11)]
LABEL_BINS = ["0", "1"]
FEATURE_COLUMNS = list(artifacts.MIL_FEATURE_COLUMNS)  # the file's schema: PLH_00..PLH_1, then BoW_00..BoW_1
PLH_COLUMNS = [c for c in FEATURE_COLUMNS if c.startswith("PLH_")]
BOW_COLUMNS = [c for c in FEATURE_COLUMNS if c.startswith("BoW_")]

# Document words: "p03" for probability bin 0.3, "y1" for predicted label 1. The token pattern keeps them whole.
_PROB_TOKENS = [f"p{b}" for b in PROB_BINS]
_LABEL_TOKENS = [f"y{b}" for b in LABEL_BINS]
_TOKEN_PATTERN = r"[^ ]+"

IdfOn = Literal["train", "all"]
SliceSource = Literal["eval", "train_pass", "cross_fit"]


class MILError(ValueError):
    """Slice predictions that cannot be turned into MIL features; the message names the patients."""


def idf_on_for(protocol: str) -> IdfOn:
    """The idf fitting set of a protocol: ``leak_free`` -> ``"train"``, ``onekey_compat`` -> ``"all"``."""
    mapping: dict[str, IdfOn] = {"leak_free": "train", "onekey_compat": "all"}
    if protocol not in mapping:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(mapping)}")
    return mapping[protocol]


def training_source(params: Params) -> SliceSource:
    """Where the training patients' slice probabilities come from: ``mil.training_predictions``, or by protocol
    (``leak_free`` -> ``"cross_fit"`` when ``cnn.cross_fit_folds`` is set, else ``"eval"``; ``onekey_compat`` ->
    ``"train_pass"``)."""
    chosen = params.mil.training_predictions
    if chosen != "protocol":
        return chosen
    if params.protocol == "leak_free":
        return "cross_fit" if params.cross_fit_k else "eval"
    return "train_pass"


def _cross_fitted(table: pd.DataFrame, cross_fit: pd.DataFrame | None) -> pd.DataFrame:
    """Training slices take the cross-fitted probability (source ``cross_fit``); every one must have one."""
    if cross_fit is None:
        raise MILError("the training patients' probabilities should be cross-fitted (cnn.cross_fit_folds), but no "
                       "cross-fitted predictions were given; rerun notebook 03 (hcc_utils.cnn_cross_fit)")
    ours, theirs = set(table.get("architecture", [])), set(cross_fit.get("architecture", []))
    if ours and theirs and ours != theirs:
        raise MILError(f"the cross-fitted predictions are {sorted(theirs)}'s but the slice predictions are "
                       f"{sorted(ours)}'s; rerun notebook 03")
    keyed = cross_fit.assign(patient_id=cross_fit["patient_id"].astype(str)).set_index(["patient_id", "offset"])
    train = (table["split"] == "train").to_numpy()
    where = pd.MultiIndex.from_arrays([table.loc[train, "patient_id"].astype(str), table.loc[train, "offset"]])
    prob = keyed["prob"].reindex(where)
    missing = where[prob.isna().to_numpy()].get_level_values(0).unique().tolist()
    if missing:
        raise MILError(f"no cross-fitted probability for the slices of training patients {missing[:5]}"
                       f"{' and more' if len(missing) > 5 else ''}; rerun notebook 03")
    table.loc[train, "prob"] = prob.to_numpy()
    table.loc[train, "prob_source"] = "cross_fit"
    return table


def mil_inputs(slice_predictions: pd.DataFrame, params: Params, cross_fit: pd.DataFrame | None = None) -> pd.DataFrame:
    """The slice probabilities the MIL step uses (docs/method.md section 4), with a ``prob_source`` column.

    ``prob`` stays the eval-mode probability of the chosen checkpoint for every slice (source ``eval``), except
    for training patients' slices when ``training_source(params)`` is

    - ``"cross_fit"``: every training slice takes its probability from ``cross_fit`` (the cross-fitted pass,
      ``cnn_cross_fit.load_cross_fit(run, params)``: the network of the patient's fold, which did not train on it;
      source ``cross_fit``);
    - ``"train_pass"``: slices that were in the chosen epoch's training pass take ``train_pass_prob`` (source
      ``train_pass``). Slices outside that pass (under leak_free the inner-validation patients; always the epoch's
      dropped last batch) keep the eval-mode value.

    Validation patients are always ``eval``.

    Raises:
        MILError: ``train_pass`` asked for, but the predictions have no ``train_pass_prob`` (made before it was
            logged); ``cross_fit`` asked for, but no cross-fitted predictions, another architecture's, or none for
            some training patients: rerun notebook 03.
    """
    table = slice_predictions.assign(prob_source="eval")
    source = training_source(params)
    if source == "eval":
        return table
    if source == "cross_fit":
        return _cross_fitted(table, cross_fit)
    if "train_pass_prob" not in table.columns:
        raise MILError("the slice predictions have no training-pass probabilities (train_pass_prob), which "
                       f"protocol {params.protocol} / mil.training_predictions asks for; rerun notebook 03")
    use = (table["split"] == "train") & table["train_pass_prob"].notna()
    table.loc[use, "prob"] = table.loc[use, "train_pass_prob"]
    table.loc[use, "prob_source"] = "train_pass"
    return table


def probability_bin(prob: np.ndarray | pd.Series | float) -> np.ndarray:
    """Index 0..10 of the one-decimal probability bin: ``rint(10 * p)`` (numpy rounding, halves to even)."""
    return np.rint(np.asarray(prob, dtype=float) * 10).astype(int)


def _check_predictions(slice_predictions: pd.DataFrame) -> pd.DataFrame:
    missing = {"patient_id", "prob"} - set(slice_predictions.columns)
    if missing:
        raise MILError(f"slice predictions lack column(s) {sorted(missing)}; expected at least patient_id, prob "
                       "(predictions/slice_predictions.csv from notebook 03)")
    if "architecture" in slice_predictions.columns and slice_predictions["architecture"].nunique() > 1:
        raise MILError("slice predictions hold several architectures "
                       f"{sorted(slice_predictions['architecture'].unique())}; pass the chosen one's rows "
                       "(hcc_utils.cnn.downstream_predictions(run))")
    table = slice_predictions[["patient_id", "prob"]].copy()
    table["patient_id"] = table["patient_id"].astype(str)
    table["prob"] = pd.to_numeric(table["prob"], errors="coerce")
    bad = table.loc[~table["prob"].between(0.0, 1.0), "patient_id"].unique().tolist()
    if bad:
        raise MILError(f"slice probabilities missing or outside [0, 1] for patients {bad[:5]}"
                       f"{' and more' if len(bad) > 5 else ''}; rerun notebook 03 for them or exclude them")
    if table.empty:
        raise MILError("slice predictions are empty; run notebook 03 first")
    return table


def _documents(bins: pd.Series, tokens: list[str]) -> pd.Series:
    """One document per patient (sorted ids): its slices' tokens joined by spaces."""
    words = bins.map(lambda i: tokens[i])
    return words.groupby(level=0, sort=True).agg(" ".join)


def _vectoriser(documents: pd.Series, fit_ids: list[str], tokens: list[str],
                idf: dict[str, float] | None = None) -> TfidfVectorizer:
    """The TF-IDF transform of ``tokens``: fitted on the documents of ``fit_ids``, or given its ``idf``."""
    vectoriser = TfidfVectorizer(vocabulary=tokens, token_pattern=_TOKEN_PATTERN, lowercase=False)
    if idf is None:
        return vectoriser.fit(documents.loc[fit_ids].tolist())
    vectoriser.idf_ = np.asarray([idf[t] for t in tokens], dtype=np.float64)
    return vectoriser


def _tfidf(documents: pd.Series, fit_ids: list[str], tokens: list[str], names: list[str],
           idf: dict[str, float] | None = None) -> pd.DataFrame:
    weights = _vectoriser(documents, fit_ids, tokens, idf).transform(documents.tolist()).toarray()
    return pd.DataFrame(weights, index=documents.index, columns=names)


def _bins(slice_predictions: pd.DataFrame, label_threshold: float) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    table = _check_predictions(slice_predictions).set_index("patient_id")
    prob_bin = pd.Series(probability_bin(table["prob"]), index=table.index)
    label_bin = pd.Series((table["prob"].to_numpy() >= label_threshold).astype(int), index=table.index)
    return table, prob_bin, label_bin


def _fit_ids(patients: list[str], train_ids: Iterable[str], idf_on: IdfOn) -> list[str]:
    if idf_on not in ("train", "all"):
        raise ValueError(f"idf_on must be 'train' or 'all', got {idf_on!r}")
    if idf_on == "all":
        return patients
    train = set(map(str, train_ids))
    fit_ids = [p for p in patients if p in train]
    if not fit_ids:
        raise MILError("none of the training patients has slice predictions; the idf cannot be fitted "
                       "on training patients (check the split and notebook 03's output)")
    return fit_ids


def fit_idf(slice_predictions: pd.DataFrame, train_ids: Iterable[str], idf_on: IdfOn = "train",
            label_threshold: float = 0.5) -> dict[str, float]:
    """The BoW step's fitted state: the idf of every token (``p00`` .. ``p10``, ``y0``, ``y1``; dimensionless,
    ``ln((1 + n) / (1 + df)) + 1``), fitted as :func:`mil_features` fits it (docs/method.md section 4).

    ``mil_features(..., idf=fit_idf(...))`` gives the same features as fitting inside ``mil_features``; the model
    bundle keeps it to score new patients with the training-fitted idf (``hcc_utils.bundle``).
    """
    _, prob_bin, label_bin = _bins(slice_predictions, label_threshold)
    prob_docs, label_docs = _documents(prob_bin, _PROB_TOKENS), _documents(label_bin, _LABEL_TOKENS)
    fit_ids = _fit_ids(prob_docs.index.tolist(), train_ids, idf_on)
    idf = {}
    for docs, tokens in ((prob_docs, _PROB_TOKENS), (label_docs, _LABEL_TOKENS)):
        idf |= dict(zip(tokens, _vectoriser(docs, fit_ids, tokens).idf_.tolist(), strict=True))
    return idf


def mil_features(slice_predictions: pd.DataFrame, train_ids: Iterable[str], idf_on: IdfOn = "train",
                 label_threshold: float = 0.5, idf: dict[str, float] | None = None) -> pd.DataFrame:
    """PLH and BoW features of every patient in ``slice_predictions`` (docs/method.md section 4).

    Args:
        slice_predictions: one row per slice with ``patient_id`` and ``prob`` (positive-class probability,
            0..1); other columns are ignored. Patients may have different numbers of slices.
        train_ids: the training patients; with ``idf_on="train"`` the idf is fitted on their documents only
            (ids absent from ``slice_predictions``, e.g. excluded patients, are ignored).
        idf_on: ``"train"`` (leak_free) or ``"all"`` (onekey_compat); see ``idf_on_for``.
        label_threshold: predicted label is ``prob >= label_threshold`` (``params.mil.label_threshold``).
        idf: a fitted idf per token (:func:`fit_idf`, e.g. a model bundle's): used as given, nothing is fitted
            and ``train_ids`` / ``idf_on`` are ignored (new patients scored with the training-fitted idf).

    Returns:
        DataFrame indexed by ``patient_id`` (sorted), the 26 columns of ``FEATURE_COLUMNS`` in that order.

    Raises:
        MILError: missing columns, probabilities outside [0, 1] (naming the patients), several architectures, or
            no training patient in the predictions when ``idf_on="train"``.
    """
    _, prob_bin, label_bin = _bins(slice_predictions, label_threshold)
    plh_prob = pd.crosstab(prob_bin.index, prob_bin.to_numpy(), normalize="index")
    plh_prob = plh_prob.reindex(columns=range(11), fill_value=0.0)
    plh_label = pd.crosstab(label_bin.index, label_bin.to_numpy(), normalize="index")
    plh_label = plh_label.reindex(columns=range(2), fill_value=0.0)
    plh = pd.concat([plh_prob, plh_label], axis=1)
    plh.columns = PLH_COLUMNS

    prob_docs = _documents(prob_bin, _PROB_TOKENS)
    label_docs = _documents(label_bin, _LABEL_TOKENS)
    patients = prob_docs.index.tolist()
    fit_ids = _fit_ids(patients, train_ids, idf_on) if idf is None else []
    bow = pd.concat([_tfidf(prob_docs, fit_ids, _PROB_TOKENS, BOW_COLUMNS[:11], idf),
                     _tfidf(label_docs, fit_ids, _LABEL_TOKENS, BOW_COLUMNS[11:], idf)], axis=1)

    features = pd.concat([plh.loc[patients], bow], axis=1)[FEATURE_COLUMNS].astype(float)
    features.index = pd.Index(patients, name="patient_id")
    return features


def prediction_overview(slice_predictions: pd.DataFrame, label_threshold: float = 0.5) -> pd.DataFrame:
    """Patients, slices, mean slice probability and share of slices predicted ER, per split and outcome; with
    ``mil_inputs``' output also the number of slices whose probability is the training pass's and the
    cross-fit's.

    Needs the ``split`` and ``er`` columns of ``slice_predictions.csv``.
    """
    table = slice_predictions.assign(group=slice_predictions["er"].map({0: "NER", 1: "ER"}))
    columns = {"patients": ("patient_id", "nunique"), "slices": ("prob", "size"), "mean_prob": ("prob", "mean"),
               "share_predicted_er": ("prob", lambda p: float((p >= label_threshold).mean()))}
    if "prob_source" in table.columns:
        columns["train_pass_slices"] = ("prob_source", lambda s: int((s == "train_pass").sum()))
        columns["cross_fit_slices"] = ("prob_source", lambda s: int((s == "cross_fit").sum()))
    return table.groupby(["split", "group"], sort=True).agg(**columns).reset_index()


def source_table(inputs: pd.DataFrame) -> pd.DataFrame:
    """Where each patient's slice probabilities come from (``mil_inputs``' ``prob_source``): patients and slices
    per split and source. ``eval``: the chosen checkpoint's eval-mode pass; ``cross_fit``: the network of the
    patient's cross-fit fold, which did not train on it; ``train_pass``: the chosen epoch's training pass."""
    return (inputs.groupby(["split", "prob_source"], sort=True)
            .agg(patients=("patient_id", "nunique"), slices=("prob", "size")).reset_index())


def build_mil_table(slice_predictions: pd.DataFrame, cohort: pd.DataFrame, params: Params,
                    run: RunFolder | None = None) -> pd.DataFrame:
    """The stage-04 table: ``mil_features`` with the run's protocol and split, saved in the run folder.

    ``cohort`` is ``hcc_utils.cohort.load_cohort(params, run)`` (its ``split`` column decides the training patients);
    every patient of ``slice_predictions`` must be in it. Returns the 26 features indexed by ``patient_id``.
    """
    split = cohort.set_index(cohort["patient_id"].astype(str))["split"]
    patients = slice_predictions["patient_id"].astype(str).unique()
    unknown = sorted(set(patients) - set(split.index))
    if unknown:
        raise MILError(f"slice predictions hold patients that are not in the cohort: {unknown[:5]}; the run "
                       "folder was probably made with another cohort or params file")
    train_ids = split.index[split == "train"].tolist()
    features = mil_features(slice_predictions, train_ids, idf_on=idf_on_for(params.protocol),
                            label_threshold=params.mil.label_threshold)
    if run is not None:
        artifacts.write_mil_features(run, features)
    return features


def load_mil_table(run: RunFolder) -> pd.DataFrame:
    """The saved stage-04 table (``tables/mil_features.csv``) indexed by ``patient_id``."""
    return artifacts.read_mil_features(run)
