"""The manifest: its schema, and reading it with every problem reported at once (docs/method.md sections 1 and 5).

:func:`read_manifest` returns a :class:`ManifestResult`: ``table``, the usable rows cleaned and coded as
``cohort.load_manifest`` returns them, and ``problems``, one row per problem (``PROBLEM_COLUMNS``; ``row`` is the
line of the file, 1-based, the header being line 1). A bad row never stops the other patients;
``cohort.load_manifest(..., invalid_rows="stop")`` turns excluded rows into one error listing all of them.

- **The whole file** (:class:`CohortError`): missing; not comma-separated UTF-8 text (a header split by ';',
  tabs or '|' is named; a row with more fields than the header is refused); a required column missing; no
  patient rows; every usable patient with the same ``er``; fewer than ``MIN_PER_OUTCOME`` of an outcome.
- **Excluded** (that patient, never the cohort): ``er`` empty or not 0/1; an empty ``patient_id``; a
  ``patient_id`` on several rows (every copy: which one is right cannot be known); an empty ``image`` or
  ``mask``. Without a label, an identity or a scan a patient cannot be modelled.
- **Warning** (the patient kept, the value left missing): a clinical or pathology value that is not a number or
  is impossible: ``age`` outside 0-120 years; a negative ``afp`` (ng/mL), ``alb`` (g/L), ``ast`` or ``alt``
  (U/L), ``bmi`` (kg/m2) or ``hbsag`` (IU/mL); ``ki67`` outside [0, 1] (a fraction, not percent); ``alcohol``
  not 0/1, ``mvi_grade`` not 0/1/2, ``edmondson`` not 1-4; a ``gender`` other than M, F, male or female (any
  case). Missing clinical values follow ``clinical.missing``; Table 2 and the pathology correlations use the
  observed values. Also warned: a path starting or ending with a space (kept as written), an empty row (skipped).

Assay limits (docs/method.md section 5, clinical): a continuous value written ``<20`` or ``< 20`` (below the
detection limit) is taken as the limit, 20, with the warning "below the detection limit: taken as 20"; ``>1210``
(above the reporting limit) likewise as 1210. The limit stands in for a value beyond it, and every such cell is
listed.

The smallest cohort, ``MIN_PER_OUTCOME`` = 3 usable patients of each outcome (6 in all), is a first floor only:
the split asks for more (``intake.MIN_PER_CLASS``: 3 training and 2 validation patients of each outcome), and the
shared recipe refuses fewer than 3 training patients per outcome (``modeling.fit_recipe``: every CV fold's
selection is fitted on at least 2; its CV folds, Lasso folds and SMOTE's k shrink to fit, with notes).

Messages name the patient (the manifest's ``patient_id``, nothing else), the row, the column, the value found
and what to do. A path is shown by its file name only, quoted so a stray space shows, never its folders (which
may hold identifiers).
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MANIFEST_COLUMNS = ["patient_id", "image", "mask", "mask_reader2", "er", "scanner", "age", "gender", "bmi",
                    "alcohol", "hbsag", "afp", "alb", "ast", "alt", "mvi_grade", "ki67", "edmondson"]
REQUIRED_COLUMNS = ["patient_id", "image", "mask", "er"]
PATH_COLUMNS = ["image", "mask", "mask_reader2"]
NUMERIC_COLUMNS = ["er", "age", "bmi", "alcohol", "hbsag", "afp", "alb", "ast", "alt", "mvi_grade", "ki67",
                   "edmondson"]
ALLOWED_VALUES = {"er": {0, 1}, "alcohol": {0, 1}, "mvi_grade": {0, 1, 2}, "edmondson": {1, 2, 3, 4}}
RANGES = {"age": (0.0, 120.0, "years"), "bmi": (0.0, math.inf, "kg/m2"), "hbsag": (0.0, math.inf, "IU/mL"),
          "afp": (0.0, math.inf, "ng/mL"), "alb": (0.0, math.inf, "g/L"), "ast": (0.0, math.inf, "U/L"),
          "alt": (0.0, math.inf, "U/L"), "ki67": (0.0, 1.0, "a fraction")}
"""Continuous columns: the possible values (inclusive) and the unit. Values at an assay limit are accepted here."""
CODINGS = {"alcohol": "1 = yes, 0 = no", "mvi_grade": "M0/M1/M2 as 0/1/2", "edmondson": "grade I-IV as 1-4"}
PROBLEM_COLUMNS = ["patient_id", "row", "column", "value", "severity", "message"]
MIN_PER_OUTCOME = 3
"""Usable patients needed per outcome: 2 to train (the recipe's floor) and 1 to validate (see the docstring)."""
SEPARATORS = {";": "';'", "\t": "tabs", "|": "'|'"}
_LIMIT = re.compile(r"^([<>])\s*=?\s*(\S+)$")


class CohortError(ValueError):
    """A manifest that cannot be used; the message names the file, the rows and what to do."""


@dataclass
class ManifestResult:
    """The manifest as read: the usable rows and every problem found.

    Attributes:
        table: the usable rows, cleaned and coded as ``cohort.load_manifest`` returns them (absolute paths).
        problems: one row per problem, columns ``PROBLEM_COLUMNS``; ``severity`` is ``excluded`` (the row is not
            in ``table``) or ``warning`` (kept; the value left missing or taken as a limit).
    """

    table: pd.DataFrame
    problems: pd.DataFrame

    @property
    def excluded(self) -> pd.DataFrame:
        """The problems that left a row out."""
        return self.problems[self.problems["severity"] == "excluded"]


def format_problems(problems: pd.DataFrame) -> str:
    """One line per problem, excluded rows first: ``  excluded: <message>``."""
    order = problems.assign(_first=problems["severity"] != "excluded").sort_values(["_first", "row"], kind="stable")
    return "\n".join(f"  {p.severity}: {p.message}" for p in order.itertuples())


def _q(value) -> str:
    """A value as written, quoted so that spaces and tabs show: ``'images/P1.nii.gz '``."""
    return repr(str(value))


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise CohortError(f"{path}: manifest not found; point 'cohort.manifest' in your params file at your "
                          "cohort.csv, or use 'cohort: {synthetic: {...}}'")
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04":
        raise CohortError(f"{path}: this is a spreadsheet workbook (zip), not a CSV text file; save it as "
                          "comma-separated CSV (UTF-8)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CohortError(f"{path}: not UTF-8 text (byte {err.start} cannot be decoded); save the manifest as "
                          "comma-separated CSV in UTF-8") from None


def _parse(path: Path, text: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The file twice: every cell as written (strings, NaN when empty) and pandas' own typing (extra columns)."""
    try:
        with warnings.catch_warnings():  # trailing empty fields: index_col=False drops them (a ParserWarning)
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            raw = pd.read_csv(io.StringIO(text), dtype=str, index_col=False)
            typed = pd.read_csv(io.StringIO(text), dtype={"patient_id": str, "scanner": str, "gender": str},
                                index_col=False)
    except pd.errors.EmptyDataError:
        raise CohortError(f"{path}: the file is empty (no header line); the manifest needs a header with at "
                          f"least {REQUIRED_COLUMNS} and one row per patient") from None
    except (pd.errors.ParserError, csv.Error, ValueError) as err:
        raise CohortError(f"{path}: cannot be parsed as comma-separated CSV ({str(err).strip()}); check the "
                          "quoting and the number of fields on that line") from None
    for table in (raw, typed):
        table.columns = [str(c).strip() for c in table.columns]
    return raw, typed


def _separator(text: str, n_columns: int) -> str:
    """How the header seems to be separated (``';'``, ``tabs``, ``'|'``) when commas split it less; else ``""``."""
    header = text.splitlines()[0] if text else ""
    counts = {sep: header.count(sep) for sep in SEPARATORS}
    sep = max(counts, key=counts.get)
    return SEPARATORS[sep] if counts[sep] and counts[sep] + 1 > n_columns else ""


def _records(text: str) -> list[tuple[int, list[str]]]:
    """The file's records as the csv module reads them, each with its first line (1-based); blank lines left out,
    as pandas leaves them out. Empty when the csv module cannot read the text (pandas then says why)."""
    records, previous = [], 0
    try:
        reader = csv.reader(io.StringIO(text))
        for record in reader:
            start, previous = previous + 1, reader.line_num
            if record and not (len(record) == 1 and not record[0].strip()):
                records.append((start, record))
    except csv.Error:
        return []
    return records


def _check_fields(path: Path, records: list[tuple[int, list[str]]]) -> None:
    """Refuse rows with more non-empty fields than the header (a comma inside a value shifts every column after
    it); trailing empty fields, as some spreadsheets write them, are fine."""
    if not records:
        return
    width = len(records[0][1])
    long = [(line, len(r)) for line, r in records[1:] if len(r) > width and any(f.strip() for f in r[width:])]
    if long:
        lines = ", ".join(f"line {line} ({n} fields)" for line, n in long[:5]) + (" ..." if len(long) > 5 else "")
        raise CohortError(f"{path}: {len(long)} row(s) have more fields than the header's {width}: {lines}; a comma "
                          'inside a value? quote the value ("a, b") or remove the comma')


class _Problems:
    """Collects problems; ``label`` gives a column as the file names it (``'recurrence' (er)`` when mapped)."""

    def __init__(self, columns: dict[str, str]):
        self.rows: list[dict] = []
        self.columns = columns

    def label(self, column: str) -> str:
        theirs = self.columns.get(column)
        return f"'{theirs}' ({column})" if theirs and theirs != column else f"'{column}'"

    def add(self, pid: str, row: int, column: str, value, severity: str, what: str) -> None:
        where = [f"patient {pid}" if pid else "", f"row {row}", f"column {self.label(column)}" if column else ""]
        self.rows.append({"patient_id": pid, "row": row, "column": column,
                          "value": "" if pd.isna(value) else str(value), "severity": severity,
                          "message": ", ".join(w for w in where if w) + f": {what}"})

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=PROBLEM_COLUMNS).astype({"row": int})


def _stripped(values: pd.Series) -> pd.Series:
    """Cells as text without surrounding spaces; empty ones NaN."""
    return pd.Series([v.strip() if isinstance(v, str) and v.strip() else math.nan for v in values],
                     index=values.index, dtype=object)


def _check_ids(pids: pd.Series, lines: dict[int, int], found: _Problems, out: set[int]) -> None:
    for i in pids.index[pids.isna()]:
        found.add("", lines[i], "patient_id", "", "excluded",
                  f"no patient_id in row {lines[i]}: row excluded; give every patient a (pseudonymous) id")
        out.add(i)
    named = pids.dropna()
    for pid, copies in named.groupby(named).groups.items():
        if len(copies) > 1:
            rows = ", ".join(str(lines[i]) for i in copies)
            for i in copies:
                found.add(pid, lines[i], "patient_id", pid, "excluded",
                          f"patient_id {_q(pid)} is on rows {rows}: every copy excluded; keep one row per patient")
                out.add(i)


def _check_outcome(raw: pd.Series, pids: pd.Series, lines: dict[int, int], found: _Problems, out: set[int]) -> None:
    values = _stripped(raw)
    for i in raw.index:
        if pd.isna(values[i]):
            what = "'er' is empty"
        else:
            number = pd.to_numeric(values[i], errors="coerce")
            if number in (0, 1):
                continue
            what = f"found {_q(raw[i])}, not 0 or 1"
        found.add(pids[i], lines[i], "er", raw[i], "excluded", f"{what}: patient excluded; give 1 (recurrence "
                  "within 2 years of resection) or 0 (none)")
        out.add(i)


def _check_paths(raw: pd.DataFrame, pids: pd.Series, lines: dict[int, int], found: _Problems, out: set[int]) -> None:
    for column in PATH_COLUMNS:
        for i, value in raw[column].items():
            if pd.isna(value) or not str(value).strip():
                if column != "mask_reader2":
                    role = "image" if column == "image" else "mask"
                    found.add(pids[i], lines[i], column, value, "excluded", f"no {role} given in row {lines[i]}: "
                              f"patient excluded; give the {role} path, relative to the manifest")
                    out.add(i)
            elif value != value.strip():
                lead, trail = value[: len(value) - len(value.lstrip())], value[len(value.rstrip()):]
                shown = _q(lead + Path(value.strip()).name + trail)
                ends = " and ".join(w for w, blank in (("starts", lead), ("ends", trail)) if blank)
                found.add(pids[i], lines[i], column, shown, "warning", f"the path {shown} (file name shown) {ends} "
                          "with a space; it is used as written: remove the space unless the file's name has it")


def _clean_continuous(column: str, raw: pd.Series, pids: pd.Series, lines: dict[int, int],
                      found: _Problems) -> pd.Series:
    low, high, unit = RANGES[column]
    values = _stripped(raw)
    for i, text in values.dropna().items():
        limit = _LIMIT.match(text)
        number = pd.to_numeric(limit.group(2) if limit else text, errors="coerce")
        if pd.isna(number) or not math.isfinite(number):
            comma = " (a decimal comma? write a point)" if re.fullmatch(r"-?\d+,\d+", text) else ""
            values[i] = None
            found.add(pids[i], lines[i], column, raw[i], "warning", f"{_q(raw[i])} is not a number{comma}: "
                      f"left missing; write a number ({unit})")
            continue
        if not low <= number <= high:
            values[i] = None
            if column == "ki67" and number > 1:
                what = "is above 1: left missing; percent? give a fraction in [0, 1], e.g. 35 -> 0.35"
            elif column == "ki67":
                what = "is below 0: left missing; give a fraction in [0, 1]"
            elif number < low and math.isinf(high):
                what = f"is negative: left missing; {column} cannot be below 0 {unit}"
            else:
                what = f"is outside {low:g}-{high:g} {unit}: left missing; check the value"
            found.add(pids[i], lines[i], column, raw[i], "warning", f"{_q(raw[i])} {what}")
        elif limit:
            values[i] = limit.group(2)
            side = "below the detection limit" if limit.group(1) == "<" else "above the reporting limit"
            found.add(pids[i], lines[i], column, raw[i], "warning", f"{_q(raw[i])}: {side}: taken as "
                      f"{limit.group(2)}")
    return values


def _clean_coded(column: str, raw: pd.Series, pids: pd.Series, lines: dict[int, int], found: _Problems) -> pd.Series:
    allowed = ALLOWED_VALUES[column]
    values = _stripped(raw)
    for i, text in values.dropna().items():
        if pd.to_numeric(text, errors="coerce") in allowed:
            continue
        values[i] = None
        codes = ", ".join(str(v) for v in sorted(allowed))
        found.add(pids[i], lines[i], column, raw[i], "warning", f"{_q(raw[i])} is not one of {codes} "
                  f"({CODINGS[column]}): left missing; write one of {codes}")
    return values


def _clean_gender(raw: pd.Series, pids: pd.Series, lines: dict[int, int], found: _Problems) -> pd.Series:
    text = _stripped(raw).astype("string").str.upper()
    coded = text.map({"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}, na_action="ignore").astype("string")
    for i in text.index[text.notna() & coded.isna()]:
        found.add(pids[i], lines[i], "gender", raw[i], "warning", f"{_q(raw[i])} is not M, F, male or female: "
                  "left missing; write M or F")
    return coded


def _cohort_size(path: Path, table: pd.DataFrame, problems: pd.DataFrame, n_rows: int) -> None:
    """Whole-file errors about the usable patients (too few, or one outcome only)."""
    n, n_out = len(table), n_rows - len(table)
    listed = f"\nrows excluded:\n{format_problems(problems[problems['severity'] == 'excluded'])}" if n_out else ""
    who = f"{n} usable patients ({n_out} of {n_rows} rows excluded, listed below)" if n_out else f"{n} patients"
    counts = table["er"].value_counts()
    need = (f"at least {2 * MIN_PER_OUTCOME} are needed for a train/validation split with both outcomes in each "
            f"set ({MIN_PER_OUTCOME} of each outcome: 2 to train the models, 1 to validate)")
    if n == 0:
        raise CohortError(f"{path}: no usable patient: every row was excluded; fix the rows listed{listed}")
    if len(counts) == 1:
        only = int(counts.index[0])
        raise CohortError(f"{path}: all {'usable ' if n_out else ''}patients have er = {only}: the models need "
                          f"both outcomes; add patients with er = {1 - only}{listed}")
    if n < 2 * MIN_PER_OUTCOME:
        raise CohortError(f"{path}: {who}: {need}{listed}")
    if counts.min() < MIN_PER_OUTCOME:
        few = int(counts.idxmin())
        raise CohortError(f"{path}: only {int(counts.min())} of {who} have er = {few}: {MIN_PER_OUTCOME} of each "
                          f"outcome are needed for a train/validation split with both outcomes in each set (2 to "
                          f"train the models, 1 to validate){listed}")


def read_manifest(path: Path | str, columns: dict[str, str] | None = None, outcome: bool = True) -> ManifestResult:
    """Read a manifest, check every row, and return the usable rows with every problem found.

    Args:
        path: ``cohort.csv``; image and mask paths in it are relative to its folder (absolute paths work too).
        columns: manifest column -> the file's own name (``cohort.columns``).
        outcome: False for new patients to score (``hcc_utils.predict``): ``er`` is optional and unchecked (NaN
            when absent), and the cohort-size checks are skipped.

    Returns:
        ManifestResult: ``table`` (usable rows; paths absolute; ``er`` int; codings as in ``hcc_utils.cohort``;
        invalid clinical and pathology values missing) and ``problems`` (see the module docstring).

    Raises:
        CohortError: a problem of the whole file (missing, unparseable, a required column missing, no patient,
            one outcome only, fewer than ``MIN_PER_OUTCOME`` usable patients of an outcome).
    """
    path = Path(path).resolve()
    columns = dict(columns or {})
    text = _read_text(path)
    records = _records(text)
    _check_fields(path, records)
    raw, typed = _parse(path, text)
    rename = {theirs: ours for ours, theirs in columns.items()}
    raw, typed = raw.rename(columns=rename), typed.rename(columns=rename)
    header = [rename.get(c.strip(), c.strip()) for c in (records[0][1] if records else raw.columns)]
    twice = sorted({c for c in header if c in MANIFEST_COLUMNS and header.count(c) > 1})
    if twice:
        raise CohortError(f"{path}: column(s) {twice} appear more than once in the header (with cohort.columns "
                          "applied); keep one of each")
    required = [c for c in REQUIRED_COLUMNS if outcome or c != "er"]
    missing = [c for c in required if c not in raw.columns]
    separator = _separator(text, raw.shape[1])
    if missing and separator:
        raise CohortError(f"{path}: the manifest seems to be separated by {separator} — save it as comma-separated "
                          f"CSV (read with commas, its header is {raw.shape[1]} column(s) and lacks {missing})")
    if missing:
        raise CohortError(f"{path}: missing column(s) {missing}; the manifest needs {required} (map your "
                          "own names with 'cohort.columns' in the params file)")
    if raw.empty:
        raise CohortError(f"{path}: the manifest has a header but no patients; add one row per patient")
    for col in MANIFEST_COLUMNS:
        if col not in raw.columns:
            raw[col], typed[col] = pd.NA, pd.NA
    raw = raw.reset_index(drop=True)
    starts = [line for line, _ in records][1:]  # each row's first line in the file; pandas skips blank lines too
    lines_of = dict(enumerate(starts if len(starts) == len(raw) else range(2, len(raw) + 2)))
    found, out = _Problems(columns), set()
    empty = raw.index[raw.isna().all(axis=1)]
    for i in empty:
        found.add("", lines_of[i], "", "", "warning", "an empty row: skipped")
    pids = _stripped(raw["patient_id"]).drop(empty)
    _check_ids(pids, lines_of, found, out)
    pids = pids.fillna("")
    rows = raw.drop(empty)
    if outcome:
        _check_outcome(rows["er"], pids, lines_of, found, out)
    _check_paths(rows, pids, lines_of, found, out)
    table = typed.loc[rows.index, MANIFEST_COLUMNS + [c for c in typed.columns if c not in MANIFEST_COLUMNS]].copy()
    table["patient_id"] = pids
    for col in NUMERIC_COLUMNS:
        if col in RANGES:
            cleaned = _clean_continuous(col, rows[col], pids, lines_of, found)
        elif col == "er":
            cleaned = _stripped(rows[col])
        else:
            cleaned = _clean_coded(col, rows[col], pids, lines_of, found)
        table[col] = pd.to_numeric(cleaned if rows[col].notna().any() else table[col], errors="coerce")
    table["gender"] = _clean_gender(rows["gender"], pids, lines_of, found)
    table["scanner"] = rows["scanner"]
    for col in PATH_COLUMNS:
        table[col] = [str((path.parent / p).resolve()) if isinstance(p, str) and p.strip() else pd.NA
                      for p in rows[col]]
    problems = found.table()
    order = problems["column"].map({c: k for k, c in enumerate(MANIFEST_COLUMNS)}).fillna(len(MANIFEST_COLUMNS))
    problems = problems.assign(_order=order).sort_values(["row", "_order"], kind="stable")
    problems = problems.drop(columns="_order").reset_index(drop=True)
    table = table.drop(index=sorted(out)).reset_index(drop=True)
    if outcome:
        table["er"] = table["er"].astype(int)
        _cohort_size(path, table, problems, len(rows))
    return ManifestResult(table=table, problems=problems)
