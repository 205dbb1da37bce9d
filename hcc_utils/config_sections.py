"""The parameter sections of the stages: one strict pydantic class per stage, with every default and its meaning.

``hcc_utils.config.Params`` gathers them into one run's parameters and loads them from a params file; import
them from there (``from hcc_utils.config import CNNConfig``). Each field's ``description`` says its unit and the
section of ``docs/method.md`` it implements; the defaults are the paper's values or our documented choices.

One path rule (``ParamsPath``): a relative path in a params file (``cohort.manifest``, ``radiomics.settings``,
``cnn.weights.<architecture>``) is relative to that file's folder, whatever the working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

Protocol = Literal["leak_free", "onekey_compat"]
SHIPPED_PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"
"""The project's own parameter files (``params/``), e.g. the default PyRadiomics settings."""


def _relative_to_params_file(path: Path, info: ValidationInfo) -> Path:
    """A relative path (``~`` expanded) made absolute against the params file's folder (``params_from_dict`` passes
    it as validation context); kept as given when the parameters come from no file."""
    path = path.expanduser()
    folder = (info.context or {}).get("folder")
    return path if path.is_absolute() or folder is None else (folder / path).resolve()


ParamsPath = Annotated[Path, AfterValidator(_relative_to_params_file)]
"""A path in a params file: relative to the file's folder (the module's one path rule)."""


def _nonzero_workers(v: int) -> int:
    if v == 0:
        raise ValueError("n_jobs must be -1 (all cores) or a positive number of workers")
    return v


