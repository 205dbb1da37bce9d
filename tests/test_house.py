"""The house rules that are about the code's shape: one registry of run-folder files, no import circles, layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hcc_utils"
FILE_SUFFIXES = (".csv", ".json", ".joblib", ".npz", ".npy", ".pt", ".png", ".log")
ALLOWED_FILE_NAMES = {
    "artifacts.py": "the registry of run-folder files",
    "crop.py": "the crop command's own output folder",
}


def modules() -> dict[str, ast.Module]:
    """Every module of the package by dotted name (``hcc_utils.plots.cnn``), parsed."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def _typing_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under ``if TYPE_CHECKING:`` (annotations only, never executed)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {n.lineno for child in node.body for n in ast.walk(child) if hasattr(n, "lineno")}
    return lines


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (at module level or inside functions)."""
    trees = modules()
    graph: dict[str, set[str]] = {name: set() for name in trees}
    for name, tree in trees.items():
        skip = _typing_only(tree)
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                while target and target not in trees:
                    target = target.rpartition(".")[0]
                if target.startswith("hcc_utils.") and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def test_no_import_circle_between_modules():
    graph = import_graph()
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, f"import circles: {circles}"


def test_pathology_does_not_import_explain():
    assert "hcc_utils.explain" not in import_graph()["hcc_utils.pathology"]


def test_config_imports_no_generator_module():
    code = ("import sys, hcc_utils.config; "
            "print([m for m in sys.modules if m.startswith('hcc_utils.') and m != 'hcc_utils.config'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "synth" not in out.stdout, out.stdout


def test_run_folder_file_names_live_in_the_registry_only():
    """No module but the registry spells a file name of the run folder (figures are named by the notebooks)."""
    offenders = []
    for name, tree in modules().items():
        relative = name.removeprefix("hcc_utils.").replace(".", "/") + ".py"
        if relative in ALLOWED_FILE_NAMES or relative.startswith("synth/"):
            continue
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and node.value.strip().endswith(FILE_SUFFIXES)):
                offenders.append(f"{relative}:{node.lineno}: {node.value!r}")
    assert not offenders, "file names outside hcc_utils/artifacts.py:\n" + "\n".join(offenders)


def test_ipython_and_argparse_stay_in_their_layers():
    owners = {"IPython": {"hcc_utils.notebook"}, "argparse": {"hcc_utils.__main__"}}
    for module, tree in modules().items():
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        for library, allowed in owners.items():
            assert library not in imported or module in allowed, f"{module} imports {library}"


def test_figures_only_in_plots():
    for module, tree in modules().items():
        if module.startswith("hcc_utils.plots"):
            continue
        calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        drawing = sorted(c for c in calls if c.startswith(("plt.subplots", "plt.figure", "shap.plots.")))
        assert not drawing, f"{module} draws figures ({drawing}); figures belong in hcc_utils/plots/"


@pytest.mark.parametrize("bad", ["'runs/x/tables/thing.csv'", "'models/y.joblib'"])
def test_the_file_name_check_catches_a_planted_name(bad, tmp_path, monkeypatch):
    planted = tmp_path / "hcc_utils"
    planted.mkdir()
    (planted / "__init__.py").write_text("")
    (planted / "stage.py").write_text(f'"""Doc naming tables/fine.csv."""\nPATH = {bad}\n')
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", planted)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="stage.py:2"):
        test_run_folder_file_names_live_in_the_registry_only()
