"""The Provenance chapter (hcc_utils.provenance_chapter), provenance.json's machine record and the peak-memory
sampler (hcc_utils.resources)."""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _provenance_run import provenance_run

from hcc_utils import artifacts
from hcc_utils.provenance import git_commit
from hcc_utils.provenance_chapter import provenance_page, public_path, public_values
from hcc_utils.resources import PeakMemory, machine_info

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def page(tmp_path) -> str:
    return provenance_page(provenance_run(tmp_path))


def test_page_has_no_path_of_the_machine(page, tmp_path):
    for private in (str(tmp_path), str(Path.home()), str(ROOT), "private-run/", "hcc-test-weights"):
        assert private not in page, private
    assert "`cohort.csv`" in page and "`mine.yaml`" in page
    assert "resnet18: resnet18.pth" in page
    assert "settings: params/radiomics_smoke.yaml" in page


def test_page_states_commit_seeds_machine_and_reproducibility(page):
    commit = git_commit()["commit"]
    assert commit and f"`{commit}`" in page
    assert "working tree clean" in page or "uncommitted changes" in page
    assert "| `split_seed` | 42 |" in page
    assert "| 1,234 |" in page and "not recorded" in page
    assert machine_info()["cpu"] in page
    assert "torch and BLAS threads per notebook" in page  # CNN results depend on the thread count
    assert "0.737" in page and "0.684" in page
    assert page.count("```yaml") == 1 and "name: smoke" in page


def test_page_says_when_the_commit_or_machine_is_unknown(tmp_path):
    run = provenance_run(tmp_path)
    record = json.loads(artifacts.PROVENANCE.path(run).read_text())
    record["git"] = {"commit": None, "dirty": None}
    del record["machine"]
    artifacts.write_json(run, artifacts.PROVENANCE, record)
    text = provenance_page(run)
    assert "no commit was recorded" in text and "The machine was not recorded" in text


def test_public_path(tmp_path):
    assert public_path(str(tmp_path / "a" / "cohort.csv")) == "cohort.csv"
    assert public_path(str(ROOT / "params" / "smoke.yaml")) == "params/smoke.yaml"
    assert public_path("params/smoke.yaml") == "params/smoke.yaml"
    assert public_path("~/data/cohort.csv") == "cohort.csv"
    assert public_values({"a": [str(tmp_path / "x.yaml"), 3], "b": None}) == {"a": ["x.yaml", 3], "b": None}


def test_provenance_json_records_the_machine_and_keeps_its_keys(tmp_path):
    record = json.loads(artifacts.PROVENANCE.path(provenance_run(tmp_path)).read_text())
    for key in ("params_file", "params", "protocol", "seeds", "cohort_manifest", "git", "python", "platform",
                "packages", "started", "ended", "notebooks", "machine"):
        assert key in record, key
    machine = record["machine"]
    assert machine["logical_cores"] >= machine["usable_cores"] >= 1 and machine["memory_gb"] > 0
    assert isinstance(machine["gpus"], list) and machine["cpu"]
    text = json.dumps(machine)
    for name in (socket.gethostname(), getpass.getuser()):
        if len(name) >= 5:
            assert name not in text


def test_peak_memory_sees_a_child_that_allocates_200_mb():
    child = "import time; block = b'x' * (200 * 2**20); time.sleep(1.5)"
    with PeakMemory(interval_s=0.2) as memory:
        assert memory.peak_mb is None
        subprocess.run([sys.executable, "-c", child], check=True)
    assert memory.peak_mb > 150, memory.peak_mb
    assert memory.samples >= 3


def test_peak_memory_of_no_child_is_zero():
    """In a fresh process: this test session may keep worker processes of earlier tests (joblib, Dask)."""
    code = ("from hcc_utils.resources import PeakMemory\nwith PeakMemory() as memory:\n    pass\n"
            "print(memory.peak_mb)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert float(done.stdout.strip()) == 0
