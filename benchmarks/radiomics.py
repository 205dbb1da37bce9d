"""Benchmark: the project's PyRadiomics path against a plain PyRadiomics call on the same files.

For each patient (both readers' masks) it times

- plain: ``RadiomicsFeatureExtractor(settings).execute(image_file, mask_file)`` once per reader, PyRadiomics
  resampling the whole file itself, with diagnostics as the settings file says (off in the project's files)
  and, with ``--diagnostics``, also with PyRadiomics' default diagnostics on;
- project: ``hcc_utils.radiomics.extract_patient`` (image read once, crop, PyRadiomics' own resampling of the
crop,
  diagnostics off),

compares every feature value (largest relative difference, number of bit-identical values), then times the
project path over all patients with 1 and 2 processes (``--jobs``). SimpleITK runs on one thread per process
(as in the cohort loop). Per-patient speed-ups are given in CPU seconds of the process (robust to other load
on the machine) and wall-clock seconds; the process scaling needs wall-clock time, hence an otherwise idle
machine. Patients come from the synthetic cohort generator (512 x 512, 5 mm slices, tumours 20-100 mm) or from
``--cohort cohort.csv``. Not a test::

    python benchmarks/radiomics.py --patients 4 --settings params/radiomics_default.yaml
    python benchmarks/radiomics.py --cohort /path/to/cohort.csv --patients 8 --jobs 1 2
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
# this file is named radiomics.py: put the project, not this folder, first on the path so that `radiomics` is
# PyRadiomics
sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402

from hcc_utils import radiomics  # noqa: E402
from hcc_utils.cohort import load_manifest  # noqa: E402
from hcc_utils.synth import truth  # noqa: E402
from hcc_utils.synth.params import SyntheticCohort  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]


def _cohort(args) -> pd.DataFrame:
    if args.cohort:
        manifest = Path(args.cohort)
    else:
        from hcc_utils import synth

        out = Path(tempfile.mkdtemp(prefix="radiomics_bench_"))
        n = max(8, args.patients, args.scaling_patients or 0)  # the generator's minimum is 8
        print(f"generating {n} synthetic patients in {out} ...", flush=True)
        cfg = SyntheticCohort(n=n, seed=args.seed, image_size=args.image_size)
        manifest = synth.generate_cohort(cfg, out, n_jobs=2, progress=False)
    table = load_manifest(manifest)
    if truth.ground_truth_file(manifest).is_file():  # synthetic cohorts: the tumour diameter, for the table
        diameter = ["lesion_diameter_mm"]
        diameters = truth.read_ground_truth(manifest, columns=diameter)[[truth.PATIENT_ID, *diameter]]
        table = table.merge(diameters, on="patient_id", how="left")
    return table.head(max(args.patients, args.scaling_patients or 0))


def _masks(row) -> dict[str, str]:
    masks = {"reader1": row["mask"]}
    if isinstance(row.get("mask_reader2"), str):
        masks["reader2"] = row["mask_reader2"]
    return masks


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    now = _clock()
    return now[0] - start[0], now[1] - start[1]


def _plain(row, extractor, diagnostics: bool | None) -> tuple[tuple[float, float], dict]:
    start = _clock()
    values = {reader: radiomics.extract_reference(row["image"], mask, extractor, diagnostics=diagnostics)
              for reader, mask in _masks(row).items()}
    return _since(start), values


def _project(row, extractor) -> tuple[tuple[float, float], dict]:
    start = _clock()
    out = radiomics.extract_patient(row["image"], _masks(row), extractor, row["patient_id"])
    elapsed = _since(start)
    errors = {r: o["error"] for r, o in out.items() if o["error"]}
    if errors:
        raise RuntimeError(f"patient {row['patient_id']}: {errors}")
    return elapsed, {r: o["features"] for r, o in out.items()}


def _compare(reference: dict, values: dict) -> tuple[float, int, int]:
    worst, identical, total = 0.0, 0, 0
    for reader, ref in reference.items():
        got = values[reader]
        if set(ref) != set(got):
            raise RuntimeError(f"{reader}: different feature names: {sorted(set(ref) ^ set(got))[:5]}")
        a = np.array([ref[k] for k in ref])
        b = np.array([got[k] for k in ref])
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        rel = np.where(same, 0.0, np.abs(a - b) / np.maximum(np.abs(a), 1e-300))
        worst = max(worst, float(np.nanmax(rel)))
        identical += int(same.sum())
        total += len(a)
    return worst, identical, total


def _warm_worker() -> int:
    import hcc_utils.radiomics  # noqa: F401  (the imports a worker needs before its first patient)

    return os.getpid()


def _scaling(cohort: pd.DataFrame, extractor, jobs: list[int]) -> pd.DataFrame:
    """Wall-clock seconds for all patients per process count, after the worker processes have started."""
    cohort = cohort.iloc[radiomics.largest_first(cohort["mask"].tolist())]  # as extract_cohort schedules
    rows = []
    for n_jobs in jobs:
        Parallel(n_jobs=n_jobs)(delayed(_warm_worker)() for _ in range(n_jobs))  # loky reuses these workers
        start = time.perf_counter()
        Parallel(n_jobs=n_jobs)(delayed(radiomics.extract_patient)(row["image"], _masks(row), extractor,
                                                                   row["patient_id"], True)
                                for row in cohort.to_dict("records"))
        rows.append({"processes": n_jobs, "seconds": time.perf_counter() - start})
    table = pd.DataFrame(rows)
    table["speed-up"] = table["seconds"].iloc[0] / table["seconds"]
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=str(PROJECT / "params" / "radiomics_default.yaml"))
    parser.add_argument("--cohort", help="a cohort.csv (default: generate synthetic patients)")
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--diagnostics", action="store_true", help="also time the plain call, diagnostics on")
    parser.add_argument("--jobs", type=int, nargs="*", default=[1, 2], help="process counts to compare")
    parser.add_argument("--scaling-patients", type=int,
                        help="patients for the process scaling (default: --patients); with few patients one "
                             "large tumour bounds the speed-up")
    args = parser.parse_args(argv)

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    extractor = radiomics.load_extractor(args.settings)
    everyone = _cohort(args)
    cohort = everyone.head(args.patients)
    print(f"settings {Path(args.settings).name}; {len(cohort)} patients; "
          f"PyRadiomics {radiomics.pyradiomics_version}", flush=True)
    first = cohort.iloc[0]
    radiomics.extract_patient(first["image"], {"reader1": first["mask"]}, extractor)  # warm-up (imports)

    rows = []
    for row in cohort.to_dict("records"):
        (plain_s, plain_cpu), plain = _plain(row, copy.deepcopy(extractor), None)
        (project_s, project_cpu), project = _project(row, extractor)
        worst, identical, total = _compare(plain, project)
        entry = {"patient": row["patient_id"], "diameter_mm": row.get("lesion_diameter_mm", np.nan),
                 "readers": len(project), "features": total // len(project), "plain_s": plain_s,
                 "project_s": project_s, "plain_cpu": plain_cpu, "project_cpu": project_cpu,
                 "speed-up_cpu": plain_cpu / project_cpu, "identical": f"{identical}/{total}",
                 "max_rel_diff": worst}
        if args.diagnostics:
            (_, entry["plain_diag_cpu"]), _ = _plain(row, copy.deepcopy(extractor), True)
            entry["speed-up_diag_cpu"] = entry["plain_diag_cpu"] / project_cpu
        rows.append(entry)
        print(f"  {row['patient_id']}: {plain_cpu:.2f} s -> {project_cpu:.2f} s CPU", flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format="%.3g"))
    total = table.sum(numeric_only=True)
    plain, project = total["plain_cpu"] / len(table), total["project_cpu"] / len(table)
    wall = total["plain_s"] / total["project_s"]
    print(f"\nper patient ({table['readers'].iloc[0]} readers), CPU seconds: plain {plain:.2f}, project "
          f"{project:.2f}, speed-up {plain / project:.1f}x (wall: {wall:.1f}x); largest relative difference "
          f"{table['max_rel_diff'].max():.1e}")
    if args.diagnostics:
        print(f"with PyRadiomics' default diagnostics on: speed-up "
              f"{total['plain_diag_cpu'] / total['project_cpu']:.1f}x (CPU)")
    if len(args.jobs) > 1:
        scaled = everyone.head(args.scaling_patients or args.patients)
        print(f"\nproject path over {len(scaled)} patients, by number of processes (wall-clock):")
        print(_scaling(scaled, extractor, args.jobs).to_string(index=False, float_format="%.2f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
