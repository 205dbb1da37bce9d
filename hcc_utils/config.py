"""The run's parameters: one pydantic model, loaded from a YAML file in ``params/`` and validated once.

Every choice of the method (``docs/method.md``) is a field of one stage's section
(``hcc_utils.config_sections``), with the paper's value or our documented choice as its default. Unknown keys,
wrong types and out-of-range values are errors that name the key, the value and the file::

    >>> from hcc_utils.config import load_params
    >>> params = load_params("params/smoke.yaml")
    >>> params.slices.offsets
    [-9, -7, -4, -2, -1, 0, 1, 2, 4, 7, 9]

Sections map to stages: ``cohort`` (section 1 of docs/method.md, data), ``preprocess`` (1), ``slices`` (2), ``cnn``
(3), ``mil`` (4), ``selection`` and ``model`` (5), ``radiomics`` and ``clinical`` (5), ``evaluation`` (6),
``explain`` and ``pathology`` (6), ``robustness`` (10), ``apply`` (11), ``comparators`` (12; notebook 11:
``hcc_utils.config_comparators``); ``compute`` (where and with how many
threads the work runs: ``hcc_utils.config_compute``; it changes no result).

One path rule (``ParamsPath``): a relative path in a params file (``cohort.manifest``, ``radiomics.settings``,
``cnn.weights.<architecture>``) is relative to that file's folder, whatever the working directory. Loaded
parameters hold absolute paths, so the copy a run writes (``dump_yaml``) means the same wherever it is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model, field_validator

from hcc_utils.config_comparators import ABMILConfig, CNN3DConfig, ComparatorsConfig  # noqa: F401  (re-exported)
from hcc_utils.config_compute import ComputeConfig, LocalClusterConfig  # noqa: F401  (re-exported)
from hcc_utils.config_sections import (  # noqa: F401  (re-exported: import the sections from config)
    CNN_ARCHITECTURES,
    SHIPPED_PARAMS_DIR,
    ApplyConfig,
    ClinicalConfig,
    CNNConfig,
    CohortConfig,
    EvaluationConfig,
    ExplainConfig,
    MILConfig,
    ModelConfig,
    ParamsPath,
    PathologyConfig,
    PreprocessConfig,
    Protocol,
    RadiomicsConfig,
    RobustnessConfig,
    SelectionConfig,
    SlicesConfig,
    _Section,
)


class ParamsError(ValueError):
    """A parameter file that cannot be used; the message names the file, the key and the value."""


class Params(_Section):
    """All parameters of one run."""

    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0)
    protocol: Protocol = "leak_free"
    cohort: CohortConfig
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    slices: SlicesConfig = Field(default_factory=SlicesConfig)
    cnn: CNNConfig = Field(default_factory=CNNConfig)
    mil: MILConfig = Field(default_factory=MILConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    radiomics: RadiomicsConfig = Field(default_factory=RadiomicsConfig)
    clinical: ClinicalConfig = Field(default_factory=ClinicalConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    pathology: PathologyConfig = Field(default_factory=PathologyConfig)
    robustness: RobustnessConfig = Field(default_factory=RobustnessConfig)
    apply: ApplyConfig = Field(default_factory=ApplyConfig)
    comparators: ComparatorsConfig = Field(default_factory=ComparatorsConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)

    source: Path | None = Field(None, exclude=True, description="the file these were read from")

    @property
    def cross_fit_k(self) -> int:
        """K when the CNN cross-fit runs (``cnn.cross_fit_folds`` >= 2 under ``leak_free``), else 0: under
        ``onekey_compat`` the key is ignored (docs/method.md section 8)."""
        return int(self.cnn.cross_fit_folds or 0) if self.protocol == "leak_free" else 0

    @field_validator("mil")
    @classmethod
    def _cross_fit_source(cls, mil: MILConfig, info: ValidationInfo) -> MILConfig:
        """``mil.training_predictions: cross_fit`` needs the cross-fit: ``leak_free`` and ``cnn.cross_fit_folds``."""
        protocol, cnn = info.data.get("protocol"), info.data.get("cnn")
        if mil.training_predictions == "cross_fit" and cnn is not None and protocol is not None:
            if protocol != "leak_free" or not cnn.cross_fit_folds:
                reason = ("protocol is onekey_compat, which has no cross-fit" if protocol != "leak_free"
                          else "cnn.cross_fit_folds is not set")
                raise ValueError(f"training_predictions is 'cross_fit' but {reason}; set cnn.cross_fit_folds "
                                 "(K >= 2) under protocol leak_free, or choose 'protocol', 'eval' or 'train_pass'")
        return mil

    @field_validator("apply")
    @classmethod
    def _new_patients(cls, apply: ApplyConfig, info: ValidationInfo) -> ApplyConfig:
        """``apply.synthetic_seed`` must differ from the run's own synthetic seed (the same seed would give the
        run's own patients back, not new ones)."""
        cohort = info.data.get("cohort")
        synthetic = getattr(cohort, "synthetic", None)
        if apply.manifest is None and synthetic is not None and apply.synthetic_seed == synthetic.seed:
            raise ValueError(f"synthetic_seed {apply.synthetic_seed} is the run's own cohort.synthetic.seed: the "
                             "new patients would be the run's own; choose another seed (or leave it unset)")
        return apply

    def dump_yaml(self) -> str:
        """The validated parameters as YAML (paths as strings), for the run folder and provenance."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _format_errors(exc: ValidationError, path: Path) -> str:
    lines = [f"{path}: {exc.error_count()} invalid parameter(s):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            schema = ("hcc_utils/synth/params.py" if key.startswith("cohort.synthetic.")
                      else "hcc_utils/config_sections.py")
            lines.append(f"  - unknown key '{key}' (value {err['input']!r}): check the spelling; "
                         f"see {schema} for the keys each section takes")
        elif err["type"] == "missing":
            lines.append(f"  - missing key '{key}'")
        else:
            lines.append(f"  - key '{key}' = {err['input']!r}: {err['msg']}")
    return "\n".join(lines)


def params_from_dict(data: dict[str, Any], source: Path | str = "<dict>") -> Params:
    """Validate a mapping as parameters; errors name the key, the value and ``source``; relative paths become
    absolute against the folder of ``source`` when it is a file (``ParamsPath``)."""
    source = Path(source)
    context = {"folder": source.resolve().parent} if source.is_file() else None
    try:
        params = Params.model_validate(data, context=context)
    except ValidationError as exc:
        raise ParamsError(_format_errors(exc, source)) from None
    params.source = source
    return params


def _read_yaml(path: Path | str) -> dict[str, Any]:
    """A params file's top-level mapping; ``ParamsError`` for a missing file, bad YAML or no mapping."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: parameter file not found (choose one in params/, e.g. params/smoke.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of keys to values at the top level, got {type(data).__name__}")
    return data


def load_params(path: Path | str) -> Params:
    """Read and validate a params YAML file.

    Raises:
        ParamsError: the file is missing, not YAML, or has an unknown key, a wrong type or a value out of range.
    """
    return params_from_dict(_read_yaml(path), path)


def load_stage_sections(path: Path | str, sections: dict[str, type[BaseModel]]) -> dict[str, BaseModel]:
    """Some sections of a params file (``{"preprocess": PreprocessConfig, ...}``), for the commands that need
    only those (``crop``): from a full params file, or from one holding only these sections (the others
    default)."""
    data = _read_yaml(path)
    if "cohort" in data:
        params = load_params(path)
        return {name: getattr(params, name) for name in sections}
    fields = {name: (cls, Field(default_factory=cls)) for name, cls in sections.items()}
    model = create_model("StageSections", __config__=ConfigDict(extra="forbid"), **fields)
    try:
        validated = model.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(_format_errors(exc, Path(path))) from None
    return {name: getattr(validated, name) for name in sections}
