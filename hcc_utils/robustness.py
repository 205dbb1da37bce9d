"""Notebook 09: would another split give the same ranking, is the validation AUC above chance, and does the model
hold on a scanner it never saw? (docs/method.md section 10)

- ``repeated_splits``: ``robustness.repeats`` new stratified splits (``cohort.validation_fraction``, seeded by
  ``robustness.seed``); on each the patient-level chain (``robustness_chain.score_split``) is refitted on its
  training patients and scored on its validation patients. DL-MIL reads held-out slice probabilities
  (``robustness_cnn``), so no patient's probabilities come from a network that trained on it. Repeat 0 is the
  run's own split through the same chain. Summaries: per model the median and 2.5-97.5 percentiles of the
  validation AUC and where the run's Table 4 value falls; per repeat the paired difference DL-MIL minus each
  comparator (median, percentile interval, share of repeats DL-MIL wins).
- ``permutation_test``: the run's own split and inputs (notebook 04's MIL table, the radiomics and clinical
  columns); ``robustness.permutations`` times the training labels are permuted, the chain refitted and scored on
  the true validation labels. The null's mean must sit near 0.5 (a leak detector); p-value
  ``(1 + #{null >= observed}) / (P + 1)``, observed = the same chain with the true labels. The CNN is held fixed
  (trained once on the true labels), so the test is of the patient-level chain given its inputs.
- ``site_validation``: each scanner (``robustness.site_column``) held out in turn: the chain learns on the other
  scanners' patients, with slice probabilities from networks trained one scanner out, and is scored on the
  held-out scanner (AUC with DeLong CI). A scanner with too few patients or one outcome is reported, not scored.

Independent fits run in ``robustness.n_jobs`` processes (joblib, as the radiomics extraction; on the Dask cluster
of ``params.compute``, ``hcc_utils.compute.joblib_backend``), each seeded from
``robustness.seed`` and its index, so the same params give the same numbers; a progress bar (one summary
line in a batch run, ``hcc_utils.progress``) follows each loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import train_test_split

from hcc_utils import artifacts, mil, model_registry, robustness_cnn, stats
from hcc_utils.compute import joblib_backend
from hcc_utils.config import ComputeConfig, Params
from hcc_utils.progress import progress
from hcc_utils.robustness_chain import ChainInputs, chain_inputs, score_split
from hcc_utils.run_folder import RunFolder

PERMUTATION_OFFSET = 1_000_003  # permutation p draws from SeedSequence([seed, OFFSET + p]): apart from repeats'


@dataclass
class RepeatedSplits:
    """``repeated_splits``' results: ``aucs`` (ROBUSTNESS_REPEATS), ``summary``, ``differences``, ``notes``."""

    aucs: pd.DataFrame
    summary: pd.DataFrame
    differences: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    name: str = "Repeated splits"  # with ``notes``, what ``notebook.show_notes`` reads


@dataclass
class PermutationTest:
    """``permutation_test``'s results: ``null`` (one AUC per permutation and model), ``table``, ``notes``."""

    null: pd.DataFrame
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    name: str = "Permutation test"


def _one_job(params: Params) -> Params:
    """The params of one independent fit: its grid search in its own process (the fits run side by side)."""
    single = params.model_copy(deep=True)
    single.model.n_jobs = 1
    single.compute = single.compute.model_copy(update={"scheduler": "local", "address": None, "local_cluster": None})
    return single


def _auc(er: pd.Series, prob: pd.Series) -> float:
    try:
        return stats.auc(er.loc[prob.index].to_numpy(), prob.to_numpy())
    except ValueError:  # one outcome only, or a constant score
        return float("nan")


def _fit_and_score(inputs: ChainInputs, split: pd.Series, er_fit: pd.Series, er_true: pd.Series,
                   params: Params) -> tuple[dict[str, float], list[str]]:
    probabilities, notes = score_split(inputs, split, er_fit, params)
    return {name: _auc(er_true, prob) for name, prob in probabilities.items()}, notes


def _run(jobs: list, n_jobs: int, desc: str, compute: ComputeConfig | None = None) -> list:
    """The jobs in ``n_jobs`` processes (or on the Dask cluster of ``compute``), in order, with a progress bar."""
    if not jobs:
        return []
    with joblib_backend(compute):
        results = Parallel(n_jobs=n_jobs if n_jobs < 0 else min(n_jobs, len(jobs)), return_as="generator")(jobs)
        return list(progress(results, total=len(jobs), desc=desc, unit="fit", mininterval=2.0))


