"""Figures of the comparison chapter (notebook 06, the paper's Fig. 5a-d): ROC curves, decision curves and
calibration curves of the models, training set left, validation set right.

Every function takes the long tables of ``hcc_utils.comparison`` and returns a matplotlib Figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from hcc_utils import model_registry

SET_TITLES = {"train": "Training set", "validation": "Validation set"}


def _set_title(dataset: str, letter: str, train_label: str | None) -> str:
    title = f"{letter}  {SET_TITLES[dataset]}" if letter else SET_TITLES[dataset]
    if dataset == "train" and train_label:
        title += f" ({train_label})"
    return title


def _two_panels(height: float = 4.2):
    fig, axes = plt.subplots(1, 2, figsize=(10.5, height), sharey=True)
    return fig, axes


def _roc_panel(ax, roc_table: pd.DataFrame, table4: pd.DataFrame, dataset: str, title: str,
               ci_level: float) -> None:
    for model, curve in roc_table[roc_table["dataset"] == dataset].groupby("model", sort=False):
        row = table4[(table4["dataset"] == dataset) & (table4["model"] == model)].iloc[0]
        label = f"{model}: AUC {row['auc']:.3f} ({row['auc_low']:.3f}–{row['auc_high']:.3f})"
        ax.step(curve["fpr"], curve["tpr"], where="post", color=model_registry.colour(model), lw=1.8, label=label)
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=0.8)
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", xlabel="1 − specificity (fraction)",
           title=title)
    ax.legend(loc="lower right", fontsize=8, title=f"AUC ({ci_level:.0%} CI, DeLong)", title_fontsize=8)


def roc_curves(roc_table: pd.DataFrame, table4: pd.DataFrame, train_label: str | None = None,
               ci_level: float = 0.95):
    """ROC curves per set (Fig. 5a,b); the legend gives each model's AUC and DeLong CI from Table 4.

    Args:
        roc_table: ``dataset, model, fpr, tpr`` (``comparison.roc_curve_table``).
        table4: Table 4 (``comparison.table4``) for the AUCs in the legend.
        train_label: how the training predictions were made, e.g. "apparent" (shown in the panel title).
    """
    fig, axes = _two_panels(4.6)
    for ax, dataset, letter in zip(axes, ("train", "validation"), "ab", strict=True):
        _roc_panel(ax, roc_table, table4, dataset, _set_title(dataset, letter, train_label), ci_level)
    axes[0].set_ylabel("Sensitivity (fraction)")
    fig.tight_layout()
    return fig


def validation_roc(roc_table: pd.DataFrame, table4: pd.DataFrame, ci_level: float = 0.95):
    """The validation panel of Fig. 5b alone, small (the report's landing page)."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    _roc_panel(ax, roc_table, table4, "validation", SET_TITLES["validation"], ci_level)
    ax.set_ylabel("Sensitivity (fraction)")
    fig.tight_layout()
    return fig


def decision_curves(dca_table: pd.DataFrame, train_label: str | None = None):
    """Decision curves per set with treat-all and treat-none (Fig. 5c,d).

    Args:
        dca_table: ``dataset, model, threshold, net_benefit`` (``comparison.decision_curve_table``).
    """
    fig, axes = _two_panels()
    models = [m for m in dca_table["model"].unique() if m not in ("Treat all", "Treat none")]
    top = dca_table["net_benefit"].max()
    for ax, dataset, letter in zip(axes, ("train", "validation"), "cd", strict=True):
        part = dca_table[dca_table["dataset"] == dataset]
        for model in [*models, "Treat all", "Treat none"]:
            curve = part[part["model"] == model]
            style = {"ls": ":", "lw": 1.2} if model.startswith("Treat") else {"lw": 1.8}
            ax.plot(curve["threshold"], curve["net_benefit"], color=model_registry.colour(model), label=model,
                    **style)
        ax.set(xlim=(0, 1), ylim=(-0.1 * max(top, 0.05), 1.1 * max(top, 0.05)),
               xlabel="Threshold probability (fraction)", title=_set_title(dataset, letter, train_label))
        ax.legend(loc="upper right", fontsize=8)
    axes[0].set_ylabel("Net benefit (fraction of patients)")
    fig.tight_layout()
    return fig


def calibration_curves(curve_table: pd.DataFrame, summary: pd.DataFrame, train_label: str | None = None):
    """Observed fraction with ER against mean predicted probability per bin, per set; the legend gives the
    Brier score and the calibration slope.

    Args:
        curve_table: ``dataset, model, mean_predicted, observed_fraction``
            (``comparison.calibration_curve_table``).
        summary: ``dataset, model, brier, intercept, slope`` (``comparison.calibration_table``).
    """
    fig, axes = _two_panels(4.6)
    for ax, dataset in zip(axes, ("train", "validation"), strict=True):
        for model, curve in curve_table[curve_table["dataset"] == dataset].groupby("model", sort=False):
            row = summary[(summary["dataset"] == dataset) & (summary["model"] == model)].iloc[0]
            slope = "n/a" if pd.isna(row["slope"]) else f"{row['slope']:.2f}"
            ax.plot(curve["mean_predicted"], curve["observed_fraction"], marker="o", ms=4, lw=1.5,
                    color=model_registry.colour(model), label=f"{model}: Brier {row['brier']:.3f}, slope {slope}")
        ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=0.8, label="Perfect calibration")
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", xlabel="Mean predicted probability",
               title=_set_title(dataset, "", train_label))
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("Observed fraction with ER")
    fig.tight_layout()
    return fig
