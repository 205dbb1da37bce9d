"""Time of ``comparators_abmil.train_abmil`` at the cohort's size (issue 19): 134 patients x 11 slices x 512
(ResNet18 embeddings), the default ``comparators.abmil`` settings, on the CPU.

The embeddings are gaussian noise with a weak planted signal on one slice (so the selection AUC, and with it the
early stop, behave as on data); the roles follow leak_free: 30% validation, the training patients split 80/20 into
fit and select rows. Two cases: the default settings (early stop after ``patience`` epochs without a better
selection AUC) and the same with ``patience = epochs`` (all 200 epochs, the worst case). Wall time and CPU time
(process_time, both cores counted) per case, best of ``--repeats``.

Measured on the 2-core development machine while a smoke run also ran on it (load average 3), one torch thread:
default 51 epochs (best epoch 11) in 0.56 s wall, 0.56 s CPU (11 ms per epoch); no early stop 200 epochs in 2.4 s
wall, 2.3 s CPU. With two threads on the loaded machine wall time varied from 2 s to 60 s (threads spinning against
the other jobs): the fit is too small to gain from a second thread.

Command (one)::

    PYTHONPATH=. python benchmarks/abmil.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hcc_utils.comparators_abmil import train_abmil
from hcc_utils.config_comparators import ABMILConfig


def cohort(n: int, k: int, d: int, seed: int = 0):
    """Noise bags, slice 5 shifted by +/-0.5 on 32 dimensions by ER; fit / select boolean masks."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation((np.arange(n) < round(0.4 * n)).astype(int))
    bags = rng.normal(0, 1, (n, k, d)).astype(np.float32)
    bags[:, 5, :32] += np.where(labels == 1, 0.5, -0.5)[:, None]
    role = rng.permutation(np.arange(n)) / n
    return bags, labels, role < 0.56, (role >= 0.56) & (role < 0.7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=134)
    parser.add_argument("--slices", type=int, default=11)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bags, labels, fit, select = cohort(args.patients, args.slices, args.dim)
    default = ABMILConfig()
    print(f"{args.patients} bags x {args.slices} x {args.dim}, torch threads {torch.get_num_threads()}, "
          f"{default.model_dump()}")
    for name, cfg in (("default", default), ("no early stop", default.model_copy(update={"patience":
                                                                                          default.epochs}))):
        walls, cpus = [], []
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            result = train_abmil(bags, labels, fit, select, cfg, seed=0, desc=name)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        epochs = len(result.history)
        print(f"{name}: {epochs} epochs, best epoch {result.best_epoch}, selection AUC {result.selection_auc:.3f}; "
              f"wall {min(walls):.2f} s, CPU {min(cpus):.2f} s ({1000 * min(walls) / epochs:.1f} ms/epoch wall)")


if __name__ == "__main__":
    main()