def table4_aucs(run: RunFolder) -> dict[str, float]:
    """Each model's validation AUC in the run's Table 4 (from ``predictions/<slug>_patients.csv``)."""
    out = {}
    for spec in model_registry.MODELS:
        if artifacts.PATIENT_PREDICTIONS.path(run, slug=spec.slug).is_file():
            table = artifacts.read_patient_predictions(run, spec.slug)
            validation = table[table["split"] == "validation"]
            out[spec.name] = _auc(validation.set_index("patient_id")["er"],
                                  validation.set_index("patient_id")["prob"])
    return out


def repeat_splits(patients: pd.DataFrame, fraction: float, seed: int, repeats: int) -> list[pd.Series]:
    """``repeats`` stratified train/validation splits of ``patients`` (patient_id, er): patient_id -> split."""
    ids, er = patients["patient_id"].astype(str).to_numpy(), patients["er"].astype(int).to_numpy()
    splits = []
    for r in range(1, repeats + 1):
        state = int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
        _, validation = train_test_split(ids, test_size=fraction, stratify=er, random_state=state)
        splits.append(pd.Series(np.where(np.isin(ids, validation), "validation", "train"), index=ids,
                                name="split"))
    return splits


def _summary(aucs: pd.DataFrame, table4: dict[str, float]) -> pd.DataFrame:
    rows = []
    for name, group in aucs[aucs["repeat"] > 0].groupby("model", sort=False):
        values = group["auc"].dropna().to_numpy()
        main = aucs[(aucs["repeat"] == 0) & (aucs["model"] == name)]["auc"]
        reference = table4.get(name, np.nan)
        rows.append({"model": name, "repeats": len(values), "median": np.median(values),
                     "low": np.percentile(values, 2.5), "high": np.percentile(values, 97.5),
                     "mean": values.mean(), "main_split_chain_auc": main.iloc[0] if len(main) else np.nan,
                     "table4_auc": reference,
                     "table4_percentile": float((values <= reference).mean() * 100) if np.isfinite(reference)
                     else np.nan})
    return pd.DataFrame(rows)


def paired_differences(aucs: pd.DataFrame, reference: str = model_registry.DL_MIL.name) -> pd.DataFrame:
    """Per comparator: the paired difference ``reference`` minus comparator over the repeats (repeat > 0):
    median, 2.5-97.5 percentiles, share of repeats the reference wins (difference > 0)."""
    wide = aucs[aucs["repeat"] > 0].pivot(index="repeat", columns="model", values="auc")
    rows = []
    for other in [m for m in wide.columns if m != reference and reference in wide.columns]:
        diff = (wide[reference] - wide[other]).dropna().to_numpy()
        if len(diff):
            rows.append({"comparison": f"{reference} - {other}", "repeats": len(diff), "median": np.median(diff),
                         "low": np.percentile(diff, 2.5), "high": np.percentile(diff, 97.5),
                         "share_dl_mil_wins": float((diff > 0).mean())})
    return pd.DataFrame(rows, columns=list(artifacts.ROBUSTNESS_DIFFERENCES.columns))


def repeated_splits(inputs: ChainInputs, params: Params, run: RunFolder,
                    slice_probs_per_split=None) -> RepeatedSplits:
    """Refit and score the chain on the run's split (repeat 0) and ``robustness.repeats`` new splits (module
    docstring). ``slice_probs_per_split(split, tag)``: per-split slice probabilities (``robustness.retrain_cnn``);
    default the held-out ones in ``inputs``. Writes ROBUSTNESS_REPEATS, _REPEATS_SUMMARY and _DIFFERENCES."""
    cfg, single = params.robustness, _one_job(params)
    patients = inputs.cohort[["patient_id", "er"]]
    er = inputs.cohort.set_index("patient_id")["er"].astype(int)
    splits = [inputs.cohort.set_index("patient_id")["split"]]
    splits += repeat_splits(patients, params.cohort.validation_fraction, cfg.seed, cfg.repeats)
    jobs = []
    for r, split in enumerate(splits):
        task_inputs = inputs
        if slice_probs_per_split is not None:
            task_inputs = ChainInputs(inputs.cohort, slice_probs_per_split(split, f"repeat{r}"), None,
                                      inputs.reader1, inputs.reader2)
        jobs.append(delayed(_fit_and_score)(task_inputs, split, er, er, single))
    results = _run(jobs, cfg.n_jobs, "repeated splits", params.compute)
    rows, notes = [], []
    for r, (split, (aucs, split_notes)) in enumerate(zip(splits, results, strict=True)):
        validation = split.index[split == "validation"]
        for name in inputs.models:
            rows.append({"repeat": r, "model": name, "n_train": int((split == "train").sum()),
                         "n_validation": len(validation), "validation_er": int(er.loc[validation].sum()),
                         "auc": aucs.get(name, np.nan)})
        notes += [f"repeat {r}: {note}" for note in split_notes]
    table = pd.DataFrame(rows)
    summary = _summary(table, table4_aucs(run))
    differences = paired_differences(table)
    artifacts.write_table(run, artifacts.ROBUSTNESS_REPEATS, table)
    artifacts.write_table(run, artifacts.ROBUSTNESS_REPEATS_SUMMARY, summary)
    artifacts.write_table(run, artifacts.ROBUSTNESS_DIFFERENCES, differences)
    return RepeatedSplits(aucs=table, summary=summary, differences=differences, notes=notes)


