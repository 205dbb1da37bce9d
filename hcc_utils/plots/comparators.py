"""Figures of notebook 11 (``hcc_utils.comparators``): the comparators' validation ROC curves, ABMIL's attention
per slice offset and the 3D CNN's training history."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

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
        label = f"{row.comparator}: {row.auc:.3f} ({row.auc_low:.3f}–{row.auc_high:.3f})"
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
