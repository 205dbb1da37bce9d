"""The one smoke book of a pytest session, shared by the book's tests (test_book.py) and every test that needs a
finished run (the model bundle, predict, notebook 10's module).

``smoke_run`` (session-scoped) runs the whole smoke book once: ``runner.run_book`` over ``params/smoke.yaml`` into
a temporary folder, the report rendered. Tests that alter files of the run copy them to their own ``tmp_path``
first; the run folder itself is only read.

``HCC_SMOKE_RUN=/path/to/runs/smoke`` (for development) copies a finished smoke run instead: its big caches (the
stacks, the slice dataset, the CNN and robustness caches, the file checks) are left out, its folder is never
written, and the model bundle is written into the copy when the run predates it. The book's tests then check that
run's notebooks and report as they are.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hcc_utils import artifacts
from hcc_utils.runner import NOTEBOOKS, RunResult, run_book

ROOT = Path(__file__).resolve().parents[1]
_SKIP = shutil.ignore_patterns("stacks", "slices", "robustness", "cnn", "checks")


def _copied_run(source: Path, out: Path) -> RunResult:
    """A copy of the finished run ``source`` as ``run_book`` would have returned it (bundle written if missing)."""
    from hcc_utils.bundle import write_bundle
    from hcc_utils.config import load_params
    from hcc_utils.run_folder import RunFolder

    shutil.copytree(source, out, ignore=_SKIP)
    run = RunFolder(out)
    if not artifacts.BUNDLE_INDEX.path(run).is_file():
        write_bundle(load_params(out / artifacts.PARAMS.pattern), run)
    status = json.loads(artifacts.STATUS.path(run).read_text())
    executed = [name for name, _ in NOTEBOOKS if status.get(name, {}).get("state") == "done"]
    html = out / "book" / "_build" / "html" / "index.html"
    return RunResult(out, html if html.is_file() else None, executed, [])


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> RunResult:
    """The session's finished smoke book (module docstring): ``run_dir``, ``html_index``, ``executed``."""
    out = tmp_path_factory.mktemp("book") / "smoke"
    source = os.environ.get("HCC_SMOKE_RUN")
    if source:
        return _copied_run(Path(source), out)
    return run_book(ROOT / "params" / "smoke.yaml", out=out, echo=print, cell_timeout=600)