def permuted_labels(er: pd.Series, split: pd.Series, seed: int, permutation: int) -> pd.Series:
    """``er`` with the training patients' labels shuffled among them (seeded); validation labels untouched."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, PERMUTATION_OFFSET + permutation]))
    out = er.copy()
    train = split.loc[er.index] == "train"
    out[train.to_numpy()] = rng.permutation(er[train.to_numpy()].to_numpy())
    return out


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """``(1 + #{null >= observed}) / (P + 1)`` over the finite null values (Phipson & Smyth 2010)."""
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if not np.isfinite(observed) or not len(null):
        return float("nan")
    return float((1 + np.sum(null >= observed)) / (len(null) + 1))


def permutation_test(inputs: ChainInputs, params: Params, run: RunFolder) -> PermutationTest:
    """The permutation test on the run's own split (module docstring); writes ROBUSTNESS_PERMUTATION and
    ROBUSTNESS_NULL."""
    cfg, single = params.robustness, _one_job(params)
    er = inputs.cohort.set_index("patient_id")["er"].astype(int)
    split = inputs.cohort.set_index("patient_id")["split"]
    labels = [er] + [permuted_labels(er, split, cfg.seed, p) for p in range(1, cfg.permutations + 1)]
    jobs = [delayed(_fit_and_score)(inputs, split, fit_labels, er, single) for fit_labels in labels]
    results = _run(jobs, cfg.n_jobs, "permutations", params.compute)
    (observed, notes), null_results = results[0], results[1:]
    null = pd.DataFrame([{"permutation": p, "model": name, "auc": aucs.get(name, np.nan)}
                         for p, (aucs, _) in enumerate(null_results, 1) for name in inputs.models],
                        columns=list(artifacts.ROBUSTNESS_NULL.columns))
    failed = sum(1 for _, n in null_results if n)
    if failed:
        notes.append(f"{failed} permutation(s) left a model unfitted (e.g. no feature selected); their AUC is "
                     "missing from the null")
    table4 = table4_aucs(run)
    rows = []
    for name in inputs.models:
        values = null.loc[null["model"] == name, "auc"].dropna().to_numpy()
        rows.append({"model": name, "permutations": len(values), "observed_auc": observed.get(name, np.nan),
                     "table4_auc": table4.get(name, np.nan),
                     "null_mean": values.mean() if len(values) else np.nan,
                     "null_sd": values.std(ddof=1) if len(values) > 1 else np.nan,
                     "null_low": np.percentile(values, 2.5) if len(values) else np.nan,
                     "null_high": np.percentile(values, 97.5) if len(values) else np.nan,
                     "p_value": permutation_p_value(observed.get(name, np.nan), values)})
    table = pd.DataFrame(rows)
    artifacts.write_table(run, artifacts.ROBUSTNESS_PERMUTATION, table)
    artifacts.write_table(run, artifacts.ROBUSTNESS_NULL, null)
    return PermutationTest(null=null, table=table, notes=notes)


def _site_row(site: str, name: str, er: pd.Series, prob: pd.Series | None, level: float, note: str) -> dict:
    held = er.loc[prob.index] if prob is not None else er
    row = {"site": site, "model": name, "n": len(held), "n_er": int(held.sum()), "er_rate": float(held.mean()),
           "auc": np.nan, "auc_low": np.nan, "auc_high": np.nan, "note": note}
    if prob is not None:
        try:
            row["auc"], row["auc_low"], row["auc_high"] = stats.auc_ci(held.to_numpy(), prob.to_numpy(), level)
        except ValueError as exc:
            row["note"] = f"no AUC: {exc}"
    return row


def site_validation(inputs: ChainInputs, params: Params, run: RunFolder) -> pd.DataFrame:
    """Internal-external validation: each value of ``robustness.site_column`` held out in turn (module
    docstring); ``inputs.slice_probs`` must come from networks folded by the same column. One row per site and
    model (ROBUSTNESS_SITES); a site too small or with one outcome has a note and no AUC."""
    cfg, single = params.robustness, _one_job(params)
    table = inputs.cohort.set_index("patient_id")
    er, sites = table["er"].astype(int), table[cfg.site_column].astype(str)
    names, jobs, rows = sorted(sites.unique()), [], []
    for site in names:
        held = er[sites == site]
        rest = er[sites != site]
        reason = ""
        if len(held) < cfg.min_site_patients:
            reason = f"not scored: {len(held)} patients (robustness.min_site_patients = {cfg.min_site_patients})"
        elif held.nunique() < 2:
            reason = "not scored: one outcome only, the AUC is undefined"
        elif rest.value_counts().min() < 3 or rest.nunique() < 2:
            reason = "not scored: the other sites hold fewer than 3 patients of an outcome"
        if reason:
            rows += [(site, name, None, reason) for name in inputs.models]
            continue
        split = pd.Series(np.where(sites == site, "validation", "train"), index=sites.index, name="split")
        jobs.append((site, delayed(score_split)(inputs, split, er, single)))
    results = _run([job for _, job in jobs], cfg.n_jobs, "held-out scanners", params.compute)
    for (site, _), (probabilities, notes) in zip(jobs, results, strict=True):
        for name in inputs.models:
            note = next((n for n in notes if n.startswith(f"{name}:")), "")
            rows.append((site, name, probabilities.get(name), note))
    level = params.evaluation.ci_level
    out = pd.DataFrame([_site_row(site, name, er[sites == site], prob, level, note)
                        for site, name, prob, note in rows])
    out = out.sort_values(["site", "model"], key=lambda s: s.map({n: i for i, n in enumerate(inputs.models)})
                          if s.name == "model" else s, kind="stable").reset_index(drop=True)
    artifacts.write_table(run, artifacts.ROBUSTNESS_SITES, out)
    return out


@dataclass
class SiteValidation:
    """``scanner_validation``'s results: the held-out networks (None when skipped), the table, a note."""

    held: robustness_cnn.HeldOut | None
    table: pd.DataFrame
    note: str


def scanner_validation(params: Params, run: RunFolder) -> SiteValidation:
    """Networks folded by ``robustness.site_column``, then ``site_validation``; skipped with a note (and an empty
    table) when the column is unset, absent from the cohort, or has a single value."""
    column = params.robustness.site_column
    empty = pd.DataFrame(columns=list(artifacts.ROBUSTNESS_SITES.columns))
    if column is None:
        return SiteValidation(None, empty, "skipped: robustness.site_column is null")
    try:
        held = robustness_cnn.held_out_probabilities(params, run, column)
    except robustness_cnn.HeldOutError as exc:
        artifacts.write_table(run, artifacts.ROBUSTNESS_SITES, empty)
        return SiteValidation(None, empty, f"skipped: {exc}")
    table = site_validation(chain_inputs(params, run, held.predictions), params, run)
    return SiteValidation(held, table, held.note)


def run_repeats(params: Params, run: RunFolder, held: robustness_cnn.HeldOut) -> RepeatedSplits:
    """``repeated_splits`` with the held-out probabilities of ``held``, or, with ``robustness.retrain_cnn``, a
    network retrained on each split's training patients (``robustness_cnn.split_network_probabilities``)."""
    inputs = chain_inputs(params, run, held.predictions)
    per_split = None
    if params.robustness.retrain_cnn:
        def per_split(split, tag):
            return robustness_cnn.split_network_probabilities(params, run, split, tag)
    return repeated_splits(inputs, params, run, per_split)


def run_permutations(params: Params, run: RunFolder) -> PermutationTest:
    """``permutation_test`` on the run's own inputs: notebook 04's MIL table, the radiomics and clinical data."""
    return permutation_test(chain_inputs(params, run, mil_table=mil.load_mil_table(run)), params, run)


def headline(repeats: RepeatedSplits, permutations: PermutationTest) -> str:
    """The chapter's result in a few Markdown sentences: each model's median validation AUC over the repeats
    with its interval and permutation p-value, and how often DL-MIL beats each comparator."""
    lines = []
    perm = permutations.table.set_index("model")
    for row in repeats.summary.itertuples():
        p = perm["p_value"].get(row.model, float("nan"))
        lines.append(f"- **{row.model}**: median validation AUC {row.median:.3f} ({row.low:.3f}-{row.high:.3f}) "
                     f"over {row.repeats} repeated splits; the run's Table 4 value {row.table4_auc:.3f} lies at "
                     f"the {row.table4_percentile:.0f}th percentile; permutation p = {p:.3g}.")
    for row in repeats.differences.itertuples():
        lines.append(f"- **{row.comparison}**: median {row.median:+.3f} ({row.low:+.3f} to {row.high:+.3f}); "
                     f"DL-MIL wins {row.share_dl_mil_wins:.0%} of {row.repeats} splits.")
    return "\n".join(lines)


__all__ = ["PermutationTest", "RepeatedSplits", "SiteValidation", "headline", "paired_differences",
           "permutation_p_value", "permutation_test", "permuted_labels", "repeat_splits", "repeated_splits",
           "run_permutations", "run_repeats", "scanner_validation", "site_validation", "table4_aucs"]
