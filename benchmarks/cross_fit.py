"""Benchmark: DL-MIL with and without cross-fitted CNN probabilities (cnn.cross_fit_folds, docs/method.md 3, 4).

On the default book's synthetic cohort (``params/default.yaml``: 191 patients; generated into
``~/.cache/hcc_2p5d/cohorts`` when missing), for each split seed (``cohort.split_seed``):

1. trains the downstream architecture only (ResNet18, what the default book chooses), as notebook 03 does under
   ``leak_free``, and cross-fits it with K folds (``hcc_utils.cnn_cross_fit``);
2. builds the MIL features twice: the training patients' slice probabilities from the main checkpoint's eval pass
   (``eval``, the default book), or cross-fitted (``cross_fit``); validation patients' from the main checkpoint
   both times;
3. fits notebook 05's DL-MIL recipe (``modeling.fit_recipe``) on each, and prints per seed and way: the validation
   AUC (and the out-of-fold training AUC), how far the training patients' PLH features lie from the validation
   patients' (the KS statistic of each of PLH_00..PLH_10, train vs validation patients, averaged; the mean slice
   probability and the share of slices in the extreme bins 0.0 and 1.0, per split), and wall times: the main CNN,
   the cross-fit, and each MIL + recipe fit.

The slice dataset is built once (the 2.5D stacks do not depend on the split) under ``--work`` (default
``~/.cache/hcc_2p5d/benchmarks/cross_fit``); each seed's CNN outputs are cached there too, so a rerun only refits
the recipes (the CNN training seconds recorded at training time are printed either way). Not a test::

    python benchmarks/cross_fit.py --split-seeds 42 7 2025     # the default book's CNN settings: tens of minutes
    python benchmarks/cross_fit.py --split-seeds 42 --quick    # 2 epochs at 32 px, a 2 x 2 grid: a few minutes
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from hcc_utils import artifacts, cnn, cnn_cross_fit, intake, mil, modeling, slices, stats
from hcc_utils.config import load_params, params_from_dict
from hcc_utils.run_folder import RunFolder

PROJECT = Path(__file__).resolve().parents[1]
PLH_BINS = [f"PLH_{i:02d}" for i in range(11)]


def benchmark_params(args, split_seed: int):
    """``params/default.yaml`` with ResNet18 only, K folds and ``split_seed`` (``--quick``: 2 epochs at 32 px, a
    2 x 2 grid)."""
    data = load_params(PROJECT / "params" / "default.yaml").model_dump(mode="json")
    data["cohort"]["split_seed"] = split_seed
    cnn_cfg = data["cnn"]
    epochs, size = (2, 32) if args.quick else (cnn_cfg["epochs"]["resnet18"], cnn_cfg["input_size"]["resnet18"])
    cnn_cfg.update(architectures=["resnet18"], downstream_architecture="resnet18", epochs={"resnet18": epochs},
                   input_size={"resnet18": size}, cross_fit_folds=args.folds, progress=False,
                   num_threads=args.threads)
    if args.quick:
        data["model"].update(n_estimators=[10, 50], max_depth=[2, None], min_samples_split=[2])
    return params_from_dict(data, PROJECT / "params" / "default.yaml")


def slice_dataset(args) -> tuple[slices.SliceDataset, object]:
    """The default cohort's slice dataset, built once under ``--work/base`` (stacks cached per patient)."""
    params = benchmark_params(args, 42)
    base = RunFolder(Path(args.work) / "base")
    base.root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    patients = intake.decide_split(params, base, progress=False)
    dataset = slices.build_slice_dataset(patients, params, base, progress=False)
    print(f"slice dataset: {len(dataset.patients)} patients, {dataset.images.shape[1]} slices of "
          f"{dataset.images.shape[2]} px ({time.perf_counter() - start:.0f} s, cached in {base.root})", flush=True)
    return dataset, base


def plh_gap(features: pd.DataFrame, split: pd.Series) -> float:
    """Mean over PLH_00..PLH_10 of the KS statistic between training and validation patients' values."""
    train, val = features[split.loc[features.index] == "train"], features[split.loc[features.index] == "validation"]
    return float(np.mean([ks_2samp(train[c], val[c]).statistic for c in PLH_BINS]))


def one_way(way: str, inputs_of, params, patients: pd.DataFrame) -> dict:
    """MIL features and the DL-MIL recipe with the training patients' probabilities from ``way``."""
    start = time.perf_counter()
    chosen = params.model_copy(update={"mil": params.mil.model_copy(update={"training_predictions": way})})
    inputs = inputs_of(chosen)
    features = mil.build_mil_table(inputs, patients, chosen)
    labels, split = patients.set_index("patient_id")["er"], patients.set_index("patient_id")["split"]
    recipe = modeling.fit_recipe(features, labels, split, chosen, "DL-MIL")
    pred = recipe.predictions
    val, train = pred[pred["split"] == "validation"], pred[pred["split"] == "train"]
    extreme = inputs["prob"].round(1).isin([0.0, 1.0])
    return {"way": way, "val_auc": stats.auc(val["er"], val["prob"]),
            "train_oof_auc": stats.auc(train["er"], train["prob_oof"]), "plh_ks": plh_gap(features, split),
            "mean_prob_train": inputs.loc[inputs["split"] == "train", "prob"].mean(),
            "mean_prob_val": inputs.loc[inputs["split"] == "validation", "prob"].mean(),
            "extreme_train": extreme[inputs["split"] == "train"].mean(),
            "extreme_val": extreme[inputs["split"] == "validation"].mean(),
            "features": " ".join(recipe.features), "seconds": time.perf_counter() - start}


