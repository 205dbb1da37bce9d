"""Benchmark: the per-patient stages on a 2-worker Dask ``LocalCluster`` at growing cohort sizes (issue 18 item 5).

For each ``--sizes`` N: N synthetic patients at 128 px (``params/smoke.yaml`` with ``cohort.synthetic.n: N``,
``image_size: 128`` and ``compute: {scheduler: dask, local_cluster: {n_workers: --workers, threads_per_worker:
1}}``) go through

- ``check``: the runner's input check before chapter 01 (``runner.check_inputs``: every patient's files),
- ``01``, ``02``: chapters 01-02 (``runner.run_book(..., notebooks=<01, 02>, build=False)``: the split, the 2.5D
  stacks and the slice dataset),
- ``radiomics``: the light bank (``params/radiomics_smoke.yaml``: reader 1 of every patient, reader 2 of the ICC
  patients) by ``radiomics.extract_cohort`` in this process,

and it reports wall seconds per patient per stage (linear scaling = flat across sizes) and the peak RSS of the
driver: this process (the check, radiomics) and the notebook's kernel (chapters 01-02), sampled every 0.2 s
without their workers (flat = the driver's memory does not grow with the cohort); the workers' summed peak is
shown beside it. Generating the cohort is timed apart (``gen``; cached by ``hcc_utils``' synthetic-cohort cache,
so 0 when already there). Each size's figures are kept in ``OUT/n<N>/result.json`` and reused (``--force``
reruns); its run folder is started afresh so no per-patient cache is reused. Wall-clock figures: run it on an
otherwise idle machine. Not a test::

    python benchmarks/scale.py --sizes 200 500 2000 --workers 2 --out runs/scale
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path[0] = str(PROJECT)  # the project, not this folder (whose radiomics.py would hide PyRadiomics)
os.environ.setdefault("HCC_PROGRESS", "summary")  # one line per loop, as in the notebooks' kernels

from hcc_utils import radiomics, runner  # noqa: E402
from hcc_utils.cohort import ensure_synthetic, load_cohort  # noqa: E402
from hcc_utils.config import load_params  # noqa: E402
from hcc_utils.run_folder import RunFolder  # noqa: E402

MB = 2**20
STAGES = ("check", "01", "02", "radiomics")


class Sampler:
    """Peak RSS (MB) of this process, of the notebook kernel (alone) and of all other descendants, per phase."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s, self.phase, self.peaks = interval_s, "idle", {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(self.interval_s):
            driver, kernel, workers = me.memory_info().rss, 0, 0
            for child in me.children(recursive=True):
                try:
                    rss, line = child.memory_info().rss, " ".join(child.cmdline())
                except psutil.Error:
                    continue
                if "ipykernel" in line:
                    kernel = max(kernel, rss)
                else:
                    workers += rss
            peak = self.peaks.setdefault(self.phase, {"driver_mb": 0.0, "kernel_mb": 0.0, "workers_mb": 0.0})
            for key, value in (("driver_mb", driver), ("kernel_mb", kernel), ("workers_mb", workers)):
                peak[key] = max(peak[key], round(value / MB, 1))


def params_file(folder: Path, n: int, workers: int, image_size: int) -> Path:
    params = yaml.safe_load((PROJECT / "params" / "smoke.yaml").read_text())
    params["cohort"]["synthetic"].update(n=n, image_size=image_size)
    params["radiomics"]["settings"] = str(PROJECT / "params" / "radiomics_smoke.yaml")
    params["compute"] = {"scheduler": "dask", "local_cluster": {"n_workers": workers, "threads_per_worker": 1}}
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def one_size(n: int, args) -> dict:
    folder = args.out / f"n{n}"
    result_file = folder / "result.json"
    if result_file.is_file() and not args.force:
        return json.loads(result_file.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    path = params_file(folder, n, args.workers, args.image_size)
    params = load_params(path)
    start = time.perf_counter()
    ensure_synthetic(params.cohort.synthetic, n_jobs=args.workers)
    generation = time.perf_counter() - start
    run_dir = folder / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    seconds = {}
    with Sampler() as sampler:
        sampler.phase = "book"
        start = time.perf_counter()
        runner.run_book(path, out=run_dir, build=False, notebooks=runner.NOTEBOOKS[:2], echo=lambda *_: None)
        book = time.perf_counter() - start
        status = json.loads((run_dir / "status.json").read_text())
        seconds["01"], seconds["02"] = (status[name]["seconds"] for name, _ in runner.NOTEBOOKS[:2])
        seconds["check"] = book - seconds["01"] - seconds["02"]  # the runner's check and its other steps
        sampler.phase = "radiomics"
        run = RunFolder(run_dir)
        start = time.perf_counter()
        reader1, reader2 = radiomics.extract_cohort(load_cohort(params, run), params, run)
        seconds["radiomics"] = time.perf_counter() - start
    result = {"n": n, "workers": args.workers, "image_size": args.image_size, "generation_s": round(generation, 1),
              "seconds": {k: round(v, 1) for k, v in seconds.items()},
              "per_patient_s": {k: round(seconds[k] / n, 3) for k in STAGES},
              "radiomics_patients": [len(reader1), len(reader2)], "peaks": sampler.peaks,
              "load_average": list(psutil.getloadavg())}
    result_file.write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 2000])
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (1 thread each)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=PROJECT / "runs" / "scale")
    parser.add_argument("--force", action="store_true", help="rerun sizes that already have a result.json")
    args = parser.parse_args(argv)
    header = (f"{'N':>6} {'gen s':>7} " + " ".join(f"{s + ' s/pt':>12}" for s in STAGES)
              + f" {'driver MB':>10} {'kernel MB':>10} {'workers MB':>11} {'load':>5}")
    print(header, flush=True)
    for n in args.sizes:
        r = one_size(n, args)
        peaks = r["peaks"]
        driver = max(p["driver_mb"] for p in peaks.values())
        kernel = max(p["kernel_mb"] for p in peaks.values())
        workers = max(p["workers_mb"] for p in peaks.values())
        print(f"{n:>6} {r['generation_s']:>7.1f} " + " ".join(f"{r['per_patient_s'][s]:>12.3f}" for s in STAGES)
              + f" {driver:>10.0f} {kernel:>10.0f} {workers:>11.0f} {r['load_average'][0]:>5.1f}", flush=True)


if __name__ == "__main__":
    main()
