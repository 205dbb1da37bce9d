"""Scoring new patients with a run's model bundle (``hcc_utils.bundle``): :func:`predict_patients`.

Each patient goes through what the book did to its own patients, with the bundle's parameters and fitted state
(docs/method.md sections 1-6):

1. the input checks of chapter 01 (``patient_check.check_patient``; the manifest's rows by
   ``manifest_check.read_manifest``): a patient whose files or row cannot be used is excluded with the usual
   message (patient, file, what to do), and the others go on;
2. the 2.5D stack (``stack.make_stack`` with the bundle's ``preprocess`` and ``slices`` parameters), kept as 8-bit
   pixels as the slice dataset keeps it (section 2);
3. the chosen CNN's eval-mode probability of ER per slice (``cnn_train.predict_probabilities``, the run's input
   size and ``cnn`` device settings; section 3);
4. the 26 MIL features with the bundle's training-fitted idf (``mil.mil_features(idf=...)``; section 4);
5. reader 1's PyRadiomics features with the run's settings file (``radiomics.extract_patient``; section 5);
6. the clinical variables (``clinical.encode``); a missing input of the radiomics or clinical model takes the
   bundle's training median (or mode) and is flagged;
7. each model's probability of ER and its class at the model's cut-off (1 when ``prob >= cut-off``).

Steps 1, 2 and 5 run per patient through ``compute.map_patients`` (:func:`patient_inputs`): in this process, or on
the Dask cluster of ``predict_patients(compute=...)`` (notebook 10 passes the run's ``params.compute``); the rest
runs here, in the manifest's order either way.

``DIR/predictions.csv`` (``artifacts.NEW_PREDICTIONS``): ``patient_id, status`` (``scored`` or ``excluded``),
``<slug>_prob, <slug>_class`` per model of the bundle (``dl_mil``, ``radiomics``, ``clinical``), ``flags`` (the
exclusion reason, warnings, filled values; ``"; "``-separated).
``DIR/<patient>/report.html`` (``artifacts.patient_report``; unless ``reports=False``, CLI ``--no-report``): one
self-contained page per scored patient (``hcc_utils.patient_report``).

Example::

    >>> model = bundle.load_bundle("runs/smoke")
    >>> table = predict_patients(model, read_new_manifest("new.csv", model).table, "scores")
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from hcc_utils import artifacts
from hcc_utils.bundle import Bundle
from hcc_utils.config_compute import ComputeConfig
from hcc_utils.manifest_check import MANIFEST_COLUMNS, PATH_COLUMNS, ManifestResult, read_manifest
from hcc_utils.progress import progress as progress_bar

SCORED, EXCLUDED = "scored", "excluded"
INPUT_COLUMNS = [c for c in MANIFEST_COLUMNS if c not in ("patient_id", "er", *PATH_COLUMNS)]
"""The manifest's other columns, which ``--clinical NAME=VALUE`` may give for one patient."""


class PredictError(ValueError):
    """Input that ``predict`` cannot use; the message names it and what to do."""


def read_new_manifest(path: Path | str, model: Bundle) -> ManifestResult:
    """New patients' manifest (``patient_id, image, mask`` and any clinical columns; ``er`` not needed), with
    every row checked as chapter 01 checks it; column names mapped by the run's ``cohort.columns``."""
    return read_manifest(path, model.params.cohort.columns, outcome=False)


def one_patient_manifest(image: Path | str, mask: Path | str, clinical: dict[str, str] | None = None,
                         patient_id: str = "patient") -> ManifestResult:
    """One patient as a manifest (the CLI's ``--image --mask --clinical``), checked as a manifest row is."""
    clinical = dict(clinical or {})
    unknown = sorted(set(clinical) - set(INPUT_COLUMNS))
    if unknown:
        raise PredictError(f"--clinical {unknown[0]}=...: not a manifest column; use one of {INPUT_COLUMNS}")
    row = {"patient_id": patient_id, "image": str(Path(image).resolve()), "mask": str(Path(mask).resolve()),
           **clinical}
    with tempfile.TemporaryDirectory(prefix="hcc_predict_") as folder:
        path = Path(folder) / "manifest"
        pd.DataFrame([row]).to_csv(path, index=False)
        return read_manifest(path, outcome=False)


def load_cnn(model: Bundle):
    """The chosen CNN in eval mode on the run's device, from the bundle's state dict (tensors only)."""
    import torch

    from hcc_utils.cnn import build_model, resolve_device

    device = resolve_device(model.params.cnn)
    network = build_model(model.architecture)
    network.load_state_dict(torch.load(model.cnn_state, map_location="cpu", weights_only=True))
    return network.to(device).eval(), device


