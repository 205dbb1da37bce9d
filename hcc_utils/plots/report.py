"""Figures of ``predict``'s one-page patient report (``hcc_utils.patient_report``): where a new patient's
probability of ER falls among the training patients' out-of-fold probabilities (docs/method.md section 6), and the
PNG encoding the self-contained HTML page embeds. The stack, Grad-CAM and SHAP figures are the book's own
(``plots.slices.stack_montage``, ``plots.cnn.gradcam_figure``, ``plots.shap.waterfall_figure``).
"""

from __future__ import annotations

import base64
import io

import matplotlib.pyplot as plt
import numpy as np

from hcc_utils.palette import OKABE_ITO


def training_position_figure(rows: list[dict], patient_id: str):
    """One panel per model: the histogram of the training patients' out-of-fold P(ER) (20 bins over [0, 1]), the
    patient's P(ER) (solid vermillion line) and the model's cut-off (dashed black). ``rows``: dicts with ``name``,
    ``prob``, ``cutoff`` (probabilities of ER), ``training`` (the training probabilities) and ``percentile`` (the
    percentage of training patients below the patient, ties counted half)."""
    n = max(len(rows), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 2.8), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=False):
        training = np.asarray(row["training"], dtype=float)
        if len(training):
            ax.hist(training, bins=np.linspace(0, 1, 21), color="0.75", edgecolor="0.4")
        ax.axvline(row["cutoff"], color="black", linestyle="--", linewidth=1, label=f"cut-off {row['cutoff']:.2f}")
        ax.axvline(row["prob"], color=OKABE_ITO["vermillion"], linewidth=2, label=f"patient {row['prob']:.2f}")
        where = (f"{row['percentile']:.0f}th percentile of {len(training)} training patients" if len(training)
                 else "no training distribution in the bundle")
        ax.set_title(f"{row['name']}: {where}", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("P(ER), out-of-fold for training patients", fontsize=8)
        ax.set_ylabel("training patients", fontsize=8)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Patient {patient_id} among the training patients", fontsize=9)
    fig.tight_layout()
    return fig


def png_base64(fig, dpi: int = 110) -> str:
    """The figure as a base64 PNG (ASCII, for an ``<img src="data:image/png;base64,...">``); the figure is
    closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
