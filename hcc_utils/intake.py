"""The cohort's intake, before anything is fitted: manifest rows, every patient's files, the split (chapter 01).

Every per-patient problem excludes that patient, never the cohort; the run stops only when the cohort as a whole
cannot run, and then before anything long starts (docs/method.md section 1):

1. the manifest's rows (``hcc_utils.manifest_check``): an invalid outcome or id excludes the row; unparseable
   clinical values are warnings; ``cohort.invalid_rows: stop`` stops on the first list of problems instead;
2. every patient's image and mask, read once (``hcc_utils.patient_check``): unreadable, 2D, mismatched geometry,
   bad mask labels, NaN voxels, intensities that are not CT in HU, a constant image exclude the patient; a small
   lesion or a CT without air warns; the same image under two ids excludes every copy;
3. the split, over the usable patients only (stratified by ER), checked for enough patients of each outcome in
   each set (``MIN_PER_CLASS``); too few stops with the counts and what to change.

The verdicts go to the run's ``exclusions.csv`` (stages ``cohort`` and ``inputs``) and, per patient, to
``tables/input_check.csv``. The file checks run per patient through ``compute.map_patients`` (``slices.n_jobs``
processes, or the Dask cluster of ``params.compute``). Each patient's file check is cached in the run folder, so
the runner's check before chapter 01 and chapter 01 itself read the files once. ``python -m hcc_utils check`` runs
the same checks without a run folder.

Example::

    >>> patients = decide_split(params, run)           # notebook 01
    >>> summary_line(run)
    '191 patients in the manifest: 189 usable (78 ER, 111 NER), 2 excluded, 1 warned'
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from hcc_utils import artifacts
from hcc_utils.cohort import SPLITS, CohortError, manifest_path, split_patients
from hcc_utils.compute import map_patients
from hcc_utils.config import Params
from hcc_utils.inputs_check import file_state
from hcc_utils.manifest_check import format_problems, read_manifest
from hcc_utils.patient_check import Finding, PatientCheck, check_patient, mark_duplicates
from hcc_utils.progress import progress as progress_bar
from hcc_utils.run_folder import RunFolder

MANIFEST_STAGE, FILES_STAGE = "cohort", "inputs"
MIN_PER_CLASS = {"train": 3, "validation": 2}
"""Fewest patients of each outcome per set: validation needs 2 for DeLong's variance; training 3, so that the
grid search's folds, SMOTE and the CNN's inner split each still see both outcomes."""
CHECK_VERSION = "1"  # bump when the file checks change for the same files and parameters
SUMMARY_COLUMNS = ["patient_id", "er", "status", "findings", "lesion_volume_mm3", "hu_min", "hu_max"]


@dataclass
class CohortCheck:
    """What the intake found. ``table``: the usable patients (manifest columns, cleaned); ``findings``: one row per
    problem (``exclusions.csv`` columns); ``summary``: one row per manifest patient (``SUMMARY_COLUMNS``)."""

    table: pd.DataFrame
    findings: pd.DataFrame
    summary: pd.DataFrame

    def line(self) -> str:
        """Patients in the manifest, usable (by outcome), excluded and warned, in one line."""
        return _line(self.summary)


def _finding_rows(patient_id: str, stage: str, findings) -> list[dict]:
    return [{"patient_id": patient_id, "stage": stage, "severity": f.severity, "file": f.file,
             "message": f.message} for f in findings]


def _check_key(row: dict, params: Params) -> str:
    payload = {"v": CHECK_VERSION, "image": file_state(row["image"]), "mask": file_state(row["mask"]),
               "preprocess": params.preprocess.model_dump(mode="json"),
               "slices": params.slices.model_dump(mode="json", exclude={"n_jobs"})}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _check_one(row: dict, params: Params, run: RunFolder | None) -> PatientCheck:
    """One patient's file check, from the run's cache when the files and parameters are unchanged."""
    pid = str(row["patient_id"])
    key = _check_key(row, params)
    cache = artifacts.PATIENT_CHECK.path(run, stem=artifacts.file_stem(pid)) if run is not None else None
    if cache is not None and cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            check = saved["check"]
            check["findings"] = [Finding(**f) for f in check["findings"]]
            check["hu_range"] = tuple(check["hu_range"]) if check["hu_range"] else None
            return PatientCheck(**check)
    check = check_patient(pid, row["image"], row["mask"], params.preprocess, params.slices)
    if cache is not None:
        cache.write_text(json.dumps({"key": key, "check": asdict(check)}, default=str), encoding="utf-8")
    return check


def check_cohort(params: Params, run: RunFolder | None = None, progress: bool = True) -> CohortCheck:
    """Steps 1 and 2 of the module docstring: the manifest's rows and every patient's files.

    Raises:
        CohortError: the manifest cannot be read at all, or ``cohort.invalid_rows: stop`` and a row is invalid.
    """
    manifest = read_manifest(manifest_path(params), params.cohort.columns)
    problems = manifest.problems
    if params.cohort.invalid_rows == "stop" and len(manifest.excluded):
        raise CohortError(f"{manifest_path(params)}: invalid rows (cohort.invalid_rows: stop; set it to 'exclude' to "
                          f"go on without those patients):\n{format_problems(problems)}")
    rows = [{**problem, "stage": MANIFEST_STAGE} for problem in problems[["patient_id", "severity", "message"]]
            .assign(file="").to_dict("records")]
    table = manifest.table.reset_index(drop=True)
    records = table.to_dict("records")
    n_jobs = min(params.slices.n_jobs, max(1, len(records)))
    stream = map_patients(_check_one, [(r, params, run) for r in records], params.compute, n_jobs)
    checks = list(progress_bar(stream, total=len(records), desc="input checks", unit="patient",
                               disable=not progress))
    checks = mark_duplicates(checks)
    for check in checks:
        rows += _finding_rows(check.patient_id, FILES_STAGE, check.findings)
    findings = pd.DataFrame(rows, columns=artifacts.EXCLUSION_COLUMNS)
    verdicts = findings.groupby("patient_id")["severity"].agg(set)
    status = {pid: "excluded" if "excluded" in v else "warning" for pid, v in verdicts.items()}
    summary = pd.DataFrame([{
        "patient_id": c.patient_id, "er": r["er"], "status": status.get(c.patient_id, "ok"),
        "findings": int((findings["patient_id"] == c.patient_id).sum()),
        "lesion_volume_mm3": c.lesion_volume_mm3,
        "hu_min": c.hu_range[0] if c.hu_range else None, "hu_max": c.hu_range[1] if c.hu_range else None}
        for c, r in zip(checks, records, strict=True)], columns=SUMMARY_COLUMNS)
    dropped = sorted(set(status) - set(summary["patient_id"]))  # rows the manifest check left out
    summary = pd.concat([summary, pd.DataFrame({"patient_id": dropped, "status": "excluded",
                                                "findings": [int((findings["patient_id"] == p).sum())
                                                             for p in dropped]})], ignore_index=True)
    summary["er"] = summary["er"].astype("Int64")  # empty for a row whose outcome could not be read
    excluded = {pid for pid, verdict in status.items() if verdict == "excluded"}
    usable = table[~table["patient_id"].isin(excluded)].reset_index(drop=True)
    return CohortCheck(usable, findings, summary)


def check_split(table: pd.DataFrame) -> None:
    """Enough patients of each outcome in each set (``MIN_PER_CLASS``), else ``CohortError`` with the counts."""
    counts = pd.crosstab(table["split"], table["er"]).reindex(index=list(SPLITS), columns=[0, 1], fill_value=0)
    short = [f"{split}: {int(counts.at[split, 1])} ER and {int(counts.at[split, 0])} NER (at least "
             f"{MIN_PER_CLASS[split]} of each needed)" for split in SPLITS
             if counts.loc[split].min() < MIN_PER_CLASS[split]]
    if short:
        raise CohortError("too few usable patients of each outcome to train and validate: " + "; ".join(short)
                          + ". Add patients, change cohort.validation_fraction, or fix the excluded patients "
                          "(exclusions.csv; python -m hcc_utils check lists them)")


def record(check: CohortCheck, run: RunFolder) -> None:
    """Write the intake's findings into ``exclusions.csv`` (replacing earlier intake rows) and
    ``tables/input_check.csv``."""
    for stage in (MANIFEST_STAGE, FILES_STAGE):
        run.clear_issues(stage)
    for row in check.findings.to_dict("records"):
        run.record_issue(row["patient_id"], row["stage"], row["severity"], row["file"] or None, row["message"])
    artifacts.write_table(run, artifacts.INPUT_CHECK, check.summary)


def decide_split(params: Params, run: RunFolder, progress: bool = True) -> pd.DataFrame:
    """Notebook 01: check the cohort, record who is excluded and why, split the usable patients (stratified by
    ER, ``cohort.validation_fraction``, ``cohort.split_seed``; or ``cohort.split_column``), check the sets are
    large enough and write the split (``artifacts.SPLIT``). Returns the usable patients with their ``split``."""
    check = check_cohort(params, run, progress)
    record(check, run)
    table = plan_split(check, params)
    artifacts.write_split(run, table)
    return table


def _line(summary: pd.DataFrame) -> str:
    usable = summary[summary["status"] != "excluded"]
    return (f"{len(summary)} patients in the manifest: {len(usable)} usable ({int((usable['er'] == 1).sum())} ER, "
            f"{int((usable['er'] == 0).sum())} NER), {int((summary['status'] == 'excluded').sum())} excluded, "
            f"{int((usable['status'] == 'warning').sum())} warned")


def summary_line(run: RunFolder) -> str:
    """One line on the intake of this run (from ``tables/input_check.csv``)."""
    return _line(artifacts.read_table(run, artifacts.INPUT_CHECK))


def exclusion_table(run: RunFolder) -> pd.DataFrame:
    """The intake's rows of ``exclusions.csv`` (manifest rows and patients' files), excluded first."""
    table = run.exclusions()
    table = table[table["stage"].isin([MANIFEST_STAGE, FILES_STAGE])]
    return table.sort_values(["severity", "patient_id"], kind="stable").reset_index(drop=True)


def plan_split(check: CohortCheck, params: Params) -> pd.DataFrame:
    """The usable patients with their ``split`` (the cohort's own split column, or stratified by ER), checked
    for enough patients of each outcome per set; ``CohortError`` with the counts and what to change."""
    table = check.table.copy()
    if table.empty or table["er"].nunique() < 2:
        raise CohortError(f"{check.line()}: the models need usable patients of both outcomes; see exclusions.csv "
                          "(python -m hcc_utils check lists every problem)")
    try:
        table["split"] = split_patients(table, params.cohort).to_numpy()
    except ValueError as exc:  # scikit-learn's stratified split on very few patients
        raise CohortError(f"{check.line()}: the usable patients cannot be split ({exc})") from None
    check_split(table)
    return table


def preflight(params: Params) -> list[str]:
    """Problems with the files the parameters name (radiomics settings, CNN weights, the patient SHAP explains,
    notebook 10's new patients), found before any chapter starts; empty when all can be used."""
    problems = []
    if params.radiomics.enabled:
        from hcc_utils.radiomics import RadiomicsError, load_extractor, settings_path

        try:
            load_extractor(settings_path(params))
        except RadiomicsError as exc:
            problems.append(f"radiomics.settings: {exc}")
    for architecture in params.cnn.architectures:
        weights = params.cnn.weights.get(architecture)
        if weights is not None and not Path(weights).is_file():
            problems.append(f"cnn.weights.{architecture}: '{weights}' not found; give a local state-dict file or "
                            "remove the entry to start from random weights")
    if params.apply.manifest is not None and not Path(params.apply.manifest).is_file():
        problems.append(f"apply.manifest: '{params.apply.manifest}' not found; give notebook 10's new patients' "
                        "manifest (a CSV) or remove the key to score a new synthetic cohort")
    if params.explain.patient is not None:
        ids = set(read_manifest(manifest_path(params), params.cohort.columns).table["patient_id"])
        if str(params.explain.patient) not in ids:
            problems.append(f"explain.patient: '{params.explain.patient}' is not a usable patient of the manifest; "
                            "choose one of its patient_id values or leave it empty")
    return problems


def check_report(check: CohortCheck) -> pd.DataFrame:
    """``python -m hcc_utils check``'s CSV: one row per problem, and one row for each patient without any."""
    rows = check.findings.merge(check.summary[["patient_id", "er", "status"]], on="patient_id", how="left")
    clean = check.summary[check.summary["findings"] == 0][["patient_id", "er", "status"]]
    table = pd.concat([rows, clean], ignore_index=True)
    columns = ["patient_id", "er", "status", "stage", "severity", "file", "message"]
    return table[columns].sort_values(["status", "patient_id"], kind="stable").reset_index(drop=True)
