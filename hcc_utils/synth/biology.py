"""The synthetic patients' biology: latent variables, clinical variables, outcome, pathology and lesion phenotype.

Steps 1-5 of the generative model (``hcc_utils.synth``; docs/method.md section 1 and the paper's Table 2 for the
spread of the clinical variables). No images: :func:`sample_clinical` draws the per-patient table that the renderer
(``hcc_utils.synth.generator``) turns into CT volumes and masks, and that ``ground_truth.csv`` records::

    >>> from hcc_utils.synth.biology import sample_clinical
    >>> from hcc_utils.synth.params import SyntheticCohort
    >>> table = sample_clinical(SyntheticCohort(), 123, n=20_000)   # seconds; no files
    >>> round(table["er"].mean(), 2)                                 # er_prevalence 0.41, approximately
    0.41

Units: AFP ng/mL, HBsAg IU/mL, ALB g/L, AST and ALT U/L, BMI kg/m2, age years; Ki-67 a fraction; lesion diameter mm,
heterogeneity and enhancement HU, necrosis a fraction of the tumour volume.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from hcc_utils.synth.params import SyntheticCohort

ER_CLINICAL_LOG_ODDS = {"afp": 0.45, "male": 0.9}
"""Log-odds of ER per SD of log AFP and for male sex, multiplied by ``clinical_signal``."""

AFP_LOG_MEAN, AFP_LOG_SD, AFP_CAP = 5.4, 2.3, 1210.0
"""log AFP (ng/mL) mean and SD, and the upper reporting limit: mean about 450, SD about 480 (Table 2)."""

PHENOTYPE_WEIGHTS = {
    "size": (0.5, 0.3), "irregularity": (0.8, 0.0), "heterogeneity": (0.3, 0.7), "necrosis": (0.2, 0.7),
    "capsule": (-0.7, 0.0), "satellites": (0.9, 0.0), "peritumoral": (0.9, 0.0), "enhancement": (0.0, 0.5),
}
"""Weights of (invasiveness, proliferation) in each lesion trait's z-score, multiplied by ``image_signal``."""


