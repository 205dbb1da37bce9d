"""Time the 2.5D stack per patient (resample + window + crop) against a full-volume B-spline resampling.

Issue 3's target: at most 0.4 s per patient on one core and at least 20x faster than resampling the whole
volume; peak memory independent of the cohort size (patients are streamed). The stack resamples only the slab
of slices and the in-plane box it needs (``hcc_utils.stack``); this script checks that it equals the stack cut
from the fully resampled volume (prints the largest difference) and reports:

- read: reading image + mask (gzip integrity check included), per patient;
- stack: geometry check, lesion, central slice, slab resampling, window, crop, resize, per patient;
- full: ``preprocess.resample`` of the whole image (B-spline, 1 mm), per patient, and the ratio full / stack;
- peak resident memory after the first patient and after the last (streaming: they should be equal).

Everything runs on one core (SimpleITK with one thread). CPU time is printed beside wall time, since a busy
shared machine slows wall time but not CPU time::

    python benchmarks/preprocess.py              # 12 new patients like the default synthetic cohort (512^2)
    python benchmarks/preprocess.py --manifest path/to/cohort.csv --limit 50 --baseline 10
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from PIL import Image  # noqa: E402

from hcc_utils.cohort import load_manifest  # noqa: E402
from hcc_utils.config import PreprocessConfig, SlicesConfig  # noqa: E402
from hcc_utils.io import read_image  # noqa: E402
from hcc_utils.preprocess import resample, window  # noqa: E402
from hcc_utils.stack import stack_from_images  # noqa: E402
from hcc_utils.synth.params import SyntheticCohort  # noqa: E402


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _stack_from_full(full: sitk.Image, info: dict, pre: PreprocessConfig, size: int) -> np.ndarray:
    """The same stack cut from a fully resampled volume: the reference the fast path must equal."""
    values = sitk.GetArrayFromImage(full)
    box = info["crop_box_voxels"]
    side = box["side"]
    out = np.full((len(info["indices"]), side, side), pre.outside_value_hu, dtype=np.float32)
    ys, xs = slice(max(box["y0"], 0), min(box["y1"], values.shape[1])), slice(max(box["x0"], 0),
                                                                              min(box["x1"], values.shape[2]))
    out[:, ys.start - box["y0"]:ys.stop - box["y0"], xs.start - box["x0"]:xs.stop - box["x0"]] = \
        values[info["indices"], ys, xs]
    windowed = window(out, pre.window_width_hu, pre.window_level_hu)
    return np.clip(np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(s)).resize(
        (size, size), Image.Resampling.BILINEAR)) for s in windowed]), 0, 1)


def _read(row):
    return read_image(row.image, row.patient_id), read_image(row.mask, row.patient_id, "mask")


def run(manifest: Path, limit: int, baseline: int) -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    cohort = load_manifest(manifest).head(limit)
    pre, cfg = PreprocessConfig(), SlicesConfig()
    print(f"cohort {manifest} ({len(cohort)} patients), one core, load average {os.getloadavg()[0]:.1f}")
    rows, peaks = [], []
    for row in cohort.itertuples(index=False):  # the streamed fast path alone, for its memory
        (image, mask), read_wall, _ = _timed(_read, row)
        stack, wall, cpu = _timed(stack_from_images, image, mask, pre, cfg, row.patient_id)
        rows.append({"pid": row.patient_id, "read": read_wall, "stack": wall, "stack_cpu": cpu,
                     "size": "x".join(map(str, image.GetSize())),
                     "side": stack.info["crop_box_voxels"]["side"]})
        peaks.append(_peak_mb())
        del image, mask, stack
    for entry, row in zip(rows[:baseline], cohort.itertuples(index=False), strict=False):
        image, mask = _read(row)
        stack = stack_from_images(image, mask, pre, cfg, row.patient_id)
        full, full_wall, full_cpu = _timed(resample, image, pre.spacing_mm, pre.interpolator,
                                           pre.outside_value_hu)
        reference = _stack_from_full(full, stack.info, pre, cfg.size)
        entry.update(full=full_wall, full_cpu=full_cpu, diff=float(np.abs(reference - stack.images).max()),
                     uint8_diff=int((np.round(reference * 255) != np.round(stack.images * 255)).sum()))
        del image, mask, stack, full, reference
    for entry in rows:
        line = (f"  {entry['pid']} {entry['size']:>12s} crop {entry['side']:3d} mm: read "
                f"{entry['read']:.2f} s, stack {entry['stack']:.3f} s ({entry['stack_cpu']:.3f} s CPU)")
        if "full" in entry:
            line += (f", full volume {entry['full']:.1f} s (x{entry['full'] / entry['stack']:.0f}), "
                     f"max |diff| {entry['diff']:.1e} ({entry['uint8_diff']} uint8 pixels differ)")
        print(line)
    stack_wall = np.array([r["stack"] for r in rows])
    stack_cpu = np.array([r["stack_cpu"] for r in rows])
    read = np.array([r["read"] for r in rows])
    compared = [r for r in rows if "full" in r]
    print(f"\nstack (resample + window + crop): median {np.median(stack_wall):.3f} s wall, "
          f"{np.median(stack_cpu):.3f} s CPU per patient (max {stack_wall.max():.3f} s wall, "
          f"{stack_cpu.max():.3f} s CPU); target <= 0.4 s")
    print(f"read (image + mask, gzip checked): median {np.median(read):.2f} s per patient")
    if compared:
        ratio = np.array([r["full"] / r["stack"] for r in compared])
        ratio_cpu = np.array([r["full_cpu"] / r["stack_cpu"] for r in compared])
        full_median = np.median([r["full"] for r in compared])
        print(f"full-volume B-spline resampling: median {full_median:.1f} s wall; ratio full / stack: median "
              f"x{np.median(ratio):.0f} wall, x{np.median(ratio_cpu):.0f} CPU (min x{ratio.min():.0f} wall, "
              f"x{ratio_cpu.min():.0f} CPU); target >= x20")
        print(f"stack vs full-volume-then-crop: max |difference| {max(r['diff'] for r in compared):.1e} "
              f"(windowed [0, 1]), {sum(r['uint8_diff'] for r in compared)} stored uint8 pixels differ "
              f"in {len(compared)} patients x 11 x {cfg.size}^2")
    print(f"peak resident memory of the streamed stacks: {peaks[0]:.0f} MB after patient 1, "
          f"{peaks[len(peaks) // 2]:.0f} MB after patient {len(peaks) // 2 + 1}, {peaks[-1]:.0f} MB after "
          f"patient {len(peaks)}; with the full-volume baseline: {_peak_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, help="an existing cohort.csv (default: generate --n "
                        "patients of the default synthetic cohort's kind in a temporary folder)")
    parser.add_argument("--n", type=int, default=12, help="patients to generate without --manifest")
    parser.add_argument("--limit", type=int, default=10_000, help="patients to time from the manifest")
    parser.add_argument("--baseline", type=int, default=6, help="patients also timed with the full-volume "
                        "baseline (default 6; it takes seconds each)")
    args = parser.parse_args()
    if args.manifest is not None:
        run(args.manifest, args.limit, args.baseline)
        return
    from hcc_utils import synth

    folder = Path(tempfile.mkdtemp(prefix="preprocess-bench-"))
    try:
        cohort = SyntheticCohort(n=max(args.n, 8))  # the generator makes at least 8 patients
        manifest = synth.generate_cohort(cohort, folder, n_jobs=2, progress=False)
        run(manifest, min(args.limit, args.n), args.baseline)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
