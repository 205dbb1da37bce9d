"""The registry of run-folder files: every file a stage writes and a later stage reads, named here and only here.

Each file is an :class:`Artifact`: where it lies in the run folder (a pattern relative to ``runs/NAME/``, with
``{placeholders}`` such as ``{slug}``), the notebook that writes it, what it holds and, for tables, the columns a
reader needs. Stages read and write through the typed functions below (``read_split``, ``write_split``, ...), so
a missing file says which notebook makes it and a file without a needed column says which columns, in which file,
from which notebook::

    >>> write_split(run, patients)                  # notebook 01
    >>> read_split(run)                             # any later stage
    ArtifactMissing: runs/x/tables/cohort_split.csv not found: run 01_preprocessing first ...

The run-folder layout (``hcc_utils.run_folder.RunFolder`` gives the sub-folders)::

    params.yaml  provenance.json  status.json  exclusions.csv  book_build.log   (the runner, every stage)
    tables/      cohort_split.csv, input_check.csv (01), cnn_history.csv, table3_slice_cnn.csv,
                 cnn_cross_fit.csv (03), mil_features.csv (04), <slug>_selection.csv, <slug>_grid.csv,
                 radiomics_icc.csv, table2_baseline.csv, combined_coefficients.csv (05), table4_models.csv,
                 delong.csv, nri_idi.csv (06), table5_pathology.csv (08), robustness_optimism.csv,
                 robustness_fit.csv (09), and NAME.csv a notebook shows
    figures/     NAME.png, NAME.svg
    models/      <architecture>.pt, <architecture>.json, cnn_choice.json, cnn_inner_split.csv,
                 cnn_cross_fit_folds.csv (03), <slug>.joblib, <slug>_features.json (05)
    predictions/ slice_predictions.csv, slice_predictions_cross_fit.csv (03), <slug>_patients.csv (05)
    model/       the model bundle (05): bundle.json, params.yaml, cnn.pt, mil_idf.json, radiomics.yaml, models.json,
                 <slug>.skops (``hcc_utils.bundle``; no pickle)
    cache/       checks/<patient>.json (01); stacks/<patient>.npz, .json and slices/dataset.npz, dataset.json,
                 patients.csv, stack_info.csv (02); cnn/<architecture>_slices.csv, _history.csv,
                 _validation_chosen.pt, _validation_chosen_train_pass.csv (leak_free, the optimism audit's),
                 cnn/cross_fit/<architecture>_fold<k>.json, _slices.csv, _history.csv (03);
                 radiomics/<patient>_<reader>.json (05);
                 robustness/<architecture>_<key>_validation_chosen_slices.csv (09)
    notebooks/   the executed notebooks;  book/  the rendered report
    export/      report.pdf, report_site.zip, landing.png (``python -m hcc_utils export``; export-2/, ... after)

Model slugs come from :mod:`hcc_utils.model_registry`. This module imports no other module of the package.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd


class ArtifactMissing(FileNotFoundError):
    """A run-folder file that is not there yet; the message names it and the notebook that writes it."""


class ArtifactSchemaError(ValueError):
    """A run-folder file without a column its readers need; the message names the file, columns and writer."""


@dataclass(frozen=True)
class Artifact:
    """One kind of run-folder file.

    Attributes:
        pattern: path relative to the run folder; ``{name}`` placeholders are filled by ``path(run, **names)``.
        writer: the notebook (or ``runner``) that writes it: what a reader is told to run when it is missing.
        what: one line on what it holds.
        columns: for tables, the columns every reader needs (checked by ``read_table``).
    """

    pattern: str
    writer: str
    what: str
    columns: tuple[str, ...] = ()

    def path(self, run, **names: str) -> Path:
        """The file's path in ``run`` (a ``RunFolder``); its folder is created."""
        path = Path(run.root) / self.pattern.format(**names)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def existing(self, run) -> list[Path]:
        """Every file of this kind in ``run`` (placeholders match anything), sorted."""
        return sorted(Path(run.root).glob(re.sub(r"\{[^}]*\}", "*", self.pattern)))

    def require(self, run, **names: str) -> Path:
        """The path, or ``ArtifactMissing`` naming the file and the notebook to run first."""
        path = self.path(run, **names)
        if not path.is_file():
            raise ArtifactMissing(f"{path} not found: run {self.writer} first ({self.what}; "
                                  "python -m hcc_utils run --params ... runs every notebook in order)")
        return path


