"""The report's landing page: the results at a glance, from the run's own files (issue 17; ``book`` writes it as
``intro.md``).

In order: one sentence on what the report is; the cohort in one line (patients, ER rate, scanners, split,
excluded patients with links to the chapters that list them); Table 4 in the paper's style (``paper_tables``) and
beside it the ROC curves of the models on the validation patients (the paper's Figure 5b, drawn here); the DeLong tests
of DL-MIL against each comparator on the validation patients, one sentence each; the robustness headline of
chapter 09 when it ran; the warnings that matter (a synthetic cohort, the ``onekey_compat`` protocol, a model whose
selection fell back, a DL-MIL no better than chance by the permutation test); then the chapters. A chapter whose
files are missing (a partial run) is named as missing, never guessed.

The ids ``glance-table4`` and ``glance-roc`` mark the table and the figure (the browser test checks both are on
the first screen).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from hcc_utils import artifacts, model_registry
from hcc_utils.config import Params
from hcc_utils.run_folder import RunFolder

ROC_FIGURE = "glance_roc_validation"
"""The landing page's figure: the validation panel of notebook 06's Figure 5a-b, drawn when the book is written."""
STAGE_CHAPTERS = {"cohort": "01_preprocessing", "inputs": "01_preprocessing", "slices": "02_slices_2p5d",
                  "radiomics": "05_models", "comparators": "11_comparators"}
"""Where each stage of ``exclusions.csv`` shows its patients (the landing page links there)."""
ALPHA = 0.05
"""Significance level of the sentences (DeLong, permutation); the tables give exact p-values."""


def _p(value: float) -> str:
    from hcc_utils.paper_tables import format_p

    return format_p(value)


def patients_line(run: RunFolder, notebooks: list[tuple[str, str]]) -> str:
    """The landing page's line on excluded patients, with a link to each chapter that lists them."""
    table = run.exclusions()
    excluded = table[table["severity"] == "excluded"]
    if excluded.empty:
        return "no patient was excluded"
    titles = dict(notebooks)
    parts = []
    for chapter, rows in excluded.groupby(excluded["stage"].map(STAGE_CHAPTERS).fillna(""), sort=True):
        title = titles.get(chapter)
        where = f"[{title}](notebooks/{chapter}.ipynb)" if title else run.exclusions_file.name
        parts.append(f"{rows['patient_id'].nunique()} in {where}")
    return f"{excluded['patient_id'].nunique()} excluded ({'; '.join(parts)}), with the reasons"


def cohort_line(params: Params, run: RunFolder, notebooks: list[tuple[str, str]]) -> str:
    """Patients of the split, ER rate, scanners, split sizes and who was excluded (linked)."""
    split = artifacts.SPLIT.path(run)
    if not split.is_file():
        return "**Cohort.** Not decided: chapter 01 did not finish."
    patients = pd.read_csv(split, dtype={"patient_id": str})
    n, er = len(patients), int(patients["er"].astype(int).sum())
    sizes = patients["split"].value_counts()
    scanners = _scanner_counts(params, run)
    source = "synthetic cohort" if params.cohort.synthetic is not None else "cohort"
    return (f"**Cohort.** {n} patients of the {source}, early recurrence in {er} ({100 * er / max(n, 1):.0f}%); "
            f"{scanners}; split {int(sizes.get('train', 0))} training / {int(sizes.get('validation', 0))} "
            f"validation patients; {patients_line(run, notebooks)}.")


def _scanner_counts(params: Params, run: RunFolder) -> str:
    from hcc_utils.cohort import load_cohort

    try:
        patients = load_cohort(params, run)
    except Exception:  # noqa: BLE001 (the landing page never fails on a missing column; the chapters say why)
        return "scanners not recorded"
    if "scanner" not in patients or patients["scanner"].isna().all():
        return "scanners not recorded"
    counts = patients["scanner"].fillna("not recorded").astype(str).value_counts().sort_index()
    return f"{len(counts)} scanner{'s' if len(counts) != 1 else ''} (" + ", ".join(
        f"{html.escape(name)}: {k}" for name, k in counts.items()) + ")"


