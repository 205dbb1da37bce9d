"""The patient-level chain of notebook 05, refitted on any split of the cohort (notebook 09; docs/method.md
section 10).

``score_split(inputs, split, er, params)`` fits the three base models (not notebook 05's Combined model) on the
training patients of ``split`` with the labels ``er`` (the true ones, or permuted ones for the permutation test)
and returns each model's ER probability for the validation patients of ``split``. Everything fitted sees that
split's training patients only:

- DL-MIL: the PLH and BoW features of the given slice probabilities (``mil.mil_features``, idf fitted on the
  split's training patients), or a fixed MIL table (the run's own, for the run's own split only);
- Radiomics: reader 1's cached features; kept when finite for every training patient, then the ICC(3,1) filter on
  the split's training patients that have a second reading (``radiomics.icc_max_patients`` of them were read
  twice, chosen among the run's training patients), a validation patient's gap filled with the training median;
- Clinical: Table 2's tests on the split's training patients choose the variables, missing values by
  ``clinical.missing`` with training statistics;

then the selection and SMOTE + ExtraTrees: with ``robustness.tuning: fixed`` the ExtraTrees parameters are
``robustness.trees`` (set before any data is seen) and the pipeline is fitted once; with ``grid`` notebook 05's
grid search is rerun on the split's training patients (``modeling.fit_recipe``). A model that cannot be fitted on
a split (too few patients of an outcome, no reliable radiomics feature) is left out of that split with a note.

Example::

    >>> inputs = chain_inputs(params, run, held.predictions)     # held-out slice probabilities of every patient
    >>> probs, notes = score_split(inputs, split, er, params)   # {"DL-MIL": Series, ...} on validation patients
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd

from hcc_utils import clinical, cohort, mil, model_registry, modeling, radiomics, radiomics_model
from hcc_utils.config import Params
from hcc_utils.icc import icc_table, reliable_features
from hcc_utils.run_folder import RunFolder

_ICC_CACHE: dict[tuple, list[str]] = {}  # per process: ICC-reliable features per set of ICC patients


@dataclass
class ChainInputs:
    """What the chain needs, independent of the split.

    Attributes:
        cohort: ``cohort.load_cohort`` (patient_id, er, split and the clinical columns); its ``er`` and ``split``
            are replaced by each call's.
        slice_probs: patient_id, offset, prob: the DL-MIL features are computed from them per split (idf on that
            split's training patients); None when ``mil_table`` is given.
        mil_table: a fixed MIL feature table (the run's own, valid for the run's own split only).
        reader1, reader2: the radiomics features (index patient_id); None when radiomics is off.
    """

    cohort: pd.DataFrame
    slice_probs: pd.DataFrame | None = None
    mil_table: pd.DataFrame | None = None
    reader1: pd.DataFrame | None = None
    reader2: pd.DataFrame | None = None

    @property
    def models(self) -> list[str]:
        """The models this chain fits, in the registry's order: those it has a fitter for (DL-MIL, Radiomics,
        Clinical; not the Combined model of notebook 05), Radiomics only with its features."""
        return [name for name in model_registry.names()
                if name in _FITTERS and (name != "Radiomics" or self.reader1 is not None)]


def chain_inputs(params: Params, run: RunFolder, slice_probs: pd.DataFrame | None = None,
                 mil_table: pd.DataFrame | None = None) -> ChainInputs:
    """The cohort and the cached radiomics features of the run (notebook 05 extracted them) with the DL-MIL
    input: ``slice_probs`` (held-out probabilities, ``robustness_cnn``) or a fixed ``mil_table``."""
    table = cohort.load_cohort(params, run)
    table["patient_id"] = table["patient_id"].astype(str)
    reader1 = reader2 = None
    if params.radiomics.enabled:
        reader1, reader2 = radiomics.extract_cohort(table, params, run)
    return ChainInputs(cohort=table, slice_probs=slice_probs, mil_table=mil_table, reader1=reader1,
                       reader2=reader2)


def _fit(features: pd.DataFrame, er: pd.Series, split: pd.Series, params: Params, name: str,
         steps: tuple[str, ...] = modeling.ALL_STEPS) -> pd.Series:
    cfg = params.robustness
    split = split.loc[features.index]
    if cfg.tuning == "fixed":
        return modeling.fit_fixed(features, er, split, params, cfg.trees.model_dump(), steps)
    predictions = modeling.fit_recipe(features, er, split, params, name, selection_steps=steps).predictions
    validation = predictions[predictions["split"] == "validation"]
    return pd.Series(validation["prob"].to_numpy(), index=validation["patient_id"].astype(str), name="prob")


def _dl_mil(inputs: ChainInputs, split: pd.Series, er: pd.Series, params: Params) -> pd.Series:
    if inputs.mil_table is not None:
        features = inputs.mil_table
    else:
        train_ids = split.index[split == "train"].tolist()
        features = mil.mil_features(inputs.slice_probs, train_ids, idf_on="train",
                                    label_threshold=params.mil.label_threshold)
    return _fit(features, er, split, params, "DL-MIL")


def _reliable(inputs: ChainInputs, training: list[str], finite: list[str], params: Params) -> list[str]:
    """ICC-reliable features on the training patients read twice; every finite one when fewer than 3."""
    icc_ids = sorted(set(training) & set(inputs.reader2.index))
    if len(icc_ids) < 3:
        return finite
    key = (tuple(icc_ids), tuple(finite), params.radiomics.icc_threshold)
    if key not in _ICC_CACHE:
        icc = icc_table(inputs.reader1.loc[icc_ids, finite], inputs.reader2.loc[icc_ids, finite])
        _ICC_CACHE[key] = reliable_features(icc, params.radiomics.icc_threshold)
    return _ICC_CACHE[key]


def _radiomics(inputs: ChainInputs, split: pd.Series, er: pd.Series, params: Params) -> pd.Series:
    reader1 = inputs.reader1
    training = [p for p in reader1.index if split.get(p) == "train"]
    finite = radiomics_model.finite_features(reader1, training)
    reliable = _reliable(inputs, training, finite, params)
    if not reliable:
        raise modeling.RecipeError(f"no radiomics feature has ICC > {params.radiomics.icc_threshold} on this "
                                   "split's training patients")
    features, _ = radiomics_model.fill_validation_gaps(reader1[reliable], training)
    return _fit(features, er, split, params, "Radiomics")


def _clinical(inputs: ChainInputs, split: pd.Series, er: pd.Series, params: Params) -> pd.Series:
    table = inputs.cohort.assign(er=er.loc[inputs.cohort["patient_id"]].to_numpy(),
                                 split=split.loc[inputs.cohort["patient_id"]].to_numpy())
    tests = clinical.select_variables(table, params)
    features, _ = clinical.model_inputs(table, params, tests.loc[tests["selected"], "variable"].tolist())
    return _fit(features, er, split, params, "Clinical", steps=())


_FITTERS = {"DL-MIL": _dl_mil, "Radiomics": _radiomics, "Clinical": _clinical}


def score_split(inputs: ChainInputs, split: pd.Series, er: pd.Series, params: Params
                ) -> tuple[dict[str, pd.Series], list[str]]:
    """Fit every model on the training patients of ``split`` (patient_id -> train / validation) with labels ``er``
    (patient_id -> 0/1) and predict its validation patients (module docstring).

    Returns each model's validation P(ER) (index patient_id) and a note per model that could not be fitted on
    this split (left out of the dictionary). ``params.model.n_jobs`` is used as given: callers that run splits in
    parallel pass a copy with 1.
    """
    split, er = split.copy(), er.astype(int).copy()
    split.index, er.index = split.index.astype(str), er.index.astype(str)
    probabilities, notes = {}, []
    for name in inputs.models:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence and fallback warnings of hundreds of refits
                probabilities[name] = _FITTERS[name](inputs, split, er, params)
        except (modeling.RecipeError, clinical.ClinicalError, mil.MILError, ValueError) as exc:
            notes.append(f"{name}: {exc}")
    return probabilities, notes


__all__ = ["ChainInputs", "chain_inputs", "score_split"]