def slice_probabilities(network, device, images: np.ndarray, model: Bundle) -> np.ndarray:
    """Eval-mode probability of ER of each slice of one stack (``images`` uint8, (n_offsets, S, S))."""
    from hcc_utils.cnn_train import SliceTensors, predict_probabilities

    data = SliceTensors.from_stacks(images[None], np.zeros(1, dtype=int), device)
    return predict_probabilities(network, data, np.arange(len(images)), model.input_size, model.params.cnn)


class _Patients:
    """What is known of each patient so far: status and flags, in manifest order."""

    def __init__(self, ids: list[str]):
        self.status = {pid: SCORED for pid in ids}
        self.flags: dict[str, list[str]] = {pid: [] for pid in ids}

    def exclude(self, pid: str, message: str) -> None:
        self.status[pid] = EXCLUDED
        self.flag(pid, message)

    def flag(self, pid: str, message: str) -> None:
        self.flags.setdefault(pid, [])
        if message not in self.flags[pid]:
            self.flags[pid].append(message)


def _filled(table: pd.DataFrame, entry, found: _Patients) -> pd.DataFrame:
    """``table``'s columns ``entry.features`` with missing values filled from the bundle (flagged); a patient
    with a missing value and no fill value is left out of this model (flagged)."""
    table = table.reindex(columns=entry.features).astype(float)
    for pid, row in table.iterrows():
        for feature in row.index[~np.isfinite(row.to_numpy())]:
            value = entry.fill.get(feature)
            if value is None:
                found.flag(pid, f"{entry.name}: '{feature}' is missing and the bundle fills none ({entry.fill_rule}): "
                           "not scored by this model; give the value")
                continue
            table.at[pid, feature] = value
            found.flag(pid, f"{entry.name}: '{feature}' missing, filled with {value:.6g} ({entry.fill_rule})")
    return table[np.isfinite(table.to_numpy()).all(axis=1)]


def _inputs(model: Bundle, table: pd.DataFrame, slices: list[pd.DataFrame], features: dict[str, dict],
            found: _Patients) -> dict[str, pd.DataFrame]:
    """Each model's input table (index patient_id) for the patients it can score."""
    from hcc_utils import clinical, mil

    inputs = {}
    if "dl_mil" in model.models and slices:
        inputs["dl_mil"] = mil.mil_features(pd.concat(slices, ignore_index=True), [], idf=model.idf,
                                            label_threshold=model.params.mil.label_threshold)
    if "radiomics" in model.models and features:
        raw = pd.DataFrame.from_dict(features, orient="index")
        inputs["radiomics"] = _filled(raw, model.models["radiomics"], found)
    if "clinical" in model.models:
        usable = table[table["patient_id"].map(found.status) == SCORED]
        if len(usable):
            inputs["clinical"] = _filled(clinical.encode(usable, model.params), model.models["clinical"], found)
    return inputs


def patient_inputs(row: dict, params, extractor) -> dict:
    """Steps 1, 2 and 5 of the module docstring for one manifest row (a task of ``compute.map_patients``; never
    raises on bad input): ``check`` (``patient_check.PatientCheck``), ``error`` (the stack's exclusion message or
    None), ``pixels`` (uint8 stack), ``masks``, ``info`` (the stack's info) and ``radiomics``
    (``radiomics.extract_patient``'s reader-1 result, None without ``extractor``)."""
    from hcc_utils import radiomics
    from hcc_utils.inputs_check import PatientInputError
    from hcc_utils.patient_check import EXCLUDED as CHECK_EXCLUDED
    from hcc_utils.patient_check import check_patient
    from hcc_utils.stack import make_stack

    pid = str(row["patient_id"])
    out = {"check": check_patient(pid, row["image"], row["mask"], params.preprocess, params.slices),
           "error": None, "pixels": None, "masks": None, "info": None, "radiomics": None}
    if out["check"].status == CHECK_EXCLUDED:
        return out
    try:
        stack = make_stack(row["image"], row["mask"], params.preprocess, params.slices, pid)
    except PatientInputError as err:
        out["error"] = str(err)
        return out
    out.update(pixels=np.round(stack.images * 255).astype(np.uint8), masks=stack.masks, info=stack.info)
    if extractor is not None:
        out["radiomics"] = radiomics.extract_patient(row["image"], {"reader1": row["mask"]}, extractor, pid)["reader1"]
    return out


