"""Training images per second of each slice CNN through the real trainer, beside a synthetic-tensor ceiling.

- ceiling: the same model, optimiser and precision settings (bf16 autocast + channels_last on GPU), one random
  float batch already on the device, forward + backward + SGD step in a loop: what the network alone can do.
- trainer: ``cnn_train.train_architecture`` on random uint8 slices resident on the device, end to end: shuffling,
  gathering, RandomResizedCrop via roi_align, flips, normalisation, forward/backward/step, the cosine schedule,
  the per-epoch bookkeeping. Reported for the last epoch's training pass (the first pays for warm-up) and for the
  whole run including each epoch's eval-mode selection pass (10% of the slices).

"share" is the trainer's last-epoch rate over the ceiling: issue 4's and issue 18's target is 85% or better on a GPU
(measured on an H200, ResNet18's ceiling at 224 px, batch 128, bf16 + channels_last: 12,158 img/s). CPU time is
printed beside wall time on the CPU, since a busy shared machine slows wall time but not CPU time.

``--compete`` (issue 18, item 3) measures the cost of a machine that is not idle: each variant runs in a fresh
process (the OpenMP variables are read when torch loads), once alone and once beside a competitor (a busy Python
loop in its own process, the kind of thing a user's laptop runs), started just before the timed part:

- before: no OpenMP variables (GNU OpenMP's default: spin 300,000 rounds before sleeping), threads = all cores;
- active: ``OMP_WAIT_POLICY=ACTIVE`` (threads spin until there is work), threads = all cores;
- after: ``hcc_utils.threads.kernel_environment`` of the default ``compute`` section (passive wait, threads =
  the cores this process may use), what the runner gives every notebook kernel.

Measured on the 2-core development machine while other jobs also ran on it (load average 5-7, so "alone" is not
idle; ResNet18, 64 px, batch 32, trainer img/s alone -> beside the competitor): before 23 -> 4 (5.9x slower),
active 12 -> 4 (3.2x), after 36 -> 28 (1.3x).

Commands (one each; the GPU ones for a machine that has one)::

    python benchmarks/cnn_throughput.py --size 224 --batch-size 128                    # GPU: img/s and share
    python benchmarks/cnn_throughput.py --size 64 --archs resnet18 --slices 512 --iters 5 --threads 2   # CPU
    python benchmarks/cnn_throughput.py --compete --device cpu --size 64 --archs resnet18 --slices 512 \
        --batch-size 32 --iters 10 --epochs 2                                            # CPU, busy machine
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from hcc_utils.cnn import build_model, resolve_device
from hcc_utils.cnn_train import SliceTensors, sgd_step, torch_settings, train_architecture
from hcc_utils.config import CNNConfig, ComputeConfig
from hcc_utils.threads import THREAD_COUNT_VARIABLES, WAIT_POLICY_VARIABLES, kernel_environment

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("before", "active", "after")
COMPETITOR = "while True:\n    pass"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ceiling(architecture: str, cfg: CNNConfig, device: torch.device, iters: int, warmup: int) -> tuple[float, float]:
    """(wall img/s, CPU-time img/s) of forward + backward + step on one random batch already on the device."""
    torch.manual_seed(0)
    model = build_model(architecture).to(device)
    channels_last = device.type == "cuda" and cfg.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if (cfg.compile and device.type == "cuda") else model
    size = cfg.size_of(architecture)
    x = torch.randn(cfg.batch_size, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (cfg.batch_size,), device=device)
    optimiser = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    model.train()

    def step() -> None:
        sgd_step(forward, optimiser, x, y, device, cfg)

    for _ in range(warmup):
        step()
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
        step()
    _sync(device)
    images = iters * cfg.batch_size
    return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


def through_trainer(architecture: str, cfg: CNNConfig, device: torch.device, n_slices: int,
                    slice_size: int) -> dict[str, float]:
    """Last-epoch training-pass img/s (wall, from the trainer's history), whole-run img/s (wall and CPU time)."""
    rng = np.random.default_rng(0)
    n_offsets = 11
    n_patients = max(2, n_slices // n_offsets)
    images = rng.integers(0, 256, (n_patients, n_offsets, slice_size, slice_size), dtype=np.uint8)
    er = np.arange(n_patients) % 2
    data = SliceTensors.from_stacks(images, er, device)
    rows = np.arange(n_patients * n_offsets)
    n_select = max(2, len(rows) // 10)
    torch.manual_seed(0)
    model = build_model(architecture).to(device)
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    trained = train_architecture(model, architecture, data, rows[n_select:], rows[:n_select], cfg, seed=0)
    _sync(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    fitted = len(rows[n_select:]) // cfg.batch_size * cfg.batch_size * cfg.epochs[architecture]
    return {"last_epoch": float(trained.history["images_per_s"].iloc[-1]), "run_wall": fitted / wall,
            "run_cpu": fitted / cpu}


@contextmanager
def competitor(on: bool):
    """A CPU-bound process (a busy Python loop, one core) running for the block's duration, if ``on``."""
    process = subprocess.Popen([sys.executable, "-c", COMPETITOR]) if on else None
    try:
        yield
    finally:
        if process is not None:
            process.kill()
            process.wait()


def variant_environment(variant: str) -> dict[str, str]:
    """This process's environment for one ``--compete`` variant (module docstring)."""
    env = {k: v for k, v in os.environ.items() if k not in (*WAIT_POLICY_VARIABLES, *THREAD_COUNT_VARIABLES)}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *[p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p]])
    if variant == "active":
        env["OMP_WAIT_POLICY"] = "ACTIVE"
    elif variant == "after":
        env.update(kernel_environment(ComputeConfig()))
    return env


def measure(args: argparse.Namespace) -> list[dict]:
    """Ceiling and trainer figures per architecture (printed as a table, or as JSON lines with ``--json``)."""
    cfg = CNNConfig(architectures=args.archs, epochs=dict.fromkeys(args.archs, args.epochs), input_size=args.size,
                    batch_size=args.batch_size, device=args.device, num_threads=args.threads,
                    compile=args.compile, bf16_gpu=not args.no_bf16, progress=False)
    device = resolve_device(cfg)
    rows = []
    with torch_settings(cfg, device):
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
            f"CPU, {torch.get_num_threads()} threads"
        if not args.json:
            print(f"device: {name}; input {args.size} px, batch {args.batch_size}, {args.slices} slices, "
                  f"bf16={'on' if device.type == 'cuda' and not args.no_bf16 else 'off'}, compile={args.compile}")
            print(f"{'architecture':<12} {'ceiling':>10} {'trainer':>10} {'share':>6} {'run incl. eval':>15}"
                  + (f" {'ceiling CPU-t':>14} {'run CPU-t':>10}" if device.type == "cpu" else ""))
        for architecture in args.archs:
            with competitor(args.competitor):
                top, top_cpu = ceiling(architecture, cfg, device, args.iters, args.warmup)
                got = through_trainer(architecture, cfg, device, args.slices, args.slice_size or args.size)
            row = {"architecture": architecture, "threads": torch.get_num_threads(), "ceiling": top,
                   "ceiling_cpu": top_cpu, "share": got["last_epoch"] / top, **got}
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
                continue
            line = (f"{architecture:<12} {top:>10.0f} {got['last_epoch']:>10.0f} {row['share']:>6.0%} "
                    f"{got['run_wall']:>15.0f}")
            if device.type == "cpu":
                line += f" {top_cpu:>14.0f} {got['run_cpu']:>10.0f}"
            print(line + "   (img/s)", flush=True)
    if not args.json and device.type == "cuda":
        print("share: the trainer's last epoch over the ceiling; target 85% or better")
    return rows


def compete(args: argparse.Namespace, argv: list[str]) -> None:
    """Each variant alone and beside a competitor, each run in a fresh process; prints img/s and the slowdown."""
    child = [sys.executable, str(Path(__file__).resolve()), *[a for a in argv if a != "--compete"], "--json"]
    results = {}
    for variant in args.variants:
        for busy in (False, True):
            out = subprocess.run(child + (["--competitor"] if busy else []), env=variant_environment(variant),
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                sys.exit(f"the {variant} run{' with a competitor' if busy else ''} failed:\n{out.stderr}")
            for line in out.stdout.splitlines():
                if line.startswith("{"):
                    row = json.loads(line)
                    results[variant, busy, row["architecture"]] = row
            print(f"  {variant}{' + competitor' if busy else ''}: done", file=sys.stderr, flush=True)
    print(f"one competing busy process on {os.cpu_count()} cores; input {args.size} px, batch {args.batch_size}; "
          "wall-clock img/s (trainer: whole run incl. eval; ceiling: synthetic batch)")
    print(f"{'architecture':<12} {'variant':<7} {'threads':>7} {'trainer alone':>14} {'competing':>10} "
          f"{'slowdown':>9} {'ceiling alone':>14} {'competing':>10} {'slowdown':>9}")
    for architecture in args.archs:
        for variant in args.variants:
            alone, busy = results[variant, False, architecture], results[variant, True, architecture]
            print(f"{architecture:<12} {variant:<7} {alone['threads']:>7} {alone['run_wall']:>14.0f} "
                  f"{busy['run_wall']:>10.0f} {alone['run_wall'] / busy['run_wall']:>8.1f}x "
                  f"{alone['ceiling']:>14.0f} {busy['ceiling']:>10.0f} {alone['ceiling'] / busy['ceiling']:>8.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=["resnet18", "densenet121", "resnet101"])
    parser.add_argument("--size", type=int, default=224, help="network input, pixels")
    parser.add_argument("--slice-size", type=int, default=None, help="stored slice side, pixels (default --size)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--slices", type=int, default=4096, help="slices in the synthetic dataset")
    parser.add_argument("--epochs", type=int, default=2, help="trainer epochs (the last one is reported)")
    parser.add_argument("--iters", type=int, default=30, help="timed ceiling iterations")
    parser.add_argument("--warmup", type=int, default=5, help="untimed ceiling iterations")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default all available)")
    parser.add_argument("--compile", action="store_true", help="torch.compile (GPU only)")
    parser.add_argument("--no-bf16", action="store_true", help="fp32 on GPU")
    parser.add_argument("--compete", action="store_true", help="each variant alone and beside a competing "
                        "process, in fresh processes (module docstring)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="the --compete variants")
    parser.add_argument("--competitor", action="store_true", help="run a busy process beside the timed part")
    parser.add_argument("--json", action="store_true", help="one JSON line per architecture")
    args = parser.parse_args()
    if args.compete:
        compete(args, sys.argv[1:])
    else:
        measure(args)


if __name__ == "__main__":
    main()
