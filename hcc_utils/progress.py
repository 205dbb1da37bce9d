"""Progress reporting for the package's loops: a tqdm bar where a person watches, one summary line in a batch run.

A tqdm bar redraws itself with carriage returns; a terminal or JupyterLab shows only its last state, but a notebook
executed by papermill keeps every update as a line of output, so a batch run's notebooks (and the book rendered from
them) filled with hundreds of lines like ``epoch 1/5:   3%|...| 2.97s/batch``. The runner therefore sets
``HCC_PROGRESS=summary`` (and ``TQDM_DISABLE=1``, for bars of other packages) in the kernels it starts; every loop
of the package then prints one line when it ends (what, how many, how long) instead of a bar. Anywhere else
(terminal, JupyterLab, tests) the bars are as before.

:func:`progress_lines` finds the lines a progress bar left in a text (a notebook's output, a rendered page), for the
tests that keep them out of the report.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

ENV = "HCC_PROGRESS"
SUMMARY = "summary"

_PLURALS = {"it": "items", "epoch": "epochs"}  # tqdm's default unit; a "-ch" word that takes a plain "s"
# What a tqdm bar leaves in a text: "42%|", a rate ("12.3it/s]", "2.97s/batch]", "?patient/s]"), or the bare words
# of the default unit ("it/s", "s/it"), or a nested bar's cursor-up escape; carriage returns are checked apart.
_BAR_PATTERN = re.compile(
    r"\d{1,3}%\|"
    r"|\bit/s\b|\bs/it\b|/batch\]"
    r"|(?:\d[\d.]*[kMG]?|\?)\s?[A-Za-z_]+/s\]"
    r"|\d[\d.]*s/[A-Za-z_]+\]"
    r"|\x1b\[A"  # a nested bar moving the cursor up
)


def summary_mode() -> bool:
    """Whether loops print one summary line each instead of a progress bar (``HCC_PROGRESS=summary``).

    The runner sets it for the kernels of a batch run, whose notebooks would otherwise keep every redraw of every
    bar (module docstring)."""
    return os.environ.get(ENV, "").strip().lower() == SUMMARY


def plural(n: int, unit: str) -> str:
    """``unit`` for a count ``n``: ``1 patient``, ``2 patients``, ``3 batches``, ``4 items`` (tqdm's ``it``)."""
    if n == 1:
        return "item" if unit == "it" else unit
    if unit in _PLURALS:
        return _PLURALS[unit]
    if unit.endswith(("s", "x", "ch", "sh")):
        return unit + "es"
    return unit + "s"


class _Summary:
    """The loop's items, without a bar; one line to stdout once they are exhausted (:func:`progress`).

    Has tqdm's ``set_postfix``, ``set_description`` and ``close`` as no-ops, so a loop that annotates its bar
    runs unchanged."""

    def __init__(self, iterable: Iterable, desc: str, unit: str, disable: bool) -> None:
        self.iterable, self.desc, self.unit, self.disable = iterable, desc, unit, disable
        self.n = 0

    def __iter__(self) -> Iterator:
        start = time.perf_counter()
        for item in self.iterable:
            self.n += 1
            yield item
        if not self.disable:
            print(f"{self.desc}: {self.n} {plural(self.n, self.unit)} in {time.perf_counter() - start:.1f} s",
                  flush=True)

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """No bar to annotate."""

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        """No bar to annotate."""

    def close(self) -> None:
        """Nothing to close."""


def progress(iterable: Iterable, *, total: int | None = None, desc: str, unit: str = "it",
             **tqdm_kwargs: Any) -> Iterable:
    """Iterate over ``iterable`` with a progress bar, or with one summary line at the end in a batch run.

    Args:
        iterable: the loop's items.
        total: their number when ``iterable`` has no length (a generator); for the bar only.
        desc: what the loop does ("2.5D stacks"); starts the bar and the summary line.
        unit: what one item is ("patient"), singular.
        **tqdm_kwargs: passed to ``tqdm.tqdm`` (``disable``, ``leave``, ``mininterval``...). ``disable=True`` shows
            nothing in either mode.

    Returns:
        In summary mode (:func:`summary_mode`) an iterable that yields the same items and, once they are exhausted
        (not when the loop breaks or raises), prints ``"{desc}: {n} {unit}s in {seconds:.1f} s"``; otherwise a
        ``tqdm.tqdm`` bar, as the loops had before.
    """
    if summary_mode():
        return _Summary(iterable, desc, unit, bool(tqdm_kwargs.get("disable", False)))
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, **tqdm_kwargs)


def progress_lines(text: str) -> list[str]:
    """The lines of ``text`` a progress bar left: tqdm's ``NN%|``, a rate (``it/s``, ``s/it``, ``2.97s/batch]``,
    ``12.0patient/s]``), a carriage return (a redraw) or a nested bar's cursor-up escape; for the tests that keep
    them out of executed notebooks and rendered pages."""
    return [line for line in text.split("\n") if "\r" in line or _BAR_PATTERN.search(line)]
