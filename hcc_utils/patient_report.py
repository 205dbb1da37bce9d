"""``predict``'s one-page summary of each scored patient: ``--out/<patient>/report.html``
(``artifacts.patient_report``), one self-contained HTML file (figures embedded as base64 PNG, no links).

Sections, each from the bundle and the patient's own images (docs/method.md sections 2-6):

1. **Probabilities**: each model's P(ER), its cut-off (a probability of ER; class ER when ``prob >= cut-off``),
   the class, and the patient's percentile among the training patients' out-of-fold probabilities of that model
   (the bundle's ``training_probabilities.csv``; the percentage below the patient, ties counted half), with a
   histogram per model (``plots.report.training_position_figure``).
2. **2.5D stack**: the 11 slices (1 mm apart, windowed) with the tumour contour (``plots.slices.stack_montage``).
3. **Grad-CAM**: the bundle's CNN on the central slice and its two neighbours (``gradcam.gradcam_maps``,
   ``plots.cnn.gradcam_figure``), at the CNN's input size in pixels.
4. **DL-MIL explained**: SHAP's waterfall of the DL-MIL P(ER) (``explain.explain_model``: tree-path-dependent
   ``TreeExplainer`` on the pipeline's ExtraTrees, fed the selected, z-scored features; no background data is
   needed; ``plots.shap.waterfall_figure``).
5. **Notes**: the patient's flags (filled inputs, warnings), with folders, image file names and the other
   patients' ids removed.

The page names no folder and no identifier but the ``patient_id`` the user gave. It is for research use only.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hcc_utils import artifacts
from hcc_utils.bundle import Bundle

CENTRAL_OFFSETS = (-1, 0, 1)
"""The slices Grad-CAM is shown on (offsets from the central slice, 1 mm apart)."""
_PATH = re.compile(r"(?:[A-Za-z]:\\|/)[^\s'\";,]+|[^\s'\"/\\;,]+\.(?:nii\.gz|nii|nrrd|mha|mhd|dcm)\b")
_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;color:#222}"
          "table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px;text-align:right}"
          "th:first-child,td:first-child{text-align:left}img{max-width:100%}.note{color:#a00}")


@dataclass
class PatientImages:
    """One patient's stack as the CNN read it: ``pixels`` uint8 (n_offsets, S, S), ``masks`` uint8 (1 = tumour),
    ``offsets`` (slices from the central one)."""

    pixels: np.ndarray
    masks: np.ndarray
    offsets: list[int]


def scrub(text: str, others: set[str] | frozenset[str] = frozenset()) -> str:
    """``text`` without folders or image file names (each becomes ``<file>``) and without the ids ``others`` (other
    patients of the same manifest, e.g. in a duplicate-image warning; each becomes ``another patient``)."""
    text = _PATH.sub("<file>", text)
    for other in sorted(others, key=len, reverse=True):
        text = re.sub(rf"(?<![\w-]){re.escape(other)}(?![\w-])", "another patient", text)
    return text


def percentile(training: np.ndarray, prob: float) -> float:
    """Percentage of ``training`` below ``prob``, ties counted half (NaN when empty)."""
    training = np.asarray(training, dtype=float)
    if not len(training):
        return float("nan")
    return float(100.0 * (np.mean(training < prob) + 0.5 * np.mean(training == prob)))


def probability_rows(model: Bundle, row: pd.Series) -> list[dict]:
    """Per model that scored the patient: name, prob, cut-off, class, training probabilities and percentile."""
    training = model.training_probabilities()
    rows = []
    for slug, entry in model.models.items():
        prob = row.get(f"{slug}_prob")
        if prob is None or pd.isna(prob):
            continue
        train = training.loc[training["model"] == slug, "prob"].to_numpy(dtype=float)
        rows.append({"name": entry.name, "prob": float(prob), "cutoff": entry.threshold,
                     "cls": "ER" if float(prob) >= entry.threshold else "no ER", "training": train,
                     "percentile": percentile(train, float(prob))})
    return rows


def _img(encoded: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _stack_figure(images: PatientImages, patient_id: str):
    from hcc_utils.plots.slices import stack_montage
    from hcc_utils.slices import SliceDataset

    dataset = SliceDataset(images=images.pixels[None], patients=pd.DataFrame({"patient_id": [patient_id]}),
                           offsets=list(images.offsets), masks=images.masks[None])
    return stack_montage(dataset, [patient_id])


def _gradcam_figure(model: Bundle, network, images: PatientImages, prob: float | None):
    import torch

    from hcc_utils.cnn_train import resize_slices
    from hcc_utils.gradcam import GradCAMExample, gradcam_maps
    from hcc_utils.plots.cnn import gradcam_figure

    chosen = [images.offsets.index(o) for o in CENTRAL_OFFSETS if o in images.offsets]
    maps = gradcam_maps(network, model.architecture, images.pixels[chosen], model.input_size)
    examples = []
    for k, i in enumerate(chosen):
        shown = resize_slices(torch.as_tensor(images.pixels[i][None, None]), model.input_size)[0, 0].numpy() / 255.0
        mask = resize_slices(torch.as_tensor(images.masks[i][None, None]), model.input_size)[0, 0].numpy() > 0.5
        offset = images.offsets[i]
        examples.append(GradCAMExample(title=f"offset {offset:+d} mm" if offset else "central slice", er=-1,
                                       prob=float("nan") if prob is None else prob, image=np.clip(shown, 0, 1),
                                       cam=maps[k], mask=mask))
    return gradcam_figure(examples, model.index.get("cnn", {}).get("name", model.architecture), letters="")


def _shap_figure(model: Bundle, features: pd.DataFrame, patient_id: str):
    from hcc_utils.explain import explain_model
    from hcc_utils.plots.shap import waterfall_figure

    entry = model.models["dl_mil"]
    result = explain_model(entry.pipeline, features.loc[[patient_id]], entry.features)
    return waterfall_figure(result, patient_id)


def _percent(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.0f}"


def _section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}\n"


def report_html(model: Bundle, row: pd.Series, images: PatientImages | None, mil: pd.DataFrame | None,
                network=None, others: set[str] | frozenset[str] = frozenset()) -> str:
    """The page of one scored patient (module docstring): ``row`` its row of ``predictions.csv``; ``images`` its
    stack (None: no image sections); ``mil`` the MIL feature table (index patient_id); ``network`` the bundle's
    CNN (``predict.load_cnn``) for Grad-CAM; ``others`` the other patients' ids, kept off the page."""
    from hcc_utils.plots.report import png_base64, training_position_figure

    pid = str(row["patient_id"])
    rows = probability_rows(model, row)
    cells = "".join(f"<tr><td>{html.escape(r['name'])}</td><td>{r['prob']:.3f}</td><td>{r['cutoff']:.3f}</td>"
                    f"<td>{r['cls']}</td><td>{_percent(r['percentile'])}</td></tr>" for r in rows)
    parts = [_section("Probabilities of early recurrence (ER)",
                      "<table><tr><th>model</th><th>P(ER)</th><th>cut-off</th><th>class</th>"
                      f"<th>percentile among training patients</th></tr>{cells}</table>"
                      "<p>Class ER when P(ER) is at least the model's cut-off. The percentile places the patient "
                      "among the training patients' out-of-fold probabilities of the same model.</p>"
                      + (_img(png_base64(training_position_figure(rows, pid)), "training distribution")
                         if rows else ""))]
    if images is not None:
        parts.append(_section("2.5D stack", _img(png_base64(_stack_figure(images, pid)), "2.5D stack")))
        if network is not None:
            figure = _gradcam_figure(model, network, images, row.get("dl_mil_prob"))
            parts.append(_section("Grad-CAM on the central slices", _img(png_base64(figure), "Grad-CAM")))
    if mil is not None and pid in mil.index and "dl_mil" in model.models:
        parts.append(_section("DL-MIL explained (SHAP)",
                              "<p>From the training patients' expected P(ER) (the base value) to this patient's, one "
                              "bar per MIL feature (its value beside the name), in probability units.</p>"
                              + _img(png_base64(_shap_figure(model, mil, pid)), "SHAP waterfall")))
    flags = [scrub(f, set(others) - {pid}) for f in str(row.get("flags") or "").split("; ") if f and f != "nan"]
    parts.append(_section("Notes", "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in flags) + "</ul>"
                          if flags else "<p>None: every input was given and every check passed.</p>"))
    cnn = model.index.get("cnn", {})
    footer = (f"<p class='note'>Research use only; not a medical device. Model bundle format "
              f"{model.index.get('format')}, protocol {html.escape(str(model.index.get('protocol')))}, "
              f"CNN {html.escape(str(cnn.get('name')))} "
              f"({cnn.get('input_size')} px). See the bundle's model card for its validation and limitations.</p>")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Patient {html.escape(pid)}: ER "
            f"risk summary</title><style>{_STYLE}</style></head><body>\n<h1>Patient {html.escape(pid)}: early "
            f"recurrence summary</h1>\n{''.join(parts)}{footer}\n</body></html>\n")


def write_reports(model: Bundle, scored: pd.DataFrame, out_dir: Path | str, images: dict[str, PatientImages],
                  mil: pd.DataFrame | None, network=None, ids: list[str] | None = None) -> list[Path]:
    """``out_dir/<patient>/report.html`` for every row of ``scored`` (the scored rows of ``predictions.csv``);
    ``network``: the bundle's CNN in eval mode (``predict.load_cnn``), None to leave Grad-CAM out; ``ids``: every
    patient id of the manifest (kept off each other's pages). The paths."""
    others = {str(i) for i in (ids if ids is not None else scored["patient_id"])}
    written = []
    for _, row in scored.iterrows():
        pid = str(row["patient_id"])
        path = artifacts.patient_report(out_dir, pid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report_html(model, row, images.get(pid), mil, network, others), encoding="utf-8")
        written.append(path)
    return written
