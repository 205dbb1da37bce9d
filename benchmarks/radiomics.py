"""Benchmark: the project's PyRadiomics path against a plain PyRadiomics call on the same files (issue 18).

For each bank (``full``: params/radiomics_default.yaml, Original + LoG 1-5 mm + Wavelet, 1,302 features;
``light``: params/radiomics_smoke.yaml, Original + LoG 3 mm, 198 features) and each patient (both readers'
masks) it times

- plain: ``RadiomicsFeatureExtractor(settings).execute(image_file, mask_file)`` once per reader, as a user runs
  it: PyRadiomics resamples the whole file, BLAS on its default threads (``--plain-threads 1``: one), diagnostics
  as the settings file says (off in the project's files; ``--diagnostics``: also timed with them on);
- project: ``hcc_utils.radiomics.extract_patient`` as a worker runs it (image read once, crop, PyRadiomics' own
  resampling of the crop, the exact overrides of ``hcc_utils.radiomics_fast``, diagnostics off, one BLAS
  thread),

compares every feature value (largest relative difference; values within 1e-9 relative or 1e-12 absolute;
bit-identical ones), then times the project path (full bank) over all patients with 1 and 2 worker processes
(``--jobs``; wall-clock). SimpleITK runs on one thread per process, as in the cohort loop. Per-case speed-ups are
in CPU seconds of the process (all its threads; robust to other load on the machine), the process scaling needs
wall-clock time, hence an otherwise idle machine. Targets (issue 18): full bank >= 3x a plain call per case, >= 1.8x
on 2 workers. Patients come from the synthetic cohort generator (512 x 512, 5 mm slices, tumours 20-100 mm) or
from ``--cohort cohort.csv``. Not a test::

    python benchmarks/radiomics.py --patients 24 --jobs 1 2        # the issue's figures (about 15 minutes)
    python benchmarks/radiomics.py --patients 4 --jobs              # per-case speed-ups only
    python benchmarks/radiomics.py --cohort /path/to/cohort.csv --patients 8 --banks full
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

# this file is named radiomics.py: put the project, not this folder, first on the path so that `radiomics` is
# PyRadiomics
sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from hcc_utils import radiomics  # noqa: E402
from hcc_utils.cohort import load_manifest  # noqa: E402
from hcc_utils.synth import truth  # noqa: E402
from hcc_utils.synth.params import SyntheticCohort  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
BANKS = {"full": PROJECT / "params" / "radiomics_default.yaml", "light": PROJECT / "params" / "radiomics_smoke.yaml"}
FULL_BANK_TARGET, SCALING_TARGET = 3.0, 1.8


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


def _plain(row, extractor, diagnostics: bool | None, threads: int | None) -> tuple[tuple[float, float], dict]:
    with threadpool_limits(limits=threads) if threads else contextlib.nullcontext():
        start = _clock()
        values = {reader: radiomics.extract_reference(row["image"], mask, extractor, diagnostics=diagnostics)
                  for reader, mask in _masks(row).items()}
        return _since(start), values


def _project(row, extractor) -> tuple[tuple[float, float], dict]:
    start = _clock()
    out = radiomics.extract_patient(row["image"], _masks(row), extractor, row["patient_id"], threads=1)
    elapsed = _since(start)
    errors = {r: o["error"] for r, o in out.items() if o["error"]}
    if errors:
        raise RuntimeError(f"patient {row['patient_id']}: {errors}")
    return elapsed, {r: o["features"] for r, o in out.items()}


def _compare(reference: dict, values: dict) -> tuple[float, int, int, int]:
    """Largest relative difference, values within 1e-9 relative (or 1e-12 absolute), bit-identical values and
    all values."""
    worst, close, identical, total = 0.0, 0, 0, 0
    for reader, ref in reference.items():
        got = values[reader]
        if set(ref) != set(got):
            raise RuntimeError(f"{reader}: different feature names: {sorted(set(ref) ^ set(got))[:5]}")
        a = np.array([ref[k] for k in ref])
        b = np.array([got[k] for k in ref])
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        difference = np.where(same, 0.0, np.abs(a - b))
        rel = difference / np.maximum(np.abs(a), 1e-300)
        worst = max(worst, float(np.nanmax(rel)))
        close += int(((difference <= 1e-9 * np.abs(a)) | (difference <= 1e-12)).sum())
        identical += int(same.sum())
        total += len(a)
    return worst, close, identical, total


def _warm_worker() -> int:
    import hcc_utils.radiomics  # noqa: F401  (the imports a worker needs before its first patient)

    return os.getpid()


def _makespan(seconds: list[float], workers: int) -> float:
    """Finishing time of ``seconds`` (in this order, each to the first free worker), as joblib hands them out."""
    free = [0.0] * workers
    for t in seconds:
        free[free.index(min(free))] += t
    return max(free)


def _worker_patient(row: dict, extractor) -> tuple[dict, float]:
    """One patient as a worker extracts it (one thread), with the worker's CPU seconds for it."""
    start = time.process_time()
    out = radiomics.extract_patient(row["image"], _masks(row), extractor, row["patient_id"], threads=1)
    return out, time.process_time() - start


