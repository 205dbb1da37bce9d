"""Figures of the MIL-feature and model chapters (notebooks 04 and 05; the paper's Fig. 4a-c).

* ``plh_heatmap``: every patient's predicted likelihood histogram (share of slices per probability bin).
* ``feature_distributions``: z-scored features, ER vs NER, with the univariate p (Fig. 4a).
* ``selection_funnel``: features left after each selection step.
* ``lasso_figure``: the LassoCV curve with the chosen lambda and the coefficient path (Fig. 4b).
* ``feature_weights``: the Lasso coefficients of the selected features (Fig. 4c).
* ``grid_search_heatmap``: mean CV AUC over the ExtraTrees grid.

Every function returns a matplotlib Figure.
"""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import MatplotlibDeprecationWarning

from hcc_utils.palette import NEUTRAL_GREY, OKABE_ITO, OUTCOME_COLOURS
from hcc_utils.selection import SelectionResult

GROUP_COLOURS = OUTCOME_COLOURS


def _p_label(p: float) -> str:
    """``p = 0.012 *`` style: three significant levels, stars at 0.05 / 0.01 / 0.001."""
    if not np.isfinite(p):
        return "p n/a"
    stars = "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""
    return ("p<0.001" if p < 0.001 else f"p={p:.3f}" if p < 0.1 else f"p={p:.2f}") + (f"\n{stars}" if stars else "")


def plh_heatmap(features: pd.DataFrame, labels: pd.Series):
    """Share of each patient's slices per probability bin (PLH_00..PLH_10), NER patients left, ER right.

    Within a group patients are ordered by their mean binned probability. ``labels``: 0/1 ER by patient_id.
    """
    bins = [f"PLH_{i:02d}" for i in range(11)]
    plh = features[bins]
    er = labels.reindex(plh.index).astype(int)
    mean_bin = plh.to_numpy() @ (np.arange(11) / 10)
    order = pd.DataFrame({"er": er.to_numpy(), "m": mean_bin}, index=plh.index).sort_values(["er", "m"]).index
    fig, ax = plt.subplots(figsize=(10, 3.6))
    sns.heatmap(plh.loc[order].T.to_numpy(), ax=ax, cmap="viridis", vmin=0, vmax=1,
                cbar_kws={"label": "share of the patient's slices"})
    n_ner = int((er == 0).sum())
    ax.axvline(n_ner, color="white", lw=2)
    ax.set_yticks(np.arange(11) + 0.5, [f"{i / 10:.1f}" for i in range(11)], rotation=0)
    ax.set_xticks([n_ner / 2, n_ner + (len(order) - n_ner) / 2],
                  [f"NER (n = {n_ner})", f"ER (n = {len(order) - n_ner})"])
    ax.set_ylabel("slice probability bin")
    ax.set_xlabel("patients (ordered by mean slice probability within each group)")
    ax.invert_yaxis()
    ax.set_title("Predicted likelihood histogram (PLH) per patient")
    return fig


