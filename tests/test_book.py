"""The whole smoke book, end to end: every notebook executes and the report renders with its tables and figures.

``smoke_run`` is the session's one smoke book (tests/conftest.py), shared with the bundle and predict tests."""

import json
import re
from pathlib import Path

import pytest

from hcc_utils.run_folder import RunFolder
from hcc_utils.runner import NOTEBOOKS, run_book

ROOT = Path(__file__).resolve().parents[1]


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
def test_a_cohort_with_bad_patients_runs_the_whole_book_without_them(tmp_path):
    """A user's cohort (the smoke cohort's files) with a 2D image, NaN voxels, one image under two ids, an invalid
    outcome, a truncated image and a missing mask: the whole book runs on the others and names each excluded one."""
    import shutil

    import nbformat
    import numpy as np
    import pandas as pd
    import SimpleITK as sitk
    import yaml

    from hcc_utils.cohort import ensure_synthetic
    from hcc_utils.config import load_params
    from hcc_utils.runner import patients_line

    smoke = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text(encoding="utf-8"))
    source = ensure_synthetic(load_params(ROOT / "params" / "smoke.yaml").cohort.synthetic).parent
    cohort = tmp_path / "cohort"
    shutil.copytree(source, cohort)
    manifest = pd.read_csv(cohort / "cohort.csv", dtype={"patient_id": str})
    ids = manifest["patient_id"].tolist()
    flat, nan, original, invalid, truncated, unmasked = ids[:6]
    path = dict(zip(ids, manifest["image"], strict=True))
    image = sitk.ReadImage(str(cohort / path[flat]))
    sitk.WriteImage(image[:, :, image.GetDepth() // 2], str(cohort / path[flat]))
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort / path[nan]))).astype(np.float32)
    values[:, :10] = np.nan
    broken = sitk.GetImageFromArray(values)
    broken.CopyInformation(sitk.ReadImage(str(cohort / path[nan])))
    sitk.WriteImage(broken, str(cohort / path[nan]))
    copy = manifest[manifest["patient_id"] == original].assign(patient_id="COPY", image="copy.nii.gz")
    shutil.copy(cohort / path[original], cohort / "copy.nii.gz")
    manifest.loc[manifest["patient_id"] == invalid, "er"] = 2
    data = (cohort / path[truncated]).read_bytes()
    (cohort / path[truncated]).write_bytes(data[: len(data) // 2])
    (cohort / manifest.set_index("patient_id").at[unmasked, "mask"]).unlink()
    pd.concat([manifest, copy]).to_csv(cohort / "cohort.csv", index=False)
    smoke.update(name="mine", cohort={"manifest": str(cohort / "cohort.csv")})
    # chapters 09 and 11 at their smallest: this test is about who is excluded, not about their numbers
    smoke["robustness"] = {"repeats": 2, "permutations": 4, "cnn_folds": 2, "site_column": None,
                           "optimism": False}
    smoke["comparators"] = {"abmil": {"epochs": 10, "patience": 5}, "cnn3d": {"size": 8, "epochs": 1}}
    smoke["radiomics"]["settings"] = str(ROOT / "params" / "radiomics_smoke.yaml")
    params = tmp_path / "mine.yaml"
    params.write_text(yaml.safe_dump(smoke), encoding="utf-8")

    result = run_book(params, out=tmp_path / "run", build=False, echo=print, cell_timeout=600)

    assert result.executed == [name for name, _ in NOTEBOOKS]
    excluded = pd.read_csv(result.run_dir / "exclusions.csv", dtype=str).query("severity == 'excluded'")
    bad = {flat, nan, original, "COPY", invalid, truncated, unmasked}
    assert set(excluded["patient_id"]) == bad
    reasons = excluded.groupby("patient_id")["message"].agg(" ".join)
    for pid, phrase in ((flat, "2D"), (nan, "NaN"), (original, "COPY"), ("COPY", original), (invalid, "er"),
                        (truncated, "truncated"), (unmasked, "not found")):
        assert phrase in reasons[pid], (pid, reasons[pid])
    split = pd.read_csv(result.run_dir / "tables" / "cohort_split.csv", dtype={"patient_id": str})
    assert not set(split["patient_id"]) & bad and len(split) == len(ids) - 6
    shown = nbformat.read(result.run_dir / "notebooks" / "01_preprocessing.ipynb", as_version=4)
    text = json.dumps([c.get("outputs", []) for c in shown.cells])
    assert all(pid in text for pid in bad)
    assert patients_line(RunFolder(result.run_dir), NOTEBOOKS).startswith("7 excluded (7 in [Cohort")


@pytest.mark.book
def test_robustness_chapter_tables(smoke_run):
    """Notebook 09's tables exist with one row per model (repeats: per repeat and model) and its figures. The
    refits (repeats, permutations) cover the three base models; the fit table reads every model's predictions,
    the Combined model's included."""
    import pandas as pd

    tables = smoke_run.run_dir / "tables"
    models = {"DL-MIL", "Radiomics", "Clinical"}
    for name in ("robustness_repeats_summary", "robustness_permutation"):
        assert set(pd.read_csv(tables / f"{name}.csv")["model"]) == models, name
    assert set(pd.read_csv(tables / "robustness_fit.csv")["model"]) == models | {"Combined"}
    repeats = pd.read_csv(tables / "robustness_repeats.csv")
    assert len(repeats) == 3 * (1 + 8) and repeats["auc"].between(0, 1).all()
    permutation = pd.read_csv(tables / "robustness_permutation.csv")
    assert (permutation["permutations"] == 49).all() and permutation["p_value"].between(0.02, 1).all()
    optimism = pd.read_csv(tables / "robustness_optimism.csv")
    assert optimism["variant"].tolist()[0] == "leak_free" and len(optimism) == 5
    scanners = pd.read_csv(tables / "robustness_scanners.csv")
    assert len(scanners) == 3 * 3 and scanners["auc"].notna().all()
    for figure in ("robustness_repeats", "robustness_permutation", "robustness_optimism", "robustness_scanners"):
        assert (smoke_run.run_dir / "figures" / f"{figure}.png").is_file(), figure


@pytest.mark.book
def test_apply_chapter_scores_new_patients_with_the_bundle(smoke_run):
    """Notebook 10: the bundle's models (DL-MIL, Radiomics, Clinical; the Combined model is not in the bundle)
    scored a new synthetic sample (apply.synthetic_n of smoke.yaml) and each has an AUC on it, with its figure."""
    import pandas as pd

    run = smoke_run.run_dir
    aucs = pd.read_csv(run / "tables" / "applied_auc.csv")
    assert aucs["model"].tolist() == ["DL-MIL", "Radiomics", "Clinical"]
    assert (aucs["n"] > 0).all() and aucs["auc"].between(0, 1).all()
    assert (aucs["auc_low"] <= aucs["auc"]).all() and (aucs["auc"] <= aucs["auc_high"]).all()
    scored = pd.read_csv(run / "applied" / "predictions.csv")
    assert len(scored) == 16 and {"dl_mil_prob", "radiomics_prob", "clinical_prob"} <= set(scored.columns)
    assert (run / "figures" / "applied_roc.png").is_file()


@pytest.mark.book
def test_four_models_nri_idi_nomogram_and_model_card_in_the_report(smoke_run):
    """Issue 16 in the smoke book: Table 4 and DeLong hold the Combined model beside the three others, the NRI/IDI
    table has its bootstrap CIs, the nomogram is drawn in chapter 05's page, the model card is a chapter."""
    import pandas as pd

    run = smoke_run.run_dir
    table4 = pd.read_csv(run / "tables" / "table4_models.csv")
    assert set(table4["model"]) == {"DL-MIL", "Radiomics", "Clinical", "Combined"}
    delong = pd.read_csv(run / "tables" / "delong.csv")
    assert len(delong.query("dataset == 'validation'")) == 6
    nri = pd.read_csv(run / "tables" / "nri_idi.csv")
    assert {("Combined", "Clinical"), ("DL-MIL", "Clinical")} <= set(zip(nri["new"], nri["old"], strict=True))
    assert nri[["nri_low", "nri_high", "idi_low", "idi_high"]].notna().all().all()
    assert ((nri["nri_low"] <= nri["nri"]) & (nri["nri"] <= nri["nri_high"])).all()
    assert (run / "figures" / "nomogram.png").is_file()
    html = smoke_run.html_index.parent
    assert "nomogram" in (html / "notebooks" / "05_models.html").read_text().lower()
    card = (run / "model" / "MODEL_CARD.md").read_text()
    assert all(name in card for name in ("DL-MIL", "Radiomics", "Clinical", "python -m hcc_utils predict"))
    assert (html / "model_card.html").is_file()


def _published_files(html_root: Path) -> list[Path]:
    """Every text file of the rendered site a reader can open (pages, page sources, CSVs, SVGs)."""
    suffixes = {".html", ".ipynb", ".md", ".txt", ".csv", ".svg", ".js"}
    return [p for p in html_root.rglob("*") if p.is_file() and p.suffix in suffixes
            and "_static" not in p.relative_to(html_root).parts]


@pytest.mark.book
def test_published_report_has_no_local_path_and_no_progress_bar(smoke_run):
    """No page of the site names this machine's run folder, project or home directory, and none holds a
    progress-bar line; the executed notebooks (kept in the run folder) hold no progress bar either."""
    import nbformat

    from hcc_utils.progress import progress_lines

    html_root = smoke_run.html_index.parent
    local = {str(smoke_run.run_dir.resolve()), str(ROOT), str(Path.home())}
    for path in _published_files(html_root):
        text = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "", path.read_text(encoding="utf-8", errors="replace"))
        found = [p for p in local if p in text]
        assert not found, f"{path.relative_to(html_root)} names {found}"
        if path.suffix in {".html", ".ipynb"}:
            assert not progress_lines(text), f"{path.relative_to(html_root)}: {progress_lines(text)[:3]}"
    for name, _ in NOTEBOOKS:
        nb = nbformat.read(smoke_run.run_dir / "notebooks" / f"{name}.ipynb", as_version=4)
        streams = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                          if o.get("output_type") == "stream")
        assert not progress_lines(streams), f"{name}: {progress_lines(streams)[:3]}"


