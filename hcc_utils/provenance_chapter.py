"""The book's Provenance chapter (``provenance.md``): what produced this report, made from the run's
``provenance.json`` (``hcc_utils.provenance``) and ``status.json`` (the runner's per-notebook record).

Sections: the code (git commit, and whether the working tree had uncommitted changes) and the cohort (the
manifest's file name and SHA-256); the seeds; the package versions; each notebook's wall time (s) and peak memory
(MB, ``hcc_utils.resources.PeakMemory``, when the runner recorded ``peak_mb``); the machine
(``hcc_utils.resources.machine_info``); what reproduces where; and every parameter as YAML.

A published page carries no path of the machine it was made on: every path value is reduced to its file name, or
to its path relative to the project when it lies inside it (``public_path``), and the finished page is scrubbed of
the run folder, the project folder and the home directory as a last guard (``scrub``).

Example::

    >>> text = provenance_page(RunFolder("runs/smoke"))
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from hcc_utils import artifacts
from hcc_utils.run_folder import RunFolder

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOT_RECORDED = "not recorded"
_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")

REPRODUCIBILITY = (
    "The same machine type (CPU model, GPU, number of cores) with the same package versions, commit and "
    "parameters gives identical tables and figures: every random step is seeded (the seeds above). CNN training "
    "is the exception across machines: its floating-point results depend on the CPU or GPU kernels PyTorch "
    "picks, which differ between CPU models, GPUs and thread counts, and small differences grow over the epochs. "
    "The chosen epoch and architecture, the slice probabilities and everything computed from them then differ "
    "too: the MIL features, the DL-MIL and Combined models, their rows of Table 4, SHAP, Table 5 and the "
    "robustness chapter's networks. For example, the default book gave a DL-MIL validation AUC of 0.737 on one "
    "machine and 0.684 on another with identical parameters. The Radiomics and Clinical models use no CNN output "
    "and are expected to agree across machines with the same package versions. To reproduce this report's "
    "numbers exactly, rerun it on the machine type named above with the packages listed; GPU runs are seeded "
    "but bitwise reproducible only with `cnn.deterministic_gpu` set.")


def _is_absolute(text: str) -> bool:
    return text.startswith(("/", "~")) or bool(_WINDOWS_ABSOLUTE.match(text))


def public_path(value: str, project_root: Path = PROJECT_ROOT) -> str:
    """``value`` with no folder of the machine: a relative path as it is, an absolute one relative to
    ``project_root`` when it lies inside it, else its file name alone."""
    if not _is_absolute(value):
        return value
    path = Path(value).expanduser()
    try:
        return path.resolve().relative_to(Path(project_root).resolve()).as_posix()
    except ValueError:
        return path.name or value


def public_values(value: Any, project_root: Path = PROJECT_ROOT) -> Any:
    """A copy of a parameters tree (dicts, lists, scalars) with every absolute path made public (``public_path``)."""
    if isinstance(value, dict):
        return {k: public_values(v, project_root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [public_values(v, project_root) for v in value]
    if isinstance(value, str) and _is_absolute(value):
        return public_path(value, project_root)
    return value


def scrub(text: str, run: RunFolder, project_root: Path = PROJECT_ROOT) -> str:
    """``text`` with the run folder (as its name), the project folder (as ``.``) and the home directory (as ``~``)
    replaced, longest first: the last guard against a path that a new field of provenance.json brings in."""
    names = {str(run.root): run.root.name, str(Path(project_root).resolve()): ".", str(Path.home()): "~"}
    for path in sorted(names, key=len, reverse=True):
        if len(path) > 1:
            text = text.replace(path, names[path])
    return text


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def _read_status(run: RunFolder, record: dict) -> dict:
    """``status.json`` (current while the book is built), else the copy in provenance.json."""
    path = artifacts.STATUS.path(run)
    if path.is_file():
        return artifacts.read_json(run, artifacts.STATUS)
    return record.get("notebooks") or {}


def _manifest(run: RunFolder, record: dict) -> dict:
    """The cohort manifest's path and hash; recomputed when provenance.json was written before the (synthetic)
    cohort existed."""
    found = record.get("cohort_manifest") or {}
    if found.get("sha256") is None and run.params_file.is_file():
        from hcc_utils.config import load_params
        from hcc_utils.provenance import cohort_manifest

        try:
            found = cohort_manifest(load_params(run.params_file))
        except (OSError, ValueError):
            pass
    return found


def code_section(run: RunFolder, record: dict, project_root: Path) -> list[str]:
    """The commit, the tree's state, the params file, protocol, cohort manifest and times."""
    git = record.get("git") or {}
    commit = git.get("commit")
    dirty = git.get("dirty")
    if commit is None:
        code = "not a git checkout: no commit was recorded, so this page cannot name the code that ran"
    elif dirty:
        code = (f"`{commit}`, **with uncommitted changes** in the working tree: the commit alone does not "
                "reproduce this run")
    else:
        code = f"`{commit}`, working tree clean (no uncommitted changes to tracked files)"
    manifest = _manifest(run, record)
    name = public_path(manifest["path"], project_root) if manifest.get("path") else NOT_RECORDED
    digest = f"SHA-256 `{manifest['sha256']}`" if manifest.get("sha256") else f"SHA-256 {NOT_RECORDED}"
    params_file = public_path(record["params_file"], project_root) if record.get("params_file") else NOT_RECORDED
    ended = record.get("ended") or "after this page was written"
    return [
        f"- Run: `{run.root.name}`; parameters file: `{params_file}`; protocol: "
        f"`{record.get('protocol', NOT_RECORDED)}`.",
        f"- Code: commit {code}.",
        f"- Cohort manifest: `{name}`, {digest} (of the manifest file itself: its patients, outcomes, clinical "
        "values and file names; the images it names are not hashed).",
        f"- Started {record.get('started') or NOT_RECORDED}; finished {ended}.",
    ]


