"""Notebook 10: the run's model bundle applied to new patients, as ``python -m hcc_utils predict`` applies it
(docs/method.md section 11).

The new patients are ``apply.manifest`` (a user's manifest; ``er`` optional) or, when it is unset and the run's
cohort is synthetic, a new synthetic cohort: the run's own generator settings (``cohort.synthetic``) with
``apply.synthetic_n`` patients and ``apply.synthetic_seed`` (default: the run's seed + 1000), so a new sample of the
same population, never seen by any fitted step. They are scored from the run's bundle only
(``bundle.load_bundle``, ``predict.read_new_manifest``, ``predict.predict_patients``) into ``applied/``; when
their outcome is known, each model's AUC with its DeLong CI (``stats.auc_ci``) is an external test of the model.

Example::

    >>> applied = apply_model(params, run)
    >>> auc_table(applied, params.evaluation.ci_level)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hcc_utils import artifacts, stats
from hcc_utils.config import Params

SEED_OFFSET = 1000
"""``apply.synthetic_seed`` unset: the run's ``cohort.synthetic.seed`` plus this."""


class ApplyError(ValueError):
    """New patients that cannot be found or made; the message says what to set."""


@dataclass
class NewPatients:
    """Where the new patients come from: ``manifest`` (a file), ``description`` (one line for the notebook),
    ``synthetic`` (the generator settings, for a synthetic cohort; else None)."""

    manifest: Path
    description: str
    synthetic: object | None = None


def new_synthetic_settings(params: Params):
    """The run's ``cohort.synthetic`` settings with only ``n`` and ``seed`` changed (``apply.synthetic_n``,
    ``apply.synthetic_seed`` or the run's seed + :data:`SEED_OFFSET`), validated by the generator's schema."""
    from hcc_utils.synth.params import SyntheticCohort

    own = params.cohort.synthetic
    if own is None:
        raise ApplyError("the run's cohort is a manifest, not synthetic: set apply.manifest to your new patients' "
                         "manifest (patient_id, image, mask and the clinical columns; er optional)")
    seed = params.apply.synthetic_seed if params.apply.synthetic_seed is not None else own.seed + SEED_OFFSET
    if seed == own.seed:
        raise ApplyError(f"apply.synthetic_seed {seed} is the run's own seed: the patients would not be new")
    return SyntheticCohort.model_validate({**own.model_dump(), "n": params.apply.synthetic_n, "seed": seed})


def new_patients(params: Params) -> NewPatients | None:
    """The new patients of ``params.apply`` (generating the synthetic cohort on first use, then reusing it);
    None when there are none to find (a manifest cohort and no ``apply.manifest``)."""
    from hcc_utils.cohort import ensure_synthetic

    if params.apply.manifest is not None:
        path = Path(params.apply.manifest)
        if not path.is_file():
            raise ApplyError(f"apply.manifest {path} not found: give the new patients' manifest (a CSV)")
        return NewPatients(path, f"apply.manifest {path.name}")
    if params.cohort.synthetic is None:
        return None
    cfg = new_synthetic_settings(params)
    manifest = ensure_synthetic(cfg, n_jobs=params.apply.n_jobs)
    return NewPatients(manifest, f"a new synthetic cohort: the run's generator settings with n = {cfg.n} and "
                       f"seed = {cfg.seed} (the run's own: seed {params.cohort.synthetic.seed})", cfg)


@dataclass
class Applied:
    """The bundle applied: ``predictions`` (predict's table, ``applied/predictions.csv``), ``labels`` (ER of the
    new patients whose outcome is known, by patient_id; empty when none), ``names`` (model slug -> name),
    ``thresholds`` (slug -> cut-off), ``source``; ``note`` says why nothing was scored (else None)."""

    predictions: pd.DataFrame
    labels: pd.Series
    names: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    source: NewPatients | None = None
    note: str | None = None

    @property
    def summary(self) -> str:
        """One Markdown line: where the patients come from, how many were scored, excluded, with an outcome."""
        if self.note:
            return f"*{self.note}*"
        status = self.predictions["status"].value_counts()
        known = f"{len(self.labels)} with a known outcome ({int(self.labels.sum())} ER)" if len(self.labels) \
            else "no known outcome"
        return (f"{len(self.predictions)} new patients from {self.source.description}: "
                f"{status.get('scored', 0)} scored, {status.get('excluded', 0)} excluded; {known}.")


def _labels(table: pd.DataFrame) -> pd.Series:
    """ER (0/1) of the manifest's patients that have one, by patient_id."""
    if "er" not in table.columns:
        return pd.Series(dtype=int, name="er")
    er = pd.to_numeric(table["er"], errors="coerce")
    keep = er.isin([0, 1])
    return pd.Series(er[keep].astype(int).to_numpy(), index=table.loc[keep, "patient_id"].astype(str), name="er")


