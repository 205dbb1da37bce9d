"""Benchmark: wall time of notebook 05's three recipe fits (``modeling.fit_recipe``) at the default book's sizes.

Synthetic features stand in for the book's (no CNN or PyRadiomics run needed): 191 patients, 133 of them training
(the default cohort's 70 %), 36 % ER, and

- DL-MIL: 26 features (the MIL table's width), 4 of them shifted by 0.6 SD between ER and NER;
- Radiomics: ``--radiomics-features`` (300) features from 30 latent factors plus noise (highly correlated blocks,
  as PyRadiomics' filtered images give), 3 factors shifted by 0.5 SD;
- Clinical: 2 variables (AFP-like skewed, gender-like 0/1), ``selection_steps=()`` as ``clinical.fit_clinical_model``.

Each model is fitted with the default params' grid (32 candidates x 5 folds) and ``model.n_jobs`` of the default
book (2), timed as wall-clock seconds; the machine should otherwise be idle. Run it from the repository root, on
any commit (it only uses ``fit_recipe``)::

    PYTHONPATH=. python benchmarks/recipe.py
    PYTHONPATH=. python benchmarks/recipe.py --jobs 1 --repeats 3

Not a test. Per model it prints the wall time (median over ``--repeats``), the selected features, the CV AUC and,
when the recipe reports it, the selection stability over the CV folds. With ``--jobs 1`` everything runs in this
process, so its CPU seconds measure the cost even on a busy machine.

Issue 14's target: refitting the selection in every CV fold must not make notebook 05 much slower. Measured on
the shared 2-core machine (busy, load 3-6), medians of 5 runs, CPU seconds with ``--jobs 1``:

    ============  =========================  =====================================
    model         selection before the CV    selection in each fold (cached)
    ============  =========================  =====================================
    DL-MIL        13.7                       14.2
    Radiomics     13.4                       17.8 (5 more fits of 300 features)
    Clinical      13.4                       13.7
    total         40.5                       45.7 (+13 %)
    ============  =========================  =====================================

Wall time with ``--jobs 2`` (the default book) was within the machine's noise (totals 54-115 s before, 28-108 s
after). The 160 ExtraTrees fits of the grid dominate. Without the per-fold cache the selection would be fitted
once per grid candidate and fold, 160 + 5 times instead of 5: one fit takes about 0.7 CPU s for the 300
radiomics-like features and 0.15 s for the 26 MIL-like ones (133 x 0.8 training rows), so about two more minutes.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from hcc_utils import modeling, stats
from hcc_utils.config import params_from_dict

N_PATIENTS, N_TRAIN, ER_SHARE = 191, 133, 0.36


def _cohort(seed: int) -> tuple[pd.Series, pd.Series]:
    """0/1 ER and the train/validation split, stratified, seeded."""
    rng = np.random.default_rng(seed)
    ids = [f"B{i:03d}" for i in range(N_PATIENTS)]
    er = pd.Series(rng.permutation((np.arange(N_PATIENTS) < round(ER_SHARE * N_PATIENTS)).astype(int)), index=ids)
    split = pd.Series("validation", index=ids)
    for group in (0, 1):
        members = er.index[er == group]
        split[members[: round(len(members) * N_TRAIN / N_PATIENTS)]] = "train"
    return er, split


def dl_mil_like(er: pd.Series, seed: int) -> pd.DataFrame:
    """26 features, 4 shifted by 0.6 SD in ER patients."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(len(er), 26))
    values[:, :4] += 0.6 * er.to_numpy()[:, None]
    return pd.DataFrame(values, index=er.index, columns=[f"MIL_{j:02d}" for j in range(26)])


def radiomics_like(er: pd.Series, n_features: int, seed: int) -> pd.DataFrame:
    """``n_features`` features from 30 latent factors (3 shifted by 0.5 SD in ER) plus noise."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(len(er), 30))
    factors[:, :3] += 0.5 * er.to_numpy()[:, None]
    loading = rng.choice(30, size=n_features)
    values = factors[:, loading] * rng.uniform(0.5, 2, n_features) + rng.normal(scale=0.4, size=(len(er), n_features))
    return pd.DataFrame(values, index=er.index, columns=[f"RAD_{j:03d}" for j in range(n_features)])


def clinical_like(er: pd.Series, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    afp = np.exp(rng.normal(3 + 0.8 * er.to_numpy(), 1.5))
    gender = (rng.uniform(size=len(er)) < 0.75 + 0.1 * er.to_numpy()).astype(float)
    return pd.DataFrame({"afp": afp, "gender": gender}, index=er.index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="model.n_jobs (default book: 2)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--radiomics-features", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    params = params_from_dict({"cohort": {"manifest": "/nowhere/cohort.csv"}, "model": {"n_jobs": args.jobs}})
    er, split = _cohort(args.seed)
    models = [("DL-MIL", dl_mil_like(er, args.seed + 1), ("univariate", "correlation", "lasso")),
              ("Radiomics", radiomics_like(er, args.radiomics_features, args.seed + 2),
               ("univariate", "correlation", "lasso")),
              ("Clinical", clinical_like(er, args.seed + 3), ())]
    total = total_cpu = 0.0
    for name, features, steps in models:
        times, cpu = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = modeling.fit_recipe(features, er, split, params, name, selection_steps=steps)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        seconds = float(np.median(times))
        total += seconds
        total_cpu += float(np.median(cpu))
        pred = result.predictions
        train, validation = pred[pred["split"] == "train"], pred[pred["split"] == "validation"]
        print(f"{name}: {features.shape[1]} features, {seconds:.1f} s (runs: {', '.join(f'{t:.1f}' for t in times)};"
              f" CPU of this process {np.median(cpu):.1f} s);"
              f" selected {len(result.features)}; best {result.best_params}; CV AUC {result.cv_auc:.3f}; "
              f"out-of-fold AUC {stats.auc(train['er'], train['prob_oof']):.3f}; "
              f"validation AUC {stats.auc(validation['er'], validation['prob']):.3f}")
        stability = getattr(result, "selection_stability", None)
        if stability is not None:
            print(stability.to_string(index=False))
    print(f"total: {total:.1f} s wall, {total_cpu:.1f} s CPU of this process (n_jobs {args.jobs}; with 1 job the "
          "CPU time is the whole cost and does not depend on other load)")


if __name__ == "__main__":
    main()