# -- the registry -------------------------------------------------------------------------------------------------

EXCLUSION_COLUMNS = ("patient_id", "stage", "severity", "file", "message")
PATIENT_PREDICTION_COLUMNS = ("patient_id", "split", "er", "prob", "prob_oof")
SLICE_PREDICTION_COLUMNS = ("patient_id", "offset", "split", "architecture", "prob", "er", "train_pass_prob")
CROSS_FIT_PREDICTION_COLUMNS = ("patient_id", "offset", "split", "architecture", "prob", "er", "fold")
CROSS_FIT_TABLE_COLUMNS = ("fold", "architecture", "trained_on", "held_out", "held_out_er", "held_out_ner",
                           "epochs", "held_out_auc", "main_auc", "seconds")
_MIL_BINS = tuple(f"{i:02d}" for i in range(11)) + ("0", "1")
HELD_OUT_PREDICTION_COLUMNS = ("patient_id", "offset", "architecture", "prob", "er", "fold")
MIL_FEATURE_COLUMNS = tuple(f"{family}_{b}" for family in ("PLH", "BoW") for b in _MIL_BINS)
"""PLH_00..PLH_10, PLH_0, PLH_1, BoW_00..BoW_10, BoW_0, BoW_1 (docs/method.md section 4)"""

PARAMS = Artifact("params.yaml", "runner", "the validated parameters of this run")
PROVENANCE = Artifact("provenance.json", "runner", "params, package versions, git commit, seeds, cohort hash")
STATUS = Artifact("status.json", "runner", "each notebook's state and wall time (for --resume)")
BOOK_LOG = Artifact("book_build.log", "runner", "jupyter-book's output")
EXCLUSIONS = Artifact("exclusions.csv", "every stage", "patients excluded or warned, by stage, with the reason",
                      EXCLUSION_COLUMNS)

SPLIT = Artifact("tables/cohort_split.csv", "01_preprocessing", "the patient-level split, decided once",
                 ("patient_id", "er", "split"))

INPUT_CHECK = Artifact("tables/input_check.csv", "01_preprocessing", "each patient's intake verdict",
                       ("patient_id", "er", "status", "findings"))
PATIENT_CHECK = Artifact("cache/checks/{stem}.json", "01_preprocessing", "one patient's file check (cached)")

STACK = Artifact("cache/stacks/{stem}.npz", "02_slices_2p5d", "one patient's 2.5D stack (uint8 images, masks)")
STACK_INFO = Artifact("cache/stacks/{stem}.json", "02_slices_2p5d", "one stack's indices, crop box, warnings")
SLICE_ARRAYS = Artifact("cache/slices/dataset.npz", "02_slices_2p5d", "the slice dataset's arrays")
SLICE_INDEX = Artifact("cache/slices/dataset.json", "02_slices_2p5d", "which stacks the slice dataset holds")
SLICE_PATIENTS = Artifact("cache/slices/patients.csv", "02_slices_2p5d", "the slice dataset's patients",
                          ("patient_id", "er", "split"))
STACK_TABLE = Artifact("cache/slices/stack_info.csv", "02_slices_2p5d", "one row per stack: centre, size, crop",
                       ("patient_id", "central_index", "tumour_area_mm2", "max_diameter_mm", "clamped_offsets"))

CNN_STATE = Artifact("models/{architecture}.pt", "03_cnn_training", "a chosen CNN checkpoint (state dict)")
CNN_META = Artifact("models/{architecture}.json", "03_cnn_training", "a checkpoint's cache key and best epoch")
CNN_ROLES = Artifact("models/cnn_inner_split.csv", "03_cnn_training", "each patient's role in CNN training",
                     ("patient_id", "role"))
CNN_CHOICE = Artifact("models/cnn_choice.json", "03_cnn_training", "the architecture used downstream")
CNN_CACHED_SLICES = Artifact("cache/cnn/{architecture}_slices.csv", "03_cnn_training",
                             "one architecture's slice predictions", SLICE_PREDICTION_COLUMNS)
CNN_CACHED_HISTORY = Artifact("cache/cnn/{architecture}_history.csv", "03_cnn_training",
                              "one architecture's training history")
