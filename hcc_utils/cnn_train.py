"""Training and inference of one slice-level CNN with the slices resident on the device (docs/method.md section 3).

The original tooling's recipe by default: SGD with momentum, learning rate cosine-annealed per iteration,
RandomResizedCrop + horizontal flip, batch 32, cross-entropy on two classes; every choice is a field of
``params.cnn`` (:class:`hcc_utils.config.CNNConfig`).

Fast path (the same code on CPU and GPU):

- the uint8 slice stacks are copied once into one tensor ``(n_slices, 1, S, S)`` on the device (GPU memory when
  there is one: 2,101 slices of 224 px take 105 MB);
- a batch is gathered by index and augmented as a whole tensor: RandomResizedCrop as one crop box per slice,
  resampled with ``torchvision.ops.roi_align`` (bilinear, averaging over the box's pixels when it shrinks, so it
  is anti-aliased like ``transforms.v2.RandomResizedCrop(antialias=True)``), a horizontal flip as a batched
  ``where``, grey copied to 3 channels by broadcasting against the ImageNet mean and standard deviation;
- crop boxes, flips and the shuffling order of an epoch are drawn at once from one seeded CPU generator, so a run
  is reproducible and the device never waits for the host inside an epoch;
- bf16 autocast and channels_last on GPU, bf16 autocast on CPUs with native bf16 (``cnn.bf16_cpu``); the loss and
  the training-pass probabilities stay on the device until the epoch ends (one synchronisation per epoch).

The crop follows torchvision's RandomResizedCrop: area fraction ``U(scale)``, log aspect ratio uniform in
``log(ratio)``, ten tries, then the whole slice; box corners are continuous (sub-pixel) rather than integers.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torchvision.ops import roi_align

from hcc_utils.config import CNNConfig
from hcc_utils.progress import plural, progress, summary_mode
from hcc_utils.threads import configured_threads

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HISTORY_COLUMNS = ["architecture", "epoch", "loss", "train_auc", "selection_auc", "lr", "seconds",
                   "images_per_s"]


@dataclass
class SliceTensors:
    """All slices of a cohort on one device: ``images`` uint8 (n_slices, 1, S, S), ``labels`` int64 (n_slices,).

    Slice ``i`` is offset ``i % n_offsets`` of patient ``i // n_offsets`` (patient-major, as the dataset's axes).
    """

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_stacks(cls, images: np.ndarray, er: np.ndarray, device: torch.device) -> SliceTensors:
        """Copy uint8 stacks ``(n_patients, n_offsets, S, S)`` and per-patient labels to ``device`` once."""
        n_patients, n_offsets, height, width = images.shape
        flat = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8).reshape(-1, 1, height, width))
        labels = torch.as_tensor(np.repeat(np.asarray(er, dtype=np.int64), n_offsets))
        return cls(flat.to(device), labels.to(device))

    @property
    def side(self) -> int:
        """Slice side length S, pixels."""
        return int(self.images.shape[-1])


@dataclass
class TrainedCNN:
    """One architecture after training: the chosen checkpoint (CPU state dict) and the per-epoch history."""

    architecture: str
    state_dict: dict[str, torch.Tensor]
    best_epoch: int
    selection_auc: float
    history: pd.DataFrame
    train_pass_prob: np.ndarray
    """Per slice row of the data, the probability the chosen epoch's training pass gave it (augmented, train
    mode: what the original tooling logged); NaN for rows not in that pass (selection rows, other patients, the
    epoch's dropped last batch)."""
    watch_auc_by_epoch: list[float] = field(default_factory=list)
    """With ``watch_rows`` (the optimism audit, docs/method.md section 8): per epoch, the eval-mode slice AUC of the
    watched rows (NaN where undefined); empty when nothing was watched."""
    watch_best_epoch: int | None = None
    """The epoch the watched rows would have chosen (same tie rule as the selection); None when not watching."""
    watch_state_dict: dict[str, torch.Tensor] | None = None
    """That epoch's weights (CPU state dict); None when not watching."""
    watch_train_pass_prob: np.ndarray | None = None
    """That epoch's training-pass probability per slice row (as ``train_pass_prob``); None when not watching."""


def cpu_supports_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_for(device: torch.device, cfg: CNNConfig) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU (``bf16_gpu``) or on a bf16-capable CPU (``bf16_cpu``), otherwise fp32."""
    if device.type == "cuda" and cfg.bf16_gpu:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and cfg.bf16_cpu:
        if cpu_supports_bf16():
            return torch.autocast("cpu", dtype=torch.bfloat16)
        warnings.warn("cnn.bf16_cpu is set but this CPU has no native bf16 (AVX512-BF16/AMX); training in fp32",
                      stacklevel=2)
    return contextlib.nullcontext()


@contextlib.contextmanager
def torch_settings(cfg: CNNConfig, device: torch.device) -> Iterator[None]:
    """Threads (``cnn.num_threads``, default ``compute.threads`` as ``notebook.setup`` configured it, else
    torch's), deterministic kernels and cuDNN autotuning for one training run; restored afterwards.

    CPU runs use deterministic algorithms (two runs with one seed give the same numbers); GPU runs autotune
    cuDNN (seeded, not bitwise reproducible) unless ``cnn.deterministic_gpu``.
    """
    threads, det, warn_only = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), \
        torch.is_deterministic_algorithms_warn_only_enabled()
    bench, cudnn_det = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    if cfg.num_threads or configured_threads():
        torch.set_num_threads(cfg.num_threads or configured_threads())
    deterministic = device.type == "cpu" or cfg.deterministic_gpu
    if device.type == "cuda" and cfg.deterministic_gpu:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (read at its start)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic_gpu
        torch.backends.cudnn.deterministic = cfg.deterministic_gpu
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = bench, cudnn_det


def random_crop_boxes(n: int, side: int, scale: tuple[float, float], ratio: tuple[float, float],
                      generator: torch.Generator, tries: int = 10) -> torch.Tensor:
    """RandomResizedCrop boxes ``(n, 4)`` as (x0, y0, x1, y1) in pixels of a square slice of ``side`` pixels."""
    area = side * side * torch.empty(n, tries).uniform_(scale[0], scale[1], generator=generator)
    aspect = torch.exp(torch.empty(n, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator))
    width, height = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
    fits = (width <= side) & (height <= side)
    first = fits.to(torch.int8).argmax(dim=1)
    rows = torch.arange(n)
    width = torch.where(fits.any(dim=1), width[rows, first], torch.tensor(float(side)))
    height = torch.where(fits.any(dim=1), height[rows, first], torch.tensor(float(side)))
    x0 = torch.rand(n, generator=generator) * (side - width)
    y0 = torch.rand(n, generator=generator) * (side - height)
    return torch.stack([x0, y0, x0 + width, y0 + height], dim=1)


def resize_slices(images: torch.Tensor, size: int, boxes: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 slices ``(B, 1, S, S)`` -> float ``(B, 1, size, size)`` in 0..255: the box of each (default the
    whole slice) resampled to ``size`` pixels (bilinear; averages the box's pixels when it shrinks)."""
    x = images.float()
    side = images.shape[-1]
    if boxes is None:
        if size == side:
            return x
        boxes = torch.zeros(len(x), 4, device=x.device)
        boxes[:, 2:] = float(side)  # the whole slice, built on the device (no host-to-device copy)
    rois = torch.cat([torch.arange(len(x), device=x.device, dtype=x.dtype)[:, None], boxes.to(x)], dim=1)
    return roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


@functools.lru_cache(maxsize=8)
def _imagenet_scale_shift(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``x * scale + shift`` maps 0..255 grey to ImageNet-normalised channels; cached per device so no batch
    waits for a host-to-device copy."""
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    scale, shift = 1.0 / (255.0 * std), -mean / std
    return scale.view(1, 3, 1, 1).to(device), shift.view(1, 3, 1, 1).to(device)


def network_input(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """Grey 0..255 ``(B, 1, H, W)`` -> ImageNet-normalised 3-channel ``(B, 3, H, W)`` (grey copied to the three
    channels by broadcasting: ``(x / 255 - mean) / std``)."""
    scale, shift = _imagenet_scale_shift(x.device)
    out = torch.addcmul(shift, x, scale)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def _uses_channels_last(device: torch.device, cfg: CNNConfig) -> bool:
    return device.type == "cuda" and cfg.channels_last


def safe_auc(y: np.ndarray, prob: np.ndarray) -> float:
    """ROC AUC; NaN when only one class is present (tiny selection sets) or a probability is not finite."""
    y, prob = np.asarray(y), np.asarray(prob)
    defined = 0 < y.sum() < len(y) and np.isfinite(prob).all()
    return float(roc_auc_score(y, prob)) if defined else float("nan")


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, data: SliceTensors, rows: np.ndarray, size: int,
                          cfg: CNNConfig, forward: Callable | None = None) -> np.ndarray:
    """Eval-mode positive-class probability of the slices ``rows`` (no augmentation; the whole slice resized)."""
    device = data.images.device
    model.eval()
    forward = forward or model
    index = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=device)
    out = torch.empty(len(index), device=device)
    for start in range(0, len(index), cfg.eval_batch_size):
        batch = index[start:start + cfg.eval_batch_size]
        x = network_input(resize_slices(data.images[batch], size), _uses_channels_last(device, cfg))
        with autocast_for(device, cfg):
            logits = forward(x)
        out[start:start + len(batch)] = logits.float().softmax(dim=1)[:, 1]
    return out.cpu().double().numpy()


def batches_per_epoch(n_slices: int, batch_size: int) -> int:
    """Full batches per epoch (one smaller batch when there are fewer slices than a batch)."""
    if n_slices < 2:
        raise ValueError(f"only {n_slices} training slice(s): the CNN needs at least 2")
    return max(1, n_slices // batch_size)


def _epoch_plan(rows: np.ndarray, cfg: CNNConfig, side: int, generator: torch.Generator,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Shuffled rows, crop boxes and flips for one epoch, drawn on the CPU, moved to the device at once.

    The last incomplete batch is dropped (a new order every epoch, so no slice is left out for good): a batch of a
    few slices would corrupt batch normalisation's running statistics, worst at small inputs where the last block's
    feature map is 1x1. The count of batches is returned.
    """
    n = len(rows)
    order = torch.as_tensor(np.asarray(rows, dtype=np.int64))[torch.randperm(n, generator=generator)]
    boxes = random_crop_boxes(n, side, cfg.random_resized_crop_scale, cfg.random_resized_crop_ratio, generator)
    flips = torch.rand(n, generator=generator) < (0.5 if cfg.hflip else 0.0)
    return order.to(device), boxes.to(device), flips.to(device), batches_per_epoch(n, cfg.batch_size)


@dataclass
class _Best:
    """The best epoch so far by one slice AUC: ties and undefined AUCs keep the earlier epoch; when no epoch has a
    defined AUC, the last one is kept."""

    state: dict[str, torch.Tensor] | None = None
    epoch: int = 0
    score: float = -math.inf
    train_pass_prob: np.ndarray | None = None

    def offer(self, epoch: int, auc: float, model: torch.nn.Module, train_pass_prob: np.ndarray) -> None:
        """Keep ``model``'s weights and the epoch's training-pass probabilities when ``auc`` improves."""
        score = auc if not math.isnan(auc) else -math.inf
        if self.state is None or score > self.score or (self.score == -math.inf and score == -math.inf):
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.epoch, self.score, self.train_pass_prob = epoch, score, train_pass_prob

    @property
    def auc(self) -> float:
        return self.score if self.score > -math.inf else float("nan")


def sgd_step(forward, optimiser: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
             device: torch.device, cfg: CNNConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step (forward under autocast, cross-entropy, backward, step); returns (loss, logits).

    Shared by the trainer and the throughput benchmark's synthetic-tensor ceiling, so both time the same work.
    """
    with autocast_for(device, cfg):
        logits = forward(x)
    loss = F.cross_entropy(logits.float(), y)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss, logits


def training_summary(name: str, history: list[dict], best_epoch: int, selection_auc: float, seconds: float,
                     selecting: bool = True) -> str:
    """One line on a finished training (a batch run's notebook shows it instead of the bars, ``hcc_utils.progress``).

    ``seconds``: the whole loop's wall time (training and selection passes); images per second: the training
    passes' (the history's). ``selecting``: whether there were selection rows (not for the cross-fit's networks,
    which keep their last epoch).
    """
    train_seconds = sum(h["seconds"] for h in history)
    images = sum(h["images_per_s"] * h["seconds"] for h in history if math.isfinite(h["images_per_s"]))
    rate = f"{images / train_seconds:.0f} img/s" if train_seconds > 0 else "img/s not measured"
    if not selecting:
        chosen = f"epoch {best_epoch} kept (no selection)"
    elif math.isfinite(selection_auc):
        chosen = f"best epoch {best_epoch}, selection AUC {selection_auc:.3f}"
    else:
        chosen = f"epoch {best_epoch} kept (selection AUC undefined in every epoch)"
    return f"{name}: {len(history)} {plural(len(history), 'epoch')} in {seconds:.0f} s ({rate}), {chosen}"


def train_architecture(model: torch.nn.Module, architecture: str, data: SliceTensors, fit_rows: np.ndarray,
                       select_rows: np.ndarray, cfg: CNNConfig, seed: int, desc: str | None = None,
                       stop_after: int | None = None, watch_rows: np.ndarray | None = None) -> TrainedCNN:
    """Train ``model`` on the slices ``fit_rows``; keep the epoch with the best slice AUC on ``select_rows``.

    The selection rows are the inner-validation patients' slices under ``leak_free`` and the validation
    patients' under ``onekey_compat`` (the caller decides; this function sees no other rows). Ties and
    undefined AUCs keep the earlier epoch; when no epoch has a defined AUC the last epoch is kept. ``model`` ends
    in eval mode with the chosen checkpoint's weights.

    ``stop_after`` (the cross-fit's networks, ``hcc_utils.cnn_cross_fit``): train only the first ``stop_after``
    epochs of the ``cnn.epochs`` schedule (the cosine still spans all of them, so the learning rate follows the
    full run's curve) and keep the last; give no ``select_rows`` then, so nothing is chosen on them.

    ``watch_rows`` (the optimism audit, docs/method.md section 8; under ``leak_free`` the validation patients'
    slices): after each epoch an eval-mode pass over them gives their slice AUC, and the epoch they would have
    chosen (same tie rule) is kept in memory: its weights and training-pass probabilities (``TrainedCNN.watch_*``).
    Watching chooses nothing: the checkpoint, history and probabilities are the same with and without it.

    Returns:
        The chosen checkpoint and a history with, per epoch: mean training loss, AUC of the training pass
        (augmented, train mode, as the original tooling logged), selection AUC, learning rate at the epoch's
        start, seconds and images per second of the training pass; and the chosen epoch's training-pass
        probability of each slice it saw (``TrainedCNN.train_pass_prob``).
    """
    device = data.images.device
    epochs, size = cfg.epochs[architecture], cfg.size_of(architecture)
    channels_last = _uses_channels_last(device, cfg)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if (cfg.compile and device.type == "cuda") else model
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    total = epochs * batches_per_epoch(len(fit_rows), cfg.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total)
    select_labels = data.labels[torch.as_tensor(np.asarray(select_rows, dtype=np.int64), device=device)]
    select_labels = select_labels.cpu().numpy()
    history, best, watched, watch_aucs = [], _Best(), _Best(), []
    if watch_rows is not None:
        watch_labels = data.labels[torch.as_tensor(np.asarray(watch_rows, dtype=np.int64), device=device)]
        watch_labels = watch_labels.cpu().numpy()
    if stop_after is not None and not 1 <= stop_after <= epochs:
        raise ValueError(f"stop_after = {stop_after}: must be an epoch of the {epochs}-epoch schedule")
    name, summary = desc or architecture, summary_mode()
    bars = {"disable": not cfg.progress or summary, "mininterval": 1.0}  # a batch run: one line at the end instead
    bar = progress(range(1, (stop_after or epochs) + 1), desc=name, unit="epoch", **bars)
    loop_start = time.perf_counter()
    for epoch in bar:
        model.train()
        order, boxes, flips, n_batches = _epoch_plan(fit_rows, cfg, data.side, generator, device)
        lr = optimiser.param_groups[0]["lr"]
        loss_sum = torch.zeros((), device=device)
        probs = torch.empty(len(order), device=device)
        start, seen = time.perf_counter(), 0
        for b in progress(range(n_batches), desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False, **bars):
            part = slice(b * cfg.batch_size, (b + 1) * cfg.batch_size)
            rows = order[part]
            x = resize_slices(data.images[rows], size, boxes[part])
            x = torch.where(flips[part].view(-1, 1, 1, 1), x.flip(-1), x)
            x, y = network_input(x, channels_last), data.labels[rows]
            loss, logits = sgd_step(forward, optimiser, x, y, device, cfg)
            schedule.step()
            loss_sum += loss.detach() * len(rows)
            probs[b * cfg.batch_size:b * cfg.batch_size + len(rows)] = logits.detach().float().softmax(1)[:, 1]
            seen += len(rows)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        seen_rows, seen_prob = order[:seen].cpu().numpy(), probs[:seen].cpu().numpy()
        train_auc = safe_auc(data.labels[order[:seen]].cpu().numpy(), seen_prob)
        select_prob = predict_probabilities(model, data, select_rows, size, cfg, forward)
        select_auc = safe_auc(select_labels, select_prob)
        history.append({"architecture": architecture, "epoch": epoch, "loss": float(loss_sum) / max(seen, 1),
                        "train_auc": train_auc, "selection_auc": select_auc, "lr": lr, "seconds": seconds,
                        "images_per_s": seen / seconds if seconds > 0 else float("nan")})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", sel_auc=f"{select_auc:.3f}")
        train_pass_prob = np.full(len(data.labels), np.nan)
        train_pass_prob[seen_rows] = seen_prob
        best.offer(epoch, select_auc, model, train_pass_prob)
        if watch_rows is not None:
            watch_aucs.append(safe_auc(watch_labels, predict_probabilities(model, data, watch_rows, size, cfg,
                                                                           forward)))
            watched.offer(epoch, watch_aucs[-1], model, train_pass_prob)
    if cfg.progress and summary:
        print(training_summary(name, history, best.epoch, best.auc, time.perf_counter() - loop_start,
                               selecting=len(select_rows) > 0), flush=True)
    model.load_state_dict(best.state)
    model.eval()
    watching = watch_rows is not None
    return TrainedCNN(architecture=architecture, state_dict={k: v.cpu() for k, v in best.state.items()},
                      best_epoch=best.epoch, selection_auc=best.auc,
                      history=pd.DataFrame(history, columns=HISTORY_COLUMNS), train_pass_prob=best.train_pass_prob,
                      watch_auc_by_epoch=watch_aucs, watch_best_epoch=watched.epoch if watching else None,
                      watch_state_dict={k: v.cpu() for k, v in watched.state.items()} if watching else None,
                      watch_train_pass_prob=watched.train_pass_prob)
