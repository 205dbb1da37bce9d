"""Figures of the robustness chapter (notebook 09; docs/method.md section 10): the validation AUC over repeated
splits and the paired differences, the permutation nulls, the held-out CNN folds and the validation across
scanners. Each function takes the tables of ``hcc_utils.robustness`` / ``robustness_cnn`` and returns a matplotlib
Figure; the optimism audit's figures are in ``plots/optimism.py``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hcc_utils import model_registry

_JITTER = np.random.default_rng(0)  # fixed: the same figure for the same table


def _strip(ax, groups: list[tuple[str, np.ndarray]], colours: list[str | None]) -> None:
    """Box plots with every value as a jittered dot."""
    data = [values for _, values in groups]
    ax.boxplot(data, positions=range(len(data)), widths=0.5, showfliers=False,
               medianprops={"color": "black"}, whiskerprops={"color": "grey"}, capprops={"color": "grey"})
    for i, (values, colour) in enumerate(zip(data, colours, strict=True)):
        ax.scatter(i + _JITTER.uniform(-0.15, 0.15, len(values)), values, s=14, alpha=0.6, color=colour, zorder=3)
    ax.set_xticks(range(len(groups)), [name for name, _ in groups])


def repeated_splits_figure(aucs: pd.DataFrame, summary: pd.DataFrame, differences: pd.DataFrame):
    """Left: each model's validation AUC over the repeated splits (repeat > 0), with the run's Table 4 value
    (diamond) and the same chain on the run's split (cross); right: the paired differences DL-MIL minus each
    comparator, zero dashed."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    repeats = aucs[aucs["repeat"] > 0]
    models = list(dict.fromkeys(repeats["model"]))
    groups = [(m, repeats.loc[repeats["model"] == m, "auc"].dropna().to_numpy()) for m in models]
    _strip(left, groups, [model_registry.colour(m) for m in models])
    for i, model in enumerate(models):
        row = summary[summary["model"] == model]
        if len(row):
            left.scatter(i + 0.33, row["table4_auc"].iloc[0], marker="D", color="black", s=36, zorder=4,
                         label="Table 4 (run's split)" if i == 0 else None)
            left.scatter(i + 0.33, row["main_split_chain_auc"].iloc[0], marker="x", color="black", s=40,
                         zorder=4, label="this chain on the run's split" if i == 0 else None)
    left.axhline(0.5, color="grey", ls=":", lw=1)
    left.set_ylabel("validation AUC")
    left.set_ylim(0, 1)
    left.set_title(f"a  Validation AUC over {repeats['repeat'].nunique()} repeated splits")
    left.legend(loc="lower right", fontsize=8)
    wide = repeats.pivot(index="repeat", columns="model", values="auc")
    reference = model_registry.DL_MIL.name
    pairs = [(row.comparison, (wide[reference] - wide[row.comparison.split(" - ", 1)[1]]).dropna().to_numpy())
             for row in differences.itertuples()]
    if pairs:
        _strip(right, [(name.replace(" - ", " -\n"), values) for name, values in pairs],
               [model_registry.colour(name.split(" - ", 1)[1]) for name, _ in pairs])
    right.axhline(0, color="black", ls="--", lw=1)
    right.set_ylabel("paired AUC difference")
    right.set_title("b  DL-MIL minus comparator, per split")
    fig.tight_layout()
    return fig


def permutation_figure(null: pd.DataFrame, table: pd.DataFrame):
    """Per model: the histogram of validation AUCs with permuted training labels (the null), 0.5 dotted, the
    observed AUC (same chain, true labels) as a line, with the permutation p-value."""
    models = list(table["model"])
    fig, axes = plt.subplots(1, len(models), figsize=(3.8 * len(models), 3.4), sharey=True, squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        values = null.loc[null["model"] == model, "auc"].dropna()
        row = table[table["model"] == model].iloc[0]
        ax.hist(values, bins=np.linspace(0, 1, 26), color=model_registry.colour(model), alpha=0.6)
        ax.axvline(0.5, color="grey", ls=":", lw=1)
        if np.isfinite(row["observed_auc"]):
            ax.axvline(row["observed_auc"], color="black", lw=1.5,
                       label=f"observed {row['observed_auc']:.3f}\np = {row['p_value']:.3g}")
            ax.legend(loc="upper left", fontsize=8)
        ax.set_title(f"{model}: null mean {row['null_mean']:.3f}")
        ax.set_xlabel("validation AUC, permuted training labels")
    axes[0][0].set_ylabel("permutations")
    fig.tight_layout()
    return fig


def held_out_folds_figure(table: pd.DataFrame, title: str):
    """The held-out networks' slice AUC per fold (bars; label: the fold's group or number, patients held out)."""
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(table), 3.2))
    labels = [f"{g or f'fold {f}'}\n(n = {n})" for f, g, n in zip(table["fold"], table["group"].fillna(""),
                                                                   table["held_out"], strict=True)]
    ax.bar(range(len(table)), table["held_out_slice_auc"], color=model_registry.colour(model_registry.DL_MIL.name),
           alpha=0.7)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xticks(range(len(table)), labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out slice AUC")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def scanner_figure(table: pd.DataFrame):
    """Forest plot: each held-out scanner's AUC with DeLong CI per model; scanners not scored are named with
    why. None when the table is empty (no site column)."""
    if table.empty:
        return None
    sites = list(dict.fromkeys(table["site"]))
    models = list(dict.fromkeys(table["model"]))
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.5 * len(sites) * len(models)))
    y = 0
    ticks, labels = [], []
    for site in sites[::-1]:
        part = table[table["site"] == site]
        first = part.iloc[0]
        for model in models[::-1]:
            row = part[part["model"] == model].iloc[0]
            if np.isfinite(row["auc"]):
                ax.errorbar(row["auc"], y, xerr=[[row["auc"] - row["auc_low"]], [row["auc_high"] - row["auc"]]],
                            fmt="o", color=model_registry.colour(model), capsize=3,
                            label=model if site == sites[-1] else None)
            y += 1
        ticks.append(y - (len(models) + 1) / 2)
        scored = "" if np.isfinite(part["auc"]).any() else "\n(not scored)"
        labels.append(f"{site}\nn = {first['n']}, ER {first['er_rate']:.0%}{scored}")
        y += 0.8
    ax.axvline(0.5, color="grey", ls=":", lw=1)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("AUC on the held-out scanner (DeLong CI)")
    ax.set_title("Validation across scanners: trained on the others, scored on each")
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], names[::-1], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    return fig
