"""Numbered captions of the report's figures and tables: one ordered registry, in book order (issue 17, item 4).

Every figure a notebook saves (``notebook.save_figure(fig, run, NAME)``: ``figures/NAME.png`` and ``.svg``) and
every table it shows from a CSV (``tables/NAME.csv``, written by the notebook or by a stage module) has one entry
here: what is plotted or tabulated and on which patients. Numbers are not typed: a figure or table the paper has
keeps the paper's number (Table 2-5; Figure 2, 3a, 3b, 3c-d, 4a-c, 5a-b, 5c-d, 5e-g, 6), and every other one gets
a supplementary number, "Figure S1", "Figure S2", ..., "Table S1", ..., in the order of the entries below (the
book's order: notebooks 01 to 11). A table or figure a run does not make (e.g. no cross-fit) leaves its number
unused, so numbers mean the same in every run.

    >>> figure("fig5ab_roc").label
    'Figure 5a-b'
    >>> table("table4_models").formatter is paper_tables.table4
    True

A name may hold a ``{placeholder}`` (``held_out_cnn_{folding}``) that matches any file-name word. Small tables
without a CSV stay uncaptioned. ``tests/test_captions.py`` checks that every name the notebooks pass to
``save_figure`` and ``show_table`` has its entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd

from hcc_utils import paper_tables


class CaptionMissing(KeyError):
    """A figure or table name without an entry in the registry; the message says where to add one."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Caption:
    """One figure's or table's caption: ``kind`` ("Figure" or "Table"), ``number`` ("5a-b", "S3"), ``text`` (what
    is shown, on which patients), ``name`` (its file name, ``figures/NAME.svg`` or ``tables/NAME.csv``) and, for
    tables, the ``paper_tables`` function that gives the paper's style (None: shown as it is)."""

    kind: str
    number: str
    text: str
    name: str
    formatter: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    @property
    def label(self) -> str:
        """``Figure 5a-b``, ``Table S3``."""
        return f"{self.kind} {self.number}"


def _f(name: str, text: str, paper: str | None = None) -> tuple:
    return ("Figure", name, paper, text, None)


def _t(name: str, text: str, paper: str | None = None, formatter=None) -> tuple:
    return ("Table", name, paper, text, formatter)


_TRAIN_ROWS = ("Training rows use the apparent predictions (the final model on its own training patients, as the "
               "paper) or the out-of-fold ones, as evaluation.train_predictions says.")
_FIRST_LOOK = ("at the fixed threshold (evaluation.fixed_threshold): accuracy, AUC, sensitivity and specificity on "
               "the training patients (apparent and out-of-fold predictions) and on the validation patients.")

_ENTRIES = (
    # 01 cohort and preprocessing
    _f("tumour_gallery", "Axial CT slices through the largest tumour cross-section of four patients drawn at random "
       "(half ER, half NER), window 259/40 HU, with reader 1's tumour contour (vermillion) and reader 2's (sky "
       "blue).", "2"),
    _f("resampling_windowing", "One patient's CT around the tumour centre (the first patient whose files can be "
       "used), axial and coronal, before (original voxels, HU) and after resampling to 1 mm and windowing."),
    # 02 2.5D slices
    _f("stack_montage", "The 11-slice 2.5D stacks of three patients: offsets in 1 mm slices from the central "
       "slice (the tumour's largest cross-section), tumour contour in vermillion."),
    _f("tumour_size", "Tumour area and longest diameter on the central slice of every patient with a stack, by "
       "set (training, validation)."),
    # 03 slice-level CNNs
    _f("cnn_training_curves", "Training of each CNN architecture: mean cross-entropy per epoch on the training "
       "slices (left) and slice AUC per epoch of the training pass (dashed) and of the set that chooses the "
       "checkpoint (solid; inner-validation patients under leak_free); circles mark the chosen epochs."),
    _t("table3_slice_cnn", "Slice-level performance of the three CNN architectures on all slices of the training "
       "and validation patients: AUC with 95% DeLong CI, accuracy, sensitivity and specificity at the evaluation "
       "threshold. The CIs treat the 11 slices of a patient as independent, so they are too narrow.", "3",
       paper_tables.table3),
    _f("fig3a_slice_roc_train", "Slice-level ROC curves of the three CNN architectures on all slices of the "
       "training patients; AUC with 95% DeLong CI in the legend.", "3a"),
    _f("fig3b_slice_roc_validation", "Slice-level ROC curves of the three CNN architectures on all slices of the "
       "validation patients; AUC with 95% DeLong CI in the legend.", "3b"),
    _t("cnn_cross_fit", "Cross-fit networks of the MIL step (cnn.cross_fit_folds): per fold of the training "
       "patients, the patients trained on and held out, the epochs and the slice AUC on the held-out patients."),
    _f("fig3cd_gradcam", "Grad-CAM of the chosen CNN on the central slice of two validation patients, the ER "
       "patient with the highest probability (c) and the NER patient with the lowest (d): the slice (top) and "
       "its Grad-CAM map (bottom), tumour outline in white.", "3c-d"),
    # 04 MIL features
    _f("plh_heatmap", "Predicted likelihood histogram of every patient (columns; NER left, ER right): the share of "
       "the patient's 11 slices in each probability bin (rows)."),
    _t("mil_feature_tests", "The 26 MIL features, ER versus NER on the training patients: Shapiro-Wilk p per "
       "group, the test chosen (t-test or Mann-Whitney U), its statistic and p, and the group means."),
    _f("fig4a_mil_feature_distributions", "MIL features of the training patients, ER versus NER, z-scored with "
       "the training mean and SD; stars mark the univariate p (* < 0.05, ** < 0.01, *** < 0.001).", "4a"),
    # 05 models
    _f("dl_mil_funnel", "DL-MIL feature selection on the training patients: MIL features left after each step "
       "(final fit)."),
    _t("dl_mil_selection", "Where each MIL feature left the DL-MIL selection on the training patients, and why "
       "(final fit)."),
    _f("fig4b_lasso", "LassoCV of the DL-MIL features on the training patients: cross-validated mean squared error "
       "(mean ± SD over folds) against log10 lambda, the chosen lambda dashed (left), and each feature's "
       "coefficient along the path (right).", "4b"),
    _f("fig4c_feature_weights", "Lasso coefficients (z-score units) of the selected DL-MIL features at the chosen "
       "lambda, training patients; vermillion raises, blue lowers the predicted risk of ER.", "4c"),
    _t("dl_mil_selection_stability", "Selection stability of the DL-MIL features: in how many cross-validation "
       "folds of the training patients each feature was selected, and whether the final fit selected it."),
    _f("dl_mil_grid", "Mean cross-validated AUC of the DL-MIL model (SMOTE + ExtraTrees) over the grid of "
       "n_estimators and max_depth (best over min_samples_split), training patients."),
    _t("dl_mil_grid", "The DL-MIL grid search's candidates by rank (mean and SD of the cross-validated AUC on the "
       "training patients); the first ten rows are shown, all are in the CSV."),
    _t("dl_mil_metrics", "The DL-MIL model " + _FIRST_LOOK),
    _f("radiomics_icc", "ICC(3,1) between the two readers' masks of every radiomics feature, by image type, on the "
       "patients of the reliability analysis (training patients under leak_free); dashed: the ICC threshold."),
    _t("radiomics_funnel", "Radiomics features left after each step, from extraction to the Lasso (final fit on "
       "the training patients)."),
    _f("radiomics_funnel", "Radiomics features left after each step, from extraction to the Lasso (final fit on "
       "the training patients; log scale)."),
    _t("radiomics_selected", "The radiomics features the Lasso selected on the training patients: image type, "
       "feature class, inter-reader ICC and Lasso coefficient."),
    _f("figS1b_radiomics_lasso", "LassoCV of the radiomics features on the training patients, as Figure 4b (the "
       "paper's Figure S1b): cross-validated mean squared error against log10 lambda, and the coefficient path."),
    _t("radiomics_selection_stability", "Selection stability of the radiomics features: in how many "
       "cross-validation folds of the training patients each feature was selected, and whether the final fit "
       "selected it."),
    _f("figS1a_radiomics_feature_types", "Radiomics features by class, coloured by the image they were computed on "
       "(Original, LoG, Wavelet): every extracted feature (left) and the model's selected features (right); an "
       "analogue of the paper's Figure S1a."),
    _t("radiomics_metrics", "The Radiomics model " + _FIRST_LOOK),
    _t("table2_baseline", "Baseline clinical characteristics of the training and validation patients, NER versus "
       "ER, with the p-value of each comparison (observed values).", "2", paper_tables.table2),
    _t("clinical_tests", "Every clinical variable, ER versus NER on the training patients: the test, its p and "
       "whether the variable enters the Clinical model (p below clinical.p_threshold)."),
    _t("clinical_metrics", "The Clinical model " + _FIRST_LOOK),
    _t("combined_coefficients", "The Combined model, a logistic regression fitted on the training patients: "
       "coefficient per unit of each input (the DL-MIL score per unit of logit), odds ratio with its Wald CI "
       "(evaluation.ci_level) and p from the unpenalised fit."),
    _f("nomogram", "Nomogram of the Combined model (fitted on the training patients): points per predictor, total "
       "points and the probability of ER."),
    _t("combined_metrics", "The Combined model " + _FIRST_LOOK),
    # 06 comparison
    _t("table4_models", "Performance of the models on the training and validation patients: AUC with 95% DeLong "
       "CI, and accuracy, sensitivity and specificity at each model's cut-off. " + _TRAIN_ROWS, "4",
       paper_tables.table4),
    _f("fig5ab_roc", "ROC curves of the models on the training (a) and validation (b) patients; AUC with 95% "
       "DeLong CI in the legend. " + _TRAIN_ROWS, "5a-b"),
    _t("delong", "DeLong's test of every pair of models on the training and on the validation patients (each pair "
       "on the patients both models scored): the two AUCs, z and the two-sided p.", None, paper_tables.delong),
    _f("fig5cd_decision_curves", "Decision curves of the models on the training (c) and validation (d) patients: "
       "net benefit against threshold probability, with the treat-all and treat-none strategies.", "5c-d"),
    _f("calibration_curves", "Calibration of the models on the training (left) and validation (right) patients: "
       "observed ER rate against mean predicted probability per bin; Brier score and calibration slope in the "
       "legend."),
    _t("nri_idi", "Incremental value over the Clinical model: continuous NRI (with its events and non-events "
       "parts) and IDI of the Combined and DL-MIL models, on the validation patients and the training patients "
       "(out-of-fold predictions), with bootstrap CIs (evaluation.ci_level)."),
    # 07 SHAP
    _f("fig5e_shap_beeswarm", "SHAP values of the DL-MIL model's features: one dot per patient (explain.patients, "
       "all patients by default), colour the feature's z-scored value; features ordered by mean |SHAP|.", "5e"),
    _t("shap_importance", "Mean |SHAP| and mean SHAP of each DL-MIL feature over the explained patients "
       "(explain.patients, all patients by default)."),
    _f("shap_importance", "Mean |SHAP| of each DL-MIL feature over the explained patients (explain.patients, all "
       "patients by default)."),
    _f("fig5f_shap_waterfall", "SHAP waterfall of one validation patient (explain.patient; by default the one "
       "whose P(ER) is closest to the validation median): from the base value to the patient's P(ER), one feature "
       "at a time.", "5f"),
    _f("fig5g_shap_force", "SHAP force plot of the same patient: features raising P(ER) (red) and lowering it "
       "(blue) meet at the patient's prediction.", "5g"),
    # 08 pathology
    _t("table5_pathology", "Pearson correlation of the DL-MIL model's selected MIL features with MVI grade, Ki-67 "
       "and Edmondson-Steiner grade on the patients of pathology.patients (all patients by default): r with its "
       "Fisher-z CI (pathology.ci_level) and p.", "5", paper_tables.table5),
    _f("fig6_pathology_heatmap", "Pearson r of each selected MIL feature with MVI grade, Ki-67 and "
       "Edmondson-Steiner grade (Table 5; red negative, blue positive; * p < 0.05, ** < 0.01, *** < 0.001) with "
       "the n of each cell.", "6"),
    _f("fig6_reference_latent", "Synthetic cohorts only: Pearson r of the generator's latent invasiveness and "
       "proliferation with the same indicators on the same patients, a reference for Figure 6."),
    # 09 robustness
    _t("held_out_cnn_{folding}", "Held-out CNNs of the robustness analysis (the whole cohort in folds by patient, "
       "or by scanner): per fold, the patients trained on and held out, the slice AUC on the held-out ones, the "
       "epochs and the seconds."),
    _f("robustness_held_out_folds", "Slice AUC of each held-out network on the patients of its own fold (whole "
       "cohort)."),
    _f("robustness_repeats", "Validation AUC of each model over repeated stratified splits of the cohort (left; "
       "diamond: this run's Table 4 value, cross: the same chain on this run's split) and the paired difference "
       "DL-MIL minus each comparator (right)."),
    _t("robustness_repeats_summary", "Validation AUC of each model over the repeated splits: median and 2.5-97.5 "
       "percentiles, and where this run's Table 4 value falls among them."),
    _t("robustness_differences", "Paired difference of validation AUC, DL-MIL minus each comparator, over the "
       "repeated splits: median, 2.5-97.5 percentiles and the share of splits DL-MIL wins."),
    _t("robustness_permutation", "Permutation test on this run's split: the observed validation AUC, the null "
       "distribution with the training patients' labels shuffled (mean, SD, percentiles) and the permutation p."),
    _f("robustness_permutation", "Validation AUC per model with the training patients' labels permuted (the null); "
       "the line is the observed AUC, dotted 0.5."),
    _t("robustness_optimism", "Optimism audit: the DL-MIL validation AUC (DeLong CI) under each shortcut of the "
       "original tooling, and its difference from the leak-free run."),
    _f("robustness_optimism", "DL-MIL validation AUC with its DeLong CI under each shortcut of the optimism audit; "
       "dashed: the leak-free run."),
    _t("robustness_fit", "Apparent (final model, its own training patients), out-of-fold (training patients) and "
       "validation AUC of each model, with DeLong CIs."),
    _f("robustness_fit", "Apparent and out-of-fold training AUC and validation AUC of each model, with DeLong "
       "CIs."),
    _t("robustness_scanners", "Validation across scanners: each scanner's patients held out in turn, the models "
       "trained on the other scanners' patients; n, ER rate and AUC (95% DeLong CI) per scanner and model."),
    _f("robustness_scanners", "AUC with DeLong CI of each model on each held-out scanner's patients (models "
       "trained on the other scanners)."),
    # 10 applying the model
    _t("applied_auc", "External test on the new patients with a known outcome: each model's AUC (DeLong CI, "
       "evaluation.ci_level), sensitivity and specificity at the bundle's cut-off, beside its validation AUC in "
       "this run."),
    _f("applied_roc", "ROC curves of the models on the new patients with a known outcome; AUC with DeLong CI in "
       "the legend."),
    # 11 comparators
    _t("comparators", "Comparators of the paper's design on this run's split: validation AUC (DeLong CI), "
       "accuracy, sensitivity and specificity at a cut-off chosen on training patients only (Youden's J), DeLong's "
       "test against DL-MIL on the validation patients both scored, and wall time (s).", None,
       paper_tables.comparators),
    _f("comparators_roc", "Validation ROC curves of DL-MIL and each comparator; AUC with DeLong CI in the legend."),
    _f("comparators_attention", "ABMIL's attention weight per slice offset (slices from the central one): mean "
       "and spread over patients, training and validation; the dashed line is the uniform weight 1/K."),
    _f("comparators_cnn3d_history", "The 3D CNN's training loss and selection AUC per epoch; the dot marks the "
       "epoch kept."),
)