def _scaling(cohort: pd.DataFrame, extractor, jobs: list[int]) -> pd.DataFrame:
    """Wall-clock seconds for all patients per process count, after the worker processes have started; the
    workers' CPU seconds per patient (equal across process counts when the workers do not oversubscribe the
    cores); and the speed-up the schedule allows (the patients' own seconds of the first run, largest tumours
    first, on N perfectly parallel workers): what an idle machine should approach."""
    cohort = cohort.iloc[radiomics.largest_first(cohort["mask"].tolist())]  # as extract_cohort schedules
    rows, per_patient = [], None
    for n_jobs in jobs:
        Parallel(n_jobs=n_jobs)(delayed(_warm_worker)() for _ in range(n_jobs))  # loky reuses these workers
        start = time.perf_counter()
        outputs = Parallel(n_jobs=n_jobs)(delayed(_worker_patient)(row, extractor)
                                          for row in cohort.to_dict("records"))
        rows.append({"processes": n_jobs, "seconds": time.perf_counter() - start,
                     "worker_cpu_s/patient": sum(cpu for _, cpu in outputs) / len(cohort)})
        per_patient = per_patient or [sum(r["seconds"] for r in out.values()) for out, _ in outputs]
    table = pd.DataFrame(rows)
    table.insert(2, "seconds/patient", table["seconds"] / len(cohort))
    table["speed-up"] = table["seconds"].iloc[0] / table["seconds"]
    table["schedule_allows"] = [_makespan(per_patient, jobs[0]) / _makespan(per_patient, n) for n in jobs]
    return table


def _per_case(cohort: pd.DataFrame, name: str, settings: Path, args) -> pd.DataFrame:
    """Plain call against the project path, patient by patient, for one bank."""
    extractor = radiomics.load_extractor(settings)
    first = cohort.iloc[0]
    radiomics.extract_patient(first["image"], {"reader1": first["mask"]}, extractor)  # warm-up (imports)
    rows = []
    for row in cohort.to_dict("records"):
        (plain_s, plain_cpu), plain = _plain(row, copy.deepcopy(extractor), None, args.plain_threads)
        (project_s, project_cpu), project = _project(row, extractor)
        worst, close, identical, total = _compare(plain, project)
        entry = {"bank": name, "patient": row["patient_id"], "diameter_mm": row.get("lesion_diameter_mm", np.nan),
                 "readers": len(project), "features": total // len(project), "plain_s": plain_s,
                 "project_s": project_s, "plain_cpu": plain_cpu, "project_cpu": project_cpu,
                 "speed-up_cpu": plain_cpu / project_cpu, "within_1e-9": f"{close}/{total}",
                 "identical": f"{identical}/{total}", "max_rel_diff": worst}
        if args.diagnostics:
            (_, entry["plain_diag_cpu"]), _ = _plain(row, copy.deepcopy(extractor), True, args.plain_threads)
            entry["speed-up_diag_cpu"] = entry["plain_diag_cpu"] / project_cpu
        rows.append(entry)
        print(f"  {name} {row['patient_id']}: {plain_cpu:.2f} s -> {project_cpu:.2f} s CPU", flush=True)
    return pd.DataFrame(rows)