Workers = Annotated[int, AfterValidator(_nonzero_workers)]
"""A count of parallel workers: -1 for all cores, else positive (0 is refused)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CohortConfig(_Section):
    """Where the patients come from: ``synthetic`` (generated on first use, then reused) or ``manifest``."""

    synthetic: Any = Field(None, description="the generator's own schema, hcc_utils.synth.params.SyntheticCohort, "
                           "imported only when a params file has this section (config never needs the generator)")
    manifest: ParamsPath | None = Field(None, description="path to cohort.csv, relative to the params file")
    columns: dict[str, str] = Field(default_factory=dict, description="manifest column -> your column name")
    validation_fraction: float = Field(0.3, gt=0.05, lt=0.95, description="paper: 7:3 random split")
    split_seed: int = Field(42, ge=0)
    split_column: str | None = Field(None, description="use a fixed split column (train/validation) "
                                     "of the manifest instead of a random split")
    invalid_rows: Literal["exclude", "stop"] = Field(
        "exclude", description="a bad manifest row (er empty or not 0/1, patient_id empty or repeated, no image or "
        "mask) excludes that patient with the reason (exclude), or stops the run listing all of them (stop); "
        "hcc_utils.manifest_check, docs/method.md section 1")

    @field_validator("synthetic")
    @classmethod
    def _synthetic_params(cls, v: Any) -> Any:
        if v is None:
            return None
        from hcc_utils.synth.params import SyntheticCohort  # the generator's schema, imported only when used

        return SyntheticCohort.model_validate(v)  # its errors keep their key path (cohort.synthetic.<key>)

    @model_validator(mode="after")
    def _one_source(self) -> CohortConfig:
        if (self.synthetic is None) == (self.manifest is None):
            raise ValueError("give exactly one of 'synthetic' or 'manifest'")
        return self


class PreprocessConfig(_Section):
    """Resampling and windowing (paper: 1x1x1 mm, window width 259 HU, level 40 HU)."""

    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolator: Literal["bspline", "linear"] = "bspline"
    window_width_hu: float = Field(259.0, gt=0)
    window_level_hu: float = Field(40.0, ge=-1000, le=3000)
    geometry_tolerance: float = Field(1e-3, gt=0, le=0.5, description="image/mask geometry: spacing relative, "
                                      "origin in voxels, direction cosines absolute")
    outside_value_hu: float = Field(-1024.0, description="value of crop pixels outside the scan (air)")

    @field_validator("spacing_mm")
    @classmethod
    def _positive_spacing(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) <= 0 or max(v) > 10:
            raise ValueError("spacing_mm must be three values in (0, 10] mm")
        return v


class SlicesConfig(_Section):
    """The 2.5D stack (paper: central = largest cross-section, offsets +-1, +-2, +-4, +-7, +-9)."""

    offsets: list[int] = Field(default_factory=lambda: [-9, -7, -4, -2, -1, 0, 1, 2, 4, 7, 9], min_length=1)
    margin_mm: float = Field(0.0, ge=0, le=100, description="added around the central tumour box")
    size: int = Field(224, ge=16, le=1024, description="CNN input size, pixels")
    mask_label: int = Field(1, ge=1)
    largest_component_only: bool = Field(True, description="keep the largest connected lesion (26-connected "
                                         "voxels) when the mask has several; a warning is recorded either way")
    other_labels: Literal["error", "ignore"] = Field("error", description="a mask label other than 0 and "
                                                     "mask_label: exclude the patient (error) or ignore it")
    n_jobs: int = Field(1, ge=1, le=64, description="patients processed in parallel")
    min_lesion_mm3: float = Field(250.0, ge=0, description="tumour volume (mm^3) below which the input check "
                                  "warns (250 mm^3: a sphere 7.8 mm across); it only warns, it never excludes. "
                                  "docs/method.md section 1")

    @field_validator("offsets")
    @classmethod
    def _has_centre(cls, v: list[int]) -> list[int]:
        if 0 not in v:
            raise ValueError("offsets must contain 0 (the central slice)")
        if len(set(v)) != len(v):
            raise ValueError("offsets must be distinct")
        return sorted(v)


CNN_ARCHITECTURES = ("resnet18", "resnet101", "densenet121")
CNNArchitecture = Literal["resnet18", "resnet101", "densenet121"]


class CNNConfig(_Section):
    """Slice-level CNNs (docs/method.md section 3; the original tooling's training recipe by default).

    ``epochs`` and ``input_size`` may differ per architecture (a mapping), so a CPU profile can give the heavy
    networks a smaller input and fewer epochs; an int ``input_size`` applies to all. Every listed architecture is
    trained. GPU runs are seeded but not bitwise reproducible unless ``deterministic_gpu`` is set.
    """

    architectures: list[CNNArchitecture] = Field(
        default_factory=lambda: ["resnet18", "resnet101", "densenet121"], min_length=1)
    epochs: dict[str, int] = Field(default_factory=lambda: {"resnet18": 30, "resnet101": 30, "densenet121": 30},
                                   description="architecture -> training epochs (>= 1)")
    input_size: int | dict[str, int] = Field(224, description="pixels (32-512); slices are resized to this; "
                                             "an int for all architectures or architecture -> pixels")
    batch_size: int = Field(32, ge=2, le=1024, description="training batch, slices")
    eval_batch_size: int = Field(256, ge=1, le=4096, description="inference batch, slices")
    lr: float = Field(0.01, gt=0, le=1, description="initial SGD learning rate, cosine-annealed per iteration")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    random_resized_crop_scale: tuple[float, float] = Field((0.8, 1.0), description="crop area, fraction")
    random_resized_crop_ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="crop aspect ratio")
    hflip: bool = True
    zero_init_residual: bool = Field(True, description="ResNets from random weights start each residual block "
                                     "as the identity (torchvision's option; Goyal et al. 2017): without it "
                                     "ResNet101 diverges in short runs from scratch. No effect on loaded weights")
    weights: dict[str, ParamsPath] = Field(default_factory=dict, description="architecture -> local state-dict "
                                     "file (nothing is downloaded; relative to the params file); default random "
                                     "initialisation")
    inner_validation_fraction: float = Field(0.2, gt=0, lt=0.5, description="leak_free: share of training "
                                             "patients used to pick the checkpoint and architecture")
    cross_fit_folds: int | None = Field(
        None, ge=0, le=50, description="leak_free: K >= 2 cross-fits the downstream architecture: the training "
        "patients are split into K folds (by patient, stratified by ER, seeded) and each fold is scored by a network "
        "trained on the other folds for the main checkpoint's epoch count, so that MIL learns from held-out "
        "probabilities only (hcc_utils.cnn_cross_fit, docs/method.md sections 3, 4, 8). 0 or None: off. Ignored, "
        "with a note, under onekey_compat. At most the smaller outcome group's count of training patients")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available")
    bf16_gpu: bool = Field(True, description="bf16 autocast on GPU")
    channels_last: bool = Field(True, description="channels_last memory format on GPU")
    bf16_cpu: bool = Field(False, description="bf16 autocast on CPUs that support it (AVX512-BF16/AMX)")
    compile: bool = Field(False, description="torch.compile on GPU (pays for long runs of small nets only)")
    deterministic_gpu: bool = Field(False, description="deterministic cuDNN kernels (slower)")
    num_threads: int | None = Field(None, ge=1, description="CPU threads for training; default "
                                    "compute.threads (the cores this process may use). CNN weights are "
                                    "bit-reproducible on one thread count, not across counts (hcc_utils.threads)")
    progress: bool = Field(True, description="progress bars per epoch")
    downstream_architecture: Literal["auto", "resnet18", "resnet101", "densenet121"] = Field(
        "auto", description="auto: best selection AUC (inner validation if leak_free, validation if "
        "onekey_compat)")

    def size_of(self, architecture: str) -> int:
        """Input size in pixels for one architecture."""
        return self.input_size if isinstance(self.input_size, int) else self.input_size[architecture]

    @model_validator(mode="after")
    def _per_architecture(self) -> CNNConfig:
        if len(set(self.architectures)) != len(self.architectures):
            raise ValueError("architectures must be distinct")
        for name, mapping in (("epochs", self.epochs), ("weights", self.weights),
                              ("input_size", self.input_size if isinstance(self.input_size, dict) else {})):
            unknown = sorted(set(mapping) - set(CNN_ARCHITECTURES))
            if unknown:
                raise ValueError(f"{name}: unknown architecture(s) {unknown}; use {list(CNN_ARCHITECTURES)}")
        sizes = (self.input_size if isinstance(self.input_size, dict)
                 else dict.fromkeys(self.architectures, self.input_size))
        for arch in self.architectures:
            if arch not in sizes:
                raise ValueError(f"input_size: no size for listed architecture '{arch}'")
            if not 32 <= sizes[arch] <= 512:
                raise ValueError(f"input_size for '{arch}' is {sizes[arch]}; use 32-512 pixels")
            if self.epochs.get(arch, 0) < 1:
                raise ValueError(f"epochs: give at least 1 epoch for listed architecture '{arch}'")
        lo, hi = self.random_resized_crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError("random_resized_crop_scale must satisfy 0 < low <= high <= 1")
        lo, hi = self.random_resized_crop_ratio
        if not 0 < lo <= hi:
            raise ValueError("random_resized_crop_ratio must satisfy 0 < low <= high")
        if self.cross_fit_folds == 1:
            raise ValueError("cross_fit_folds = 1: cross-fitting needs at least 2 folds (K >= 2); use 0 or null "
                             "to turn it off")
        if self.downstream_architecture not in ("auto", *self.architectures):
            raise ValueError(f"downstream_architecture '{self.downstream_architecture}' is not among "
                             f"architectures {self.architectures}")
        return self


class MILConfig(_Section):
    """PLH and BoW features (docs/method.md section 4)."""

    label_threshold: float = Field(0.5, gt=0, lt=1, description="a slice's predicted label is "
                                   "prob >= label_threshold (the 2 label bins)")
    training_predictions: Literal["protocol", "eval", "train_pass", "cross_fit"] = Field(
        "protocol", description="training patients' slice probabilities: the chosen checkpoint's eval-mode pass "
        "('eval'), the chosen epoch's logged training pass, augmented and in train mode, as the original "
        "tooling used ('train_pass'), or the cross-fitted networks' held-out pass ('cross_fit': leak_free with "
        "cnn.cross_fit_folds only); 'protocol': cross_fit under leak_free when cnn.cross_fit_folds is set, else "
        "eval, and train_pass under onekey_compat")


class SelectionConfig(_Section):
    """Feature selection (docs/method.md section 5): z-score, univariate tests, correlation filter, LassoCV."""

    p_threshold: float = Field(0.05, gt=0, le=1)
    normality_alpha: float = Field(0.05, gt=0, lt=1)
    correlation_threshold: float = Field(0.9, gt=0, le=1)
    lasso_folds: int = Field(10, ge=2, le=50, description="LassoCV folds (stratified, shuffled with "
                             "lasso_seed); fewer when the minority class has fewer training patients")
    lasso_seed: int = 0
    lasso_n_alphas: int = Field(100, ge=5, le=1000, description="length of LassoCV's alpha grid")
    lasso_max_iter: int = Field(10_000, ge=100, description="coordinate-descent iterations per alpha")
    ttest_equal_var: bool = Field(True, description="Student's t-test (True, scipy's default) or Welch's")
    fallback: Literal["best_k", "error"] = Field("best_k", description="when no feature survives a step: "
                                                 "keep the fallback_k with the smallest univariate p (with a "
                                                 "warning), or stop with an error")
    fallback_k: int = Field(3, ge=1)


class ModelConfig(_Section):
    """SMOTE + ExtraTrees in GridSearchCV (docs/method.md section 5)."""

    n_estimators: list[int] = Field(default_factory=lambda: [10, 50, 100, 200], min_length=1)
    max_depth: list[int | None] = Field(default_factory=lambda: [2, 3, 5, None], min_length=1)
    min_samples_split: list[int] = Field(default_factory=lambda: [2, 5], min_length=1)
    cv_folds: int = Field(5, ge=2, le=20, description="StratifiedKFold folds of the grid search and of the "
                          "out-of-fold training probabilities (the selection is refitted in each); fewer when the "
                          "minority class is smaller")
    smote: bool = Field(True, description="SMOTE inside the pipeline (sees the training folds only)")
    smote_k_neighbors: int = Field(5, ge=1, description="reduced automatically when a training fold's "
                                   "minority class is smaller")
    n_jobs: Workers = Field(1, ge=-1, description="GridSearchCV workers (-1: all cores; 0 is not allowed)")
    seed: int = Field(0, ge=0, description="seeds the folds, SMOTE and the ExtraTrees")


class RadiomicsConfig(_Section):
    """PyRadiomics on the 1 mm HU image with the tumour mask; ICC(3,1) between readers (hcc_utils.radiomics).

    The ICC is computed on the training patients (leak_free) or on all patients (onekey_compat); reader 2's
    features are only extracted for those patients, at most ``icc_max_patients`` of them (a seeded random subset,
    a common design when a second reading is costly).
    """

    enabled: bool = True
    settings: ParamsPath = Field(SHIPPED_PARAMS_DIR / "radiomics_default.yaml", description="PyRadiomics settings "
                           "YAML, relative to the params file; default the shipped params/radiomics_default.yaml")
    icc_threshold: float = Field(0.75, ge=0, le=1, description="keep features with ICC(3,1) above this")
    icc_max_patients: int | None = Field(None, ge=3, description="reader-2 extraction and ICC on at most "
                                         "this many patients (None: all eligible)")
    n_jobs: int = Field(2, ge=1, description="extraction processes (one patient each)")
    diagnostics: bool = Field(False, description="PyRadiomics' diagnostics_* entries (versions, image hashes); "
                              "off: no feature value changes, 0.5-1 s less per case")


class ClinicalConfig(_Section):
    """Clinical variables, their tests (Table 2) and the policy for missing values (hcc_utils.clinical).

    Continuous variables: Shapiro-Wilk per group, then t-test or Mann-Whitney U (``params.selection``'s
    normality_alpha and ttest_equal_var, as the shared recipe). Categorical: chi-square, or Fisher's exact test
    when an expected count is below 5 (``chi2_or_fisher``); the paper's Table 2 p-values match chi-square with
    Yates' correction throughout (``chi2``).
    """

    continuous: list[str] = Field(default_factory=lambda: ["age", "bmi", "hbsag", "afp", "alb", "ast", "alt"])
    categorical: list[str] = Field(default_factory=lambda: ["gender", "alcohol"])
    missing: Literal["median_impute_train", "drop_patient"] = Field(
        "median_impute_train", description="model inputs: fill with the TRAINING median (continuous) or mode "
        "(categorical), or drop patients missing a selected variable; Table 2 and the tests use observed values")
    p_threshold: float = Field(0.05, gt=0, le=1, description="select variables with training p below this")
    categorical_test: Literal["chi2_or_fisher", "chi2"] = "chi2_or_fisher"
    yates_correction: bool = Field(True, description="continuity correction of the 2x2 chi-square (scipy's "
                                   "default)")


class EvaluationConfig(_Section):
    """Metrics and comparison (docs/method.md section 6; stats, calibration, sample_size, comparison modules)."""

    threshold: Literal["fixed", "youden"] = Field("fixed", description="cut-off for accuracy, sensitivity, "
                                                  "specificity: 'fixed' (paper: 0.5) or Youden's J chosen on "
                                                  "the out-of-fold training predictions (prob_oof, whatever "
                                                  "train_predictions says) and applied to validation")
    fixed_threshold: float = Field(0.5, gt=0, lt=1)
    ci_level: float = Field(0.95, gt=0.5, lt=1, description="AUC confidence level (DeLong variance)")
    train_predictions: Literal["apparent", "out_of_fold"] = Field(
        "apparent", description="training-set rows of Table 4, DeLong and the curves: 'apparent' (the final "
        "model on its own training patients, as the paper reports) or 'out_of_fold' (each training patient "
        "scored by the recipe fitted, selection included, without its CV fold)")
    dca_thresholds: tuple[float, float, float] = Field((0.0, 0.99, 0.01), description="decision-curve "
                                                       "threshold probabilities: start, stop (inclusive), step")
    calibration_bins: int = Field(5, ge=2, le=50, description="bins of the calibration curve")
    calibration_strategy: Literal["quantile", "uniform"] = "quantile"
    sample_size_auc: float = Field(0.8, gt=0.5, lt=1, description="paper: AUC 0.8 against 0.5")
    sample_size_null_auc: float = Field(0.5, ge=0.5, lt=1)
    sample_size_alpha: float = Field(0.05, gt=0, lt=0.5, description="two-sided")
    sample_size_power: float = Field(0.8, gt=0.5, lt=1)
    sample_size_ratio: float = Field(1.0, gt=0, le=10, description="NER per ER patient (paper 1:1)")

    @field_validator("dca_thresholds")
    @classmethod
    def _dca_range(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        start, stop, step = v
        if not (0 <= start < stop < 1 and 0 < step <= stop - start):
            raise ValueError("need 0 <= start < stop < 1 and 0 < step <= stop - start")
        return v

    @model_validator(mode="after")
    def _alternative_above_null(self) -> EvaluationConfig:
        if self.sample_size_auc <= self.sample_size_null_auc:
            raise ValueError("sample_size_auc must exceed sample_size_null_auc")
        return self


class ExplainConfig(_Section):
    """SHAP on the DL-MIL model."""

    patient: str | None = Field(None, description="patient to explain; default: the validation patient "
                                "closest to the median predicted risk")
    patients: Literal["all", "train", "validation"] = Field("all", description="patients whose SHAP values "
                                                            "the beeswarm and importance bar summarise")
    max_display: int = Field(10, ge=1, le=50, description="features shown per SHAP plot")


class PathologyConfig(_Section):
    """Pearson correlation of the selected MIL features with pathology (Table 5)."""

    patients: Literal["all", "train", "validation"] = Field("all", description="paper: all patients (n = 191)")
    ci_level: float = Field(0.95, gt=0.5, lt=1, description="Fisher-z confidence level of Pearson r")


class FixedTrees(_Section):
    """The ExtraTrees parameters of ``robustness.tuning: fixed``: set before any data is seen (the centre of the
    paper's grid), so that no patient's label chooses them."""

    n_estimators: int = Field(100, ge=1, le=5000)
    max_depth: int | None = Field(3, ge=1)
    min_samples_split: int = Field(2, ge=2)


class RobustnessConfig(_Section):
    """Notebook 09: held-out CNN probabilities, repeated splits, permutation test, optimism audit and validation
    across scanners (hcc_utils.robustness_cnn, robustness, optimism; docs/method.md section 10)."""

    cnn_folds: int = Field(5, ge=2, le=50, description="K patient-level folds over the whole cohort (stratified "
                           "by ER, seeded by robustness.seed): every patient's slices are scored by the network "
                           "trained on the other folds (the chosen architecture, notebook 03's chosen epoch count)")
    cnn_fold_column: str | None = Field(None, description="a cohort column (e.g. scanner, centre) whose values are "
                                        "the folds instead of the K stratified ones")
    site_column: str | None = Field("scanner", description="the column whose values are held out in turn in the "
                                    "internal-external validation (scanner, or a centre column of your manifest); "
                                    "null: skip it")
    min_site_patients: int = Field(10, ge=2, description="a held-out site with fewer patients, or with one "
                                   "outcome only, is reported as such and not scored")
    repeats: int = Field(20, ge=0, le=100_000, description="new stratified splits (cohort.validation_fraction), "
                                                           "the patient-level chain refitted on each")
    permutations: int = Field(100, ge=0, le=1_000_000, description="training-label permutations of the main "
                              "split; the permutation p-value is (1 + #null >= observed) / (P + 1)")
    tuning: Literal["fixed", "grid"] = Field("fixed", description="ExtraTrees parameters in every refit: the "
                                             "a-priori robustness.trees (fixed, fast) or notebook 05's grid "
                                             "search rerun on each split's training patients (grid)")
    trees: FixedTrees = Field(default_factory=FixedTrees)
    retrain_cnn: bool = Field(False, description="repeated splits retrain the CNN on each split's training "
                              "patients (a GPU option) instead of using the held-out probabilities")
    optimism: bool = Field(True, description="the optimism audit (hcc_utils.optimism)")
    n_jobs: Workers = Field(2, ge=-1, le=256, description="processes for the repeats, permutations and sites "
                            "(-1: all cores; 0 is not allowed)")
    seed: int = Field(0, ge=0, description="seeds the CNN folds, the repeated splits and the permutations")


class ApplyConfig(_Section):
    """Notebook 10: the run's model bundle applied to new patients (hcc_utils.apply; docs/method.md section 11)."""

    manifest: ParamsPath | None = Field(None, description="new patients' manifest (patient_id, image, mask and any "
                                        "clinical columns; er optional: with it, each model's AUC on them), "
                                        "relative to the params file; null: a new synthetic cohort (below)")
    synthetic_seed: int | None = Field(None, ge=0, description="seed of the new synthetic cohort (when manifest is "
                                       "null and the run's cohort is synthetic): the run's generator settings "
                                       "with this seed and synthetic_n; null: the run's synthetic seed + 1000")
    synthetic_n: int = Field(40, ge=8, le=100_000, description="patients of the new synthetic cohort")
    n_jobs: int = Field(2, ge=1, le=256, description="processes that generate the new synthetic cohort (the "
                        "bytes do not depend on it)")
