"""Figures of notebook 11 (``hcc_utils.comparators``): the comparators' validation ROC curves, ABMIL's attention
per slice offset and the 3D CNN's training history."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hcc_utils.palette import NEUTRAL_GREY, OKABE_ITO

FAMILY_COLOURS = {"the paper's design": OKABE_ITO["black"], "single slice": OKABE_ITO["orange"],
                  "simple pooling": OKABE_ITO["sky blue"], "one MIL feature family": OKABE_ITO["bluish green"],
                  "attention MIL": OKABE_ITO["vermillion"], "slice offsets": OKABE_ITO["blue"],
                  "3D CNN": OKABE_ITO["reddish purple"]}
LINE_STYLES = ["-", "--", ":", "-."]


def roc_figure(roc: pd.DataFrame, table: pd.DataFrame, ci_level: float = 0.95):
    """Validation ROC curve of DL-MIL and each comparator, coloured by family (line style within a family); the
    legend gives each AUC with its DeLong CI. ``roc``: comparator, fpr, tpr (``comparators.roc_table``);
    ``table``: ``tables/comparators.csv``. None when no curve can be drawn."""
    if roc.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.6, 5.6))
    seen: dict[str, int] = {}
    for row in table.itertuples(index=False):
        curve = roc[roc["comparator"] == row.comparator]
        if curve.empty:
            continue
        style = LINE_STYLES[seen.get(row.family, 0) % len(LINE_STYLES)]
        seen[row.family] = seen.get(row.family, 0) + 1
        interval = (f"{row.auc_low:.3f}–{row.auc_high:.3f}" if np.isfinite(row.auc_low)
                    else "constant score, no interval")
        label = f"{row.comparator}: {row.auc:.3f} ({interval})"
        ax.step(curve["fpr"], curve["tpr"], where="post", ls=style, lw=2.2 if row.family == "the paper's design"
                else 1.4, color=FAMILY_COLOURS.get(row.family, NEUTRAL_GREY), label=label)
    ax.plot([0, 1], [0, 1], ls="--", color=NEUTRAL_GREY, lw=0.8)
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", xlabel="1 − specificity (fraction)",
           ylabel="Sensitivity (fraction)", title="Validation patients")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7.5, frameon=False,
              title=f"AUC ({ci_level:.0%} CI, DeLong)", title_fontsize=8)
    fig.tight_layout()
    return fig


def cnn3d_history(history: pd.DataFrame | None, best_epoch: int | None):
    """The 3D CNN's training loss (left axis) and selection AUC (right axis) per epoch, the kept epoch marked;
    None when the 3D CNN did not run."""
    if history is None or history.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    ax.plot(history["epoch"], history["loss"], color=OKABE_ITO["blue"], marker="o", ms=3, label="training loss")
    ax.set(xlabel="Epoch", ylabel="Training loss (cross-entropy)")
    right = ax.twinx()
    right.plot(history["epoch"], history["selection_auc"], color=OKABE_ITO["vermillion"], marker="s", ms=3,
               label="selection AUC")
    if best_epoch is not None:
        kept = history[history["epoch"] == best_epoch]
        right.plot(kept["epoch"], kept["selection_auc"], "o", ms=9, mfc="none", color=OKABE_ITO["black"],
                   label=f"kept: epoch {best_epoch}")
    right.set(ylabel="Selection AUC", ylim=(0, 1.02))
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="lower left")
    ax.set_xticks(np.unique(history["epoch"].to_numpy()))
    fig.tight_layout()
    return fig


SPLIT_STYLE = {"train": ("training", OKABE_ITO["bluish green"]), "validation": ("validation", OKABE_ITO["orange"])}
"""Label and colour of each set of patients; any other split value is drawn in the remaining Okabe-Ito colours."""
_SPARE_COLOURS = [OKABE_ITO[name] for name in ("reddish purple", "sky blue", "yellow", "black")]


def attention_by_offset(weights: np.ndarray | None, offsets: list[int], split: np.ndarray | list[str] | None
                        ) -> Figure | None:
    """Which slice offsets the attention uses: per offset and set of patients (training, validation) a box of the
    patients' attention weights (whiskers 1.5 IQR, outliers as points), the mean joined by a line, and the uniform
    weight 1/K as a dashed line. x = offset (slices from the central one), y = attention weight (fraction of the
    patient's total, rows of ``weights`` sum to 1).

    Args:
        weights: (n_patients, K) attention weights, e.g. ``train_abmil(...).weights``.
        offsets: the K offsets, in the order of ``weights``' columns.
        split: (n_patients,) the set of each patient (``train``, ``validation``).

    None (nothing to draw) when ``weights`` is None: ABMIL did not run.
    """
    if weights is None:
        return None
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
           title="ABMIL attention per slice offset")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    fig.tight_layout()
    return fig
