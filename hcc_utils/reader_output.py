"""What ITK and GDCM write to the console while a file is read, caught and cut to one line per message.

ITK and GDCM print their warnings (e.g. ``WARNING: In .../itkImageSeriesReader.hxx, line 502 ...
ImageSeriesReader (0x55ee71419a60): Non uniform sampling or missing slices detected``) straight to the process's
standard error, where they would reach a notebook or a terminal raw, with the build's source paths and, at
times, the data's folders. :func:`reader_messages` catches them around a read (``hcc_utils.io`` uses it for
every reader) and :func:`summarise_reader_output` turns each into one line without folder names::

    >>> notes = []
    >>> with reader_messages(notes, "HCC0003", series_folder):
    ...     image = reader.Execute()
    >>> notes
    ['ImageSeriesReader: Non uniform sampling or missing slices detected, maximum nonuniformity:0.02']
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hcc_utils.inputs_check import place

_LOG = logging.getLogger(__name__)
_STDERR_LOCK = threading.RLock()  # file descriptor 2 is the process's: one capture at a time
_NOTE_CHARS = 200


@contextmanager
def reader_messages(notes: list[str] | None, patient_id: str | None = None, path: Path | str | None = None,
                    role: str = "image") -> Iterator[None]:
    """Catch what is written to standard error (file descriptor 2, where ITK and GDCM write) inside the block.

    Each warning or error block becomes one line (:func:`summarise_reader_output`) appended to ``notes``, or
    logged when ``notes`` is None, also when the block raises. Python's own ``sys.stderr`` is flushed first and
    is not captured where it is not file descriptor 2 (pytest, Jupyter). Threads share the descriptor, so one
    capture runs at a time; processes (joblib's default) each have their own.
    """
    with _STDERR_LOCK, tempfile.TemporaryFile() as captured:
        saved = _redirect_stderr(captured.fileno())
        try:
            yield
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            for line in summarise_reader_output(text, [] if path is None else [Path(path)]):
                if notes is not None:
                    notes.append(line)
                else:
                    where = place(patient_id, path, "folder" if path and Path(path).is_dir() else "file")
                    _LOG.warning("%s: the %s reader warned: %s", where or "reading", role, line)


def _redirect_stderr(target: int) -> int | None:
    """Point file descriptor 2 at ``target``; the saved descriptor to restore, or None when there is no standard
    error to redirect (nothing is captured then)."""
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    try:
        saved = os.dup(2)
    except OSError:
        return None
    os.dup2(target, 2)
    return saved


_BLOCK_START = re.compile(r"^\s*(WARNING|ERROR|Warning|Error)\b")
_SOURCE = re.compile(r"^\s*(WARNING|ERROR|Warning|Error)\s*:?\s*(In\s+\S+?,\s*line\s+\d+(,\s*function\s+.*)?)?")
_POINTER = re.compile(r"\s*\(0x[0-9a-fA-F]+\)")
_FOLDERS = re.compile(r"[^\s'\"(),;=]*[\\/]")  # everything up to the last slash of a path-like token


def summarise_reader_output(text: str, paths: Sequence[Path] = ()) -> list[str]:
    """One line per warning or error block of ITK/GDCM output, e.g. ``"ImageSeriesReader: Non uniform sampling
    or missing slices detected, maximum nonuniformity:2.25"``: the source-code location and object addresses are
    dropped, every path is cut to its last name (folders may hold identifiers), repeats are merged, and each
    line is at most 200 characters. Text before the first block counts as one block."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if _BLOCK_START.match(line) or not blocks:
            blocks.append([])
            line = _SOURCE.sub("", line, count=1)
        blocks[-1].append(line.strip())
    lines: list[str] = []
    for block in blocks:
        joined = " ".join(part for part in block if part)
        for path in paths:  # the known folders first (they may hold spaces), then anything path-like
            known = {str(path), str(path.resolve()), str(path.parent), str(path.resolve().parent)}
            for folder in sorted(known, key=len, reverse=True):
                if folder not in ("", ".", os.sep):
                    joined = joined.replace(folder + os.sep, "")
        joined = _FOLDERS.sub("", _POINTER.sub("", joined))
        joined = re.sub(r"\s+", " ", joined).strip(" :,;.")
        if len(joined) > _NOTE_CHARS:
            joined = joined[: _NOTE_CHARS - 3].rstrip() + "..."
        if joined and joined not in lines:
            lines.append(joined)
    return lines