def _images(model: Bundle, table: pd.DataFrame, found: _Patients, progress: bool, stacks: dict | None = None,
            compute: ComputeConfig | None = None) -> tuple[list[pd.DataFrame], dict[str, dict]]:
    """Steps 1 to 3 and 5 of the module docstring per patient (``patient_inputs`` through
    ``compute.map_patients``; the CNN runs here): its slice probabilities and radiomics features; each stack's
    pixels, masks and offsets into ``stacks`` (``patient_report.PatientImages``) when it is given."""
    from hcc_utils import radiomics
    from hcc_utils.cnn_train import torch_settings
    from hcc_utils.compute import map_patients
    from hcc_utils.patient_check import EXCLUDED as CHECK_EXCLUDED
    from hcc_utils.patient_check import mark_duplicates

    params = model.params
    network, device = load_cnn(model) if "dl_mil" in model.models else (None, None)
    extractor = None
    if "radiomics" in model.models:
        extractor = radiomics.load_extractor(model.radiomics_settings)
        extractor.settings["label"] = params.slices.mask_label
    slices, features, checks = [], {}, []
    tasks = [(row, params, extractor) for row in table.to_dict("records")]
    with torch_settings(params.cnn, device) if device is not None else contextlib.nullcontext():
        for result in progress_bar(map_patients(patient_inputs, tasks, compute), total=len(tasks), desc="patients",
                                   unit="patient", disable=not progress):
            check = result["check"]
            pid = check.patient_id
            checks.append(check)
            for finding in check.findings:
                (found.exclude if finding.severity == CHECK_EXCLUDED else found.flag)(pid, finding.message)
            if check.status == CHECK_EXCLUDED:
                continue
            if result["error"] is not None:
                found.exclude(pid, result["error"])
                continue
            for warning in result["info"]["warnings"]:
                found.flag(pid, f"patient {pid}: {warning}")
            pixels = result["pixels"]
            if stacks is not None:
                from hcc_utils.patient_report import PatientImages

                stacks[pid] = PatientImages(pixels, result["masks"], list(result["info"]["offsets"]))
            if network is not None:
                prob = slice_probabilities(network, device, pixels, model)
                slices.append(pd.DataFrame({"patient_id": pid, "prob": prob}))
            if extractor is not None:
                if result["radiomics"]["features"] is None:
                    found.flag(pid, f"Radiomics: reader-1 extraction failed ({result['radiomics']['error']}): not "
                               "scored by this model")
                else:
                    features[pid] = result["radiomics"]["features"]
    for before, after in zip(checks, mark_duplicates(checks), strict=True):  # one image, two ids: said, scored
        if after is not before:
            found.flag(after.patient_id, after.findings[-1].message)
    return slices, features


def predict_patients(model: Bundle, manifest_table: pd.DataFrame, out_dir: Path | str,
                     problems: pd.DataFrame | None = None, progress: bool = True, reports: bool = True,
                     compute: ComputeConfig | None = None) -> pd.DataFrame:
    """Score every patient of ``manifest_table`` (``read_new_manifest(...).table``) and write
    ``out_dir/predictions.csv`` (module docstring) and, with ``reports``, each scored patient's one-page
    ``out_dir/<patient>/report.html`` (``hcc_utils.patient_report``); returns the table.

    ``problems``: the manifest check's findings (``ManifestResult.problems``): its excluded rows are listed as
    excluded and its warnings (a clinical value left missing, ...) flag their patient. ``compute``: where the
    per-patient checks, stacks and radiomics run (``hcc_utils.compute``; None: this process, one patient after
    another); the CNN and the models run here.
    """
    table = manifest_table.reset_index(drop=True).copy()
    table["patient_id"] = table["patient_id"].astype(str)
    found = _Patients(table["patient_id"].tolist())
    for problem in (problems if problems is not None else pd.DataFrame()).to_dict("records"):
        pid = str(problem["patient_id"]) or f"row {problem['row']}"
        if problem["severity"] == EXCLUDED:
            found.exclude(pid, problem["message"])
        else:
            found.flag(pid, problem["message"])
    stacks = {} if reports else None
    slices, features = _images(model, table, found, progress, stacks, compute)
    inputs = _inputs(model, table, slices, features, found)
    out = pd.DataFrame({"patient_id": list(found.status), "status": list(found.status.values())})
    for slug, entry in model.models.items():
        x = inputs.get(slug)
        x = x[x.index.map(found.status) == SCORED] if x is not None else None
        prob = pd.Series(entry.pipeline.predict_proba(x)[:, 1], index=x.index) if x is not None and len(x) else \
            pd.Series(dtype=float)
        out[f"{slug}_prob"] = out["patient_id"].map(prob)
        out[f"{slug}_class"] = (out[f"{slug}_prob"] >= entry.threshold).astype("Int64").mask(
            out[f"{slug}_prob"].isna())
    out["flags"] = ["; ".join(found.flags.get(pid, [])) for pid in out["patient_id"]]
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    out.to_csv(folder / artifacts.NEW_PREDICTIONS, index=False)
    scored = out[out["status"] == SCORED]
    if reports and len(scored):
        from hcc_utils.patient_report import write_reports

        network = load_cnn(model)[0] if "dl_mil" in model.models and stacks else None
        write_reports(model, scored, folder, stacks, inputs.get("dl_mil"), network, out["patient_id"].tolist())
    return out
