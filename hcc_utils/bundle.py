"""The model bundle of a run (``runs/NAME/model/``): what scoring a new patient needs, and nothing that runs code
when it is loaded (docs/architecture.md, "The model bundle"; ``hcc_utils.predict`` scores with it).

Written at the end of notebook 05 by :func:`write_bundle`, from the run's own files (names: ``hcc_utils.artifacts``)::

    bundle.json     format, run, the chosen CNN (architecture, input size in pixels), package versions, and the
                    SHA-256 of every other file of the bundle
    params.yaml     the run's validated parameters: preprocessing (docs/method.md section 1), the 2.5D stack
                    (section 2), the CNN's speed settings (section 3), the MIL label threshold (section 4)
    cnn.pt          the chosen CNN's state dict (tensors only; read with ``torch.load(weights_only=True)``)
    mil_idf.json    the BoW idf per token (``mil.fit_idf``, dimensionless), fitted as notebook 04 fitted it
    radiomics.yaml  the run's PyRadiomics settings file (section 5)
    models.json     per model (dl_mil, radiomics, clinical): its name, the columns its pipeline reads (the
                    selected features), its cut-off (a probability of ER: ``evaluation.fixed_threshold``, or
                    Youden's J on the out-of-fold training predictions, as ``comparison.thresholds_for`` decides;
                    section 6) and the values that fill a missing input (radiomics: the training median, in the
                    feature's unit; clinical: the training median or mode, under ``clinical.missing:
                    median_impute_train``)
    training_probabilities.csv  ``model, prob``: each model's out-of-fold probability of ER of every training
                    patient (``prob_oof``), where ``predict``'s report places a new patient
    MODEL_CARD.md   the model card (``hcc_utils.model_card``): intended use, cohort, protocol, validation AUC
                    and calibration, limitations, how to score a patient; hashed like the other files
    <slug>.skops    the fitted pipeline (select -> StandardScaler -> SMOTE -> ExtraTrees, section 5), stored with
                    skops; its ``select`` step is the fitted ``FeatureSelector`` reduced to its selected columns
                    (``fold_selection.SelectedColumns``: the same transform, plain names only)

:func:`load_bundle` refuses a bundle whose files changed (each file's SHA-256 against ``bundle.json``; the message
names the file), warns (:class:`BundleVersionWarning`, naming package and versions) for each package whose
installed version differs from the one that wrote the bundle, and loads each pipeline with
``skops.io.load(trusted=...)``, trusting only the types of :data:`TRUSTED_TYPES` that the file holds: any other
type is refused, naming it. Nothing is read with pickle or joblib.

Example::

    >>> write_bundle(params, run)                      # notebook 05
    >>> model = load_bundle("runs/smoke")              # the run folder or its model/ folder
    >>> model.models["dl_mil"].threshold
    0.5
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcc_utils import artifacts, model_card, model_registry
from hcc_utils.config import Params, load_params
from hcc_utils.run_folder import RunFolder

FORMAT = 1
MODEL_SLUGS = ("dl_mil", "radiomics", "clinical")
"""The models a bundle holds, when the run fitted them (a model without a pipeline file is left out)."""
SCORING_PACKAGES = ("numpy", "scipy", "pandas", "scikit-learn", "imbalanced-learn", "torch", "torchvision",
                    "SimpleITK", "pyradiomics-bhklab", "skops")
"""The packages whose versions shape a new patient's score; a difference at load time is warned about."""
TRUSTED_TYPES = frozenset({
    "hcc_utils.fold_selection.SelectedColumns",
    "imblearn.pipeline.Pipeline",
    "imblearn.over_sampling._smote.base.SMOTE",
    "sklearn.tree._tree.Tree",
    # SMOTE's fitted nearest-neighbour search: a k-d tree or ball tree (scikit-learn picks one by size) and its metric
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
})
"""The types beyond skops' own defaults that a bundle's pipeline may hold: what ``fit_recipe`` builds (on larger
cohorts SMOTE's nearest-neighbour search keeps a fitted k-d or ball tree). skops constructs only these on load; a
file holding any other type is refused (at write time too)."""
YOUDEN_RULE = "Youden's J on the out-of-fold training predictions (prob_oof)"
FIXED_RULE = "evaluation.fixed_threshold"