def apply_model(params: Params, run, progress: bool = False) -> Applied:
    """Score the new patients of ``params.apply`` with the run's own bundle into ``applied/`` (module docstring).

    Raises:
        ApplyError: ``apply.manifest`` not found.
        bundle.BundleError: the run has no bundle (run notebook 05), or a changed one.
    """
    from hcc_utils.bundle import load_bundle
    from hcc_utils.predict import predict_patients, read_new_manifest

    source = new_patients(params)
    if source is None:
        return Applied(pd.DataFrame(columns=["patient_id", "status", "flags"]), pd.Series(dtype=int),
                       note="No new patients: the run's cohort is a manifest and apply.manifest is not set.")
    model = load_bundle(run.root)
    manifest = read_new_manifest(source.manifest, model)
    folder = artifacts.APPLIED_PREDICTIONS.path(run).parent
    table = predict_patients(model, manifest.table, folder, manifest.problems, progress=progress,
                             compute=params.compute)
    labels = _labels(manifest.table)
    return Applied(table, labels, {s: m.name for s, m in model.models.items()},
                   {s: m.threshold for s, m in model.models.items()}, source)


def predictions_table(applied: Applied) -> pd.DataFrame:
    """The scored patients: patient_id, each model's probability and class, the known ER, the flags."""
    scored = applied.predictions[applied.predictions["status"] == "scored"].copy()
    if len(applied.labels):
        scored.insert(1, "er", scored["patient_id"].astype(str).map(applied.labels).astype("Int64"))
    return scored.drop(columns="status").reset_index(drop=True)


def excluded_table(applied: Applied) -> pd.DataFrame | None:
    """The excluded patients with the reason (predict's flags): patient_id, reason; None when none was."""
    excluded = applied.predictions[applied.predictions["status"] == "excluded"]
    if excluded.empty:
        return None
    return pd.DataFrame({"patient_id": excluded["patient_id"].astype(str), "reason": excluded["flags"]}
                        ).reset_index(drop=True)


def _scores(applied: Applied, slug: str) -> pd.DataFrame:
    """``er, prob`` of the patients with a known outcome that model ``slug`` scored."""
    table = applied.predictions.assign(patient_id=applied.predictions["patient_id"].astype(str))
    table = table[(table["status"] == "scored") & table["patient_id"].isin(applied.labels.index)]
    table = table.assign(er=table["patient_id"].map(applied.labels), prob=table[f"{slug}_prob"])
    return table.dropna(subset=["prob"])[["er", "prob"]]


def auc_table(applied: Applied, level: float = 0.95, run=None) -> pd.DataFrame | None:
    """Each model's AUC on the new patients with a known outcome, with its DeLong CI (``level``), sensitivity and
    specificity at the bundle's cut-off; with ``run``, its validation AUC in this run (Table 4) beside it and the
    table written to ``tables/applied_auc.csv``. None when no outcome is known. A model that cannot be assessed
    (one outcome only, a constant score) keeps its row with the AUC missing and the reason in ``note``."""
    if applied.note or not len(applied.labels):
        return None
    rows = []
    for slug, name in applied.names.items():
        scores = _scores(applied, slug)
        row = {"model": name, "n": len(scores), "n_er": int(scores["er"].sum()), "auc": np.nan, "auc_low": np.nan,
               "auc_high": np.nan, "sensitivity": np.nan, "specificity": np.nan,
               "threshold": applied.thresholds[slug], "note": ""}
        try:
            row["auc"], row["auc_low"], row["auc_high"] = stats.auc_ci(scores["er"], scores["prob"], level)
            metrics = stats.classification_metrics(scores["er"], scores["prob"], applied.thresholds[slug])
            row.update(sensitivity=metrics["sensitivity"], specificity=metrics["specificity"])
        except ValueError as err:
            row["note"] = f"not assessed: {err}"
        rows.append(row)
    table = pd.DataFrame(rows)
    table4 = artifacts.TABLE4.path(run) if run is not None else None
    if table4 is not None and table4.is_file():
        own = artifacts.read_table(run, artifacts.TABLE4).query("dataset == 'validation'").set_index("model")["auc"]
        table.insert(6, "run_validation_auc", table["model"].map(own))
    if run is not None:
        artifacts.write_table(run, artifacts.APPLIED_AUC, table)
    return table


def roc_table(applied: Applied) -> pd.DataFrame | None:
    """Empirical ROC curves on the new patients: ``model, fpr, tpr`` (fractions), every assessable model."""
    from sklearn.metrics import roc_curve

    if applied.note or not len(applied.labels):
        return None
    parts = []
    for slug, name in applied.names.items():
        scores = _scores(applied, slug)
        if scores["er"].nunique() == 2:
            fpr, tpr, _ = roc_curve(scores["er"], scores["prob"], drop_intermediate=False)
            parts.append(pd.DataFrame({"model": name, "fpr": fpr, "tpr": tpr}))
    return pd.concat(parts, ignore_index=True) if parts else None


def example_report(applied: Applied, run) -> Path | None:
    """The one-page summary ``applied/<patient>/report.html`` of the first scored patient that has one (predict
    writes it in versions that make it), else None."""
    reports = {path.parent.name: path for path in artifacts.APPLIED_REPORT.existing(run)}
    for pid in applied.predictions.loc[applied.predictions["status"] == "scored", "patient_id"].astype(str):
        if pid in reports:
            return reports[pid]
    return None