SLICE_PREDICTIONS = Artifact("predictions/slice_predictions.csv", "03_cnn_training",
                             "every slice's ER probability per architecture", SLICE_PREDICTION_COLUMNS)
CNN_HISTORY = Artifact("tables/cnn_history.csv", "03_cnn_training", "loss and AUC per epoch and architecture")
TABLE3 = Artifact("tables/table3_slice_cnn.csv", "03_cnn_training", "Table 3: slice-level performance",
                  ("dataset", "architecture", "accuracy", "auc", "auc_low", "auc_high", "sensitivity",
                   "specificity"))

CROSS_FIT_FOLDS = Artifact("models/cnn_cross_fit_folds.csv", "03_cnn_training",
                          "each training patient's cross-fit fold: held out by that fold's network, trained on by "
                          "every other fold's", ("patient_id", "er", "fold"))
CROSS_FIT_PREDICTIONS = Artifact("predictions/slice_predictions_cross_fit.csv", "03_cnn_training",
                                 "the training patients' cross-fitted slice probabilities (cnn.cross_fit_folds)",
                                 CROSS_FIT_PREDICTION_COLUMNS)
CROSS_FIT_TABLE = Artifact("tables/cnn_cross_fit.csv", "03_cnn_training",
                           "per cross-fit fold: patients trained on and held out, epochs, held-out slice AUC",
                           CROSS_FIT_TABLE_COLUMNS)
CROSS_FIT_META = Artifact("cache/cnn/cross_fit/{architecture}_fold{fold}.json", "03_cnn_training",
                          "a cross-fit network's cache key, epochs and time")
CROSS_FIT_CACHED_SLICES = Artifact("cache/cnn/cross_fit/{architecture}_fold{fold}_slices.csv", "03_cnn_training",
                                   "a cross-fit network's probabilities of its held-out fold",
                                   CROSS_FIT_PREDICTION_COLUMNS)
CROSS_FIT_CACHED_HISTORY = Artifact("cache/cnn/cross_fit/{architecture}_fold{fold}_history.csv", "03_cnn_training",
                                    "a cross-fit network's training history")

VALIDATION_CHOSEN_TRAIN_PASS_COLUMNS = ("patient_id", "offset", "train_pass_prob")
CNN_VALIDATION_CHOSEN_STATE = Artifact("cache/cnn/{architecture}_validation_chosen.pt", "03_cnn_training",
                                       "under leak_free, the weights of the epoch the validation slices would have "
                                       "chosen (the optimism audit only)")
CNN_VALIDATION_CHOSEN_TRAIN_PASS = Artifact("cache/cnn/{architecture}_validation_chosen_train_pass.csv",
                                            "03_cnn_training", "that epoch's training-pass probability per slice",
                                            VALIDATION_CHOSEN_TRAIN_PASS_COLUMNS)

MIL_FEATURES = Artifact("tables/mil_features.csv", "04_mil_features", "the 26 PLH and BoW features per patient",
                        ("patient_id", *MIL_FEATURE_COLUMNS))

RADIOMICS_CACHE = Artifact("cache/radiomics/{stem}_{reader}.json", "05_models",
                           "one patient's PyRadiomics features for one reader")
RADIOMICS_ICC = Artifact("tables/radiomics_icc.csv", "05_models", "ICC(3,1) per radiomics feature")
PIPELINE = Artifact("models/{slug}.joblib", "05_models", "a fitted model pipeline")
MODEL_SUMMARY = Artifact("models/{slug}_features.json", "05_models",
                         "a model's selected features, best parameters and notes")
PATIENT_PREDICTIONS = Artifact("predictions/{slug}_patients.csv", "05_models",
                               "a model's ER probability per patient", PATIENT_PREDICTION_COLUMNS)
SELECTION = Artifact("tables/{slug}_selection.csv", "05_models", "where each feature left the selection")
GRID = Artifact("tables/{slug}_grid.csv", "05_models", "the grid search's candidates")
COMBINED_COEFFICIENTS = Artifact("tables/combined_coefficients.csv", "05_models", "the Combined model's logistic "
                                 "coefficients (raw units), odds ratios with CI, p",
                                 ("term", "coefficient", "odds_ratio", "or_low", "or_high", "p"))

