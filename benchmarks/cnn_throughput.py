"""Training images per second of each slice CNN through the real trainer, beside a synthetic-tensor ceiling.

- ceiling: the same model, optimiser and precision settings (bf16 autocast + channels_last on GPU), one random
  float batch already on the device, forward + backward + SGD step in a loop: what the network alone can do.
- trainer: ``cnn_train.train_architecture`` on random uint8 slices resident on the device, end to end: shuffling,
  gathering, RandomResizedCrop via roi_align, flips, normalisation, forward/backward/step, the cosine schedule,
  the per-epoch bookkeeping. Reported for the last epoch's training pass (the first pays for warm-up) and for the
  whole run including each epoch's eval-mode selection pass (10% of the slices).

Issue 4's target: the trainer at 85% of the ceiling or better on GPU. CPU time is printed beside wall time on the
CPU, since a busy shared machine slows wall time but not CPU time::

    python benchmarks/cnn_throughput.py --size 224 --archs resnet18 densenet121 resnet101 --batch-size 128
    python benchmarks/cnn_throughput.py --size 64 --archs resnet18 --slices 512 --iters 5 --threads 2   # CPU
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hcc_utils.cnn import build_model, resolve_device
from hcc_utils.cnn_train import SliceTensors, sgd_step, torch_settings, train_architecture
from hcc_utils.config import CNNConfig


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
    args = parser.parse_args()

    cfg = CNNConfig(architectures=args.archs, epochs=dict.fromkeys(args.archs, args.epochs), input_size=args.size,
                    batch_size=args.batch_size, device=args.device, num_threads=args.threads,
                    compile=args.compile, bf16_gpu=not args.no_bf16, progress=False)
    device = resolve_device(cfg)
    with torch_settings(cfg, device):
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
            f"CPU, {torch.get_num_threads()} threads"
        print(f"device: {name}; input {args.size} px, batch {args.batch_size}, {args.slices} slices, "
              f"bf16={'on' if device.type == 'cuda' and not args.no_bf16 else 'off'}, compile={args.compile}")
        print(f"{'architecture':<12} {'ceiling':>10} {'trainer':>10} {'ratio':>6} {'run incl. eval':>15}"
              + (f" {'ceiling CPU-t':>14} {'run CPU-t':>10}" if device.type == "cpu" else ""))
        for architecture in args.archs:
            top, top_cpu = ceiling(architecture, cfg, device, args.iters, args.warmup)
            got = through_trainer(architecture, cfg, device, args.slices, args.slice_size or args.size)
            line = (f"{architecture:<12} {top:>10.0f} {got['last_epoch']:>10.0f} {got['last_epoch'] / top:>6.0%} "
                    f"{got['run_wall']:>15.0f}")
            if device.type == "cpu":
                line += f" {top_cpu:>14.0f} {got['run_cpu']:>10.0f}"
            print(line + "   (img/s)", flush=True)


if __name__ == "__main__":
    main()
