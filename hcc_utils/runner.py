"""The runner: papermill executes the ordered notebooks into a run folder, then jupyter-book renders them.

``NOTEBOOKS`` is the one ordered list of the book; the book's table of contents is generated from it, so the two
cannot drift (``hcc_utils.book`` writes the report around them: landing page, Methods, Provenance, TRIPOD+AI).
One Python process runs the notebooks in order, passing each the run's validated parameter file and the run folder
through its ``parameters`` cell. A run folder is never overwritten: a new run gets a new folder, and
``resume=True`` continues an existing one, skipping notebooks that already finished.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from hcc_utils import artifacts, book, threads
from hcc_utils.book import (  # noqa: F401 (the book's names, as callers knew them here)
    METHOD_FILE,
    METHODS_PAGE,
    MODEL_CARD_PAGE,
    table_of_contents,
    write_book_sources,
)
from hcc_utils.config import Params, load_params
from hcc_utils.landing import patients_line  # noqa: F401
from hcc_utils.provenance import write_provenance
from hcc_utils.resources import PeakMemory
from hcc_utils.run_folder import RunFolder

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"

INTAKE_NOTEBOOK = "01_preprocessing"
"""The chapter that decides who is usable and the split; the runner checks the cohort before it runs."""

#: The book, in run order: (notebook file stem, chapter title in the table of contents).
NOTEBOOKS: list[tuple[str, str]] = [
    ("01_preprocessing", "Cohort and preprocessing"),
    ("02_slices_2p5d", "2.5D slices"),
    ("03_cnn_training", "Slice-level CNNs"),
    ("04_mil_features", "MIL features"),
    ("05_models", "Models: DL-MIL, radiomics, clinical"),
    ("06_comparison", "Model comparison"),
    ("07_shap", "Explaining the model (SHAP)"),
    ("08_pathology", "MIL features and pathology"),
    ("09_robustness", "Robustness: repeated splits, permutations, optimism, scanners"),
    ("10_apply_model", "Applying the model to new patients"),
    ("11_comparators", "Comparators: is the paper's design the right one?"),
]


class RunError(RuntimeError):
    """A run that cannot start or continue; the message says why and what to do."""


class NotebookFailed(RunError):
    """A notebook raised; names the notebook, the failing cell and where the partly executed notebook is."""

    def __init__(self, notebook: str, cell_index: int, exec_count: int | None, source: str, error: str,
                 kept: Path, hint: str) -> None:
        self.notebook, self.cell_index, self.exec_count, self.error, self.kept = (
            notebook, cell_index, exec_count, error, kept)
        first_line = next((line for line in source.splitlines() if line.strip()), "")
        super().__init__(
            f"notebook {notebook}.ipynb failed in cell {cell_index} (In [{exec_count}]: {first_line}): {error}\n"
            f"  the partly executed notebook is kept at {kept}\n  {hint}")


@dataclass
class RunResult:
    run_dir: Path
    html_index: Path | None
    executed: list[str]
    skipped: list[str]


def _new_run_dir(base: Path) -> Path:
    """``base`` if free, else ``base-2``, ``base-3``, ... (an existing run is never reused silently)."""
    if not base.exists():
        return base
    k = 2
    while base.with_name(f"{base.name}-{k}").exists():
        k += 1
    return base.with_name(f"{base.name}-{k}")


def resolve_run_dir(params: Params, out: Path | None, resume: bool, runs_root: Path) -> Path:
    """The run folder: ``out`` when given (refused if it exists, unless resuming), else a fresh ``runs/NAME``."""
    if out is None:
        if resume:
            raise RunError("--resume needs --out: name the run folder to continue")
        return _new_run_dir(runs_root / params.name)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise RunError(f"run folder {out} already exists and is never overwritten: choose another --out, or "
                       f"add --resume to continue it (finished notebooks are skipped)")
    return out


def _status(run: RunFolder) -> dict:
    path = artifacts.STATUS.path(run)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _write_status(run: RunFolder, status: dict) -> None:
    artifacts.write_json(run, artifacts.STATUS, status)


def _with_absolute_settings(saved: dict) -> dict:
    """A run folder made before every params path resolved against its params file holds ``radiomics.settings``
    relative to the project (``params/radiomics_default.yaml``); read it as that absolute path, as it was meant."""
    settings = (saved.get("radiomics") or {}).get("settings")
    if isinstance(settings, str) and not Path(settings).is_absolute():
        saved["radiomics"]["settings"] = str(PROJECT_ROOT / settings)
    return saved


def _check_resume_params(run: RunFolder, params: Params) -> None:
    if not run.params_file.exists():
        return
    before = _with_absolute_settings(yaml.safe_load(run.params_file.read_text(encoding="utf-8")))
    now = params.model_dump(mode="json")
    if before != now:
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise RunError(f"cannot resume {run.root}: its params differ from these in {changed}; start a new run "
                       "(leave out --out) so both results are kept")


@contextmanager
def _kernel_environment(extra: dict[str, str] | None = None):
    """Kernels inherit this process's environment: the project root on PYTHONPATH, figures inline, and no
    progress bars (a batch run's notebook would keep every update; ``hcc_utils.progress`` prints one summary line
    per loop instead); and ``extra`` (``run_book``: the OpenMP wait policy and thread counts of
    ``hcc_utils.threads.kernel_environment``, which a process reads only when it starts)."""
    extra = extra or {}
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "MPLBACKEND", "HCC_PROGRESS", "TQDM_DISABLE", *extra)}
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *[p for p in paths if p != str(PROJECT_ROOT)]])
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["HCC_PROGRESS"] = "summary"
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute_notebook(name: str, run: RunFolder, notebook_dir: Path, hint: str,
                     cell_timeout: int | None = None) -> float:
    """Execute one notebook with papermill into ``run/notebooks``; returns its wall time in seconds."""
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError

    source = notebook_dir / f"{name}.ipynb"
    if not source.is_file():
        raise RunError(f"notebook {source} not found (the book's list is hcc_utils/runner.py NOTEBOOKS)")
    target = run.notebooks / f"{name}.ipynb"
    start = time.perf_counter()
    try:
        with _kernel_environment():
            pm.execute_notebook(str(source), str(target), kernel_name="python3", cwd=str(run.notebooks),
                                parameters={"params_file": str(run.params_file), "run_dir": str(run.root)},
                                progress_bar=False, log_output=False, report_mode=False,
                                execution_timeout=cell_timeout)
    except PapermillExecutionError as exc:
        raise NotebookFailed(name, exc.cell_index, exc.exec_count, exc.source, f"{exc.ename}: {exc.evalue}",
                             target, hint) from None
    except CellTimeoutError as exc:
        raise RunError(f"notebook {name}.ipynb: a cell ran longer than {cell_timeout} s ({exc}); the partly "
                       f"executed notebook is kept at {target}\n  {hint}") from None
    return time.perf_counter() - start


def run_book(params_file: Path | str, out: Path | str | None = None, resume: bool = False,
             build: bool = True, notebooks: list[tuple[str, str]] | None = None,
             notebook_dir: Path = NOTEBOOK_DIR, runs_root: Path | None = None, echo=print,
             cell_timeout: int | None = None) -> RunResult:
    """Execute the book's notebooks in order into a run folder and render the HTML report.

    Args:
        params_file: a YAML file in ``params/`` (validated before anything is written).
        out: the run folder; default ``runs/<params.name>`` or the next free ``-2``, ``-3`` name.
        resume: continue ``out``, skipping notebooks that finished (the params must be the same).
        build: render the book with jupyter-book after the notebooks ran.
        notebooks: the ordered (stem, title) list; default ``NOTEBOOKS``.
        cell_timeout: seconds one cell may run before the run fails (default: no limit).
    """
    params_file = Path(params_file)
    params = load_params(params_file)
    notebooks = notebooks if notebooks is not None else NOTEBOOKS
    run_dir = resolve_run_dir(params, Path(out) if out else None, resume,
                              runs_root or PROJECT_ROOT / "runs")
    run = RunFolder(run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    if resume:
        _check_resume_params(run, params)
    run.params_file.write_text(f"# validated copy of {params_file}\n" + params.dump_yaml(), encoding="utf-8")
    status = _status(run)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    hint = (f"fix the cause, then continue with: python -m hcc_utils run --params {params_file} "
            f"--out {run.root} --resume")
    executed, skipped = [], []
    write_provenance(run, params, params_file, started, status)
    echo(f"Run folder: {run.root}")
    if any(name == INTAKE_NOTEBOOK and status.get(name, {}).get("state") != "done" for name, _ in notebooks):
        check_inputs(params, params_file, run, echo)
    for k, (name, _title) in enumerate(notebooks, 1):
        if resume and status.get(name, {}).get("state") == "done":
            echo(f"[{k}/{len(notebooks)}] {name}: finished before, skipped")
            skipped.append(name)
            continue
        echo(f"[{k}/{len(notebooks)}] {name} ...")
        status[name] = {"state": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _write_status(run, status)
        logged = _logged_issues(run)
        memory = PeakMemory()
        try:
            with memory, _kernel_environment(threads.kernel_environment(params.compute)):
                seconds = execute_notebook(name, run, Path(notebook_dir), hint, cell_timeout)
        except NotebookFailed:
            status[name].update(state="failed", peak_mb=round(memory.peak_mb))
            _write_status(run, status)
            write_provenance(run, params, params_file, started, status)
            raise
        status[name].update(state="done", seconds=round(seconds, 1), peak_mb=round(memory.peak_mb))
        _write_status(run, status)
        executed.append(name)
        echo(f"[{k}/{len(notebooks)}] {name}: done in {seconds:.0f} s{_new_issues(run, logged)}")
    write_provenance(run, params, params_file, started, status)
    html = build_book(run, notebooks, params) if build else None
    write_provenance(run, params, params_file, started, status, ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return RunResult(run.root, html, executed, skipped)


def check_inputs(params: Params, params_file: Path, run: RunFolder, echo=print) -> None:
    """Before chapter 01: the files the params name and the whole cohort (``hcc_utils.intake``), so nothing long
    starts on a cohort that cannot finish. The per-patient checks are cached for chapter 01.

    Raises:
        RunError: a named file cannot be used, the manifest cannot be read, or too few usable patients remain.
    """
    from hcc_utils import intake
    from hcc_utils.cohort import CohortError

    advice = f"python -m hcc_utils check --params {params_file} lists every problem"
    problems = intake.preflight(params)
    if problems:
        raise RunError("the parameters name files that cannot be used:\n" + "\n".join(f"  - {p}" for p in problems))
    try:
        check = intake.check_cohort(params, run, progress=False)
        echo(f"Inputs: {check.line()}")
        intake.plan_split(check, params)
    except CohortError as exc:
        raise RunError(f"the cohort cannot run: {exc}\n  {advice}") from None


def _logged_issues(run: RunFolder) -> set[tuple]:
    return set(run.exclusions()[["patient_id", "stage", "severity"]].itertuples(index=False, name=None))


def _new_issues(run: RunFolder, before: set[tuple]) -> str:
    """``"; 2 patients excluded, 1 warned (exclusions.csv, and the chapter says why)"``, or nothing."""
    new = _logged_issues(run) - before
    excluded = {pid for pid, _, severity in new if severity == "excluded"}
    warned = {pid for pid, _, severity in new if severity == "warning"} - excluded
    if not new:
        return ""
    return (f"; {len(excluded)} patient(s) excluded, {len(warned)} warned here ({run.exclusions_file.name}; the "
            "chapter says why)")


def build_book(run: RunFolder, notebooks: list[tuple[str, str]], params: Params) -> Path:
    """Render the report (``hcc_utils.book``); returns its index.html."""
    try:
        return book.build_book(run, notebooks, params)
    except book.BookError as exc:
        raise RunError(str(exc)) from None