def notebook_rows(status: dict) -> list[list[Any]]:
    """Per notebook: state, wall time (s) and peak memory (MB) of its process tree; then the totals."""
    rows, total_s, peaks = [], 0.0, []
    for name, entry in status.items():
        seconds, peak = entry.get("seconds"), entry.get("peak_mb")
        total_s += float(seconds or 0)
        if peak is not None:
            peaks.append(float(peak))
        rows.append([f"`{name}`", entry.get("state", NOT_RECORDED),
                     f"{float(seconds):.1f}" if seconds is not None else NOT_RECORDED,
                     f"{float(peak):,.0f}" if peak is not None else NOT_RECORDED])
    if rows:
        rows.append(["**all**", "", f"{total_s:.1f}", f"{max(peaks):,.0f} (largest)" if peaks else NOT_RECORDED])
    return rows


def machine_lines(machine: dict | None) -> list[str]:
    """The machine of provenance.json in plain words."""
    if not machine:
        return ["The machine was not recorded (provenance.json predates the record)."]
    logical, usable = machine.get("logical_cores"), machine.get("usable_cores")
    cores = f"{usable} of {logical} logical cores usable by the run" if usable != logical else f"{logical} logical"
    memory = f"{machine.get('memory_gb')} GB"
    if machine.get("memory_limit_gb"):
        memory += f" (the run was limited to {machine['memory_limit_gb']} GB)"
    gpus = ", ".join(machine.get("gpus") or []) or "none used by torch"
    if machine.get("torch_threads"):  # CNN results depend on it (REPRODUCIBILITY)
        cores += (f"; {machine['torch_threads']} torch and BLAS threads per notebook, "
                  f"{machine.get('worker_threads', 1)} per worker process")
    return [f"- CPU: {machine.get('cpu', NOT_RECORDED)}; {cores}.",
            f"- Memory: {memory}.",
            f"- GPU: {gpus}.",
            f"- Operating system: {machine.get('os', NOT_RECORDED)}; Python {machine.get('python', NOT_RECORDED)}."]


def provenance_page(run: RunFolder, project_root: Path = PROJECT_ROOT) -> str:
    """The Provenance chapter's Markdown (module docstring) from ``run``'s provenance.json and status.json."""
    record = artifacts.read_json(run, artifacts.PROVENANCE)
    seeds = [[f"`{k}`", v] for k, v in (record.get("seeds") or {}).items()]
    packages = [[name, version or "not installed"] for name, version in (record.get("packages") or {}).items()]
    params = yaml.safe_dump(public_values(record.get("params") or {}, project_root), sort_keys=False,
                            default_flow_style=None, allow_unicode=True, width=100).rstrip()
    lines = ["# Provenance", "",
             "What produced this report: the code, the cohort, the seeds, the software and the machine, each "
             "notebook's wall time and peak memory, and every parameter. All of it is also in the run folder's "
             "`provenance.json` and `status.json`. Paths are shown by file name only, or relative to the project.",
             "", "## Code and cohort", "", *code_section(run, record, project_root), "",
             "## Seeds", "", "Every random step draws from one of these (their keys in the parameters).", "",
             *_table(["seed", "value"], seeds), "",
             "## Software", "", f"Python {record.get('python', NOT_RECORDED)}; the packages whose behaviour shapes "
             "the results:", "", *_table(["package", "version"], packages), "",
             "## Notebooks: wall time and peak memory", "",
             "Wall time of each notebook's execution in seconds; peak memory is the largest summed resident memory "
             "(MB, 2^20 bytes) of the notebook's kernel and its worker processes, sampled every 0.5 s.", "",
             *_table(["notebook", "state", "wall time (s)", "peak memory (MB)"],
                     notebook_rows(_read_status(run, record))),
             "", "## Machine", "", *machine_lines(record.get("machine")), "",
             "## What reproduces where", "", REPRODUCIBILITY, "",
             "## Parameters", "", "Every parameter of this run, defaults included, as validated before the run "
             "started:", "", "```yaml", params, "```", ""]
    return scrub("\n".join(lines), run, project_root)