class BundleError(ValueError):
    """A bundle that cannot be written or used; the message names the file and what to do."""


class BundleVersionWarning(UserWarning):
    """A package's installed version differs from the one the bundle was written with."""


@dataclass
class BundleModel:
    """One model of a bundle: ``features`` the columns its pipeline reads; ``threshold`` its cut-off (probability
    of ER; class 1 when ``prob >= threshold``); ``fill`` the value (in the feature's unit) standing in for a
    missing input, by feature; ``pipeline`` the loaded pipeline (``predict_proba`` on a DataFrame)."""

    slug: str
    name: str
    features: list[str]
    threshold: float
    threshold_rule: str
    fill: dict[str, float]
    fill_rule: str
    pipeline: Any = None


@dataclass
class Bundle:
    """A loaded bundle: its ``folder``, the run's ``params``, the CNN (``architecture`` key, ``input_size`` in
    pixels, ``cnn_state`` file), the BoW ``idf`` per token and the ``models`` by slug."""

    folder: Path
    params: Params
    architecture: str
    input_size: int
    idf: dict[str, float]
    models: dict[str, BundleModel]
    index: dict = field(repr=False, default_factory=dict)

    @property
    def cnn_state(self) -> Path:
        return artifacts.bundle_file(self.folder, artifacts.BUNDLE_CNN)

    @property
    def radiomics_settings(self) -> Path:
        return artifacts.bundle_file(self.folder, artifacts.BUNDLE_RADIOMICS)

    def training_probabilities(self) -> pd.DataFrame:
        """The training patients' out-of-fold probability of ER per model (``model, prob``); empty for a bundle
        written before it was kept."""
        path = artifacts.bundle_file(self.folder, artifacts.BUNDLE_TRAINING)
        return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(artifacts.BUNDLE_TRAINING.columns))


def sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def installed_versions(packages=SCORING_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when it is not installed)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# -- writing ----------------------------------------------------------------------------------------------------

def frozen_pipeline(pipeline):
    """The fitted recipe pipeline with its ``select`` step reduced to the selected columns (a shallow copy; the
    other fitted steps are shared, the given pipeline is unchanged)."""
    import copy

    from hcc_utils.fold_selection import FeatureSelector, SelectedColumns, frozen

    out = copy.copy(pipeline)
    out.steps = [(name, frozen(step) if isinstance(step, FeatureSelector) else step) for name, step in pipeline.steps]
    if not isinstance(out.steps[0][1], SelectedColumns):
        raise BundleError(f"the pipeline's first step is a {type(out.steps[0][1]).__name__}, not the recipe's "
                          "FeatureSelector; rerun notebook 05")
    return out


def untrusted_types(path: Path) -> list[str]:
    """The types of a skops file that skops does not trust by default (``skops.io.get_untrusted_types``)."""
    import skops.io as sio

    try:
        return list(sio.get_untrusted_types(file=path))
    except Exception as exc:  # a damaged or foreign file: say which
        raise BundleError(f"'{path.name}' cannot be read as a skops file ({type(exc).__name__}: {exc}); write the "
                          "bundle again (notebook 05)") from None


def refuse_untrusted(path: Path) -> list[str]:
    """The file's types outside skops' defaults, all in :data:`TRUSTED_TYPES`; else ``BundleError`` naming them."""
    found = untrusted_types(path)
    refused = sorted(t for t in found if t not in TRUSTED_TYPES)
    if refused:
        raise BundleError(f"'{path.name}' holds type(s) this project does not trust: {', '.join(refused)}; it is "
                          "refused (skops would construct them when loading). Use a bundle written by notebook 05; "
                          "a new type must be added to hcc_utils.bundle.TRUSTED_TYPES after review")
    return found


