"""The whole smoke book, end to end: every notebook executes and the report renders with its tables and figures."""

import json
from pathlib import Path

import pytest

from hcc_utils.runner import NOTEBOOKS, run_book

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("book") / "smoke"
    return run_book(ROOT / "params" / "smoke.yaml", out=out, echo=print, cell_timeout=600)


@pytest.mark.book
def test_every_notebook_ran(smoke_run):
    status = json.loads((smoke_run.run_dir / "status.json").read_text())
    assert [name for name, _ in NOTEBOOKS] == smoke_run.executed
    assert all(status[name]["state"] == "done" for name, _ in NOTEBOOKS)


@pytest.mark.book
def test_report_renders_chapters_with_figures(smoke_run):
    html = smoke_run.html_index
    assert html is not None and html.is_file()
    pages = {name: (html.parent / "notebooks" / f"{name}.html") for name, _ in NOTEBOOKS}
    for name, page in pages.items():
        assert page.is_file(), f"chapter {name} missing from the report"
        text = page.read_text()
        assert "<img" in text, f"chapter {name} shows no figure"
        assert "Traceback" not in text, f"chapter {name} shows a traceback"
    assert "<table" in pages["01_preprocessing"].read_text()


@pytest.mark.book
def test_outputs_in_the_run_folder(smoke_run):
    run = smoke_run.run_dir
    assert (run / "tables" / "cohort_split.csv").is_file()
    assert (run / "figures" / "tumour_gallery.png").is_file()
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["cohort_manifest"]["sha256"] and prov["ended"]
