"""The synthetic cohort generator: renders each patient's CT and masks and writes the cohort's files.

Step 6 of the generative model (``hcc_utils.synth``; docs/method.md section 1): for each patient of the table
drawn by ``hcc_utils.synth.biology``, the noise-free anatomy (``anatomy``), the lesion and both readers' masks
(``lesion``), then the scanner's noise and blur and the int16 HU NIfTI files (``scanner``). Writes the manifest
(``cohort.csv``) and ``ground_truth.csv`` (``hcc_utils.synth.truth``)::

    >>> from hcc_utils import synth
    >>> manifest = synth.generate_cohort(synth.SyntheticCohort(n=8, seed=7, image_size=64), "/tmp/tiny")
    >>> manifest.name
    'cohort.csv'

Same ``SyntheticCohort`` -> same bytes: per-patient seeds come from ``numpy.random.SeedSequence`` (independent of
``n_jobs``) and the gzip streams carry no timestamp or file name (byte identity holds on one platform; another
CPU or numpy build may round a few voxels differently). A change here or in the modules above that alters the
bytes must bump ``GENERATOR_VERSION`` (``hcc_utils.synth.params``, beside the cache key it enters).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from hcc_utils.progress import progress as progress_bar
from hcc_utils.synth import truth
from hcc_utils.synth.anatomy import AnatomyPainter, draw_anatomy
from hcc_utils.synth.biology import sample_clinical
from hcc_utils.synth.lesion import LesionPhenotype, render_lesion
from hcc_utils.synth.params import GENERATOR_VERSION, ScannerProfile, SyntheticCohort
from hcc_utils.synth.scanner import REFERENCE_MATRIX, make_geometry, scanner_noise, to_int16, write_nifti

__all__ = ["GENERATOR_VERSION", "MANIFEST_COLUMNS", "generate_cohort", "main_cli"]

MANIFEST_COLUMNS = ["patient_id", "image", "mask", "mask_reader2", "er", "scanner", "age", "gender", "bmi",
                    "alcohol", "hbsag", "afp", "alb", "ast", "alt", "mvi_grade", "ki67", "edmondson"]


def _render_patient(patient: dict, scanner: ScannerProfile, image_size: int, slice_thickness_mm: float,
                    seed: np.random.SeedSequence, out_dir: Path) -> dict:
    """Render and write one patient's image and masks; return what ground_truth.csv records about them."""
    rng = np.random.default_rng(seed)
    fov = scanner.pixel_spacing_mm * REFERENCE_MATRIX
    anatomy, extent = draw_anatomy(rng, patient["bmi"], fov)
    geom = make_geometry(scanner, image_size, slice_thickness_mm, extent)
    hu, labels = AnatomyPainter(anatomy, geom).render()
    phenotype = LesionPhenotype(
        diameter_mm=patient["lesion_diameter_mm"], irregularity=patient["lesion_irregularity"],
        heterogeneity_hu=patient["lesion_heterogeneity_hu"], necrosis_share=patient["lesion_necrosis_share"],
        capsule=bool(patient["lesion_capsule"]), satellites=int(patient["lesion_satellites"]),
        peritumoral_enhancement=bool(patient["lesion_peritumoral_enhancement"]),
        enhancement_hu=patient["lesion_enhancement_hu"])
    lesion = render_lesion(hu, labels, geom, phenotype, anatomy.liver_z0, anatomy.liver_height, rng)
    del labels
    hu = scanner_noise(hu, scanner, image_size, rng)
    volume = to_int16(hu)
    pid, affine = patient["patient_id"], geom.affine()
    write_nifti(volume, affine, out_dir / "images" / f"{pid}.nii.gz")
    write_nifti(lesion.reader1, affine, out_dir / "masks" / f"{pid}_reader1.nii.gz")
    write_nifti(lesion.reader2, affine, out_dir / "masks" / f"{pid}_reader2.nii.gz")
    return {"patient_id": pid, "lesion_volume_ml": round(lesion.volume_ml, 3),
            "lesion_central_slice": lesion.central_slice, "reader2_dice": round(lesion.reader2_dice, 4),
            "liver_hu": round(anatomy.liver_hu, 2)}