def _clinical_rng(rng_or_seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(np.random.SeedSequence(int(rng_or_seed)).spawn(2)[0])


def er_intercept(cfg: SyntheticCohort) -> float:
    """The ER logit intercept that makes the expected prevalence equal ``cfg.er_prevalence``."""
    b_inv, b_pro = cfg.er_log_odds_per_sd
    rho = cfg.latent_correlation
    spread = np.sqrt(b_inv ** 2 + b_pro ** 2 + 2 * rho * b_inv * b_pro
                     + (cfg.clinical_signal * ER_CLINICAL_LOG_ODDS["afp"]) ** 2)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    male_shift = cfg.clinical_signal * ER_CLINICAL_LOG_ODDS["male"]

    def prevalence_gap(alpha: float) -> float:
        risk = [weights @ special.expit(alpha + shift + spread * nodes) for shift in (0.0, male_shift)]
        return (1 - cfg.male_share) * risk[0] + cfg.male_share * risk[1] - cfg.er_prevalence

    return float(optimize.brentq(prevalence_gap, -40.0, 40.0, xtol=1e-12))


def _ordinal(z: np.ndarray, shares: tuple[float, ...]) -> np.ndarray:
    """Cut standard-normal scores into categories 0..len(shares)-1 with the given shares."""
    cuts = stats.norm.ppf(np.cumsum(shares)[:-1] / np.sum(shares))
    return np.searchsorted(cuts, z)


def sample_clinical(cfg: SyntheticCohort, rng_or_seed: int | np.random.Generator,
                    n: int | None = None) -> pd.DataFrame:
    """Draw ``n`` (default ``cfg.n``) patients' latents, clinical and pathology variables and lesion phenotype.

    No images. An integer seed gives exactly the table that ``generate_cohort`` uses for a cohort with that seed.
    Columns: patient_id, invasiveness, proliferation, er_probability, er, the manifest's clinical and pathology
    columns (same codings), scanner, and the ``lesion_*`` phenotype columns.
    """
    rng = _clinical_rng(rng_or_seed)
    n = cfg.n if n is None else int(n)
    rho = cfg.latent_correlation
    z = rng.standard_normal((n, 2))
    latents = np.column_stack([z[:, 0], rho * z[:, 0] + np.sqrt(1 - rho ** 2) * z[:, 1]])
    inv, pro = latents.T

    male = rng.random(n) < cfg.male_share
    z_afp = rng.standard_normal(n)
    liver_enzymes = rng.multivariate_normal([0, 0], [[1, 0.75], [0.75, 1]], size=n)
    table = pd.DataFrame({
        "patient_id": [f"HCC{i + 1:04d}" for i in range(n)],
        "invasiveness": inv, "proliferation": pro,
        "age": np.clip(rng.normal(52, 10.5, n), 25, 80).round().astype(int),
        "gender": np.where(male, "M", "F"),
        "bmi": np.clip(rng.normal(22.2, 3.0, n), 16, 35).round(1),
        "alcohol": (rng.random(n) < 0.35).astype(int),
        "hbsag": rng.gamma(1.53, 690.0, n).round(2),
        "afp": np.clip(np.exp(AFP_LOG_MEAN + AFP_LOG_SD * z_afp), 0.8, AFP_CAP).round(2),
        "alb": np.clip(rng.normal(39.5, 5.2, n), 25, 55).round(1),
        "ast": np.clip(np.exp(3.85 + 0.9 * liver_enzymes[:, 0]), 10, 2000).round(1),
        "alt": np.clip(np.exp(3.75 + 0.95 * liver_enzymes[:, 1]), 8, 2000).round(1),
    })
    weights = np.array([s.weight for s in cfg.scanners])
    table["scanner"] = [cfg.scanners[i].name for i in rng.choice(len(cfg.scanners), size=n, p=weights / weights.sum())]

    b_inv, b_pro = cfg.er_log_odds_per_sd
    clinical = cfg.clinical_signal * (ER_CLINICAL_LOG_ODDS["afp"] * z_afp + ER_CLINICAL_LOG_ODDS["male"] * male)
    table["er_probability"] = special.expit(er_intercept(cfg) + b_inv * inv + b_pro * pro + clinical)
    table["er"] = (rng.random(n) < table["er_probability"]).astype(int)

    noise = rng.standard_normal((n, 3))
    table["mvi_grade"] = _ordinal(0.8 * inv + 0.6 * noise[:, 0], cfg.mvi_shares)
    ki67_z = 0.85 * pro + np.sqrt(1 - 0.85 ** 2) * noise[:, 1]
    m, v = cfg.ki67_mean, cfg.ki67_sd ** 2
    k = m * (1 - m) / v - 1
    table["ki67"] = stats.beta.ppf(stats.norm.cdf(ki67_z), m * k, (1 - m) * k).round(2)
    mix = 0.2 * inv + 0.3 * pro
    mix_var = 0.2 ** 2 + 0.3 ** 2 + 2 * 0.2 * 0.3 * rho
    table["edmondson"] = 1 + _ordinal(mix + np.sqrt(1 - mix_var) * noise[:, 2], cfg.edmondson_shares)

    table = pd.concat([table, _lesion_phenotypes(latents, rho, cfg.image_signal, rng)], axis=1)
    return table


def _lesion_phenotypes(latents: np.ndarray, rho: float, signal: float, rng: np.random.Generator) -> pd.DataFrame:
    """Lesion traits whose dependence on the latents is ``signal`` times ``PHENOTYPE_WEIGHTS``."""
    cov = np.array([[1, rho], [rho, 1]])
    u = {}
    for trait, w in PHENOTYPE_WEIGHTS.items():
        w = np.asarray(w)
        score = signal * latents @ w + rng.standard_normal(len(latents))
        u[trait] = stats.norm.cdf(score / np.sqrt(1 + signal ** 2 * w @ cov @ w))
    diameter = np.clip(48.0 * np.exp(0.38 * stats.norm.ppf(u["size"])), 20, 100)
    return pd.DataFrame({
        "lesion_diameter_mm": diameter.round(2),
        "lesion_irregularity": (0.03 + 0.12 * u["irregularity"]).round(4),
        "lesion_heterogeneity_hu": (6 + 24 * u["heterogeneity"]).round(2),
        "lesion_necrosis_share": np.where((u["necrosis"] > 0.55) & (diameter > 30),
                                          0.05 + 0.35 * (u["necrosis"] - 0.55) / 0.45, 0.0).round(4),
        "lesion_capsule": (u["capsule"] > 0.45).astype(int),
        "lesion_satellites": np.searchsorted([0.8, 0.92, 0.97], u["satellites"]),
        "lesion_peritumoral_enhancement": (u["peritumoral"] > 0.7).astype(int),
        "lesion_enhancement_hu": (115 + 50 * u["enhancement"]).round(2),
    })