def one_seed(args, dataset, base: RunFolder, seed: int) -> list[dict]:
    params = benchmark_params(args, seed)
    split = intake.plan_split(intake.check_cohort(params, base, progress=False), params)
    split = split.set_index(split["patient_id"].astype(str))["split"]
    patients = dataset.patients.assign(split=dataset.patients["patient_id"].astype(str).map(split).to_numpy())
    data = replace(dataset, patients=patients)
    run = RunFolder(Path(args.work) / ("quick" if args.quick else "full") / f"split{seed}")
    run.root.mkdir(parents=True, exist_ok=True)
    artifacts.write_split(run, patients)

    start = time.perf_counter()
    main = cnn.train_and_predict(data, params, run)
    main_wall = time.perf_counter() - start
    start = time.perf_counter()
    cross = cnn_cross_fit.cross_fit_predictions(data, params, run)
    cross_wall = time.perf_counter() - start

    history = main.history
    best = main.choice["best_epoch"]["ResNet18"]
    per_epoch = float(history["seconds"].mean())
    pooled = cross.table.iloc[-1]
    print(f"\nsplit seed {seed}: {int((patients['split'] == 'train').sum())} training, "
          f"{int((patients['split'] == 'validation').sum())} validation patients; ResNet18 "
          f"{params.cnn.epochs['resnet18']} epochs at {params.cnn.size_of('resnet18')} px, best epoch {best} "
          f"(inner-validation AUC {main.choice['selection_auc']['ResNet18']:.3f})", flush=True)
    print(f"  main CNN: {history['seconds'].sum():.0f} s of training passes ({per_epoch:.1f} s per epoch, "
          f"{history['images_per_s'].mean():.0f} img/s), this call {main_wall:.0f} s")
    print(f"  cross-fit: K = {args.folds}, {cross.epochs} epoch(s) each, {pooled['seconds']:.0f} s recorded, this "
          f"call {cross_wall:.0f} s; training slices' AUC: cross-fitted {pooled['held_out_auc']:.3f}, main "
          f"checkpoint {pooled['main_auc']:.3f}")

    downstream = cnn.downstream_predictions(run)
    rows = []
    for way in ("eval", "cross_fit"):
        row = one_way(way, lambda p: mil.mil_inputs(downstream, p, cross.predictions), params, patients)
        rows.append({"split_seed": seed, **row})
        print(f"  DL-MIL {way:>9}: validation AUC {row['val_auc']:.3f} (train OOF {row['train_oof_auc']:.3f}); "
              f"PLH train-vs-validation KS {row['plh_ks']:.3f}; mean slice prob train {row['mean_prob_train']:.3f} "
              f"/ val {row['mean_prob_val']:.3f}; slices in bins 0.0 or 1.0 train {row['extreme_train']:.0%} / "
              f"val {row['extreme_val']:.0%}; {row['seconds']:.0f} s; features: {row['features']}", flush=True)
    extra = args.folds * best * per_epoch * (args.folds - 1) / args.folds / (1 - params.cnn.inner_validation_fraction)
    print(f"  cross-fit cost estimate from the main run's epoch time: {args.folds} x {best} epochs x "
          f"{per_epoch:.1f} s x {(args.folds - 1) / args.folds:.2f}/{1 - params.cnn.inner_validation_fraction:.2f} "
          f"of the slices = {extra:.0f} s")
    for row in rows:
        row.update(main_cnn_s=float(history["seconds"].sum()), cross_fit_s=float(pooled["seconds"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split-seeds", type=int, nargs="+", default=[42, 7, 2025])
    parser.add_argument("--folds", type=int, default=5, help="K of cnn.cross_fit_folds")
    parser.add_argument("--quick", action="store_true", help="2 epochs at 32 px and a 2 x 2 grid (a few minutes)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the CNN (default torch's)")
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "hcc_2p5d" / "benchmarks" / "cross_fit"),
                        help="folder for the slice dataset and each seed's CNN outputs (reused by reruns)")
    args = parser.parse_args()
    start = time.perf_counter()
    dataset, base = slice_dataset(args)
    rows = [row for seed in args.split_seeds for row in one_seed(args, dataset, base, seed)]
    table = pd.DataFrame(rows)[["split_seed", "way", "val_auc", "train_oof_auc", "plh_ks", "mean_prob_train",
                                "mean_prob_val", "extreme_train", "extreme_val", "seconds", "main_cnn_s",
                                "cross_fit_s"]]
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if len(args.split_seeds) > 1:
        print("\nmean over seeds:\n" + table.groupby("way")[["val_auc", "plh_ks"]].mean().to_string(
            float_format=lambda v: f"{v:.3f}"))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
