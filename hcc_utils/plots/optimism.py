"""Figures of the optimism audit (notebook 09; docs/method.md section 8, "The optimism audit (notebook 09)").

``optimism_figure``: how much each onekey_compat shortcut adds to the leak-free DL-MIL validation AUC;
``fit_figure``: per model, the apparent, out-of-fold and validation AUC. Both take the tables of
``hcc_utils.optimism.optimism_audit`` and return a matplotlib Figure (nothing is saved here).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hcc_utils import model_registry

FIT_SETS = (("apparent", "training, apparent", "o"), ("out_of_fold", "training, out-of-fold", "s"),
            ("validation", "validation", "D"))


def _whiskers(table: pd.DataFrame, prefix: str) -> np.ndarray:
    """Non-negative (lower, upper) error-bar lengths of ``{prefix}_low``/``_high`` around the AUC (0 where NaN)."""
    auc = table[f"{prefix}_auc" if prefix else "auc"].to_numpy(float)
    low = table[f"{prefix}_low" if prefix else "auc_low"].to_numpy(float)
    high = table[f"{prefix}_high" if prefix else "auc_high"].to_numpy(float)
    return np.nan_to_num(np.clip(np.vstack([auc - low, high - auc]), 0, None))


def optimism_figure(table: pd.DataFrame):
    """Horizontal bars of each variant's DL-MIL validation AUC (fraction) with its DeLong CI, the leak_free value
    as a dashed reference line, each shortcut annotated with what it adds (``optimism``, e.g. "+0.05")."""
    colour = model_registry.colour(model_registry.DL_MIL.name)
    fig, ax = plt.subplots(figsize=(8.0, 0.6 + 0.55 * len(table)))
    y = np.arange(len(table))[::-1]
    reference = table["auc"].iloc[0]
    alphas = [1.0] + [0.55] * (len(table) - 1)
    for yi, auc, alpha in zip(y, table["auc"], alphas, strict=True):
        ax.barh(yi, 0.0 if np.isnan(auc) else auc, color=colour, alpha=alpha, height=0.6)
    ax.errorbar(table["auc"], y, xerr=_whiskers(table, ""), fmt="none", ecolor="black", capsize=3, lw=1)
    if np.isfinite(reference):
        ax.axvline(reference, color="black", ls="--", lw=1, label=f"{table['variant'].iloc[0]}: {reference:.3f}")
    for yi, (_, row) in zip(y[1:], table.iloc[1:].iterrows(), strict=True):
        if np.isfinite(row["optimism"]):
            right = row["auc_high"] if np.isfinite(row["auc_high"]) else row["auc"]
            ax.text(min(right + 0.01, 1.02), yi, f"{row['optimism']:+.2f}", va="center", fontsize=9)
    ax.set_yticks(y, table["variant"])
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("DL-MIL validation AUC (DeLong CI)")
    ax.set_title("How much each shortcut adds to the leak-free validation AUC")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def fit_figure(fit_table: pd.DataFrame):
    """Per model (its registry colour), dots with CI whiskers: apparent and out-of-fold training AUC and validation
    AUC (fractions). The gap between apparent and out-of-fold is the final fit's optimism on its own patients."""
    fig, ax = plt.subplots(figsize=(7.5, 0.8 + 0.9 * max(len(fit_table), 1)))
    y = np.arange(len(fit_table))[::-1]
    for k, (prefix, label, marker) in enumerate(FIT_SETS):
        yk = y + (1 - k) * 0.22
        ax.errorbar(fit_table[f"{prefix}_auc"], yk, xerr=_whiskers(fit_table, prefix), fmt="none",
                    ecolor="grey", capsize=2, lw=1)
        colours = [model_registry.colour(m) or "black" for m in fit_table["model"]]
        ax.scatter(fit_table[f"{prefix}_auc"], yk, c=colours, marker=marker, zorder=3)
        ax.scatter([], [], c="white", edgecolors="black", marker=marker, label=label)
    ax.axvline(0.5, color="black", ls=":", lw=1)
    ax.set_yticks(y, fit_table["model"])
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("AUC (DeLong CI)")
    ax.set_title("Apparent, out-of-fold and validation AUC per model")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig
