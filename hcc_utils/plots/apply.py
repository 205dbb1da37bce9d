"""Figure of notebook 10: the models' ROC curves on new patients (``hcc_utils.apply``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from hcc_utils import model_registry


def roc_figure(roc: pd.DataFrame | None, aucs: pd.DataFrame | None, title: str, ci_level: float = 0.95):
    """ROC curve of each model on the new patients; the legend gives the AUC with its DeLong CI.

    Args:
        roc: ``model, fpr, tpr`` (``apply.roc_table``); None (no outcome known) draws nothing and returns None.
        aucs: ``model, n, auc, auc_low, auc_high`` (``apply.auc_table``).
    """
    if roc is None or aucs is None:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    for model, curve in roc.groupby("model", sort=False):
        row = aucs.set_index("model").loc[model]
        label = f"{model}: AUC {row['auc']:.3f} ({row['auc_low']:.3f}–{row['auc_high']:.3f}), n = {row['n']}"
        ax.step(curve["fpr"], curve["tpr"], where="post", color=model_registry.colour(model), lw=1.8, label=label)
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=0.8)
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", xlabel="1 − specificity (fraction)",
           ylabel="Sensitivity (fraction)", title=title)
    ax.legend(loc="lower right", fontsize=8, title=f"AUC ({ci_level:.0%} CI, DeLong)", title_fontsize=8)
    fig.tight_layout()
    return fig