# the model bundle (hcc_utils.bundle): what scoring a new patient needs, and nothing that runs code when loaded
BUNDLE_DIR = "model"
BUNDLE_INDEX = Artifact("model/bundle.json", "05_models", "the bundle's files and SHA-256, package versions, CNN")
BUNDLE_PARAMS = Artifact("model/params.yaml", "05_models", "the run's parameters (preprocessing, stack, CNN, MIL)")
BUNDLE_CNN = Artifact("model/cnn.pt", "05_models", "the chosen CNN's state dict (torch.load weights_only)")
BUNDLE_IDF = Artifact("model/mil_idf.json", "05_models", "the BoW idf per token, as fitted for the training features")
BUNDLE_RADIOMICS = Artifact("model/radiomics.yaml", "05_models", "the PyRadiomics settings of the run")
BUNDLE_MODELS = Artifact("model/models.json", "05_models", "per model: selected features, cut-off, fill values")
BUNDLE_PIPELINE = Artifact("model/{slug}.skops", "05_models", "a fitted model pipeline, stored with skops")
BUNDLE_TRAINING = Artifact("model/training_probabilities.csv", "05_models", "the training patients' out-of-fold "
                           "probability of ER per model (where a new patient falls)", ("model", "prob"))
BUNDLE_CARD = Artifact("model/MODEL_CARD.md", "05_models", "the model card (hcc_utils.model_card): intended use, "
                       "cohort, validation AUC and calibration, limitations")
NEW_PREDICTIONS = "predictions.csv"
"""``python -m hcc_utils predict``'s output in its ``--out`` folder: one row per new patient."""
NEW_PATIENT_REPORT = "report.html"
"""``predict``'s one-page summary of a scored patient, ``--out/<patient>/report.html`` (:func:`patient_report`)."""


def patient_report(out_dir: Path | str, patient_id: str) -> Path:
    """``out_dir/<patient>/report.html``: the patient's folder is its id when a plain name, else a hash of it."""
    return Path(out_dir) / file_stem(str(patient_id)) / NEW_PATIENT_REPORT

# notebook 10: the bundle applied to new patients (hcc_utils.apply)
APPLIED_PREDICTIONS = Artifact(f"applied/{NEW_PREDICTIONS}", "10_apply_model",
                               "the new patients' scores: predict's table, one row per new patient",
                               ("patient_id", "status", "flags"))
APPLIED_REPORT = Artifact("applied/{patient}/report.html", "10_apply_model",
                          "one new patient's one-page summary (when predict writes one)")
APPLIED_AUC = Artifact("tables/applied_auc.csv", "10_apply_model",
                       "each model's AUC (DeLong CI) on the new patients whose outcome is known",
                       ("model", "n", "n_er", "auc", "auc_low", "auc_high"))

TABLE4 = Artifact("tables/table4_models.csv", "06_comparison", "Table 4: the models on train and validation",
                  ("dataset", "model", "accuracy", "auc", "auc_low", "auc_high", "sensitivity", "specificity"))
DELONG = Artifact("tables/delong.csv", "06_comparison", "DeLong's test for each pair of models",
                  ("dataset", "model_a", "model_b", "auc_a", "auc_b", "z", "p"))
NRI_IDI = Artifact("tables/nri_idi.csv", "06_comparison", "continuous NRI and IDI of a model over another, with "
                   "bootstrap CIs", ("dataset", "new", "old", "n", "nri", "nri_low", "nri_high", "nri_events",
                                     "nri_nonevents", "idi", "idi_low", "idi_high"))
TABLE5 = Artifact("tables/table5_pathology.csv", "08_pathology", "Table 5: MIL features vs pathology",
                  ("feature", "indicator", "r", "r_low", "r_high", "p"))

# notebook 09 (robustness): held-out CNN folds over the whole cohort, repeated splits, permutations, sites
_NB9 = "09_robustness"
HELD_OUT_PREDICTIONS = Artifact("predictions/held_out_slices_{folding}.csv", _NB9,
                                "every slice's probability from its fold's network", HELD_OUT_PREDICTION_COLUMNS)
HELD_OUT_FOLDS = Artifact("models/held_out_folds_{folding}.csv", _NB9, "each patient's fold: held out by that "
                          "fold's network, trained on by the others'", ("patient_id", "er", "fold", "group"))
HELD_OUT_TABLE = Artifact("tables/held_out_cnn_{folding}.csv", _NB9, "per held-out network: patients, slice AUC",
                          ("fold", "group", "trained_on", "held_out", "held_out_slice_auc"))
HELD_OUT_META = Artifact("cache/robustness/cnn/{folding}_fold{fold}.json", _NB9, "a held-out network's cache key")
HELD_OUT_CACHED_PROBS = Artifact("cache/robustness/cnn/{folding}_fold{fold}.npz", _NB9, "its slice probabilities")
ROBUSTNESS_REPEATS = Artifact("tables/robustness_repeats.csv", _NB9, "validation AUC per repeated split and model",
                              ("repeat", "model", "n_train", "n_validation", "validation_er", "auc"))
ROBUSTNESS_REPEATS_SUMMARY = Artifact("tables/robustness_repeats_summary.csv", _NB9, "the repeats per model",
                                      ("model", "repeats", "median", "low", "high"))
ROBUSTNESS_DIFFERENCES = Artifact("tables/robustness_differences.csv", _NB9, "paired DL-MIL minus comparator AUC",
                                  ("comparison", "repeats", "median", "low", "high", "share_dl_mil_wins"))
ROBUSTNESS_PERMUTATION = Artifact("tables/robustness_permutation.csv", _NB9, "observed AUC, null and p per model",
                                  ("model", "permutations", "observed_auc", "null_mean", "null_sd", "p_value"))
ROBUSTNESS_NULL = Artifact("tables/robustness_permutation_null.csv", _NB9, "AUC per permutation and model",
                           ("permutation", "model", "auc"))
ROBUSTNESS_SITES = Artifact("tables/robustness_scanners.csv", _NB9, "per held-out scanner and model: AUC (CI)",
                            ("site", "model", "n", "n_er", "er_rate", "auc", "auc_low", "auc_high", "note"))
# notebook 09 (optimism audit; the columns are in docs/method.md sections 8 and 10)
ROBUSTNESS_OPTIMISM_COLUMNS = ("variant", "description", "architecture", "epoch", "auc", "auc_low", "auc_high",
                               "optimism")
ROBUSTNESS_FIT_COLUMNS = ("model", "apparent_auc", "apparent_low", "apparent_high", "out_of_fold_auc",
                          "out_of_fold_low", "out_of_fold_high", "validation_auc", "validation_low",
                          "validation_high")
VALIDATION_CHOSEN_SLICE_COLUMNS = ("patient_id", "offset", "prob")
ROBUSTNESS_OPTIMISM = Artifact("tables/robustness_optimism.csv", "09_robustness",
                               "the DL-MIL validation AUC each onekey_compat shortcut would have reported",
                               ROBUSTNESS_OPTIMISM_COLUMNS)
ROBUSTNESS_FIT = Artifact("tables/robustness_fit.csv", "09_robustness",
                          "each model's apparent, out-of-fold and validation AUC", ROBUSTNESS_FIT_COLUMNS)
ROBUSTNESS_VALIDATION_CHOSEN_SLICES = Artifact("cache/robustness/{architecture}_{key}_validation_chosen_slices.csv",
                                               "09_robustness", "the validation-chosen checkpoint's eval-mode "
                                               "probability of every slice (keyed by the checkpoint's cache key)",
                                               VALIDATION_CHOSEN_SLICE_COLUMNS)

_NB11 = "11_comparators"
COMPARATORS_COLUMNS = ("comparator", "family", "n_validation", "auc", "auc_low", "auc_high", "accuracy",
                       "sensitivity", "specificity", "threshold", "delong_z", "delong_p", "seconds")
COMPARATORS = Artifact("tables/comparators.csv", _NB11, "each comparator's validation AUC (CI), accuracy, "
                       "sensitivity, specificity, DeLong test against DL-MIL and wall time", COMPARATORS_COLUMNS)
COMPARATOR_PREDICTIONS = Artifact("predictions/comparators_patients.csv", _NB11, "every comparator's score per "
                                  "patient", ("patient_id", "split", "er", "comparator", "score"))
COMPARATOR_INPUTS = Artifact("cache/comparators/{stem}.npz", _NB11, "one patient's extra slices and 3D tumour box")
COMPARATOR_ATTENTION = Artifact("tables/comparators_abmil_attention.csv", _NB11, "ABMIL's attention weight per "
                                "patient and slice offset", ("patient_id", "split", "offset", "weight"))
