"""The runner: order, never overwriting, resuming, and naming a failing notebook and cell."""

import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from hcc_utils import artifacts
from hcc_utils.book import METHODS_PAGE, PROVENANCE_PAGE, TRIPOD_PAGE
from hcc_utils.config import ParamsError, load_params
from hcc_utils.provenance import write_provenance
from hcc_utils.run_folder import RunFolder
from hcc_utils.runner import (
    METHOD_FILE,
    MODEL_CARD_PAGE,
    NOTEBOOKS,
    NotebookFailed,
    RunError,
    run_book,
    table_of_contents,
    write_book_sources,
)


def make_notebook(folder: Path, name: str, body: str) -> None:
    cells = [new_markdown_cell(f"# {name}"),
             new_code_cell('params_file = "x"\nrun_dir = "y"', metadata={"tags": ["parameters"]}),
             new_code_cell("from pathlib import Path\nimport json"),
             new_code_cell(body)]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, folder / f"{name}.ipynb")


@pytest.fixture
def project(tmp_path):
    """Two notebooks that append to a log in the run folder, a params file over a tiny manifest."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    log = "with open(Path(run_dir) / 'log.txt', 'a') as fh:\n    fh.write('{}\\n')"
    make_notebook(nbs, "a_first", log.format("a"))
    make_notebook(nbs, "b_second", log.format("b") + "\nassert not (Path(run_dir) / 'fail').exists(), 'told to fail'")
    pd.DataFrame({"patient_id": ["P1"], "image": ["i.nii.gz"], "mask": ["m.nii.gz"], "er": [1]}).to_csv(
        tmp_path / "cohort.csv", index=False)
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"name": "t", "cohort": {"manifest": "cohort.csv"}}))
    return {"nbs": nbs, "params": params, "root": tmp_path,
            "list": [("a_first", "First"), ("b_second", "Second")]}


def run(project, **kw):
    return run_book(project["params"], notebooks=project["list"], notebook_dir=project["nbs"], build=False,
                    runs_root=project["root"] / "runs", echo=lambda *_: None, **kw)


def log_of(run_dir: Path) -> list[str]:
    return (run_dir / "log.txt").read_text().split()


def test_runs_in_order_and_records_provenance(project):
    result = run(project)
    assert result.run_dir == project["root"] / "runs" / "t"
    assert log_of(result.run_dir) == ["a", "b"]
    assert (result.run_dir / "notebooks" / "b_second.ipynb").is_file()
    prov = json.loads((result.run_dir / "provenance.json").read_text())
    assert prov["params"]["name"] == "t" and prov["ended"] and prov["seeds"]["seed"] == 0
    assert prov["cohort_manifest"]["sha256"] and prov["packages"]["papermill"]
    assert prov["notebooks"]["a_first"]["state"] == "done"
    executed = nbformat.read(result.run_dir / "notebooks" / "a_first.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert str(result.run_dir) in injected[0].source


def test_never_overwrites(project):
    first = run(project)
    second = run(project)
    assert second.run_dir == first.run_dir.with_name("t-2")
    assert log_of(first.run_dir) == ["a", "b"]
    with pytest.raises(RunError, match="already exists and is never overwritten"):
        run(project, out=first.run_dir)
    assert log_of(first.run_dir) == ["a", "b"]


def test_failure_names_notebook_and_cell_then_resume(project):
    out = project["root"] / "runs" / "r"
    out.mkdir(parents=True)
    (out / "fail").touch()
    with pytest.raises(NotebookFailed) as err:
        run(project, out=out, resume=True)
    message = str(err.value)
    assert "b_second.ipynb" in message and "cell 4 (In [4]: with open" in message and "told to fail" in message
    assert "--resume" in message
    kept = nbformat.read(out / "notebooks" / "b_second.ipynb", as_version=4)
    assert any(o.get("ename") == "AssertionError" for c in kept.cells for o in c.get("outputs", []))
    (out / "fail").unlink()
    result = run(project, out=out, resume=True)
    assert result.skipped == ["a_first"] and result.executed == ["b_second"]
    assert log_of(out) == ["a", "b", "b"]


def test_resume_refuses_changed_params(project):
    out = project["root"] / "runs" / "r2"
    run(project, out=out)
    project["params"].write_text(yaml.safe_dump({"name": "t", "seed": 5, "cohort": {"manifest": "cohort.csv"}}))
    with pytest.raises(RunError, match="params differ"):
        run(project, out=out, resume=True)


def test_a_run_folder_made_before_the_path_rule_still_resumes(project):
    """Older run folders saved radiomics.settings relative to the project; resuming one is not refused for it."""
    out = project["root"] / "runs" / "old"
    run(project, out=out)
    saved = yaml.safe_load((out / "params.yaml").read_text(encoding="utf-8"))
    saved["radiomics"]["settings"] = "params/radiomics_default.yaml"
    (out / "params.yaml").write_text(yaml.safe_dump(saved), encoding="utf-8")
    (out / "status.json").unlink()
    run(project, out=out, resume=True)
    assert log_of(out) == ["a", "b", "a", "b"]


def test_bad_params_fail_before_any_folder_is_made(project):
    project["params"].write_text(yaml.safe_dump({"name": "t", "cohort": {"manifest": "cohort.csv"}, "sed": 1}))
    with pytest.raises(ParamsError, match="unknown key 'sed'"):
        run(project)
    assert not (project["root"] / "runs").exists()


AFTER_NOTEBOOKS = [{"file": METHODS_PAGE}, {"file": PROVENANCE_PAGE}, {"file": TRIPOD_PAGE}]


def test_toc_follows_the_notebook_list_then_methods_provenance_tripod():
    toc = table_of_contents(NOTEBOOKS)
    assert [c["file"] for c in toc["chapters"]] == ([f"notebooks/{name}" for name, _ in NOTEBOOKS]
                                                    + ["docs/method", "provenance", "tripod_ai"])
    for name, _ in NOTEBOOKS:
        assert (Path(__file__).resolve().parents[1] / "notebooks" / f"{name}.ipynb").is_file()


def test_a_cell_that_hangs_is_stopped_and_named(project):
    make_notebook(project["nbs"], "c_hangs", "import time\ntime.sleep(60)")
    with pytest.raises(RunError, match="c_hangs.ipynb: a cell ran longer than 3 s"):
        run_book(project["params"], notebooks=[("c_hangs", "Hangs")], notebook_dir=project["nbs"], build=False,
                 runs_root=project["root"] / "runs", echo=lambda *_: None, cell_timeout=3)


def test_book_sources_end_with_methods_provenance_and_tripod(project):
    result = run(project)
    book = write_book_sources(RunFolder(result.run_dir), project["list"], load_params(project["params"]))
    toc = yaml.safe_load((book / "_toc.yml").read_text(encoding="utf-8"))
    assert toc["chapters"] == [{"file": "notebooks/a_first"}, {"file": "notebooks/b_second"}] + AFTER_NOTEBOOKS
    assert (book / "docs" / "method.md").read_text(encoding="utf-8") == METHOD_FILE.read_text(encoding="utf-8")
    assert (book / "notebooks" / "b_second.ipynb").is_file()
    intro = (book / "intro.md").read_text(encoding="utf-8")
    assert "3. [Methods" in intro and "4. [Provenance" in intro and "5. [TRIPOD+AI" in intro


def test_the_model_card_is_a_chapter_before_methods_when_the_run_has_one(project):
    """A fake run folder (two executed notebooks, no papermill): without a bundle the book has no model card;
    with ``model/MODEL_CARD.md`` it is copied and listed after the notebooks, before Methods."""
    folder = RunFolder(project["root"] / "runs" / "fake")
    for name, _ in project["list"]:
        make_notebook(folder.notebooks, name, "pass")
    params = load_params(project["params"])
    write_provenance(folder, params, project["params"], "2026-01-01T00:00:00", {})
    book = write_book_sources(folder, project["list"], params)
    assert not (book / f"{MODEL_CARD_PAGE}.md").exists()
    assert yaml.safe_load((book / "_toc.yml").read_text())["chapters"][-3:] == AFTER_NOTEBOOKS
    card = artifacts.BUNDLE_CARD.path(folder)
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text("# Model card: run fake\n\n## Intended use\n\nResearch only.\n", encoding="utf-8")
    book = write_book_sources(folder, project["list"], params)
    toc = yaml.safe_load((book / "_toc.yml").read_text(encoding="utf-8"))
    assert toc["chapters"] == [{"file": "notebooks/a_first"}, {"file": "notebooks/b_second"},
                               {"file": MODEL_CARD_PAGE}] + AFTER_NOTEBOOKS
    assert (book / f"{MODEL_CARD_PAGE}.md").read_text(encoding="utf-8") == card.read_text(encoding="utf-8")
    intro = (book / "intro.md").read_text(encoding="utf-8")
    assert "3. [Model card" in intro and "4. [Methods" in intro
    chapters = table_of_contents(NOTEBOOKS, model_card=True)["chapters"]
    assert chapters[-4:] == [{"file": MODEL_CARD_PAGE}, *AFTER_NOTEBOOKS]


def test_method_chapter_reads_the_same_in_the_book():
    """docs/method.md is copied into the book alone: a title for the navigation, the numbered sections the
    docstrings cite, and no link that only resolves inside the repository or needs heading anchors."""
    text = METHOD_FILE.read_text(encoding="utf-8")
    assert re.match(r"# \S", text), "the first line must be the H1 the book shows in its navigation"
    sections = re.findall(r"^## (\d+)\. ", text, flags=re.MULTILINE)
    assert sections[:7] == [str(k) for k in range(1, 8)], sections
    links = re.findall(r"\]\(([^)]*)\)", text)
    relative = [link for link in links if not link.startswith(("http://", "https://"))]
    assert not relative, (f"links to files or anchors break in the book (it has no heading anchors): {relative}; "
                          "name the file or section in the text instead")
    assert "{doc}" not in text and "{ref}" not in text


@pytest.mark.slow
def test_rendered_book_has_the_methods_page_in_its_navigation(project):
    result = run_book(project["params"], notebooks=project["list"], notebook_dir=project["nbs"],
                      runs_root=project["root"] / "runs", echo=lambda *_: None)
    methods = result.html_index.parent / "docs" / "method.html"
    assert methods.is_file()
    assert "Deviations from the paper" in methods.read_text(encoding="utf-8")
    intro = (result.html_index.parent / "intro.html").read_text(encoding="utf-8")
    assert re.search(r'href="docs/method.html">\s*Methods\s*<', intro)
