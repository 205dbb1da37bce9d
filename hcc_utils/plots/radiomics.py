"""Figures of the Radiomics chapter (notebook 05): feature families, ICC distribution, selection funnel, Fig.
S1a.

Every function returns a matplotlib Figure; the notebook saves it with ``hcc_utils.notebook.save_figure``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from hcc_utils.palette import OKABE_ITO
from hcc_utils.radiomics_model import CLASS_ORDER, FAMILY_ORDER, feature_parts

FAMILY_COLOURS = dict(zip(FAMILY_ORDER, (OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["bluish green"]),
                          strict=True))
"""The image each radiomics feature was computed on (Original, LoG, Wavelet)."""


def _stacked_counts(ax, names, title: str) -> None:
    parts = feature_parts(names)
    counts = pd.crosstab(parts["feature_class"], parts["family"])
    counts = counts.reindex([c for c in CLASS_ORDER if c in counts.index]
                            + [c for c in counts.index if c not in CLASS_ORDER])
    families = [f for f in FAMILY_ORDER if f in counts.columns] + [f for f in counts.columns
                                                                   if f not in FAMILY_ORDER]
    left = np.zeros(len(counts))
    for family in families:
        ax.barh(counts.index, counts[family], left=left, label=family,
                color=FAMILY_COLOURS.get(family, "grey"))
        left += counts[family].to_numpy()
    for y, total in enumerate(left):
        ax.text(total, y, f" {int(total)}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("features (n)")
    ax.set_title(title, fontsize=10)


def feature_types(extracted, selected=None):
    """Fig. S1a analogue: features per class, coloured by image type (Original, LoG, Wavelet); with
    ``selected`` a second panel shows the model's features the same way."""
    panels = [("extracted", extracted)] + ([("selected", selected)] if selected is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
    for ax, (label, names) in zip(axes[0], panels, strict=True):
        if len(names):
            _stacked_counts(ax, names, f"{label}: {len(names)} features")
        else:
            ax.set_axis_off()
            ax.set_title(f"{label}: none", fontsize=10)
    axes[0][0].legend(title="image type", fontsize=8, title_fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def icc_distribution(icc: pd.DataFrame, threshold: float):
    """Histogram of ICC(3,1) between the readers, per image type, with the threshold marked."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    if icc["icc"].notna().sum() == 0:
        ax.text(0.5, 0.5, "no ICC: no second reading", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    data = icc.dropna(subset=["icc"])
    data = data.assign(family=feature_parts(data["feature"])["family"].to_numpy())
    data["icc_shown"] = data["icc"].clip(lower=-0.2)
    order = [f for f in FAMILY_ORDER if f in set(data["family"])]
    sns.histplot(data, x="icc_shown", hue="family", hue_order=order, bins=np.linspace(-0.2, 1.0, 49),
                 multiple="stack", palette=FAMILY_COLOURS, ax=ax)
    kept = int((data["icc"] > threshold).sum())
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    ax.set_title(f"ICC(3,1) > {threshold} (dashed): {kept} of {len(icc)} features kept", fontsize=10)
    ax.set_xlabel("ICC(3,1) between readers (values below -0.2 shown at -0.2)")
    ax.set_ylabel("features (n)")
    fig.tight_layout()
    return fig


def selection_funnel(funnel: pd.DataFrame):
    """Features left after each step (log scale), from extraction to the Lasso."""
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    kept = funnel["kept"].clip(lower=0.8)  # a bar of height 0 is invisible on a log axis
    ax.bar(funnel["step"], kept, color=OKABE_ITO["blue"])
    for x, n in enumerate(funnel["kept"]):
        ax.text(x, kept.iloc[x], f"{int(n)}", ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("features left (log scale)")
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    return fig
