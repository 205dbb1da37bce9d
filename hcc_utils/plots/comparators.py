"""Figures of the comparators chapter (notebook 11; issue 19).

* :func:`attention_by_offset`: which slice offsets the ABMIL comparator's attention uses
  (:mod:`hcc_utils.comparators_abmil`).

Every function returns a matplotlib Figure (nothing is saved here).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hcc_utils.palette import NEUTRAL_GREY, OKABE_ITO

SPLIT_STYLE = {"train": ("training", OKABE_ITO["bluish green"]), "validation": ("validation", OKABE_ITO["orange"])}
"""Label and colour of each set of patients; any other split value is drawn in the remaining Okabe-Ito colours."""
_SPARE_COLOURS = [OKABE_ITO[name] for name in ("reddish purple", "sky blue", "yellow", "black")]


def attention_by_offset(weights: np.ndarray, offsets: list[int], split: np.ndarray | list[str]) -> Figure:
    """Which slice offsets the attention uses: per offset and set of patients (training, validation) a box of the
    patients' attention weights (whiskers 1.5 IQR, outliers as points), the mean joined by a line, and the uniform
    weight 1/K as a dashed line. x = offset (slices from the central one), y = attention weight (fraction of the
    patient's total, rows of ``weights`` sum to 1).

    Args:
        weights: (n_patients, K) attention weights, e.g. ``train_abmil(...).weights``.
        offsets: the K offsets, in the order of ``weights``' columns.
        split: (n_patients,) the set of each patient (``train``, ``validation``).
    """
    weights, split = np.asarray(weights, dtype=float), np.asarray(split).astype(str)
    if weights.ndim != 2 or weights.shape[1] != len(offsets) or len(split) != len(weights):
        raise ValueError(f"attention_by_offset: weights {weights.shape} do not match {len(offsets)} offsets and "
                         f"{len(split)} split labels; give (n_patients, K) weights with one split per patient")
    groups = [s for s in SPLIT_STYLE if s in set(split)] + sorted(set(split) - set(SPLIT_STYLE))
    positions = np.asarray(offsets, dtype=float)
    step = np.min(np.diff(np.sort(positions))) if len(positions) > 1 else 1.0
    width = 0.8 * step / max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.4 * len(offsets) * max(len(groups), 1)), 4.2))
    spare = iter(_SPARE_COLOURS * 4)
    for g, group in enumerate(groups):
        label, colour = SPLIT_STYLE.get(group, (group, None))
        colour = colour or next(spare)
        rows = weights[split == group]
        at = positions + (g - (len(groups) - 1) / 2) * width
        ax.boxplot(rows, positions=at, widths=0.85 * width, manage_ticks=False, patch_artist=True,
                   boxprops={"facecolor": colour, "alpha": 0.35, "edgecolor": colour},
                   medianprops={"color": colour}, whiskerprops={"color": colour}, capprops={"color": colour},
                   flierprops={"marker": ".", "markersize": 3, "markerfacecolor": colour,
                               "markeredgecolor": colour})
        ax.plot(at, rows.mean(axis=0), marker="o", ms=4, color=colour, lw=1.2,
                label=f"{label} (n = {len(rows)} patients): mean")
    ax.axhline(1 / len(offsets), ls="--", color=NEUTRAL_GREY, lw=1, label=f"uniform 1/K = 1/{len(offsets)}")
    ax.set_xticks(positions, [f"{o:+d}" if o else "0" for o in offsets])
    ax.set(xlabel="Slice offset (slices from the central one)", ylabel="Attention weight (fraction)",
           ylim=(0, None), title="ABMIL attention per slice offset")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig
