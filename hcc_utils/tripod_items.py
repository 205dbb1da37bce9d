"""The TRIPOD+AI checklist's items (Collins GS et al., BMJ 2024;385:e078378, table 2), each paraphrased, with where
this report answers it (``hcc_utils.tripod`` renders them).

An item is answered by ``targets``: a page of the book (relative to its root) and a heading text on it, or the page
alone (``heading=None``). The headings are the project's: the notebooks' markdown cells, ``docs/method.md`` (the
book's Methods page, at the same path), ``hcc_utils.model_card`` (``model_card.md``, when the run wrote its bundle) and
``hcc_utils.provenance_chapter`` (``provenance.md``); ``tests/test_tripod.py`` checks that each is found. An item
that no run can answer has ``authors``: what the authors must supply instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """Where an item is answered: ``page`` relative to the book root; ``heading`` the heading's text as shown
    (``None``: the page as a whole)."""

    page: str
    heading: str | None = None


@dataclass(frozen=True)
class Item:
    """One checklist item or sub-item.

    Attributes:
        number: ``"1"``, ``"3a"``, ...; section: the checklist's part (Methods, Results, ...); topic: its topic;
        asks: the item paraphrased; targets: where this report answers it; authors: what the authors must supply
        when the report cannot (then no targets); note: a remark shown beside the links.
    """

    number: str
    section: str
    topic: str
    asks: str
    targets: tuple[Target, ...] = ()
    authors: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if bool(self.targets) == bool(self.authors):
            raise ValueError(f"TRIPOD+AI item {self.number}: give either targets or what the authors supply")


INTRO = "intro.md"
METHODS = "docs/method.md"
CARD = "model_card.md"
PROVENANCE = "provenance.md"
N01, N02, N03, N04, N05 = (f"notebooks/{n}.ipynb" for n in (
    "01_preprocessing", "02_slices_2p5d", "03_cnn_training", "04_mil_features", "05_models"))
N06, N07, N08, N09, N10 = (f"notebooks/{n}.ipynb" for n in (
    "06_comparison", "07_shap", "08_pathology", "09_robustness", "10_apply_model"))


def _t(page: str, heading: str | None = None) -> Target:
    return Target(page, heading)


M_STUDY = _t(METHODS)
M_IMAGES = _t(METHODS, "1. Images")
M_STACKS = _t(METHODS, "2. 2.5D stacks")
M_CNN = _t(METHODS, "3. Slice-level CNNs")
M_MIL = _t(METHODS, "4. MIL features (patient level)")
M_MODEL = _t(METHODS, "5. Feature selection and model")
M_EVAL = _t(METHODS, "6. Evaluation and comparison")
M_PAPER = _t(METHODS, "7. The paper's numbers")
M_PROTOCOLS = _t(METHODS, "8. Protocols")
M_DEVIATIONS = _t(METHODS, "9. Deviations from the paper, and why")
M_ROBUST = _t(METHODS, "10. Robustness (notebook 09)")
M_APPLY = _t(METHODS, "11. Applying the model (notebook 10)")
COHORT = _t(N01, "The cohort")
EXCLUDED = _t(N01, "Patients excluded or warned before the split")
SPLIT = _t(N01, "The split")
TABLE2 = _t(N05, "Clinical · baseline characteristics (Table 2)")
TABLE4 = _t(N06, "Table 4: the models")
SCANNERS = _t(N09, "Validation across scanners")
NEW_PATIENTS = _t(N10, "The new patients")
BUNDLE = _t(N05, "Model bundle")
SCORING = _t(CARD, "Scoring a patient")

_INTRO, _METHODS, _OPEN, _RESULTS, _DISCUSSION = "Title, abstract and introduction", "Methods", "Open science", \
    "Results", "Discussion"

CHECKLIST: list[Item] = [
    Item("1", _INTRO, "Title", "Name the study as developing or evaluating a multivariable prediction model, with "
         "its target population and predicted outcome.", (_t(INTRO), M_STUDY)),
    Item("2", _INTRO, "Abstract", "A structured abstract following the TRIPOD+AI for Abstracts checklist.",
         authors="the abstract (the landing page gives the results it summarises)"),
    Item("3a", _INTRO, "Background", "The healthcare context (diagnostic or prognostic), why the model is needed, "
         "and the existing models.", authors="the clinical background, the rationale and the existing models "
         "(the Methods chapter names the study reproduced)"),
    Item("3b", _INTRO, "Background", "Who the model is for, where in the care pathway it would be used, and by "
         "whom.", (_t(CARD, "Intended use"), M_STUDY)),
    Item("3c", _INTRO, "Background", "Known health inequalities between sociodemographic groups.",
         authors="known inequalities in the target population"),
    Item("4", _INTRO, "Objectives", "The objectives, and whether the study develops a model, validates one, or "
         "both.", (M_STUDY, _t(INTRO))),
    Item("5a", _METHODS, "Data", "The data sources for development and for evaluation, why they were used, and "
         "how representative they are.", (COHORT, M_IMAGES, NEW_PATIENTS),
         note="the institution and how patients were recruited: the authors'"),
    Item("5b", _METHODS, "Data", "The dates of the data: start and end of accrual and, if relevant, end of "
         "follow-up.", authors="accrual and follow-up dates (the manifest holds none)"),
    Item("6a", _METHODS, "Participants", "The setting (primary, secondary care, ...) and the number and location "
         "of centres.", authors="the setting, centres and their locations (chapter 01 lists the scanners)"),
    Item("6b", _METHODS, "Participants", "The eligibility criteria.", (EXCLUDED, M_IMAGES, _t(N02,
         "Patients excluded or warned")), note="the image and data checks; the clinical inclusion criteria: the "
         "authors'"),
    Item("6c", _METHODS, "Participants", "The treatments received and how they were handled in development or "
         "evaluation.", authors="the treatments (all patients underwent resection; later treatment is not "
         "recorded)"),
    Item("7", _METHODS, "Data preparation", "Pre-processing and quality checks, and whether they were the same "
         "across sociodemographic groups.", (_t(N01, "Resampling and windowing"), EXCLUDED, M_IMAGES, M_STACKS,
                                             _t(N02, "Building the stacks"))),
    Item("8a", _METHODS, "Outcome", "The outcome and its time horizon, how and when it was assessed, why it was "
         "chosen, and whether assessment was consistent across groups.", (M_STUDY, COHORT),
         note="how recurrence was diagnosed and when: the authors'"),
    Item("8b", _METHODS, "Outcome", "If assessing the outcome needs judgement, the assessors' qualifications and "
         "demographics.", authors="who assessed recurrence, and their qualifications"),
    Item("8c", _METHODS, "Outcome", "Any blinding of the outcome assessment.",
         authors="whether outcome assessors were blinded"),
    Item("9a", _METHODS, "Predictors", "How the candidate predictors were chosen, and any pre-selection before "
         "modelling.", (M_MIL, M_MODEL, _t(N05, "DL-MIL · feature selection"),
                        _t(N05, "Radiomics · features of the tumour"), TABLE2)),
    Item("9b", _METHODS, "Predictors", "Every predictor defined, how and when it was measured, and any blinding "
         "of its measurement.", (M_IMAGES, M_MIL, _t(N04, "PLH and BoW features"),
                                 _t(N05, "Radiomics · features of the tumour")),
         note="blinding of the readers to the outcome: the authors'"),
    Item("9c", _METHODS, "Predictors", "If measuring a predictor needs judgement (here the tumour outlines), the "
         "assessors' qualifications and demographics.", authors="the two readers' qualifications (their "
         "agreement is in chapter 05)"),
    Item("10", _METHODS, "Sample size", "How the study size was reached, for development and evaluation, and why "
         "it suffices; any sample size calculation.", (_t(N06, "Sample size"), M_EVAL)),
    Item("11", _METHODS, "Missing data", "How missing data were handled, and why any data were left out.",
         (M_MODEL, TABLE2, EXCLUDED)),
    Item("12a", _METHODS, "Analytical methods", "How the data were used for development and evaluation, including "
         "any partitioning.", (SPLIT, _t(N03, "Who trains, who chooses"), M_PROTOCOLS)),
    Item("12b", _METHODS, "Analytical methods", "How predictors were handled: functional form, rescaling, "
         "transformation, standardisation.", (M_MIL, M_MODEL)),
    Item("12c", _METHODS, "Analytical methods", "The type of model and why, every model-building step, the "
         "hyperparameter tuning, and the internal validation.", (M_CNN, M_MODEL, _t(N03, "Training"),
                                                                 _t(N05, "DL-MIL · ExtraTrees grid search"))),
    Item("12d", _METHODS, "Analytical methods", "Whether and how heterogeneity across clusters (hospitals, "
         "countries) in parameters and performance was handled.", (M_ROBUST, SCANNERS)),
    Item("12e", _METHODS, "Analytical methods", "Every performance measure and plot (discrimination, "
         "calibration, clinical utility) and why, and how models were compared.",
         (M_EVAL, TABLE4, _t(N06, "Decision curves (Fig. 5c,d)"), _t(N06, "Calibration"))),
    Item("12f", _METHODS, "Analytical methods", "Any updating of the model (e.g. recalibration) after its "
         "evaluation.", authors="a statement that no model was updated (none is in this report)"),
    Item("12g", _METHODS, "Analytical methods", "For evaluation, how predictions were computed (formula, code, "
         "object, interface).", (M_APPLY, BUNDLE, _t(N10, "Predictions"))),
    Item("13", _METHODS, "Class imbalance", "Any method for class imbalance, why and how, and any recalibration "
         "afterwards.", (M_MODEL, _t(N06, "Calibration"))),
    Item("14", _METHODS, "Fairness", "The approaches used to address fairness, and why.",
         authors="the approach to fairness (this report examines none)"),
    Item("15", _METHODS, "Model output", "What the model outputs (probability, class), and how and why any "
         "threshold was chosen.", (M_EVAL, TABLE4, _t(N10, "Predictions"))),
    Item("16", _METHODS, "Training versus evaluation", "Differences between development and evaluation data in "
         "setting, eligibility, outcome and predictors.", (SPLIT, M_APPLY, NEW_PATIENTS)),
    Item("17", _METHODS, "Ethical approval", "The ethics committee that approved the study, and the consent or "
         "its waiver.", authors="the approving committee and the consent or waiver"),
    Item("18a", _OPEN, "Funding", "The sources of funding and the funders' role.",
         authors="the funding and the funders' role"),
    Item("18b", _OPEN, "Conflicts of interest", "Every author's conflicts of interest and financial disclosures.",
         authors="the authors' declarations"),
    Item("18c", _OPEN, "Protocol", "Where the study protocol can be read, or that there was none.",
         authors="where the protocol is (the Methods chapter and the parameters file fix the analysis)"),
    Item("18d", _OPEN, "Registration", "The study's registry and number, or that it was not registered.",
         authors="the registration, or that there was none"),
    Item("18e", _OPEN, "Data sharing", "How the study data can be obtained.",
         authors="the data availability statement"),
    Item("18f", _OPEN, "Code sharing", "How the analysis code can be obtained.",
         authors="where the code is published (the Provenance chapter gives the commit that made this report)"),
    Item("19", _OPEN, "Patient and public involvement", "Any involvement of patients or the public in design, "
         "conduct, reporting or dissemination, or that there was none.", authors="the involvement, or none"),
    Item("20a", _RESULTS, "Participants", "The flow of participants, with the numbers with and without the "
         "outcome and any follow-up; a diagram may help.", (EXCLUDED, SPLIT, _t(N02, "Patients excluded or warned"))),
    Item("20b", _RESULTS, "Participants", "The participants' characteristics overall and per source: key dates, "
         "predictors, treatments, sample size, events, follow-up, missing data; differences across groups.",
         (TABLE2, _t(N01, "Make-up against the paper"), _t(N01, "Image geometry")),
         note="dates, treatments and follow-up: the authors'"),
    Item("20c", _RESULTS, "Participants", "For evaluation, the distribution of key predictors and the outcome "
         "beside the development data.", (TABLE2, NEW_PATIENTS)),
    Item("21", _RESULTS, "Model development", "The number of participants and events in each analysis "
         "(development, tuning, evaluation).", (SPLIT, _t(N03, "Who trains, who chooses"),
                                                 _t(N06, "The predictions"))),
    Item("22", _RESULTS, "Model specification", "The full model (formula, code, object, interface) so that others "
         "can predict for new individuals, and any restriction on its use.",
         (BUNDLE, SCORING, M_APPLY, _t(PROVENANCE, "Software"))),
    Item("23a", _RESULTS, "Model performance", "Performance estimates with confidence intervals, also for key "
         "subgroups; plots may help.", (TABLE4, _t(N06, "ROC curves (Fig. 5a,b)"), _t(N06, "DeLong's test"),
                                        _t(N03, "Table 3: slice-level performance"), _t(CARD, "Models"))),
    Item("23b", _RESULTS, "Model performance", "If examined, the heterogeneity of performance across clusters.",
         (SCANNERS, _t(N09, "Repeated splits"))),
    Item("24", _RESULTS, "Model updating", "The results of any updating: the updated model and its performance.",
         authors="the results of any updating (none is in this report)"),
    Item("25", _DISCUSSION, "Interpretation", "An overall interpretation of the results, fairness included, "
         "against the objectives and earlier studies.", (_t(N06, "Summary"), _t(N09, "Summary"), M_PAPER),
         note="the interpretation against other studies: the authors'"),
    Item("26", _DISCUSSION, "Limitations", "The limitations (unrepresentative sample, sample size, overfitting, "
         "missing data) and what they do to bias, uncertainty and generalisability.",
         (_t(CARD, "Limitations"), M_DEVIATIONS, _t(N09, "Summary"))),
    Item("27a", _DISCUSSION, "Usability of the model in the context of current care", "How poor-quality or "
         "missing input data should be recognised and handled when the model is used.",
         (M_APPLY, _t(N10, "Excluded patients"), M_IMAGES)),
    Item("27b", _DISCUSSION, "Usability of the model in the context of current care", "Whether users must handle "
         "the input data or interact with the model, and the expertise they need.", (SCORING, M_APPLY),
         note="a tumour outline is an input, so users need a reader able to draw it"),
    Item("27c", _DISCUSSION, "Usability of the model in the context of current care", "The next steps of research, "
         "towards applicability and generalisability.", authors="the next steps of research"),
]
