"""The Radiomics model: reliable PyRadiomics features (ICC) through the shared selection + ExtraTrees recipe.

docs/method.md section 5, paper Supplementary Material 2A and Fig. S1: features of reader 1's mask, kept when their
ICC(3,1) between the two readers is above ``radiomics.icc_threshold`` (``hcc_utils.radiomics``), then
``hcc_utils.modeling.fit_recipe`` exactly as for the DL-MIL model (z-score, t-test / Mann-Whitney U, Pearson
filter, LassoCV, SMOTE + ExtraTrees, the selection refitted in every CV fold; paper: 8 features selected). The
funnel and the selected features are the final fit's (all training patients). The ICC patients are training
patients only under ``protocol: leak_free``, and a feature's availability is judged on training patients (a
validation gap is filled with the training median, with a note), so no validation patient influences which
features are kept; the ICC filter itself is applied once, before the recipe, not per fold.

Example::

    >>> model = fit_radiomics_model(cohort, params, run)
    >>> model.funnel()           # extracted, finite, ICC, then the recipe's z-score ... lasso
    >>> model.recipe.features    # the selected features
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hcc_utils import artifacts, radiomics
from hcc_utils.config import Params
from hcc_utils.icc import icc_table, reliable_features
from hcc_utils.modeling import RecipeResult, fit_recipe
from hcc_utils.run_folder import RunFolder

FAMILY_ORDER = ["Original", "LoG", "Wavelet"]
CLASS_ORDER = ["shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]
ICC_PARALLEL_FROM = 500
"""Features from which the ICC runs in ``radiomics.n_jobs`` processes (below, starting them costs more)."""


def feature_parts(names) -> pd.DataFrame:
    """Split PyRadiomics names into image type, filter family, feature class and feature.

    ``log-sigma-3-0-mm-3D_glcm_Idm`` -> image_type ``log-sigma-3-0-mm-3D``, family ``LoG``, class ``glcm``.
    """
    rows = []
    for name in names:
        image_type, feature_class, feature = name.split("_", 2)
        family = ("Original" if image_type == "original" else "LoG" if image_type.startswith("log")
                  else "Wavelet" if image_type.startswith("wavelet") else image_type)
        rows.append((name, image_type, family, feature_class, feature))
    return pd.DataFrame(rows, columns=["name", "image_type", "family", "feature_class", "feature"])


def family_counts(names) -> pd.DataFrame:
    """Features per filter family (rows) and feature class (columns), with totals."""
    parts = feature_parts(names)
    table = pd.crosstab(parts["family"], parts["feature_class"], margins=True, margins_name="total")
    rows = [f for f in FAMILY_ORDER if f in table.index]
    rows += [f for f in table.index if f not in FAMILY_ORDER and f != "total"] + ["total"]
    cols = [c for c in CLASS_ORDER if c in table.columns]
    cols += [c for c in table.columns if c not in CLASS_ORDER and c != "total"] + ["total"]
    return table.loc[rows, cols]


def settings_table(settings: radiomics.Settings) -> pd.DataFrame:
    """The settings in force, one row each (setting, value), for the book."""
    extractor = radiomics.load_extractor(settings)
    images = ", ".join(f"{k} {v}" if v else k for k, v in extractor.enabledImagetypes.items())
    rows = [("image types", images), ("feature classes", ", ".join(extractor.enabledFeatures)),
            ("PyRadiomics", radiomics.pyradiomics_version)]
    keys = ["binWidth", "binCount", "resampledPixelSpacing", "interpolator", "padDistance", "label",
            "voxelArrayShift", "normalize", "additionalInfo"]
    rows += [(k, str(extractor.settings[k])) for k in keys if k in extractor.settings]
    return pd.DataFrame(rows, columns=["setting", "value"])


def extraction_seconds(run: RunFolder) -> pd.Series:
    """Seconds per patient and reader of the cached extractions (for the book's runtime note)."""
    values = {}
    for path in artifacts.RADIOMICS_CACHE.existing(run):
        with contextlib.suppress(OSError, ValueError, KeyError):
            values[path.stem] = json.loads(path.read_text())["seconds"]
    return pd.Series(values, name="seconds", dtype=float)


def finite_features(table: pd.DataFrame, training: list[str] | pd.Index) -> list[str]:
    """Features with a finite value for every TRAINING patient of ``table`` (index patient_id).

    PyRadiomics gives NaN for some degenerate grey-level matrices, and the recipe needs complete columns. The
    decision looks at the ``training`` rows only, so no validation value changes which features are kept; a
    validation patient's gap in a kept feature is filled by ``fill_validation_gaps`` (docs/method.md section 5,
    "Missing values"). An availability check: no value is fitted.
    """
    values = table.loc[table.index.isin(list(training))].to_numpy(float)
    return table.columns[np.isfinite(values).all(axis=0)].tolist()


GAP_COLUMNS = ["patient_id", "feature", "value", "training_median"]


def fill_validation_gaps(table: pd.DataFrame, training: list[str] | pd.Index
                         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace each non-finite value of a non-training patient with that feature's median over ``training``.

    ``table`` holds kept features only (``finite_features``), so every training value is finite and every median
    defined. Returns the filled table and one row per filled value: ``patient_id, feature, value`` (the NaN or
    infinity found) and ``training_median`` (what replaced it, in the feature's own unit).
    """
    is_training = table.index.isin(list(training))
    medians = table.loc[is_training].median(axis=0)
    gaps = ~np.isfinite(table.to_numpy(float)) & ~is_training[:, None]
    rows, cols = np.nonzero(gaps)
    found = pd.DataFrame({"patient_id": table.index[rows].astype(str), "feature": table.columns[cols],
                          "value": table.to_numpy(float)[rows, cols],
                          "training_median": medians.to_numpy()[cols]}, columns=GAP_COLUMNS)
    filled = table.mask(pd.DataFrame(gaps, index=table.index, columns=table.columns), medians, axis=1)
    return filled, found


def gap_note(gaps: pd.DataFrame) -> str | None:
    """One line for the book: how many validation values were filled, in how many features, for which patients."""
    if gaps.empty:
        return None
    per_patient = gaps.groupby("patient_id", sort=True).size()
    who = ", ".join(f"{pid} ({n})" for pid, n in per_patient.items())
    return (f"{len(gaps)} validation value(s) missing or infinite in {gaps['feature'].nunique()} kept feature(s) "
            f"were filled with that feature's training median (values per patient: {who}); the patients stay, "
            "and which features are kept was decided on training patients only")


@dataclass
class RadiomicsModel:
    """Everything the Radiomics chapter of notebook 05 shows.

    Attributes:
        reader1, reader2: feature tables (index patient_id); reader2 holds the ICC patients only.
        icc: feature, icc, ci_low, ci_high (empty when no second reading exists).
        icc_patients: the patients the ICC was computed on.
        finite: features with a finite value for every training patient (``finite_features``).
        reliable: features entering the recipe (finite and, when an ICC exists, ICC > threshold).
        recipe: the shared recipe's result (``modeling.RecipeResult``).
        validation_gaps: validation values filled with the training median (``fill_validation_gaps``).
        notes: what the book should say (skipped ICC, dropped features, filled validation values).
    """

    reader1: pd.DataFrame
    reader2: pd.DataFrame
    icc: pd.DataFrame
    icc_patients: list[str]
    threshold: float
    finite: list[str]
    reliable: list[str]
    recipe: RecipeResult
    validation_gaps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=GAP_COLUMNS))
    notes: list[str] = field(default_factory=list)
    name: str = "Radiomics"  # with ``notes``, what ``notebook.show_notes`` reads

    def funnel(self) -> pd.DataFrame:
        """Features left after each step, from extraction to the recipe's Lasso."""
        rows = [{"step": "extracted", "kept": self.reader1.shape[1], "rule": "PyRadiomics, reader 1"},
                {"step": "finite", "kept": len(self.finite), "rule": "a finite value for every training patient"},
                {"step": "ICC", "kept": len(self.reliable),
                 "rule": (f"ICC(3,1) > {self.threshold} on {len(self.icc_patients)} patients" if len(self.icc)
                          else "skipped: no second reading")}]
        for row in self.recipe.selection.funnel().itertuples():
            rows.append({"step": row.step, "kept": row.kept, "rule": "shared recipe (training patients)"})
        return pd.DataFrame(rows)

    def selected_table(self) -> pd.DataFrame:
        """The selected features with their family, class, ICC and Lasso coefficient."""
        parts = feature_parts(self.recipe.features).set_index("name")
        icc = self.icc.set_index("feature")["icc"] if len(self.icc) else pd.Series(dtype=float)
        coef = self.recipe.selection.coefficients
        return pd.DataFrame({"feature": parts.index, "family": parts["family"].to_numpy(),
                             "class": parts["feature_class"].to_numpy(),
                             "icc": icc.reindex(parts.index).to_numpy(),
                             "lasso_coefficient": coef.reindex(parts.index).to_numpy()})


def fit_radiomics_model(cohort: pd.DataFrame, params: Params, run: RunFolder,
                        n_jobs: int | None = None) -> RadiomicsModel:
    """Extract (cached), filter by ICC, and fit the shared recipe as "Radiomics" (files under ``run``).

    ``cohort`` is ``load_cohort(params, run)`` (patient_id, image, mask, mask_reader2, er, split). Missing values
    (docs/method.md section 5): a feature is kept when every training patient has a finite value; a validation
    patient's NaN or infinity in a kept feature is replaced by the training median and listed in
    ``validation_gaps`` and ``notes``. The ICC reads the unfilled reader-1 values of its patients (training
    patients only under ``leak_free``; under ``onekey_compat`` a validation patient's gap leaves that feature's
    ICC undefined, so it is dropped, one more way that protocol lets validation patients shape the model).
    """
    n_jobs = n_jobs or params.radiomics.n_jobs
    reader1, reader2 = radiomics.extract_cohort(cohort, params, run, n_jobs=n_jobs)
    notes: list[str] = []
    split = cohort.set_index(cohort["patient_id"].astype(str))["split"]
    training = [p for p in reader1.index if split.get(p) == "train"]
    if not training:
        raise radiomics.RadiomicsError(f"no training patient has reader-1 features; see {run.exclusions_file}")
    finite = finite_features(reader1, training)
    if len(finite) < reader1.shape[1]:
        notes.append(f"{reader1.shape[1] - len(finite)} feature(s) without a finite value for every training "
                     f"patient were dropped (decided on the {len(training)} training patients only)")
    icc_ids = [p for p in radiomics.icc_patient_ids(cohort, params)
               if p in reader2.index and p in reader1.index]
    if len(icc_ids) >= 3:
        icc_jobs = n_jobs if len(finite) > ICC_PARALLEL_FROM else 1
        icc = icc_table(reader1.loc[icc_ids, finite], reader2.loc[icc_ids, finite], n_jobs=icc_jobs)
        reliable = reliable_features(icc, params.radiomics.icc_threshold)
        if not reliable:
            raise radiomics.RadiomicsError(f"no feature has ICC > {params.radiomics.icc_threshold}; lower "
                                           "radiomics.icc_threshold or check the second reader's masks")
    else:
        icc = pd.DataFrame(columns=["feature", "icc", "ci_low", "ci_high"])
        reliable = finite
        notes.append(f"ICC filtering skipped: only {len(icc_ids)} patient(s) have a second reader's mask "
                     "(at least 3 needed); every extracted feature goes to the recipe")
    labels = cohort.set_index("patient_id")["er"]
    inputs, gaps = fill_validation_gaps(reader1[reliable], training)
    notes += [note for note in [gap_note(gaps)] if note]
    recipe = fit_recipe(inputs, labels, split, params, "Radiomics", run)
    if run is not None and len(icc):
        artifacts.write_table(run, artifacts.RADIOMICS_ICC, icc)
    return RadiomicsModel(reader1=reader1, reader2=reader2, icc=icc, icc_patients=icc_ids,
                          threshold=params.radiomics.icc_threshold, finite=finite, reliable=reliable,
                          recipe=recipe, validation_gaps=gaps, notes=notes + recipe.notes)
