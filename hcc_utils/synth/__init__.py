"""The embedded synthetic cohort: a generative model of HCC patients, their arterial-phase CT and two readers' masks.

It lets every notebook run on a fresh machine without the user's data (docs/architecture.md). It is a model with
known truth, not a copy of the paper: targets below are approximate, set in ``SyntheticCohort``
(``hcc_utils/synth/params.py``) or in the modules' constants, and nothing is tuned to reproduce the paper's AUCs::

    >>> from hcc_utils import synth
    >>> manifest = synth.generate_cohort(synth.SyntheticCohort(n=8, seed=7, image_size=128), "/tmp/cohort")
    >>> synth.read_ground_truth(manifest)[synth.truth.PROBABILITY_COLUMN]   # true P(ER) per patient

or ``python -m hcc_utils synth --n 8 --seed 7 --out /tmp/cohort``.

Generative model, per patient (docs/method.md section 1; the paper's Table 2 for the clinical spread):

1. Latent biology: invasiveness and proliferation, standard bivariate normal with correlation
   ``latent_correlation``.
2. Clinical variables: male with probability ``male_share``; log AFP standard normal (AFP log-normal, ng/mL, capped
   at the usual reporting limit 1210); age, BMI, alcohol, HBsAg, ALB, AST, ALT (AST and ALT correlated) with the
   spread of Table 2 and no link to ER or the latents.
3. Early recurrence: ``er ~ Bernoulli(p)``, ``logit p = alpha + b_inv*inv + b_pro*pro + clinical_signal*(0.45*z_afp
   + 0.9*male)``; ``alpha`` is solved (Gauss-Hermite quadrature + Brent) so that E[p] = ``er_prevalence``. ``p`` is
   the true ER probability, kept in ``ground_truth.csv`` with the oracle AUC (AUC of ``p`` against ``er``).
4. Pathology: MVI grade from ``0.8*inv + 0.6*noise`` cut at the normal quantiles of ``mvi_shares``; Ki-67 from
   ``0.85*pro + noise`` through the quantile function of a Beta with mean ``ki67_mean`` and SD ``ki67_sd``;
   Edmondson-Steiner grade weakly linked (``0.2*inv + 0.3*pro`` plus noise, cut at ``edmondson_shares``).
5. Lesion phenotype: each trait's z-score is ``(image_signal * w . latents + noise) / norm`` (unit variance, so the
   traits' distributions do not change with ``image_signal``; at 0 the images carry no ER information), mapped to
   diameter 20-100 mm (median 48), margin irregularity, heterogeneity, necrosis, capsule (more likely when less
   invasive), satellite nodules, peritumoral enhancement and arterial enhancement (``PHENOTYPE_WEIGHTS``).
6. Images: anatomy, lesion, then scanner noise (SD proportional to 1/sqrt(tube current)) and in-plane blur
   (sharpness) per the scanner profile (paper, Table 1), int16 HU NIfTI.

Targets (approximate on a finite sample; checked on 20,000 draws in tests/test_synth.py): ER 41%; MVI M0/M1/M2
65/19/16%; Ki-67 mean 0.23, SD 0.21; Edmondson I-IV 7/43/38/12%; male 88%; age 52 +- 10.5 y; BMI 22.2 +- 3.0;
alcohol 35%; HBsAg gamma, mean about 1050, SD about 850; AFP mean about 450, SD about 480 ng/mL; ALB 39.5 +- 5.2
g/L; AST and ALT log-normal, mean about 65-70, SD about 75 U/L. With the defaults the oracle AUC (true probability)
is about 0.85, a model knowing the lesion phenotype exactly about 0.79 and AFP + gender about 0.59.

Modules, one concern each: ``params`` (the parameters and the cache key), ``biology`` (steps 1-5, no images),
``anatomy`` (the noise-free body), ``lesion`` (the tumour and both readers' masks), ``scanner`` (grid, noise, blur,
NIfTI files), ``generator`` (step 6: rendering every patient, writing the manifest and the ground truth), ``truth``
(the ground-truth file's schema and reader). Same ``SyntheticCohort`` -> same bytes (see ``generator``).

The names below are loaded on first use, so validating a params file (which needs ``params`` only) does not import
the renderer's dependencies (nibabel, scipy.ndimage, scikit-learn: about a second).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hcc_utils.synth.biology import ER_CLINICAL_LOG_ODDS, PHENOTYPE_WEIGHTS, er_intercept, sample_clinical
    from hcc_utils.synth.generator import MANIFEST_COLUMNS, generate_cohort, main_cli
    from hcc_utils.synth.params import GENERATOR_VERSION, ScannerProfile, SyntheticCohort
    from hcc_utils.synth.scanner import write_nifti
    from hcc_utils.synth.truth import GROUND_TRUTH_COLUMNS, GROUND_TRUTH_FILE, MANIFEST_FILE, read_ground_truth

_EXPORTS = {
    "generate_cohort": "generator", "main_cli": "generator", "MANIFEST_COLUMNS": "generator",
    "GENERATOR_VERSION": "params", "SyntheticCohort": "params", "ScannerProfile": "params",
    "sample_clinical": "biology", "er_intercept": "biology", "PHENOTYPE_WEIGHTS": "biology",
    "ER_CLINICAL_LOG_ODDS": "biology", "write_nifti": "scanner",
    "read_ground_truth": "truth", "GROUND_TRUTH_COLUMNS": "truth", "GROUND_TRUTH_FILE": "truth",
    "MANIFEST_FILE": "truth",
}
_SUBMODULES = ("anatomy", "biology", "generator", "lesion", "params", "scanner", "truth")

__all__ = [
    "ER_CLINICAL_LOG_ODDS", "GENERATOR_VERSION", "GROUND_TRUTH_COLUMNS", "GROUND_TRUTH_FILE", "MANIFEST_COLUMNS",
    "MANIFEST_FILE", "PHENOTYPE_WEIGHTS", "ScannerProfile", "SyntheticCohort", "er_intercept", "generate_cohort",
    "main_cli", "read_ground_truth", "sample_clinical", "write_nifti",
]


def __getattr__(name: str):
    """Load a public name (or a submodule) on first access (PEP 562)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