def _numbered(entries) -> tuple[Caption, ...]:
    """Captions with numbers: the paper's, or the next supplementary number of their kind in entry order."""
    supplementary = {"Figure": 0, "Table": 0}
    captions = []
    for kind, name, paper, text, formatter in entries:
        if paper is None:
            supplementary[kind] += 1
            paper = f"S{supplementary[kind]}"
        captions.append(Caption(kind, paper, text, name, formatter))
    return tuple(captions)


CAPTIONS: tuple[Caption, ...] = _numbered(_ENTRIES)
"""Every caption, in book order."""


def _pattern(name: str) -> re.Pattern:
    return re.compile(re.sub(r"\\\{[^}]*\\\}", "[A-Za-z0-9_.-]+", re.escape(name)))


def lookup(kind: str, name: str) -> Caption | None:
    """The caption of figure or table ``name`` (``kind``: "Figure" or "Table"), its ``name`` the one given; None
    when there is none."""
    for caption in CAPTIONS:
        if caption.kind == kind and (caption.name == name or _pattern(caption.name).fullmatch(name)):
            return caption if caption.name == name else replace(caption, name=name)
    return None


def _require(kind: str, name: str) -> Caption:
    found = lookup(kind, name)
    if found is None:
        raise CaptionMissing(f"no caption for the {kind.lower()} {name!r}: add an entry for it to _ENTRIES in "
                             "hcc_utils/captions.py, at its place in the book's order (what is shown, on which "
                             "patients)")
    return found


def figure(name: str) -> Caption:
    """The caption of ``figures/NAME.png``; ``CaptionMissing`` saying where to add one."""
    return _require("Figure", name)


def table(name: str) -> Caption:
    """The caption of ``tables/NAME.csv``; ``CaptionMissing`` saying where to add one."""
    return _require("Table", name)
