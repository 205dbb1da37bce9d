"""SHAP's own figures of the DL-MIL model (notebook 07; the paper's Fig. 5e-g), as matplotlib figures.

Each function takes a ``hcc_utils.explain.ShapResult`` (SHAP values of P(ER) in probability units) and returns
a Figure: the beeswarm (5e), the mean |SHAP| bar chart, one patient's waterfall (5f) and force plot (5g).
"""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import shap

from hcc_utils.explain import OUTPUT_NAME, ShapResult


def _xlabel(ax) -> None:
    ax.set_xlabel(f"SHAP value (change in {OUTPUT_NAME}, probability units)")


def beeswarm_figure(result: ShapResult, max_display: int = 10) -> plt.Figure:
    """Fig. 5e: each dot one patient, x its SHAP value, colour its (z-scored) feature value."""
    plt.figure()
    ax = shap.plots.beeswarm(result.explanation, max_display=max_display, show=False,
                             color_bar_label="Feature value (z-score)")
    _xlabel(ax)
    ax.set_title(f"DL-MIL: SHAP values of {OUTPUT_NAME}, {len(result.patient_ids)} patients")
    return ax.figure


def importance_figure(result: ShapResult, max_display: int = 10) -> plt.Figure:
    """Mean |SHAP| per feature (the beeswarm's ordering as a bar chart)."""
    plt.figure()
    ax = shap.plots.bar(result.explanation, max_display=max_display, show=False)
    ax.set_xlabel(f"mean |SHAP value| ({OUTPUT_NAME}, probability units)")
    ax.set_title(f"DL-MIL: feature importance, {len(result.patient_ids)} patients")
    ax.figure.set_size_inches(7, 0.45 * min(max_display, len(result.feature_names)) + 1.5)
    return ax.figure


def waterfall_figure(result: ShapResult, patient_id: str, max_display: int = 10) -> plt.Figure:
    """Fig. 5f: from the expected P(ER) to this patient's P(ER), one bar per feature (raw values beside names)."""
    plt.figure()
    ax = shap.plots.waterfall(result.row(patient_id), max_display=max_display, show=False)
    ax.set_title(f"DL-MIL: patient {patient_id}, {OUTPUT_NAME} explained")
    return ax.figure


def force_figure(result: ShapResult, patient_id: str) -> plt.Figure:
    """Fig. 5g: the same patient as a force plot (static matplotlib rendering, so it shows in the book)."""
    row = result.row(patient_id)
    shown = row.display_data if row.display_data is not None else row.data
    if abs(float(np.sum(row.values))) < 1e-9:
        # SHAP's force layout divides by the total effect and does not finish when it is 0
        fig, ax = plt.subplots(figsize=(16, 1.6))
        ax.axis("off")
        ax.text(0.5, 0.5, f"DL-MIL, patient {patient_id}: {OUTPUT_NAME} = {float(row.base_values):.3f}, the base "
                "value; the features' SHAP values add up to 0, so there is no force to draw", ha="center",
                va="center", fontsize=12)
        return fig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tight_layout notices from SHAP's text placement
        warnings.filterwarnings("ignore", "divide by zero", RuntimeWarning)  # a side without features (below)
        fig = shap.plots.force(float(row.base_values), row.values, features=np.round(shown.astype(float), 3),
                               feature_names=result.feature_names, out_names=OUTPUT_NAME, matplotlib=True,
                               show=False, figsize=(16, 3.5), text_rotation=0)
    for ax in fig.axes:
        for image in list(ax.images):
            left, right, bottom, top = image.get_extent()
            if left == right or bottom == top:
                # SHAP shades a side with no feature (all SHAP values of one sign) with a zero-width image;
                # rendering it inline never finishes, and it shows nothing
                image.remove()
    fig.text(0.5, 0.08, f"DL-MIL, patient {patient_id}: features pushing {OUTPUT_NAME} up (red) and down (blue) "
             "from the base value", ha="center", fontsize=12)
    return fig