def table4_html(run: RunFolder) -> str | None:
    """Table 4 in the paper's style as an HTML table with id ``glance-table4``, or None before chapter 06."""
    from hcc_utils.paper_tables import table4

    path = artifacts.TABLE4.path(run)
    if not path.is_file():
        return None
    shown = table4(pd.read_csv(path))
    return shown.to_html(index=False, table_id="glance-table4", classes="table hcc-glance", border=0,
                         escape=True, na_rep="–")


def write_roc_figure(run: RunFolder, params: Params) -> Path | None:
    """Draw the validation ROC curves (notebook 06's predictions and Table 4) as ``figures/<ROC_FIGURE>.png`` and
    ``.svg``; None before chapter 06 or when no model has predictions."""
    import matplotlib.pyplot as plt

    from hcc_utils import comparison
    from hcc_utils.plots.comparison import validation_roc

    path = artifacts.TABLE4.path(run)
    if not path.is_file():
        return None
    try:
        preds = comparison.load_predictions(run, params.evaluation.train_predictions)
    except (ValueError, artifacts.ArtifactMissing):
        return None
    figure = validation_roc(comparison.roc_curve_table(preds), pd.read_csv(path), params.evaluation.ci_level)
    png = artifacts.figure_path(run, ROC_FIGURE)
    for target in (png, artifacts.figure_svg_path(run, ROC_FIGURE)):
        figure.savefig(target, bbox_inches="tight", dpi=130)
    plt.close(figure)
    return png


def delong_sentences(run: RunFolder) -> list[str]:
    """One sentence per comparator: DL-MIL against it on the validation patients (DeLong's test)."""
    path = artifacts.DELONG.path(run)
    if not path.is_file():
        return []
    delong = pd.read_csv(path)
    rows = delong[(delong["dataset"] == "validation") & (delong["model_a"] == model_registry.DL_MIL.name)]
    sentences = []
    for row in rows.itertuples():
        verdict = "differ" if row.p < ALPHA else "do not differ significantly"
        sentences.append(f"DL-MIL (AUC {row.auc_a:.2f}) and {row.model_b} (AUC {row.auc_b:.2f}) {verdict} on the "
                         f"validation patients (DeLong p {_p_phrase(row.p)}).")
    return sentences


def _p_phrase(p: float) -> str:
    text = _p(p)
    return text if text.startswith(("<", ">")) else f"= {text}"


def robustness_lines(run: RunFolder) -> list[str]:
    """Chapter 09's headline: median validation AUC over the repeated splits with its interval, and the
    permutation p-value, per model; nothing when chapter 09 did not run."""
    summary_path, perm_path = artifacts.ROBUSTNESS_REPEATS_SUMMARY.path(run), artifacts.ROBUSTNESS_PERMUTATION.path(run)
    if not summary_path.is_file():
        return []
    summary = pd.read_csv(summary_path)
    perm = pd.read_csv(perm_path).set_index("model")["p_value"] if perm_path.is_file() else pd.Series(dtype=float)
    lines = []
    for row in summary.itertuples():
        p = perm.get(row.model)
        tail = f"; permutation p {_p_phrase(p)}" if p is not None and pd.notna(p) else ""
        lines.append(f"{row.model}: median validation AUC {row.median:.2f} ({row.low:.2f}-{row.high:.2f}) over "
                     f"{row.repeats} repeated splits{tail}.")
    return lines