def _render_patient_task(task: tuple) -> dict:
    return _render_patient(*task)


@contextmanager
def _patient_map(n_jobs: int) -> Iterator[Callable]:
    """An ordered ``map`` over patients: in this process for one job, else over forked worker processes.

    Forked workers start in milliseconds because they inherit the imported modules (a fresh interpreter per
    worker would spend seconds importing scipy and pandas); where fork is unavailable, spawn is used.
    """
    if n_jobs == 1:
        yield map
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=context) as pool:
        yield pool.map


def generate_cohort(cfg: SyntheticCohort, out_dir: Path, n_jobs: int = 2, progress: bool = True,
                    overwrite: bool = False) -> Path:
    """Generate the cohort into ``out_dir`` and return the manifest path (``out_dir/cohort.csv``).

    Writes ``images/<pid>.nii.gz`` (int16 HU), ``masks/<pid>_reader1.nii.gz`` and ``masks/<pid>_reader2.nii.gz``
    (uint8, label 1), ``cohort.csv`` (the manifest, paths relative to it) and ``ground_truth.csv`` (latents, true
    ER probability, lesion phenotype, oracle AUC; for checking the method, never read by modelling code).
    ``n_jobs`` processes render patients in parallel; the bytes do not depend on it. A folder that holds a manifest
    already is refused (``FileExistsError``) unless ``overwrite``, which replaces the files named above and leaves
    any other file alone.
    """
    out_dir = Path(out_dir)
    manifest = out_dir / truth.MANIFEST_FILE
    if manifest.exists() and not overwrite:
        raise FileExistsError(f"{manifest} already exists; choose an empty folder for a new synthetic cohort")
    for sub in ("images", "masks"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    clinical_seed, image_seed = np.random.SeedSequence(cfg.seed).spawn(2)
    table = sample_clinical(cfg, np.random.default_rng(clinical_seed))
    scanners = {s.name: s for s in cfg.scanners}
    tasks = [(row, scanners[row["scanner"]], cfg.image_size, cfg.slice_thickness_mm, seed, out_dir)
             for row, seed in zip(table.to_dict("records"), image_seed.spawn(cfg.n), strict=True)]
    with _patient_map(n_jobs) as mapper:
        results = mapper(_render_patient_task, tasks)
        rendered = pd.DataFrame(list(progress_bar(results, total=cfg.n, disable=not progress,
                                                  desc="synthetic cohort", unit="patient")))
    table = table.merge(rendered, on="patient_id", how="left", validate="one_to_one")

    table["image"] = [f"images/{p}.nii.gz" for p in table["patient_id"]]
    table["mask"] = [f"masks/{p}_reader1.nii.gz" for p in table["patient_id"]]
    table["mask_reader2"] = [f"masks/{p}_reader2.nii.gz" for p in table["patient_id"]]
    both_classes = table["er"].nunique() == 2
    oracle_auc = roc_auc_score(table["er"], table[truth.PROBABILITY_COLUMN]) if both_classes else np.nan
    table[truth.ORACLE_AUC_COLUMN] = oracle_auc
    table[truth.GROUND_TRUTH_COLUMNS].to_csv(out_dir / truth.GROUND_TRUTH_FILE, index=False, lineterminator="\n")
    table[MANIFEST_COLUMNS].to_csv(manifest, index=False, lineterminator="\n")
    return manifest


def main_cli(n: int, seed: int, out: Path, image_size: int | None = None, overwrite: bool = False) -> None:
    """``python -m hcc_utils synth``: generate a cohort of ``n`` patients into ``out`` and print the manifest path.

    Other settings are ``SyntheticCohort``'s defaults; ``overwrite`` as in :func:`generate_cohort`. Returns None
    (the CLI's exit status is then 0). The command line checks the options and the folder first
    (``hcc_utils.__main__``).
    """
    overrides = {"n": n, "seed": seed} | ({"image_size": image_size} if image_size is not None else {})
    print(generate_cohort(SyntheticCohort(**overrides), Path(out), overwrite=overwrite))