def _training_idf(params: Params, run: RunFolder, train_ids: list[str]) -> dict[str, float]:
    """The idf notebook 04 fitted, refitted from the same inputs and checked against ``tables/mil_features.csv``."""
    from hcc_utils import cnn, cnn_cross_fit, mil

    inputs = mil.mil_inputs(cnn.downstream_predictions(run), params, cnn_cross_fit.load_cross_fit(run, params))
    idf = mil.fit_idf(inputs, train_ids, mil.idf_on_for(params.protocol), params.mil.label_threshold)
    again = mil.mil_features(inputs, train_ids, label_threshold=params.mil.label_threshold, idf=idf)
    saved = artifacts.read_mil_features(run)
    same = again.index.equals(saved.index) and np.allclose(again.to_numpy(), saved.to_numpy(), rtol=0, atol=1e-12)
    if not same:
        raise BundleError(f"{artifacts.MIL_FEATURES.pattern} does not match the slice predictions it was made from "
                          "(another notebook 03 or 04 since?); rerun notebooks 04 and 05")
    return idf


def _radiomics_fill(run: RunFolder, train_ids: list[str], features: list[str]) -> dict[str, float]:
    """Training median of each feature over the training patients' reader-1 features (as notebook 05 filled a
    validation gap, ``radiomics_model.fill_validation_gaps``)."""
    excluded = set(run.exclusions().query("severity == 'excluded' and stage != 'radiomics'")["patient_id"])
    rows = {}
    for pid in train_ids:
        path = artifacts.RADIOMICS_CACHE.path(run, stem=artifacts.file_stem(pid), reader="reader1")
        if pid not in excluded and path.is_file():
            rows[pid] = json.loads(path.read_text())["features"]
    table = pd.DataFrame.from_dict(rows, orient="index").astype(float)
    return {f: float(table[f].median()) for f in features}


def _clinical_fill(params: Params, patients: pd.DataFrame, features: list[str]) -> dict[str, float]:
    """Training median (continuous) or mode (categorical) of each variable, as ``clinical.model_inputs``; empty
    under ``clinical.missing: drop_patient``."""
    from hcc_utils.clinical import encode

    if params.clinical.missing != "median_impute_train":
        return {}
    train = encode(patients[patients["split"] == "train"], params)
    return {f: float(train[f].dropna().mode().min() if f in params.clinical.categorical
                     else train[f].dropna().median()) for f in features}