def warnings_that_matter(params: Params, run: RunFolder) -> list[str]:
    """What a reader must know before trusting the numbers (module docstring)."""
    found = []
    if params.cohort.synthetic is not None:
        found.append("The patients are **synthetic** (hcc_utils.synth): the numbers show the method at work, not "
                     "a clinical result.")
    if params.protocol == "onekey_compat":
        found.append("Protocol `onekey_compat`: validation patients helped choose the CNN checkpoint and fit the "
                     "BoW idf, so validation results are optimistic (Methods, section 8).")
    for spec in model_registry.MODELS:
        path = artifacts.MODEL_SUMMARY.path(run, slug=spec.slug)
        if not path.is_file():
            continue
        notes = json.loads(path.read_text(encoding="utf-8")).get("notes") or []
        fallbacks = [note for note in notes if "fallback" in note and not note.startswith("CV fold")]
        if fallbacks:
            found.append(f"{spec.name}: the feature selection fell back ({html.escape(fallbacks[-1])}); chapter 05 "
                         "says why.")
    perm_path = artifacts.ROBUSTNESS_PERMUTATION.path(run)
    if perm_path.is_file():
        perm = pd.read_csv(perm_path).set_index("model")
        p = perm["p_value"].get(model_registry.DL_MIL.name)
        if p is not None and p >= ALPHA:
            found.append(f"DL-MIL's validation AUC is not distinguishable from chance by the permutation test "
                         f"(p = {_p(p)}; chapter 09).")
    return found


def landing_page(run: RunFolder, params: Params, notebooks: list[tuple[str, str]],
                 chapters: list[tuple[str, str]]) -> str:
    """The Markdown of ``intro.md`` (module docstring). ``chapters``: (page, title) after the landing page."""
    lines = ["# Results at a glance", "", cohort_line(params, run, notebooks), ""]
    table, figure = table4_html(run), write_roc_figure(run, params)
    if table is None:
        lines += ["*Table 4 is missing: chapter 06 did not finish.*", ""]
    else:
        block = ['<div class="hcc-glance-row"><div class="hcc-glance-table">',
                 '<p class="hcc-caption"><b>Table 4.</b> Discrimination of the models on the training and validation '
                 'patients: AUC with its 95% DeLong CI; accuracy, sensitivity and specificity at the cut-off of '
                 'chapter 06 (<a href="tables/table4_models.csv">CSV</a>).</p>', table, "</div>"]
        if figure is not None:
            block += ['<figure class="hcc-glance-figure">',
                      f'<img id="glance-roc" src="figures/{figure.name}" alt="ROC curves of the models, validation '
                      'patients">',
                      '<figcaption class="hcc-caption"><b>Figure 5b.</b> ROC curves of the models on the validation '
                      f'patients (<a href="figures/{figure.stem}.svg">SVG</a>; chapter 06 shows the training set '
                      'beside it).</figcaption></figure>']
        lines += ["\n".join(line for part in [*block, "</div>"] for line in part.splitlines() if line.strip()), ""]
    lines += ["A reproduction of Cen et al. (2025), *CT-Based 2.5D Deep Learning-Multi-Instance Learning for "
              "Predicting Early Recurrence of Hepatocellular Carcinoma*, on the cohort of run "
              f"`{run.root.name}` (protocol `{params.protocol}`). Every number was computed by the chapters "
              "below, none copied from the paper.", ""]
    for title, items in (("DL-MIL against the comparators", delong_sentences(run)),
                         ("Over repeated splits and permuted labels (chapter 09)", robustness_lines(run)),
                         ("Read with care", warnings_that_matter(params, run))):
        if items:
            lines += [f"## {title}", "", *[f"- {item}" for item in items], ""]
    lines += ["## Chapters", ""]
    lines += [f"{k}. [{title}]({page}{'.ipynb' if page.startswith('notebooks/') else '.md'})"
              for k, (page, title) in enumerate(chapters, 1)]
    lines += ["", "The run folder holds the tables (`tables/*.csv`), the figures (`figures/`, PNG and SVG), the "
              "executed notebooks and `provenance.json`; the parameters of this run are in the Provenance "
              "chapter.", ""]
    return "\n".join(lines)