def _summary(table: pd.DataFrame) -> str:
    total = table.sum(numeric_only=True)
    plain, project = total["plain_cpu"] / len(table), total["project_cpu"] / len(table)
    ratios = table["speed-up_cpu"]
    line = (f"{table['bank'].iloc[0]} bank ({table['features'].iloc[0]} features), per patient "
            f"({table['readers'].iloc[0]} readers), CPU seconds: plain {plain:.2f}, project {project:.2f}, "
            f"speed-up {plain / project:.2f}x (per case {ratios.min():.2f}-{ratios.max():.2f}x; wall "
            f"{total['plain_s'] / total['project_s']:.2f}x); largest relative difference "
            f"{table['max_rel_diff'].max():.1e}")
    if "plain_diag_cpu" in table:
        line += f"; against a plain call with diagnostics on {total['plain_diag_cpu'] / total['project_cpu']:.2f}x"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--banks", nargs="+", default=list(BANKS), choices=list(BANKS),
                        help="settings to compare (full: radiomics_default.yaml, light: radiomics_smoke.yaml)")
    parser.add_argument("--settings", help="another PyRadiomics settings file instead of --banks")
    parser.add_argument("--cohort", help="a cohort.csv (default: generate synthetic patients)")
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--diagnostics", action="store_true", help="also time the plain call, diagnostics on")
    parser.add_argument("--plain-threads", type=int, help="BLAS threads of the plain call (default: BLAS's own)")
    parser.add_argument("--jobs", type=int, nargs="*", default=[1, 2], help="process counts to compare")
    parser.add_argument("--scaling-patients", type=int,
                        help="patients for the process scaling (default: --patients); with few patients one "
                             "large tumour bounds the speed-up")
    args = parser.parse_args(argv)

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    banks = {Path(args.settings).stem: Path(args.settings)} if args.settings else {b: BANKS[b] for b in args.banks}
    everyone = _cohort(args)
    cohort = everyone.head(args.patients)
    print(f"banks {', '.join(banks)}; {len(cohort)} patients; PyRadiomics {radiomics.pyradiomics_version}; "
          f"{os.cpu_count()} CPUs; plain call BLAS threads: {args.plain_threads or 'default'}", flush=True)
    tables = [_per_case(cohort, name, settings, args) for name, settings in banks.items()]
    print(pd.concat(tables).to_string(index=False, float_format="%.3g"))
    print()
    for table in tables:
        print(_summary(table))
    if "full" in banks:
        full = tables[list(banks).index("full")]
        ratio = full["plain_cpu"].sum() / full["project_cpu"].sum()
        print(f"target: full bank >= {FULL_BANK_TARGET:.0f}x a plain call per case: "
              f"{'met' if ratio >= FULL_BANK_TARGET else 'NOT met'} ({ratio:.2f}x)")
    if len(args.jobs) > 1:
        scaled = everyone.head(args.scaling_patients or args.patients)
        name, settings = next(iter(banks.items()))
        print(f"\nproject path ({name} bank) over {len(scaled)} patients, by number of processes (wall-clock):")
        scaling = _scaling(scaled, radiomics.load_extractor(settings), args.jobs)
        print(scaling.to_string(index=False, float_format="%.2f"))
        if 2 in args.jobs and 1 in args.jobs:
            ratio = float(scaling.set_index("processes").at[2, "speed-up"])
            print(f"target: >= {SCALING_TARGET}x on 2 workers: {'met' if ratio >= SCALING_TARGET else 'NOT met'} "
                  f"({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