COMPARATOR_FIT = Artifact("models/comparators_{name}.json", _NB11, "a learned comparator's fitted and selection "
                          "patients, chosen epoch and history")

CHECK_REPORT = "check-{name}.csv"
"""``python -m hcc_utils check``'s findings, written in the working folder (there is no run folder yet)."""

EXPORT_FOLDER = "export"
"""``python -m hcc_utils export``'s folder in the run (``export-2``, ... when it exists; :mod:`hcc_utils.export`)."""
EXPORT_PDF = "report.pdf"
"""The whole report as one PDF: each page of the book printed by Chromium, in the table of contents' order."""
EXPORT_SITE = "report_site.zip"
"""The rendered HTML site (``book/_build/html``) zipped with paths relative to its root, for any static host."""
EXPORT_LANDING = "landing.png"
"""The first screen of the book's landing page as a reader's browser shows it."""

ARCHIVE_MEMBER = "{name}.npy"
"""An array inside a ``.npz`` archive (SLICE_ARRAYS, STACK): images, masks, offsets."""

TABLE = Artifact("tables/{name}.csv", "the notebook that shows it", "a table a notebook shows")
FIGURE = Artifact("figures/{name}.png", "the notebook that draws it", "a figure")
FIGURE_SVG = Artifact("figures/{name}.svg", "the notebook that draws it", "a figure as SVG (beside its PNG)")


# -- generic reading and writing ----------------------------------------------------------------------------------

def read_table(run, artifact: Artifact, dtype: dict | None = None, **names: str) -> pd.DataFrame:
    """A CSV artifact, checked for ``artifact.columns``; ``patient_id`` is always read as text."""
    path = artifact.require(run, **names)
    table = pd.read_csv(path, dtype={"patient_id": str, **(dtype or {})})
    missing = [c for c in artifact.columns if c not in table.columns]
    if missing:
        raise ArtifactSchemaError(f"{path}: missing column(s) {missing} (it needs {list(artifact.columns)}); "
                                  f"it was written by another version or by hand: rerun {artifact.writer}")
    return table


def write_table(run, artifact: Artifact, table: pd.DataFrame, index: bool = False, **names: str) -> Path:
    """Write a CSV artifact, refusing a table without the artifact's columns (a bug, not a user error)."""
    columns = list(table.columns) + ([table.index.name] if index and table.index.name else [])
    missing = [c for c in artifact.columns if c not in columns]
    if missing:
        raise ArtifactSchemaError(f"{artifact.pattern}: the table to write lacks column(s) {missing}")
    path = artifact.path(run, **names)
    table.to_csv(path, index=index)
    return path


def read_json(run, artifact: Artifact, **names: str) -> Any:
    """A JSON artifact's content."""
    return json.loads(artifact.require(run, **names).read_text())


def write_json(run, artifact: Artifact, content: Any, **names: str) -> Path:
    """Write a JSON artifact (indented; numpy scalars and paths as text)."""
    path = artifact.path(run, **names)
    path.write_text(json.dumps(content, indent=2, default=str))
    return path


def partial_path(path: Path) -> Path:
    """Where a large file is written before it is renamed into place (``x.npz`` -> ``x.partial.npz``)."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def file_stem(patient_id: str) -> str:
    """A patient's file-name stem in the caches: the id when it is a plain name, else a hash of it."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", patient_id):
        return patient_id
    return "p" + hashlib.sha256(patient_id.encode()).hexdigest()[:16]


def bundle_file(folder: Path | str, artifact: Artifact, **names: str) -> Path:
    """A bundle file's path in a bundle folder (``runs/NAME/model``, or a copy of it anywhere)."""
    return Path(folder) / Path(artifact.pattern.format(**names)).relative_to(BUNDLE_DIR)


def table_path(run, name: str) -> Path:
    """``tables/NAME.csv``: a table a notebook shows and keeps."""
    return TABLE.path(run, name=name)


def figure_path(run, name: str) -> Path:
    """``figures/NAME.png``."""
    return FIGURE.path(run, name=name)


def figure_svg_path(run, name: str) -> Path:
    """``figures/NAME.svg``."""
    return FIGURE_SVG.path(run, name=name)


# -- typed functions for what crosses stages ------------------------------------------------------------------------

def read_split(run) -> pd.DataFrame:
    """The split notebook 01 decided: ``patient_id, er, split`` (``ArtifactMissing``: run 01_preprocessing)."""
    return read_table(run, SPLIT, dtype={"split": str})[list(SPLIT.columns)]


