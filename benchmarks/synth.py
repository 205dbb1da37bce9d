"""Time the generation of the embedded synthetic cohort (hcc_utils.synth).

Target (issue 2): the default cohort (n=191, 512x512) in under 3 minutes with 2 processes on 2 cores; the smoke
cohort (params/smoke.yaml: n=48, 128x128) in seconds. Prints wall time, wall time per patient, CPU time per
patient (all processes; what an idle machine would need) and the load average, since a busy machine slows wall
time but not CPU time.

    python benchmarks/synth.py                 # both sizes
    python benchmarks/synth.py --only smoke    # the smoke size only
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from hcc_utils import synth

SIZES = {
    "default": {"n": 191, "image_size": 512},
    "smoke": {"n": 48, "image_size": 128, "seed": 7, "image_signal": 2.0},
}


def _cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def time_generation(name: str, overrides: dict, n_jobs: int, keep: Path | None) -> None:
    cfg = synth.SyntheticCohort(**overrides)
    out = Path(tempfile.mkdtemp(prefix=f"synth-bench-{name}-")) if keep is None else keep / name
    load_before = os.getloadavg()[0]
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    manifest = synth.generate_cohort(cfg, out, n_jobs=n_jobs, progress=False)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    print(f"{name:8s} n={cfg.n:4d} {cfg.image_size}x{cfg.image_size}  jobs={n_jobs}  "
          f"total {wall:7.1f} s  per patient {wall / cfg.n:5.2f} s wall, {cpu / cfg.n:5.2f} s CPU  "
          f"({size_mb:,.0f} MB; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f})")
    if keep is None:
        shutil.rmtree(out, ignore_errors=True)
    else:
        print(f"         kept: {manifest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SIZES), help="time one size only")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--n", type=int, help="override the number of patients")
    parser.add_argument("--keep", type=Path, help="keep the cohorts in this folder instead of deleting them")
    args = parser.parse_args()
    for name, overrides in SIZES.items():
        if args.only in (None, name):
            time_generation(name, overrides | ({"n": args.n} if args.n else {}), args.jobs, args.keep)


if __name__ == "__main__":
    main()
