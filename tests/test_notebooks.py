"""The notebooks' shared skeleton (CONTRIBUTING.md, "Adding a notebook").

Every notebook in ``notebooks/``:

- opens with a markdown cell whose first line is an H1 ``# NN · title`` (NN: the file's two-digit number, then a
  middle dot, U+00B7), followed by the overview labels ``**What this step does.**``, ``**Paper.**``,
  ``**Inputs.**`` and ``**Outputs.**``;
- has exactly one code cell tagged ``parameters``;
- imports before its first ``## `` section (no import statement after that heading);
- defines nothing: no ``def``, ``class`` or ``lambda`` in a code cell (read with ``ast``);
- keeps each code cell to at most three lines that are neither blank nor comments;
- ends with a ``## Summary`` section;
- is committed without outputs and without execution counts.

``check_notebook`` reports every violation as (cell index, rule, the cell's first line); the planted-violation
tests below show it catches each rule.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

OVERVIEW_LABELS = ("**What this step does.**", "**Paper.**", "**Inputs.**", "**Outputs.**")
MAX_CODE_LINES = 3
H1 = re.compile(r"^# (\d{2}) \u00b7 \S")
SECTION = re.compile(r"^## ", re.MULTILINE)
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


@dataclass(frozen=True)
class Violation:
    cell: int | None  # None: the notebook as a whole
    rule: str
    first_line: str

    def __str__(self) -> str:
        where = "notebook" if self.cell is None else f"cell {self.cell}"
        return f"{where}: {self.rule} ({self.first_line!r})"


def _first_line(cell) -> str:
    return next((line for line in cell.source.splitlines() if line.strip()), "")


def _code_lines(source: str) -> list[str]:
    return [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _python(source: str) -> str:
    """The cell as Python: IPython magics and shell escapes become blank lines."""
    if source.lstrip().startswith("%%"):
        return ""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def check_notebook(nb, number: str) -> list[Violation]:
    """Every way ``nb`` (an nbformat v4 notebook, file number ``number``) departs from the skeleton."""
    found: list[Violation] = []
    cells = nb.cells
    first = cells[0] if cells else None
    if first is None or first.cell_type != "markdown":
        found.append(Violation(0 if first is not None else None, "first cell is not markdown",
                               _first_line(first) if first is not None else ""))
    else:
        line = _first_line(first)
        match = H1.match(line)
        if not match or match.group(1) != number:
            found.append(Violation(0, f"first line is not an H1 '# {number} \u00b7 title'", line))
        missing = [label for label in OVERVIEW_LABELS if label not in first.source]
        if missing:
            found.append(Violation(0, f"overview lacks {', '.join(missing)}", line))

    tagged = [k for k, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1 or cells[tagged[0]].cell_type != "code":
        found.append(Violation(None, f"expected exactly one code cell tagged 'parameters', found cells {tagged}",
                               ""))

    headings = [k for k, c in enumerate(cells) if c.cell_type == "markdown" and SECTION.search(c.source)]
    first_section = headings[0] if headings else len(cells)
    for k, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        line = _first_line(cell)
        if cell.get("outputs"):
            found.append(Violation(k, "has outputs", line))
        if cell.get("execution_count") is not None:
            found.append(Violation(k, "has an execution count", line))
        if len(_code_lines(cell.source)) > MAX_CODE_LINES:
            found.append(Violation(k, f"more than {MAX_CODE_LINES} code lines "
                                      f"({len(_code_lines(cell.source))})", line))
        try:
            tree = ast.parse(_python(cell.source))
        except SyntaxError as exc:
            found.append(Violation(k, f"not valid Python ({exc.msg})", line))
            continue
        nodes = list(ast.walk(tree))
        if any(isinstance(n, DEFINITIONS) for n in nodes):
            found.append(Violation(k, "defines a function, class or lambda", line))
        if k > first_section and any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in nodes):
            found.append(Violation(k, "import after the first '## ' section", line))

    summaries = [k for k in headings if re.search(r"^## Summary\s*$", cells[k].source, re.MULTILINE)]
    if not summaries:
        found.append(Violation(None, "no '## Summary' section", ""))
    elif summaries[-1] != headings[-1]:
        found.append(Violation(summaries[-1], "'## Summary' is not the last '## ' section",
                               _first_line(cells[summaries[-1]])))
    return found


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 8, f"expected the book's notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_follows_the_skeleton(path):
    violations = check_notebook(nbformat.read(path, as_version=4), path.name[:2])
    assert not violations, f"{path.name}:\n" + "\n".join(f"  {v}" for v in violations)


# --- the checker catches each rule ---------------------------------------------------------------------------


def skeleton(**changes) -> nbformat.NotebookNode:
    """A notebook ``09_example`` that follows every rule; ``changes`` replace cells by index."""
    cells = [
        new_markdown_cell("# 09 \u00b7 Example\n\n**What this step does.** Nothing.\n\n**Paper.** None.\n\n"
                          "**Inputs.** None. **Outputs.** None."),
        new_code_cell('params_file = "../params/smoke.yaml"\nrun_dir = "../runs/lab"',
                      metadata={"tags": ["parameters"]}),
        new_code_cell("from hcc_utils import notebook"),
        new_code_cell("params, run = notebook.setup(params_file, run_dir)"),
        new_markdown_cell("## A section\n\nText."),
        new_code_cell("# a comment does not count\nx = 1\n\ny = 2\nz = x + y"),
        new_markdown_cell("## Summary\n\nDone."),
    ]
    for index, cell in changes.items():
        cells[int(index.removeprefix("c"))] = cell
    return new_notebook(cells=cells)


def rules(nb, number: str = "09") -> list[tuple[int | None, str]]:
    return [(v.cell, v.rule) for v in check_notebook(nb, number)]


def test_the_skeleton_passes():
    assert rules(skeleton()) == []


@pytest.mark.parametrize("cell, rule", [
    (new_code_cell("x = 1"), "first cell is not markdown"),
    (new_markdown_cell("# 9 \u00b7 Example\n**What this step does.** **Paper.** **Inputs.** **Outputs.**"),
     "first line is not an H1"),
    (new_markdown_cell("# 09 - Example\n**What this step does.** **Paper.** **Inputs.** **Outputs.**"),
     "first line is not an H1"),
    (new_markdown_cell("## 09 \u00b7 Example\n**What this step does.** **Paper.** **Inputs.** **Outputs.**"),
     "first line is not an H1"),
    (new_markdown_cell("# 09 \u00b7 Example\n**What this step does.** **Paper.** **Outputs.**"),
     "overview lacks **Inputs.**"),
])
def test_catches_a_bad_title_or_overview(cell, rule):
    assert any(c == 0 and r.startswith(rule) for c, r in rules(skeleton(c0=cell)))


def test_catches_a_title_with_another_number():
    assert (0, "first line is not an H1 '# 10 \u00b7 title'") in rules(skeleton(), number="10")


def test_catches_missing_or_extra_parameters_cells():
    untagged = new_code_cell('params_file = "x"\nrun_dir = "y"')
    assert (None, "expected exactly one code cell tagged 'parameters', found cells []") in rules(
        skeleton(c1=untagged))
    second = new_code_cell("params, run = notebook.setup(params_file, run_dir)", metadata={"tags": ["parameters"]})
    assert (None, "expected exactly one code cell tagged 'parameters', found cells [1, 3]") in rules(
        skeleton(c3=second))


@pytest.mark.parametrize("source", ["import numpy as np", "from hcc_utils import stats",
                                    "x = 1\nif x:\n    import json"])
def test_catches_an_import_after_the_first_section(source):
    assert (5, "import after the first '## ' section") in rules(skeleton(c5=new_code_cell(source)))


@pytest.mark.parametrize("source", ["def f():\n    return 1", "class A:\n    pass",
                                    "async def f():\n    return 1", "key = lambda row: row[0]",
                                    "sorted([3, 1], key=lambda v: -v)"])
def test_catches_definitions(source):
    assert (5, "defines a function, class or lambda") in rules(skeleton(c5=new_code_cell(source)))


def test_a_word_in_a_string_is_not_a_definition():
    assert rules(skeleton(c5=new_code_cell('print("def lambda class")'))) == []


def test_catches_a_long_cell():
    assert (5, "more than 3 code lines (4)") in rules(skeleton(c5=new_code_cell("a = 1\nb = 2\nc = 3\nd = 4")))


def test_catches_outputs_and_execution_counts():
    cell = new_code_cell("x = 1", execution_count=3,
                         outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")])
    found = rules(skeleton(c5=cell))
    assert (5, "has outputs") in found and (5, "has an execution count") in found


def test_catches_a_missing_or_misplaced_summary():
    assert (None, "no '## Summary' section") in rules(skeleton(c6=new_markdown_cell("## Conclusion\n\nDone.")))
    nb = skeleton(c4=new_markdown_cell("## Summary\n\nToo early."), c6=new_markdown_cell("## Last\n\nText."))
    assert (4, "'## Summary' is not the last '## ' section") in rules(nb)


def test_catches_code_that_does_not_parse():
    assert any(r.startswith("not valid Python") for _, r in rules(skeleton(c5=new_code_cell("x = (1,"))))
    assert rules(skeleton(c5=new_code_cell("%matplotlib inline\nx = 1"))) == []
