"""Figures of the pathology chapter (notebook 08): the correlation heatmap of paper Fig. 6."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from hcc_utils.pathology import LatentReference, PathologyCorrelation, significance_stars


def _cell_text(r: float, p: float, n: int) -> str:
    if not np.isfinite(r):
        return f"–\nn={n}"
    return f"{r:.2f}{significance_stars(p)}\nn={n}"


def correlation_heatmap(corr: PathologyCorrelation, title: str = "MIL features vs pathology") -> plt.Figure:
    """Pearson r per feature (rows) and indicator (columns), with stars and the n of complete pairs per cell.

    Colours as in the paper: red for negative, blue for positive r, on a scale symmetric around 0 (at least
    +-0.3, so weak correlations are not drawn as strong ones); empty cells (undefined r) are grey.
    Stars: * p < 0.05, ** p < 0.01, *** p < 0.001.
    """
    table = corr.table
    features = list(dict.fromkeys(table["feature"]))
    indicators = list(dict.fromkeys(table["indicator"]))
    r = table.pivot(index="feature", columns="indicator", values="r").reindex(index=features, columns=indicators)
    p = table.pivot(index="feature", columns="indicator", values="p").reindex(index=features, columns=indicators)
    n = corr.n.reindex(index=features, columns=indicators)
    labels = pd.DataFrame([[_cell_text(r.iat[i, j], p.iat[i, j], int(n.iat[i, j]))
                            for j in range(len(indicators))] for i in range(len(features))])
    finite = np.abs(r.to_numpy(dtype=float))
    scale = max(0.3, float(np.ceil(np.nanmax(finite) * 10) / 10)) if np.isfinite(finite).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.9 * len(indicators) + 2.2, 0.62 * len(features) + 1.6))
    ax.set_facecolor("0.88")
    sns.heatmap(r.astype(float), ax=ax, cmap="RdBu", vmin=-scale, vmax=scale, center=0,
                annot=labels.to_numpy(), fmt="", annot_kws={"fontsize": 9}, linewidths=0.5, linecolor="white",
                cbar_kws={"label": "Pearson r"})
    for i, j in zip(*np.nonzero(~np.isfinite(r.to_numpy(dtype=float))), strict=True):  # seaborn skips masked cells
        ax.text(j + 0.5, i + 0.5, labels.iat[i, j], ha="center", va="center", fontsize=9, color="0.3")
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(f"{title}\n* p < 0.05, ** p < 0.01, *** p < 0.001; n = patients with both values",
                 fontsize=10)
    fig.tight_layout()
    return fig


def reference_heatmap(reference: LatentReference) -> plt.Figure | None:
    """:func:`correlation_heatmap` of the synthetic cohort's latent biology (``pathology.reference_correlation``),
    or None for a cohort without (usable) ground truth."""
    if reference.correlation is None:
        return None
    return correlation_heatmap(reference.correlation, "Latent biology vs pathology (synthetic ground truth)")