def write_bundle(params: Params, run: RunFolder) -> Path:
    """Write ``runs/NAME/model/`` from the run's files (module docstring); returns the folder.

    Reads the split, the chosen CNN, the slice predictions and MIL features (to refit and check the idf), each
    model's pipeline (``models/<slug>.joblib``, the run's own), its predictions (for the cut-off) and the
    radiomics cache (for the fill values). An earlier bundle of the run is replaced.

    Raises:
        BundleError: the MIL features do not match their inputs, or a pipeline holds a type outside
            :data:`TRUSTED_TYPES`.
    """
    import skops.io as sio

    from hcc_utils import cohort, comparison, mil
    from hcc_utils.cnn import ARCHITECTURE_NAMES

    folder = artifacts.BUNDLE_INDEX.path(run).parent
    for old in folder.iterdir():
        if old.is_file():
            old.unlink()
    patients = cohort.load_cohort(params, run)
    patients["patient_id"] = patients["patient_id"].astype(str)
    train_ids = patients.loc[patients["split"] == "train", "patient_id"].tolist()
    file = {a: artifacts.bundle_file(folder, a) for a in (artifacts.BUNDLE_PARAMS, artifacts.BUNDLE_CNN,
                                                          artifacts.BUNDLE_IDF, artifacts.BUNDLE_MODELS,
                                                          artifacts.BUNDLE_RADIOMICS)}
    shutil.copyfile(artifacts.PARAMS.require(run), file[artifacts.BUNDLE_PARAMS])
    key = artifacts.read_cnn_choice(run)["key"]
    shutil.copyfile(artifacts.CNN_STATE.require(run, architecture=key), file[artifacts.BUNDLE_CNN])
    idf = _training_idf(params, run, train_ids)
    file[artifacts.BUNDLE_IDF].write_text(json.dumps({
        "idf": idf, "fitted_on": mil.idf_on_for(params.protocol), "label_threshold": params.mil.label_threshold},
        indent=1))

    thresholds = comparison.thresholds_for(comparison.load_predictions(run), params.evaluation)
    rule = FIXED_RULE if params.evaluation.threshold == "fixed" else YOUDEN_RULE
    names = {m.slug: m.name for m in model_registry.MODELS}
    models = {}
    for slug in MODEL_SLUGS:
        if not artifacts.PIPELINE.path(run, slug=slug).is_file():
            continue
        pipeline = frozen_pipeline(artifacts.read_pipeline(run, slug))
        path = artifacts.bundle_file(folder, artifacts.BUNDLE_PIPELINE, slug=slug)
        sio.dump(pipeline, path)
        refuse_untrusted(path)
        features = list(pipeline.steps[0][1].columns)
        fill, fill_rule = {}, "none (the MIL features are always computed)"
        if slug == "radiomics":
            fill, fill_rule = _radiomics_fill(run, train_ids, features), "training median (reader 1)"
            shutil.copyfile(Path(params.radiomics.settings), file[artifacts.BUNDLE_RADIOMICS])
        elif slug == "clinical":
            fill = _clinical_fill(params, patients, features)
            fill_rule = ("training median (continuous) or mode (categorical)" if fill
                         else "none (clinical.missing: drop_patient: a patient missing an input is not scored)")
        models[slug] = {"name": names[slug], "features": features, "threshold": float(thresholds[names[slug]]),
                        "threshold_rule": rule, "fill": fill, "fill_rule": fill_rule}
    file[artifacts.BUNDLE_MODELS].write_text(json.dumps(models, indent=1))
    training = [artifacts.read_patient_predictions(run, slug).query("split == 'train'")[["prob_oof"]]
                .rename(columns={"prob_oof": "prob"}).assign(model=slug) for slug in models]
    pd.concat(training, ignore_index=True)[list(artifacts.BUNDLE_TRAINING.columns)].to_csv(
        artifacts.bundle_file(folder, artifacts.BUNDLE_TRAINING), index=False)
    cnn_entry = {"architecture": key, "name": ARCHITECTURE_NAMES[key], "input_size": params.cnn.size_of(key)}
    artifacts.bundle_file(folder, artifacts.BUNDLE_CARD).write_text(model_card.model_card(
        params, run, {slug: entry["threshold"] for slug, entry in models.items()}, cnn_entry), encoding="utf-8")

    index = {"format": FORMAT, "run": run.root.name, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "protocol": params.protocol,
             "cnn": cnn_entry,
             "models": list(models), "python": platform.python_version(), "packages": installed_versions(),
             "files": {p.name: sha256(p) for p in sorted(folder.iterdir())
                       if p.is_file() and p.name != artifacts.bundle_file(folder, artifacts.BUNDLE_INDEX).name}}
    artifacts.bundle_file(folder, artifacts.BUNDLE_INDEX).write_text(json.dumps(index, indent=1))
    return folder


# -- loading ----------------------------------------------------------------------------------------------------

def bundle_folder(path: Path | str) -> Path:
    """The bundle folder of ``path``: the folder itself when it holds ``bundle.json``, else its ``model/``."""
    path = Path(path)
    for folder in (path, path / artifacts.BUNDLE_DIR):
        if artifacts.bundle_file(folder, artifacts.BUNDLE_INDEX).is_file():
            return folder
    raise BundleError(f"'{path.name}' holds no model bundle ({artifacts.BUNDLE_INDEX.pattern}); give a run folder "
                      f"whose notebook 05 finished, or its {artifacts.BUNDLE_DIR}/ folder")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"'{path.name}' cannot be read as JSON ({exc}); write the bundle again (notebook 05)") \
            from None


def check_files(folder: Path, index: dict) -> None:
    """Every file the bundle needs is listed in ``bundle.json`` and has the SHA-256 listed there."""
    listed = index.get("files") or {}
    needed = [artifacts.bundle_file(folder, a).name for a in (artifacts.BUNDLE_PARAMS, artifacts.BUNDLE_CNN,
                                                              artifacts.BUNDLE_IDF, artifacts.BUNDLE_MODELS)]
    needed += [artifacts.bundle_file(folder, artifacts.BUNDLE_PIPELINE, slug=s).name for s in index.get("models", [])]
    if "radiomics" in index.get("models", []):
        needed.append(artifacts.bundle_file(folder, artifacts.BUNDLE_RADIOMICS).name)
    unlisted = [name for name in needed if name not in listed]
    if unlisted:
        raise BundleError(f"bundle.json lists no hash for '{unlisted[0]}'; the bundle is incomplete: write it again "
                          "(notebook 05)")
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file():
            raise BundleError(f"'{name}' of the bundle is missing; copy the whole {folder.name}/ folder")
        if sha256(path) != digest:
            raise BundleError(f"'{name}' changed since the bundle was written (its SHA-256 differs from bundle.json): "
                              "refused; use the bundle as notebook 05 wrote it")


def check_versions(written: dict[str, str | None]) -> list[str]:
    """A ``BundleVersionWarning`` per package whose installed version differs from ``written``; the messages."""
    messages = []
    for name, now in installed_versions(tuple(written)).items():
        if now != written[name]:
            message = (f"{name} {now or 'not installed'} is installed, but the bundle was written with {name} "
                       f"{written[name] or 'not installed'}; scores may differ slightly (install {name}=="
                       f"{written[name]} to reproduce them)")
            warnings.warn(message, BundleVersionWarning, stacklevel=3)
            messages.append(message)
    return messages


def load_pipeline(path: Path):
    """A skops pipeline file, trusting only the :data:`TRUSTED_TYPES` it holds (``BundleError`` otherwise)."""
    import skops.io as sio

    return sio.load(path, trusted=refuse_untrusted(path))


def load_bundle(path: Path | str) -> Bundle:
    """Load the bundle of a run folder (or the bundle folder itself), checked as the module docstring says.

    Raises:
        BundleError: no bundle, a missing or changed file (named), an untrusted type in a pipeline (named).
    """
    folder = bundle_folder(path)
    index = _read_json(artifacts.bundle_file(folder, artifacts.BUNDLE_INDEX))
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise BundleError(f"bundle.json of '{folder.name}' is not a format-{FORMAT} bundle; write it again "
                          "(notebook 05) with this version of hcc_utils")
    check_files(folder, index)
    check_versions(index.get("packages") or {})
    params = load_params(artifacts.bundle_file(folder, artifacts.BUNDLE_PARAMS))
    idf = _read_json(artifacts.bundle_file(folder, artifacts.BUNDLE_IDF))["idf"]
    models = {}
    for slug, entry in _read_json(artifacts.bundle_file(folder, artifacts.BUNDLE_MODELS)).items():
        pipeline = load_pipeline(artifacts.bundle_file(folder, artifacts.BUNDLE_PIPELINE, slug=slug))
        models[slug] = BundleModel(slug=slug, pipeline=pipeline, **entry)
    return Bundle(folder=folder, params=params, architecture=index["cnn"]["architecture"],
                  input_size=int(index["cnn"]["input_size"]), idf={k: float(v) for k, v in idf.items()},
                  models=models, index=index)
