"""Command line: ``python -m hcc_utils {run, check, predict, export, synth, crop, dicom2nifti}``.

Each command imports only what it needs, so ``crop`` and ``dicom2nifti`` start fast (no torch). Bad input to any
command (an option out of range, a missing or invalid file, an output that exists or cannot be written) ends in
``error: ...`` line(s) on stderr and exit code 2, never a traceback: :func:`main` catches it in one place
(``BAD_INPUT``), so a new command gets this by raising one of those exceptions. No output is overwritten unless
``--force`` is given, and then only the files the command writes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

BAD_INPUT = ("pydantic:ValidationError", "hcc_utils.config:ParamsError", "hcc_utils.inputs_check:PatientInputError",
             "hcc_utils.cohort:CohortError", "hcc_utils.manifest_check:CohortError", "hcc_utils.runner:RunError",
             "hcc_utils.synth.truth:GroundTruthError", "hcc_utils.bundle:BundleError", "hcc_utils.compute:ComputeError",
             "hcc_utils.predict:PredictError", "hcc_utils.export:ExportError",
             "hcc_utils.browser:BrowserUnavailable")
"""The exceptions (``module:class``) that mean bad input rather than a bug, besides ``UsageError`` and ``OSError``.
Looked up only among the modules already imported: an exception of a module never loaded cannot have been raised."""

_BOUND_WORDS = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}


class UsageError(ValueError):
    """A command-line argument that cannot be used; each line names the option, the value and what to do."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hcc_utils", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    force = "overwrite the files this command writes (other files in the folder are left alone)"

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

    predict = sub.add_parser("predict", help="score new patients with a run's model bundle (runs/NAME/model/): "
                             "each model's probability of ER and class at its cut-off")
    predict.add_argument("--model", required=True, type=Path, help="a run folder whose notebook 05 finished (or "
                         "its model/ folder)")
    predict.add_argument("--manifest", type=Path, help="CSV of new patients: patient_id, image, mask (relative to "
                         "the CSV) and any clinical columns; no outcome needed")
    predict.add_argument("--image", type=Path, help="one patient's CT, instead of --manifest (with --mask)")
    predict.add_argument("--mask", type=Path, help="that patient's tumour mask")
    predict.add_argument("--clinical", nargs="+", default=[], metavar="NAME=VALUE",
                         help="that patient's clinical values, e.g. age=61 afp=420 gender=M")
    predict.add_argument("--patient-id", default="patient", help="that patient's id in the output")
    predict.add_argument("--out", required=True, type=Path, help="output folder, empty or new (predictions.csv, "
                         "and <patient>/report.html per scored patient)")
    predict.add_argument("--no-report", action="store_true", help="write predictions.csv only, no per-patient "
                         "one-page HTML summaries")
    predict.add_argument("--force", action="store_true", help=f"write into a folder that is not empty: {force}")
    predict.add_argument("--dask", metavar="ADDRESS", help="score the patients on a running dask.distributed "
                         "scheduler, e.g. tcp://host:8786 (its workers must see the files under the same paths)")

    export = sub.add_parser("export", help="a run's rendered report as one PDF and a zip of the HTML site for "
                            "any static host (needs Chromium)")
    export.add_argument("--run", required=True, type=Path, help="a run folder whose book was rendered, e.g. "
                        "runs/default")
    export.add_argument("--out", type=Path, help="output folder, empty or new (default: RUN/export, or "
                        "RUN/export-2, ... when it exists)")

    synth = sub.add_parser("synth", help="generate a synthetic HCC cohort (NIfTI volumes, masks, cohort.csv)")
    synth.add_argument("--n", type=int, default=191, help="patients (default 191, the paper's cohort size)")
    synth.add_argument("--seed", type=int, default=2025)
    synth.add_argument("--out", type=Path, required=True, help="output folder, empty or new")
    synth.add_argument("--image-size", type=int, default=None, help="in-plane matrix (default 512)")
    synth.add_argument("--force", action="store_true", help=f"write into a folder that is not empty: {force}")

    crop = sub.add_parser("crop", help="one patient's 2.5D stack: 11 PNG slices and a JSON of indices and crop")
    crop.add_argument("--image", required=True, type=Path, help="CT volume (NIfTI/NRRD/MHA or DICOM folder)")
    crop.add_argument("--mask", required=True, type=Path, help="tumour mask")
    crop.add_argument("--out", required=True, type=Path, help="output folder, empty or new")
    crop.add_argument("--params", type=Path, default=None, help="parameter file (default: built-in defaults)")
    crop.add_argument("--force", action="store_true", help=f"write into a folder that is not empty: {force}")

    d2n = sub.add_parser("dicom2nifti", help="convert one DICOM series folder to NIfTI without identifiers")
    d2n.add_argument("src", type=Path, help="folder with the series' DICOM files")
    d2n.add_argument("out", type=Path, help="output .nii.gz (a new file)")
    d2n.add_argument("--series", default=None, help="which series when the folder holds several: its index "
                     "(0, 1, ...) or its SeriesInstanceUID")
    d2n.add_argument("--force", action="store_true", help="overwrite OUT when it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 2 after ``error: ...`` line(s) on stderr when its input cannot be used.

    A wrong command or option (argparse's own check) exits with 2 through ``SystemExit`` after argparse's usage
    line."""
    args = _parser().parse_args(argv)
    command = {"run": _run, "check": _check, "predict": _predict, "export": _export, "synth": _synth,
               "crop": _crop, "dicom2nifti": _dicom2nifti}[args.command]
    try:
        return command(args)
    except _bad_input() as err:
        for line in error_lines(err):
            print(f"error: {line}", file=sys.stderr)
        return 2


def _bad_input() -> tuple[type[BaseException], ...]:
    """``UsageError``, ``OSError`` and the classes of ``BAD_INPUT`` whose module is loaded (evaluated only when a
    command raised, so no command pays for importing another's modules)."""
    classes = [UsageError, OSError]
    for spec in BAD_INPUT:
        module, name = spec.split(":")
        if module in sys.modules:
            classes.append(getattr(sys.modules[module], name))
    return tuple(classes)


def error_lines(err: BaseException) -> list[str]:
    """The message of a bad-input exception as lines without the ``error: `` prefix, each a single line.

    A pydantic error gives one line per invalid value (``loc value: message``); an ``OSError`` names the file
    (name only: folders may hold identifiers) and says to check the path; others are their own message with its
    whitespace collapsed.
    """
    from pydantic import ValidationError

    if isinstance(err, UsageError):
        return [" ".join(line.split()) for line in str(err).splitlines() if line.strip()]
    if isinstance(err, ValidationError):
        return [" ".join(f"{'.'.join(map(str, e['loc']))} {e.get('input')!r}: {e['msg']}".split()) if e["loc"]
                else " ".join(f"{err.title}: {e['msg']}".split()) for e in err.errors()]
    if isinstance(err, OSError) and err.filename:
        return [f"'{Path(err.filename).name}': {err.strerror or err}; check the path and its permissions"]
    return [" ".join(str(err).split())]


def validated(model, what: str, **values):
    """``model(**values)`` for options named like its fields (``image_size`` is ``--image-size``).

    Raises:
        UsageError: one line per invalid option, e.g. ``--n 3: the generator needs at least 8 and at most 100000
            (patients)``: the bounds and the meaning come from the model's field, ``what`` names who needs them.
    """
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            field = model.model_fields.get(e["loc"][0]) if e["loc"] else None
            if field is None:
                lines.append(e["msg"])
                continue
            option = f"--{str(e['loc'][0]).replace('_', '-')} {e.get('input')}"
            bounds = [f"{word} {getattr(m, key)}" for m in field.metadata for key, word in _BOUND_WORDS.items()
                      if getattr(m, key, None) is not None]
            meaning = f" ({field.description})" if field.description else ""
            if e["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and bounds:
                lines.append(f"{option}: {what} needs {' and '.join(bounds)}{meaning}")
            else:
                lines.append(f"{option}: {e['msg']}{meaning}")
        raise UsageError("\n".join(lines)) from None


def writable_folder(path: Path, force: bool) -> None:
    """Refuse an output folder that is a file, holds files already (unless ``force``) or cannot be created.

    Creates nothing: the command makes the folder when it writes its first file.

    Raises:
        UsageError: naming the folder (quoted, name only) and what to do.
    """
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"--out '{path.name}' is a file, not a folder; choose a folder")
        if not force and any(path.iterdir()):
            raise UsageError(f"--out '{path.name}' is not empty; choose another folder or add --force (which "
                             "overwrites only the files this command writes)")
    _can_create(path, "--out")


def _can_create(path: Path, option: str) -> None:
    """The nearest existing folder at or above ``path`` (a folder, or the file to be written) is one this process
    may write in; ``option`` names the argument in the message."""
    above = path if path.is_dir() else path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise UsageError(f"{option} '{path.name}': '{above.name}' above it is a file, not a folder; choose another "
                         f"{option}")
    if not os.access(above, os.W_OK | os.X_OK):
        raise UsageError(f"{option} '{path.name}': cannot write in '{above.name}' (permission denied); choose a "
                         "folder you can write to")


def _run(args: argparse.Namespace) -> int:
    from hcc_utils.runner import run_book

    result = run_book(args.params, out=args.out, resume=args.resume, build=not args.no_book)
    if result.html_index is not None:
        print(f"Report: {result.html_index}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from hcc_utils import synth
    from hcc_utils.synth.params import SyntheticCohort

    sizes = {"image_size": args.image_size} if args.image_size is not None else {}
    validated(SyntheticCohort, "the generator", n=args.n, seed=args.seed, **sizes)
    writable_folder(args.out, args.force)
    synth.main_cli(n=args.n, seed=args.seed, out=args.out, image_size=args.image_size, overwrite=args.force)
    return 0


def _check(args: argparse.Namespace) -> int:
    """``check``: 0 when the cohort can run (patients may be excluded), 1 when it cannot, 2 for bad parameters
    or a manifest that cannot be read at all (through :func:`main`)."""
    from hcc_utils.artifacts import CHECK_REPORT
    from hcc_utils.cohort import CohortError
    from hcc_utils.config import load_params
    from hcc_utils.intake import check_cohort, check_report, plan_split, preflight

    if args.out is not None and args.out.exists():
        raise UsageError(f"--out '{args.out.name}' exists and is never overwritten; choose another --out")
    params = load_params(args.params)
    problems = preflight(params)
    check = check_cohort(params)
    out = args.out or _free_name(Path(CHECK_REPORT.format(name=params.name)))
    _can_create(out, "--out")
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


def _predict(args: argparse.Namespace) -> int:
    """``predict``: 0 when every patient was scored, 1 when some were excluded (named on stdout and in the
    table), 2 for bad arguments, a changed bundle or a manifest that cannot be read (through :func:`main`)."""
    if (args.manifest is None) == (args.image is None):
        raise UsageError("give either --manifest (a CSV of patients) or --image with --mask (one patient)")
    if args.image is not None and args.mask is None:
        raise UsageError("--image needs --mask (the tumour mask of that image)")
    if args.manifest is not None and (args.mask is not None or args.clinical):
        raise UsageError("--mask and --clinical go with --image; with --manifest, put them in the CSV")
    clinical = {}
    for item in args.clinical:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"--clinical {item!r}: write NAME=VALUE, e.g. age=61 afp=420 gender=M")
        clinical[name.strip()] = value.strip()
    writable_folder(args.out, args.force)
    from hcc_utils import artifacts, threads
    from hcc_utils.bundle import load_bundle
    from hcc_utils.config_compute import ComputeConfig
    from hcc_utils.predict import one_patient_manifest, predict_patients, read_new_manifest

    compute = ComputeConfig(scheduler="dask", address=args.dask) if args.dask else ComputeConfig()
    threads.configure(compute)
    model = load_bundle(args.model)
    manifest = (read_new_manifest(args.manifest, model) if args.manifest is not None
                else one_patient_manifest(args.image, args.mask, clinical, args.patient_id))
    table = predict_patients(model, manifest.table, args.out, manifest.problems, reports=not args.no_report,
                             compute=compute)
    scored = int((table["status"] == "scored").sum())
    print(f"scored {scored} of {len(table)} patient(s) with the bundle of run '{model.index.get('run')}'; "
          f"written to {args.out / artifacts.NEW_PREDICTIONS}")
    if scored and not args.no_report:
        print(f"one-page summary of each scored patient: {args.out}/<patient>/{artifacts.NEW_PATIENT_REPORT}")
    for row in table[table["status"] != "scored"].itertuples(index=False):
        print(f"  excluded: {row.flags}")
    return 0 if scored == len(table) else 1


def _export(args: argparse.Namespace) -> int:
    """``export``: 0 after writing the PDF, the zipped site and the landing screenshot; 2 (through :func:`main`)
    for a run without a rendered book, an --out that holds files, or no Chromium."""
    from hcc_utils.export import export_report

    if not args.run.is_dir():
        raise UsageError(f"--run '{args.run.name}' is not a folder; give a run folder, e.g. runs/default")
    if args.out is not None:
        writable_folder(args.out, force=False)
    result = export_report(args.run, out=args.out)
    print(f"wrote {result.pdf} ({result.pdf_pages} PDF pages from {len(result.pages)} pages of the book)")
    print(f"wrote {result.site_zip} (the HTML site: unzip it onto any static host)")
    print(f"wrote {result.landing} (the landing page's first screen) in {result.seconds:.0f} s")
    return 0


def _free_name(path: Path) -> Path:
    """``path``, or ``stem-2.csv``, ``stem-3.csv``, ... when it exists (a report is never overwritten)."""
    candidate, k = path, 2
    while candidate.exists():
        candidate, k = path.with_name(f"{path.stem}-{k}{path.suffix}"), k + 1
    return candidate


def _crop(args: argparse.Namespace) -> int:
    """``crop``: 0, or a bad-input exception for :func:`main` (the image, the mask, the params file, --out)."""
    from hcc_utils.crop import INFO_FILE, crop_patient

    writable_folder(args.out, args.force)
    info = crop_patient(args.image, args.mask, args.out, args.params)
    print(f"wrote {len(info['offsets'])} slices and {INFO_FILE} to {args.out}: central slice "
          f"{info['central_index']} of {info['resampled_size'][2]}, crop {info['crop_box_mm']['side_mm']:g} mm")
    for warning in info["warnings"]:
        print(f"warning: {warning}")
    return 0


def _dicom2nifti(args: argparse.Namespace) -> int:
    from hcc_utils import io

    out: Path = args.out
    if out.is_dir():
        raise UsageError(f"OUT '{out.name}' is a folder; give a file name ending in .nii.gz")
    if out.exists() and not args.force:
        raise UsageError(f"OUT '{out.name}' exists; choose another name or add --force")
    _can_create(out, "OUT")
    series = int(args.series) if args.series is not None and args.series.isdigit() else args.series
    return io.main_dicom2nifti_cli(args.src, out, series=series)


if __name__ == "__main__":
    sys.exit(main())
