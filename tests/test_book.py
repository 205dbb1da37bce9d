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


@pytest.mark.book
def test_bad_patients_are_excluded_and_shown_not_fatal(tmp_path):
    """A user's cohort with a truncated image and a missing mask: chapters 01-02 finish and name both."""
    import shutil

    import nbformat
    import pandas as pd
    import yaml

    from hcc_utils.cohort import ensure_synthetic
    from hcc_utils.config import load_params

    source = ensure_synthetic(load_params(ROOT / "params" / "smoke.yaml").cohort.synthetic).parent
    cohort = tmp_path / "cohort"
    shutil.copytree(source, cohort)
    manifest = pd.read_csv(cohort / "cohort.csv", dtype={"patient_id": str}).head(12)
    manifest.to_csv(cohort / "cohort.csv", index=False)
    broken, missing = manifest.loc[0], manifest.loc[1]
    image = cohort / broken["image"]
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    (cohort / missing["mask"]).unlink()
    params = tmp_path / "mine.yaml"
    params.write_text(yaml.safe_dump({"name": "mine", "cohort": {"manifest": str(cohort / "cohort.csv")},
                                      "slices": {"size": 32}}))
    result = run_book(params, out=tmp_path / "run", build=False, notebooks=NOTEBOOKS[:2], echo=print,
                      cell_timeout=300)
    excluded = pd.read_csv(result.run_dir / "exclusions.csv", dtype=str)
    assert set(excluded.loc[excluded["severity"] == "excluded", "patient_id"]) == {broken["patient_id"],
                                                                                   missing["patient_id"]}
    shown = nbformat.read(result.run_dir / "notebooks" / "02_slices_2p5d.ipynb", as_version=4)
    text = json.dumps([c.get("outputs", []) for c in shown.cells])
    assert broken["patient_id"] in text and missing["patient_id"] in text and "10 of 12 patients" in text