def write_split(run, table: pd.DataFrame) -> Path:
    """``tables/cohort_split.csv`` from the cohort table (``patient_id, er, split``)."""
    return write_table(run, SPLIT, table[list(SPLIT.columns)])


def read_slice_patients(run) -> pd.DataFrame:
    """The slice dataset's patients in array order: ``patient_id, er, split``."""
    return read_table(run, SLICE_PATIENTS, dtype={"split": str})


def read_stack_table(run) -> pd.DataFrame:
    """One row per stacked patient (``slices.stack_info_frame``'s columns)."""
    table = read_table(run, STACK_TABLE, dtype={"split": str, "clamped_offsets": str})
    return table.fillna({"clamped_offsets": ""})


def read_stack_info(run, patient_id: str) -> dict:
    """One patient's stack info (indices, crop box, warnings)."""
    return read_json(run, STACK_INFO, stem=file_stem(str(patient_id)))


def read_slice_predictions(run) -> pd.DataFrame:
    """``predictions/slice_predictions.csv``: one row per slice and architecture."""
    return read_table(run, SLICE_PREDICTIONS, dtype={"split": str})


def write_slice_predictions(run, table: pd.DataFrame) -> Path:
    return write_table(run, SLICE_PREDICTIONS, table)


def read_cnn_choice(run) -> dict:
    """``models/cnn_choice.json``: the downstream architecture and what it was chosen on."""
    return read_json(run, CNN_CHOICE)


def write_cnn_choice(run, choice: dict) -> Path:
    return write_json(run, CNN_CHOICE, choice)


def read_cross_fit_predictions(run) -> pd.DataFrame:
    """``predictions/slice_predictions_cross_fit.csv``: one row per training patient's slice, ``prob`` from the
    network of its ``fold``, which did not train on it (``cnn.cross_fit_folds``)."""
    return read_table(run, CROSS_FIT_PREDICTIONS, dtype={"split": str})


def read_cross_fit_folds(run) -> pd.DataFrame:
    """``models/cnn_cross_fit_folds.csv``: ``patient_id, er, fold`` of every training patient."""
    return read_table(run, CROSS_FIT_FOLDS)


def read_mil_features(run) -> pd.DataFrame:
    """The 26 MIL features indexed by ``patient_id`` (notebook 04)."""
    table = read_table(run, MIL_FEATURES)
    return table.set_index("patient_id")[list(MIL_FEATURE_COLUMNS)]


def write_mil_features(run, features: pd.DataFrame) -> Path:
    """Write the MIL features (indexed by ``patient_id``)."""
    return write_table(run, MIL_FEATURES, features.rename_axis("patient_id"), index=True)


def read_pipeline(run, slug: str):
    """A fitted model pipeline (``models/<slug>.joblib``; a pickle: open only run folders you made)."""
    import joblib

    return joblib.load(PIPELINE.require(run, slug=slug))


def write_pipeline(run, slug: str, pipeline) -> Path:
    import joblib

    path = PIPELINE.path(run, slug=slug)
    joblib.dump(pipeline, path)
    return path


def read_model_summary(run, slug: str) -> dict:
    """``models/<slug>_features.json``: ``model, features`` (selected, in model order), best_params, notes."""
    content = read_json(run, MODEL_SUMMARY, slug=slug)
    if isinstance(content, list):  # the first format: the feature list alone
        content = {"features": content}
    features = content.get("features") if isinstance(content, dict) else None
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise ArtifactSchemaError(f"{MODEL_SUMMARY.path(run, slug=slug)}: expected a 'features' list of names; "
                                  f"rerun {MODEL_SUMMARY.writer}")
    return content


def write_model_summary(run, slug: str, summary: dict) -> Path:
    return write_json(run, MODEL_SUMMARY, summary, slug=slug)


def read_patient_predictions(run, slug: str) -> pd.DataFrame:
    """``predictions/<slug>_patients.csv``: ``patient_id, split, er, prob, prob_oof``."""
    return read_table(run, PATIENT_PREDICTIONS, dtype={"split": str}, slug=slug)


def write_patient_predictions(run, slug: str, table: pd.DataFrame) -> Path:
    return write_table(run, PATIENT_PREDICTIONS, table, slug=slug)
