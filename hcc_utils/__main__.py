"""Command line: ``python -m hcc_utils {run, check, synth, crop, dicom2nifti}``.

Each command imports only what it needs, so ``crop`` and ``dicom2nifti`` start fast (no torch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hcc_utils", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the book's notebooks into a run folder and render the report")
    run.add_argument("--params", required=True, type=Path, help="parameter file, e.g. params/default.yaml")
    run.add_argument("--out", type=Path, help="run folder (default: runs/<params name>, never overwritten)")
    run.add_argument("--resume", action="store_true", help="continue --out, skipping finished notebooks")
    run.add_argument("--no-book", action="store_true", help="execute the notebooks but do not render HTML")

    check = sub.add_parser("check", help="check a cohort before a run: the params, the manifest, every patient's "
                           "files; nothing is trained")
    check.add_argument("--params", required=True, type=Path, help="parameter file, e.g. params/default.yaml")
    check.add_argument("--out", type=Path, help="CSV of the findings (default: check-<params name>.csv here, "
                       "never overwritten)")

    synth = sub.add_parser("synth", help="generate a synthetic HCC cohort (NIfTI volumes, masks, cohort.csv)")
    synth.add_argument("--n", type=int, default=191, help="patients (default 191, the paper's cohort size)")
    synth.add_argument("--seed", type=int, default=2025)
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--image-size", type=int, default=None, help="in-plane matrix (default 512)")

    crop = sub.add_parser("crop", help="one patient's 2.5D stack: 11 PNG slices and a JSON of indices and crop")
    crop.add_argument("--image", required=True, type=Path, help="CT volume (NIfTI/NRRD/MHA or DICOM folder)")
    crop.add_argument("--mask", required=True, type=Path, help="tumour mask")
    crop.add_argument("--out", required=True, type=Path, help="output folder")
    crop.add_argument("--params", type=Path, default=None, help="parameter file (default: built-in defaults)")

    d2n = sub.add_parser("dicom2nifti", help="convert one DICOM series folder to NIfTI without identifiers")
    d2n.add_argument("src", type=Path, help="folder with the series' DICOM files")
    d2n.add_argument("out", type=Path, help="output .nii.gz")
    d2n.add_argument("--series", default=None, help="which series when the folder holds several: its index "
                     "(0, 1, ...) or its SeriesInstanceUID")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from hcc_utils.config import ParamsError
        from hcc_utils.runner import RunError, run_book

        try:
            result = run_book(args.params, out=args.out, resume=args.resume, build=not args.no_book)
        except (ParamsError, RunError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if result.html_index is not None:
            print(f"Report: {result.html_index}")
        return 0
    if args.command == "check":
        return _check(args)
    if args.command == "synth":
        from hcc_utils import synth

        return synth.main_cli(n=args.n, seed=args.seed, out=args.out, image_size=args.image_size) or 0
    if args.command == "crop":
        return _crop(args)
    if args.command == "dicom2nifti":
        from hcc_utils import io

        series = int(args.series) if args.series is not None and args.series.isdigit() else args.series
        return io.main_dicom2nifti_cli(args.src, args.out, series=series)
    return 2


def _check(args: argparse.Namespace) -> int:
    """``check``: 0 when the cohort can run (patients may be excluded), 1 when it cannot, 2 for bad parameters."""
    from hcc_utils.cohort import CohortError
    from hcc_utils.config import ParamsError, load_params
    from hcc_utils.intake import check_cohort, check_report, plan_split, preflight

    if args.out is not None and args.out.exists():
        print(f"error: '{args.out}' exists and is never overwritten; choose another --out")
        return 2
    try:
        params = load_params(args.params)
        problems = preflight(params)
        check = check_cohort(params)
    except (ParamsError, CohortError) as err:
        print(f"error: {err}")
        return 2
    out = args.out or _free_name(Path(f"check-{params.name}.csv"))
    check_report(check).to_csv(out, index=False)
    print(check.line())
    for row in check.findings.itertuples(index=False):
        print(f"  {row.severity}: {row.message}")
    for problem in problems:
        print(f"  params: {problem}")
    try:
        plan_split(check, params)
    except CohortError as err:
        problems.append(str(err))
        print(f"cannot run: {err}")
    print(f"findings written to {out}")
    return 1 if problems else 0


def _free_name(path: Path) -> Path:
    """``path``, or ``stem-2.csv``, ``stem-3.csv``, ... when it exists (a report is never overwritten)."""
    candidate, k = path, 2
    while candidate.exists():
        candidate, k = path.with_name(f"{path.stem}-{k}{path.suffix}"), k + 1
    return candidate


def _crop(args: argparse.Namespace) -> int:
    """``crop``: 0, or 2 after a one-line error naming the file and what to do."""
    from hcc_utils.config import ParamsError
    from hcc_utils.crop import INFO_FILE, crop_patient
    from hcc_utils.inputs_check import PatientInputError

    try:
        info = crop_patient(args.image, args.mask, args.out, args.params)
    except (PatientInputError, ParamsError) as err:
        print(f"error: {' '.join(str(err).split())}")
        return 2
    print(f"wrote {len(info['offsets'])} slices and {INFO_FILE} to {args.out}: central slice "
          f"{info['central_index']} of {info['resampled_size'][2]}, crop {info['crop_box_mm']['side_mm']:g} mm")
    for warning in info["warnings"]:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
