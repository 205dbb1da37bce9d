"""Incremental value of a new model over an old one on the same patients: the category-free (continuous) net
reclassification improvement (NRI) and the integrated discrimination improvement (IDI) (docs/method.md section 6,
"Incremental value"; Pencina et al., Stat Med 2008 and 2011).

For patients scored by both models (``p_new``, ``p_old``: probabilities of ER, fractions), "up" means
``p_new > p_old``, "down" ``p_new < p_old`` (a tie is neither):

    NRI_events    = P(up | event) - P(down | event)
    NRI_nonevents = P(down | non-event) - P(up | non-event)
    NRI           = NRI_events + NRI_nonevents                       (between -2 and 2)
    IDI           = mean(p_new - p_old | events) - mean(p_new - p_old | non-events)   (between -1 and 1)

Events are ER patients (``er == 1``). 95 % intervals (``evaluation.ci_level``) are bootstrap percentiles: ``n_boot``
resamples (default 2000) of the patients with replacement, within each outcome group (so every resample keeps the
set's numbers of events and non-events), from a generator seeded by the run's ``seed``. With the same patients and
seed, every pair of models is resampled alike (paired resamples).

``nri_idi_table(preds, params)`` gives, on the validation patients (``prob``) and on the training patients'
out-of-fold predictions (``prob_oof``), each new model of ``NEW_MODELS`` against ``OLD_MODEL``; rows of a model
without predictions are left out with a note. Written as ``tables/nri_idi.csv`` (``artifacts.NRI_IDI``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hcc_utils import artifacts
from hcc_utils.config import Params
from hcc_utils.model_predictions import ModelPredictions
from hcc_utils.run_folder import RunFolder

COLUMNS = list(artifacts.NRI_IDI.columns)
OLD_MODEL = "Clinical"
NEW_MODELS = ("Combined", "DL-MIL")
SETS = (("validation", "validation"), ("train (out-of-fold)", "train"))
"""(dataset label, split): validation rows use ``prob``, training rows ``prob_oof``."""


def _checked(y, p_new, p_old) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    p_new, p_old = np.asarray(p_new, dtype=float), np.asarray(p_old, dtype=float)
    if not (len(y) == len(p_new) == len(p_old)):
        raise ValueError(f"y, p_new and p_old differ in length ({len(y)}, {len(p_new)}, {len(p_old)})")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must be 0 (non-event) or 1 (event)")
    for name, p in (("p_new", p_new), ("p_old", p_old)):
        if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
            raise ValueError(f"{name} must be probabilities in [0, 1]")
    if y.sum() in (0, len(y)):
        raise ValueError("need at least one event and one non-event")
    return y.astype(int), p_new, p_old


def nri_idi(y, p_new, p_old) -> dict[str, float]:
    """Continuous NRI (with its event and non-event parts) and IDI of ``p_new`` over ``p_old`` (module
    docstring): keys nri, nri_events, nri_nonevents, idi."""
    y, p_new, p_old = _checked(y, p_new, p_old)
    move, diff = np.sign(p_new - p_old), p_new - p_old
    events, nonevents = y == 1, y == 0
    nri_events, nri_nonevents = float(move[events].mean()), float(-move[nonevents].mean())
    return {"nri": nri_events + nri_nonevents, "nri_events": nri_events, "nri_nonevents": nri_nonevents,
            "idi": float(diff[events].mean() - diff[nonevents].mean())}


def bootstrap(y, p_new, p_old, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """``nri_idi`` and its bootstrap percentile intervals (module docstring): also nri_low, nri_high, idi_low,
    idi_high. Patients are resampled with replacement within each outcome group."""
    y, p_new, p_old = _checked(y, p_new, p_old)
    point = nri_idi(y, p_new, p_old)
    rng = np.random.default_rng(seed)
    move, diff = np.sign(p_new - p_old), p_new - p_old
    parts = {}
    for group, sign in ((1, 1.0), (0, -1.0)):
        rows = np.flatnonzero(y == group)
        draw = rows[rng.integers(0, len(rows), size=(n_boot, len(rows)))]
        parts[group] = (sign * move[draw].mean(axis=1), diff[draw].mean(axis=1))
    nri = parts[1][0] + parts[0][0]
    idi = parts[1][1] - parts[0][1]
    tail = 100 * (1 - level) / 2
    (nri_low, nri_high), (idi_low, idi_high) = (np.percentile(v, [tail, 100 - tail]) for v in (nri, idi))
    return {**point, "nri_low": float(nri_low), "nri_high": float(nri_high), "idi_low": float(idi_low),
            "idi_high": float(idi_high)}


def _paired(preds: ModelPredictions, new: str, old: str, split: str) -> pd.DataFrame:
    """patient_id, er, new, old on the patients both scored (validation: ``prob``; train: ``prob_oof``)."""
    def scores(model: str) -> pd.DataFrame:
        frame = preds.out_of_fold_scores(model) if split == "train" else preds.scores(model, split)
        return frame.set_index("patient_id")

    a, b = scores(new), scores(old)
    both = a.index.intersection(b.index)
    return pd.DataFrame({"er": a.loc[both, "er"], "new": a.loc[both, "score"], "old": b.loc[both, "score"]})


def nri_idi_table(preds: ModelPredictions, params: Params, n_boot: int = 2000, old: str = OLD_MODEL,
                  new: tuple[str, ...] = NEW_MODELS) -> pd.DataFrame:
    """Each model of ``new`` against ``old`` on the validation patients and the training patients' out-of-fold
    predictions (``COLUMNS``; NRI and IDI are fractions). ``attrs["notes"]``: pairs left out, and why."""
    rows, notes = [], []
    level, seed = params.evaluation.ci_level, params.seed
    for model in new:
        if old not in preds.models or model not in preds.models:
            absent = [m for m in (model, old) if m not in preds.models]
            notes.append(f"{model} vs {old}: no predictions of {', '.join(absent)}; left out")
            continue
        for label, split in SETS:
            try:
                pair = _paired(preds, model, old, split)
                values = bootstrap(pair["er"], pair["new"], pair["old"], n_boot, seed, level)
            except ValueError as exc:
                notes.append(f"{label}: {model} vs {old} not computed: {exc}")
                continue
            rows.append({"dataset": label, "new": model, "old": old, "n": len(pair), **values})
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs["notes"] = notes
    return table


def write_nri_idi(preds: ModelPredictions, params: Params, run: RunFolder, n_boot: int = 2000) -> pd.DataFrame:
    """``nri_idi_table`` written to ``tables/nri_idi.csv`` (``artifacts.NRI_IDI``)."""
    table = nri_idi_table(preds, params, n_boot)
    artifacts.write_table(run, artifacts.NRI_IDI, table)
    return table
