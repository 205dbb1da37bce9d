"""A run folder with only ``provenance.json`` and ``status.json``, written by ``write_provenance`` with paths that
must never reach a published page: a manifest and a params file in a private folder, CNN weights under the home
directory (tests of ``hcc_utils.provenance_chapter`` and ``hcc_utils.tripod``)."""

from __future__ import annotations

from pathlib import Path

from hcc_utils import artifacts
from hcc_utils.config import load_params
from hcc_utils.provenance import write_provenance
from hcc_utils.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
STATUS = {"01_preprocessing": {"state": "done", "started": "2026-01-01T10:00:00+0000", "seconds": 12.3,
                               "peak_mb": 1234.5},
          "02_slices_2p5d": {"state": "done", "started": "2026-01-01T10:00:13+0000", "seconds": 4.0}}


def provenance_run(tmp_path: Path) -> RunFolder:
    """``tmp_path/runs/private-run`` with provenance.json (smoke params, a private manifest and weights file) and
    status.json (``STATUS``: one notebook with its peak memory, one without)."""
    params = load_params(ROOT / "params" / "smoke.yaml")
    manifest = tmp_path / "private" / "cohort.csv"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("patient_id,er\nP1,1\n", encoding="utf-8")
    weights = Path.home() / ".cache" / "hcc-test-weights" / "resnet18.pth"
    cohort = params.cohort.model_copy(update={"manifest": manifest, "synthetic": None})
    cnn = params.cnn.model_copy(update={"weights": {"resnet18": weights}})
    params = params.model_copy(update={"cohort": cohort, "cnn": cnn})
    run = RunFolder(tmp_path / "runs" / "private-run")
    run.root.mkdir(parents=True)
    write_provenance(run, params, tmp_path / "private" / "mine.yaml", "2026-01-01T10:00:00+0000", STATUS)
    artifacts.write_json(run, artifacts.STATUS, STATUS)
    return run
