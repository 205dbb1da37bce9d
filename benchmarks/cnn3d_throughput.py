"""Training throughput of notebook 11's 3D CNN (issue 19) on random cubes: forward + backward + SGD step.

For each model and cube size: ``--iters`` timed steps of one random float batch (after one warm-up step), volumes
per second in wall time and in CPU time (a busy shared machine slows wall time, not CPU time), and the estimated
seconds of a run of ``--epochs`` epochs over ``--patients`` patients (training passes at the measured rate plus
one eval-mode pass over 20% of them per epoch, timed separately). Models:

- ``r3d_18``: torchvision's r3d_18 with a 1-channel stem, layers [2, 2, 2, 2];
- ``r3d_10``: the same VideoResNet with layers [1, 1, 1, 1] (BasicBlock, Conv3DSimple, BasicStem, 1-channel stem).

``hcc_utils.comparators_3d.build_cnn3d`` is one of the two (its docstring says which, and why).

Command (CPU, the development machine's 2 threads)::

    python benchmarks/cnn3d_throughput.py --threads 2 --sizes 16 24 32 --batch-size 8 --iters 5
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from hcc_utils.comparators_3d import one_channel_stem


def r3d_10() -> torch.nn.Module:
    """VideoResNet with one BasicBlock per stage, 1-channel stem (``comparators_3d.one_channel_stem``)."""
    from torchvision.models.video.resnet import BasicBlock, BasicStem, Conv3DSimple, VideoResNet

    return one_channel_stem(VideoResNet(BasicBlock, [Conv3DSimple] * 4, [1, 1, 1, 1], BasicStem, num_classes=2))


def r3d_18() -> torch.nn.Module:
    """torchvision's r3d_18 (layers [2, 2, 2, 2]), 1-channel stem."""
    from torchvision.models.video import r3d_18 as torchvision_r3d_18

    return one_channel_stem(torchvision_r3d_18(weights=None, num_classes=2))


MODELS = {"r3d_18": r3d_18, "r3d_10": r3d_10}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(name: str, size: int, batch: int, iters: int) -> dict:
    torch.manual_seed(0)
    model = MODELS[name]()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(batch, 1, size, size, size), torch.randint(0, 2, (batch,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    model.train()
    step()
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(iters):
        step()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    model.eval()
    with torch.no_grad():
        model(x)
        eval_wall = time.perf_counter()
        for _ in range(iters):
            model(x)
        eval_wall = time.perf_counter() - eval_wall
    return {"model": name, "size": size, "train_vol_s": batch * iters / wall, "train_vol_cpu_s": batch * iters / cpu,
            "eval_vol_s": batch * iters / eval_wall, "params_M": sum(p.numel() for p in model.parameters()) / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[16, 24, 32])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--patients", type=int, default=134)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, {args.iters} timed steps")
    print(f"{'model':8} {'size':>4} {'params M':>8} {'train vol/s':>11} {'(per CPU s)':>11} {'eval vol/s':>10} "
          f"{f'{args.epochs} epochs, s':>15}")
    for name in args.models:
        for size in args.sizes:
            r = measure(name, size, args.batch_size, args.iters)
            run = args.epochs * (args.patients / r["train_vol_s"] + 0.2 * args.patients / r["eval_vol_s"])
            print(f"{name:8} {size:>4} {r['params_M']:>8.1f} {r['train_vol_s']:>11.1f} {r['train_vol_cpu_s']:>11.1f} "
                  f"{r['eval_vol_s']:>10.1f} {run:>15.0f}", flush=True)


if __name__ == "__main__":
    main()