@pytest.mark.book
def test_published_report_leads_with_results_and_ends_with_methods_provenance_tripod(smoke_run):
    """The landing page shows Table 4 and the ROC figure; parameters cells are gone from every chapter (code is
    folded); Methods, Provenance and the TRIPOD+AI checklist are chapters; the captions' CSV links resolve."""
    html_root = smoke_run.html_index.parent
    landing = (html_root / "intro.html").read_text(encoding="utf-8")
    assert 'id="glance-table4"' in landing and 'id="glance-roc"' in landing
    assert (html_root / "figures" / "fig5ab_roc.png").is_file()
    assert (html_root / "tables" / "table4_models.csv").is_file()
    for page in ("docs/method.html", "provenance.html", "tripod_ai.html"):
        assert (html_root / page).is_file(), page
    for name, _ in NOTEBOOKS:
        source = json.loads((smoke_run.run_dir / "book" / "notebooks" / f"{name}.ipynb").read_text())
        code = [c for c in source["cells"] if c["cell_type"] == "code"]
        assert not [c for c in code if {"parameters", "injected-parameters"} & set(c["metadata"].get("tags", []))]
        assert not [c for c in code if "".join(c["source"]).lstrip().startswith(("params_file =", "run_dir ="))]
        assert all("hide-input" in c["metadata"]["tags"] for c in code), name
        assert "tag_hide-input" in (html_root / "notebooks" / f"{name}.html").read_text(encoding="utf-8"), name
