"""One run folder (``runs/NAME/``): its sub-folders and the log of excluded or warned patients.

Every stage writes only inside its run folder; which file lies where, who writes it and who reads it is the
registry's (``hcc_utils.artifacts``, whose docstring draws the whole tree). This class gives the sub-folders
(``tables/``, ``figures/``, ``cache/``, ``models/``, ``predictions/``, ``notebooks/``) and keeps
``exclusions.csv``: one row per patient excluded (left out from that stage on) or warned, with the stage, the
file by name only, and a message naming what to do.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hcc_utils import artifacts

EXCLUSION_COLUMNS = list(artifacts.EXCLUSION_COLUMNS)


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder; sub-folders are created on first access."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    def _sub(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def tables(self) -> Path:
        return self._sub("tables")

    @property
    def figures(self) -> Path:
        return self._sub("figures")

    @property
    def cache(self) -> Path:
        return self._sub("cache")

    @property
    def models(self) -> Path:
        return self._sub("models")

    @property
    def predictions(self) -> Path:
        return self._sub("predictions")

    @property
    def notebooks(self) -> Path:
        return self._sub("notebooks")

    @property
    def params_file(self) -> Path:
        return self.root / artifacts.PARAMS.pattern

    @property
    def exclusions_file(self) -> Path:
        return self.root / artifacts.EXCLUSIONS.pattern

    def record_issue(self, patient_id: str, stage: str, severity: str, file: str | Path | None,
                     message: str) -> None:
        """Append one excluded (``severity='excluded'``) or warned (``'warning'``) patient to exclusions.csv.

        ``file`` is shown by name only, so no folder names (which may hold identifiers) leak into the report.
        """
        if severity not in ("excluded", "warning"):
            raise ValueError(f"severity must be 'excluded' or 'warning', got {severity!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        new = not self.exclusions_file.exists()
        with self.exclusions_file.open("a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(EXCLUSION_COLUMNS)
            writer.writerow([patient_id, stage, severity, Path(file).name if file else "", message])

    def clear_issues(self, stage: str) -> None:
        """Forget one stage's rows before that stage runs again (a fixed patient is no longer listed)."""
        if self.exclusions_file.exists():
            table = pd.read_csv(self.exclusions_file, dtype=str).fillna("")
            table[table["stage"] != stage].to_csv(self.exclusions_file, index=False)

    def exclusions(self, stage: str | None = None) -> pd.DataFrame:
        """The exclusion log (optionally one stage's rows), an empty table when nothing was logged."""
        if not self.exclusions_file.exists():
            return pd.DataFrame(columns=EXCLUSION_COLUMNS)
        table = pd.read_csv(self.exclusions_file, dtype=str).fillna("")
        table = table.drop_duplicates()
        return table if stage is None else table[table["stage"] == stage].reset_index(drop=True)

    def excluded_ids(self) -> set[str]:
        """Patients excluded at any stage so far."""
        table = self.exclusions()
        return set(table.loc[table["severity"] == "excluded", "patient_id"])
