"""The nomogram of a logistic model (notebook 05, the Combined model; docs/method.md section 5, "Combined").

The classic layout, top to bottom:

- **Points** (0-100);
- one axis per predictor, spanning its observed training range ``[low, high]``. A value ``x`` of predictor ``j``
  (coefficient ``b_j``, log-odds per unit) scores ``100 * b_j * (x - ref_j) / R`` points, ``ref_j`` the end of the
  range that scores 0 (``low`` when ``b_j > 0``, ``high`` when ``b_j < 0``: that axis runs right to left) and
  ``R = max_j |b_j| * (high_j - low_j)``, so the predictor with the widest effect spans 0-100;
- **Total points**, the sum over predictors, 0 to the sum of their maxima (drawn on the same width, its own scale);
- **Probability** of ER: total points ``T`` read as ``P = 1 / (1 + exp(-(a + sum_j b_j * ref_j + T * R / 100)))``,
  ``a`` the intercept; ticks at round probabilities within the reachable range.

``nomogram(axes, intercept)`` takes ``combined.CombinedModel.nomogram_axes()`` (term, label, coefficient, low,
high, levels) and returns a matplotlib Figure; ``points_scale`` gives the arithmetic alone (tests).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

PROBABILITY_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
WIDTH = 100.0
MIN_GAP = 4.5
"""Least distance between two labelled ticks of an axis, in points (of the 0-100 width)."""
SHORT = 15.0
"""A predictor axis shorter than this (points) shows the ends of its range only, labelled outwards."""


def points_scale(axes: pd.DataFrame, intercept: float) -> dict:
    """The nomogram's arithmetic: ``R`` (log-odds per 100 points), each predictor's 0-point value ``ref`` and
    maximum points, the total-points maximum and the linear predictor at 0 total points (``base``).

    Raises:
        ValueError: no predictor has an effect over its range (every ``|b| * (high - low)`` is 0).
    """
    spans = (axes["coefficient"].abs() * (axes["high"] - axes["low"])).to_numpy(float)
    if not len(spans) or spans.max() <= 0:
        raise ValueError("nomogram: no predictor changes the prediction over its training range")
    span = float(spans.max())
    ref = np.where(axes["coefficient"] >= 0, axes["low"], axes["high"]).astype(float)
    return {"R": span, "ref": ref, "max_points": WIDTH * spans / span, "total_max": float((WIDTH * spans / span).sum()),
            "base": float(intercept + np.sum(axes["coefficient"].to_numpy(float) * ref))}


def _axis(ax, y: float, label: str, positions, texts, extent=(0.0, WIDTH), outward: bool = False) -> None:
    """One horizontal scale at height ``y``: a line over ``extent``, ticks at ``positions`` labelled ``texts``; a
    tick closer than ``MIN_GAP`` points to one already drawn is left out, so labels do not overlap. ``outward``
    (a short axis, its two ends only): the left end's label ends at the tick, the right end's starts there."""
    ax.plot(extent, [y, y], color="black", lw=1)
    drawn: list[float] = []
    for x, text in zip(positions, texts, strict=True):
        if not outward and any(abs(x - d) < MIN_GAP for d in drawn):
            continue
        drawn.append(x)
        ax.plot([x, x], [y, y + 0.18], color="black", lw=1)
        align = ("right" if x <= min(positions) else "left") if outward else "center"
        ax.text(x, y + 0.25, text, ha=align, va="bottom", fontsize=7.5)
    ax.text(-4, y, label, ha="right", va="center", fontsize=9)


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _round(values: np.ndarray) -> list[str]:
    return [f"{v:g}" for v in np.round(values, 6)]


def nomogram(axes: pd.DataFrame, intercept: float, title: str = "Nomogram: probability of early recurrence"):
    """Draw the nomogram (module docstring) of the predictors in ``axes`` (term, label, coefficient, low, high,
    optional levels) and the model's ``intercept`` (log-odds)."""
    scale = points_scale(axes, intercept)
    rows = len(axes) + 3
    fig, ax = plt.subplots(figsize=(9.5, 0.62 * rows + 0.9))
    y = rows - 1.0
    ticks = np.arange(0, 101, 10)
    _axis(ax, y, "Points", ticks, [str(t) for t in ticks])
    for k, row in enumerate(axes.itertuples(index=False)):
        y -= 1
        levels = getattr(row, "levels", None)
        short = scale["max_points"][k] < SHORT
        if isinstance(levels, dict) and levels:
            values = np.array([v for v in levels if row.low <= v <= row.high], dtype=float)
            texts = [levels[v] for v in values]
        else:
            bins = int(np.clip(round(scale["max_points"][k] / 12), 1, 6))  # fewer ticks on a short axis
            inner = MaxNLocator(nbins=bins).tick_values(row.low, row.high)
            inner = inner[(inner > row.low) & (inner < row.high)] if not short else []
            values = np.array([row.low, row.high, *inner])  # the range's ends first: they are always labelled
            texts = [_fmt(row.low), _fmt(row.high), *_round(np.asarray(inner))]
        positions = WIDTH * row.coefficient * (values - scale["ref"][k]) / scale["R"]
        _axis(ax, y, row.label, positions, texts, extent=(0.0, scale["max_points"][k]),
              outward=short and len(values) == 2)
    y -= 1
    total_max = scale["total_max"]
    totals = MaxNLocator(nbins=8, integer=True).tick_values(0, total_max)
    totals = totals[(totals >= 0) & (totals <= total_max + 1e-9)]
    _axis(ax, y, "Total points", WIDTH * totals / total_max, _round(totals))
    y -= 1
    lp_low, lp_high = scale["base"], scale["base"] + scale["R"] * total_max / WIDTH
    probs = np.array([p for p in PROBABILITY_TICKS if lp_low <= np.log(p / (1 - p)) <= lp_high])
    at = (np.log(probs / (1 - probs)) - lp_low) / (lp_high - lp_low) * WIDTH if len(probs) else probs
    extent = (float(at.min()), float(at.max())) if len(probs) else (0.0, WIDTH)
    _axis(ax, y, "Probability of ER", at, [f"{p:g}" for p in probs], extent=extent)
    ax.set(xlim=(-30, WIDTH + 5), ylim=(y - 0.6, rows - 0.3), title=title)
    ax.axis("off")
    fig.tight_layout()
    return fig