def feature_distributions(x_train: pd.DataFrame, y_train: pd.Series, tests: pd.DataFrame,
                          groups: dict[str, list[str]] | None = None):
    """Fig. 4a analogue: z-scored training features, ER vs NER, with the univariate p under each name.

    Args:
        x_train, y_train: the training patients' features and 0/1 ER.
        tests: ``selection.univariate_tests`` output (feature, test, p).
        groups: panel title -> features (default: one panel for PLH_*, one for BoW_*, or one for all).
    """
    if groups is None:
        plh = [c for c in x_train.columns if c.startswith("PLH_")]
        bow = [c for c in x_train.columns if c.startswith("BoW_")]
        groups = {"PLH features": plh, "BoW features": bow} if plh and bow else {"features": list(x_train.columns)}
    sd = x_train.std(ddof=0).replace(0, 1)
    z = (x_train - x_train.mean()) / sd
    p = tests.set_index("feature")["p"]
    width = max(8.0, 0.8 * max(map(len, groups.values())))
    fig, axes = plt.subplots(len(groups), 1, figsize=(width, 3.6 * len(groups)), squeeze=False)
    for ax, (title, cols) in zip(axes[:, 0], groups.items(), strict=True):
        long = z[cols].assign(group=np.where(y_train.to_numpy() == 1, "ER", "NER")).melt(
            id_vars="group", var_name="feature", value_name="z")
        with warnings.catch_warnings():  # seaborn 0.13 still passes matplotlib's deprecated ``vert``
            warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
            sns.boxplot(long, x="feature", y="z", hue="group", hue_order=["NER", "ER"], palette=GROUP_COLOURS,
                        ax=ax, fliersize=1.5, linewidth=0.8)
        ax.set_xticks(range(len(cols)), [f"{c}\n{_p_label(p.get(c, np.nan))}" for c in cols], fontsize=7)
        ax.set_xlabel("")
        ax.set_ylabel("z-score (training mean, SD)")
        ax.set_title(f"{title}: ER vs NER on the training patients")
        ax.legend(title="", loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def selection_funnel(selection: SelectionResult, title: str = "Feature selection"):
    """Number of features entering and surviving each step of the selection."""
    funnel = selection.funnel()
    labels = ["input"] + funnel["step"].tolist()
    counts = [len(selection.features_in)] + funnel["kept"].tolist()
    fig, ax = plt.subplots(figsize=(6, 3))
    bars = ax.bar(labels, counts, color=OKABE_ITO["blue"])
    ax.bar_label(bars)
    ax.set_ylabel("features kept")
    ax.set_title(title)
    return fig


def lasso_figure(selection: SelectionResult, title: str = "Lasso"):
    """Fig. 4b analogue: CV mean squared error (mean +- SD over folds) and coefficient path against log10 lambda."""
    path = selection.lasso_path
    log_alpha = np.log10(path.alphas)
    chosen = np.log10(path.alpha)
    fig, (ax_cv, ax_path) = plt.subplots(1, 2, figsize=(11, 4))
    ax_cv.errorbar(log_alpha, path.mse_mean, yerr=path.mse_sd, fmt="o", ms=3, color=OKABE_ITO["vermillion"],
                   ecolor=NEUTRAL_GREY, elinewidth=0.8)
    ax_cv.axvline(chosen, ls="--", color="k", lw=1, label=f"lambda = {path.alpha:.3g}")
    ax_cv.set_xlabel("log10(lambda)")
    ax_cv.set_ylabel(f"mean squared error ({path.n_folds}-fold CV)")
    ax_cv.legend(fontsize=8)
    ax_cv.set_title(f"{title}: cross-validation curve")
    for feature in path.coef_path.columns:
        ax_path.plot(log_alpha, path.coef_path[feature], lw=1.2, label=feature)
    ax_path.axvline(chosen, ls="--", color="k", lw=1)
    ax_path.axhline(0, color=NEUTRAL_GREY, lw=0.6)
    ax_path.set_xlabel("log10(lambda)")
    ax_path.set_ylabel("coefficient (z-score units)")
    ax_path.set_title(f"{title}: coefficient path")
    if path.coef_path.shape[1] <= 15:
        ax_path.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def feature_weights(selection: SelectionResult, title: str = "Selected features"):
    """Fig. 4c analogue: Lasso coefficients (z-score units) of the selected features."""
    coef = selection.coefficients
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(coef) + 1.2))
    colours = [GROUP_COLOURS["ER"] if c > 0 else GROUP_COLOURS["NER"] for c in coef]
    ax.barh(coef.index, coef.to_numpy(), color=colours)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("Lasso coefficient (z-score units; > 0 raises the ER score)")
    ax.set_title(f"{title} (lambda = {selection.lasso_path.alpha:.3g})")
    return fig


def grid_search_heatmap(grid: pd.DataFrame, title: str = "Grid search"):
    """Mean CV AUC per n_estimators x max_depth (best over min_samples_split)."""
    table = grid.assign(max_depth=grid["max_depth"].astype(str)).pivot_table(
        index="max_depth", columns="n_estimators", values="mean_auc", aggfunc="max")
    depths = sorted(table.index, key=lambda d: (d == "None", float(d) if d != "None" else 0.0))
    table = table.loc[depths]  # numeric order, unlimited depth last
    fig, ax = plt.subplots(figsize=(6, 3.4))
    sns.heatmap(table, annot=True, fmt=".3f", cmap="mako", ax=ax, cbar_kws={"label": "mean CV AUC"})
    ax.set_title(f"{title}: ExtraTrees, best over min_samples_split")
    return fig
