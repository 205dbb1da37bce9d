"""Gated attention MIL over the frozen slice CNN's embeddings: a comparator of notebook 11 (issue 19).

Ilse, Tomczak and Welling, "Attention-based Deep Multiple Instance Learning", ICML 2018, section 2.4 (gated
attention). Each patient is a bag of K slices (the 2.5D offsets); each slice is the chosen CNN's penultimate-layer
output (:func:`slice_embeddings`, the CNN itself frozen). A small network learns which slices to look at
(:class:`GatedAttentionMIL`) and :func:`train_abmil` fits it leak-free: the standardisation and the weights see the
``fit`` rows only, the epoch is chosen on the ``select`` rows only, every other row (the validation patients) is
only predicted. Pure functions over numpy arrays; the orchestration is ``hcc_utils.comparators``'.

Example::

    >>> emb = slice_embeddings(model, "resnet18", dataset.images, size=224)   # (n_patients, K, 512)
    >>> result = train_abmil(emb, er, fit=role == "inner_train", select=role == "inner_validation",
    ...                      cfg=params.comparators.abmil, seed=params.seed)
    >>> result.prob, result.weights                                             # (n_patients,), (n_patients, K)
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from hcc_utils.cnn import HEAD_PREFIX
from hcc_utils.cnn_train import network_input, resize_slices, safe_auc
from hcc_utils.config_comparators import ABMILConfig
from hcc_utils.progress import plural, progress, summary_mode

HISTORY_COLUMNS = ["epoch", "loss", "selection_auc"]


@torch.no_grad()
def slice_embeddings(model: torch.nn.Module, architecture: str, images: np.ndarray, size: int,
                     batch_size: int = 256, device: torch.device | str = "cpu") -> np.ndarray:
    """The frozen CNN's penultimate-layer output (the input of its 2-class head: 512 for ResNet18, 2048 for
    ResNet101, 1024 for DenseNet121) for every slice: images uint8 (n_patients, n_offsets, S, S) -> float32
    (n_patients, n_offsets, D).

    Each slice is prepared as ``cnn_train.predict_probabilities`` prepares it (the whole slice resized to ``size``
    pixels, ImageNet-normalised grey in 3 channels), in eval mode, without gradients, in fp32 (no autocast). The
    head is replaced by the identity on a copy of ``model``: the caller's model (weights, mode, device) is left
    as it was.
    """
    if architecture not in HEAD_PREFIX:
        raise ValueError(f"unknown architecture {architecture!r}; use one of {list(HEAD_PREFIX)}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[2] != images.shape[3] or not images.size:
        raise ValueError(f"slice embeddings: expected uint8 images (n_patients, n_offsets, S, S), not empty, got "
                         f"{images.dtype} {images.shape}")
    device = torch.device(device)
    body = copy.deepcopy(model)
    setattr(body, HEAD_PREFIX[architecture].rstrip("."), torch.nn.Identity())
    body = body.to(device).eval()
    n_patients, n_offsets, side, _ = images.shape
    flat = torch.from_numpy(np.ascontiguousarray(images).reshape(-1, 1, side, side))
    parts = []
    for start in range(0, len(flat), batch_size):
        x = network_input(resize_slices(flat[start:start + batch_size].to(device), size))
        parts.append(body(x).float().cpu())
    return torch.cat(parts).numpy().astype(np.float32, copy=False).reshape(n_patients, n_offsets, -1)


class GatedAttentionMIL(torch.nn.Module):
    """Ilse et al. 2018, gated attention (their eq. 9): h_k = ReLU(W x_k) (``hidden``), a_k = softmax_k(w^T
    (tanh(V h_k) * sigmoid(U h_k))) (V, U: ``attention`` wide), z = sum_k a_k h_k, logit = c^T z + b. Dropout on
    h while training."""

    def __init__(self, in_features: int, hidden: int, attention: int, dropout: float) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(in_features, hidden)
        self.dropout = torch.nn.Dropout(dropout)
        self.attention_v = torch.nn.Linear(hidden, attention)
        self.attention_u = torch.nn.Linear(hidden, attention)
        self.attention_w = torch.nn.Linear(attention, 1)
        self.classifier = torch.nn.Linear(hidden, 1)

    def forward(self, bags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """bags (B, K, D) -> (logits (B,), weights (B, K)) with weights summing to 1 over K."""
        h = self.dropout(F.relu(self.embed(bags)))
        scores = self.attention_w(torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h)))
        weights = torch.softmax(scores.squeeze(-1), dim=1)
        z = torch.bmm(weights.unsqueeze(1), h).squeeze(1)
        return self.classifier(z).squeeze(-1), weights


@dataclass
class ABMILResult:
    """A fitted ABMIL comparator: every patient's probability and attention weights from the chosen epoch."""

    prob: np.ndarray
    """(n_patients,) P(ER) of every patient from the chosen epoch, eval mode."""
    weights: np.ndarray
    """(n_patients, K) attention weights of the chosen epoch, eval mode (rows sum to 1)."""
    best_epoch: int
    """The chosen epoch, 1-based."""
    selection_auc: float
    """AUC on the select rows at ``best_epoch`` (NaN if undefined)."""
    history: pd.DataFrame
    """epoch, loss (mean BCE on the fit rows, train mode), selection_auc (eval mode)."""
    fit_rows: np.ndarray
    """Indices of the rows the weights (and the standardisation) were fitted on."""
    select_rows: np.ndarray
    """Indices of the rows that chose the epoch."""
    seconds: float
    """Wall time of the training loop and the final pass."""
    notes: list[str] = field(default_factory=list)
    """What the caller should know (no selection possible, early stop)."""


def _rows(rows: np.ndarray, n: int, name: str) -> np.ndarray:
    """A boolean mask of length ``n`` or integer indices -> sorted unique int64 indices."""
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise ValueError(f"ABMIL: the {name} mask has shape {rows.shape}; expected ({n},), one per patient")
        return np.flatnonzero(rows)
    if rows.size and (not np.issubdtype(rows.dtype, np.integer) or rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"ABMIL: {name} must be a boolean mask or indices in 0..{n - 1}, got {rows.dtype} "
                         f"values {rows[:5].tolist()}...")
    return np.unique(rows.astype(np.int64))


def _check(embeddings: np.ndarray, labels: np.ndarray, fit: np.ndarray,
           select: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if embeddings.ndim != 3 or min(embeddings.shape) < 1:
        raise ValueError(f"ABMIL: embeddings must be (n_patients, K slices, D), got shape {embeddings.shape}")
    labels = np.asarray(labels)
    if labels.shape != (len(embeddings),):
        raise ValueError(f"ABMIL: {labels.shape[0] if labels.ndim else 0} labels for {len(embeddings)} patients "
                         f"(embeddings {embeddings.shape}); give one 0/1 label per patient")
    if not np.isin(labels, [0, 1]).all():
        raise ValueError(f"ABMIL: labels must be 0/1 (ER), got values {sorted(set(labels.tolist()))[:5]}")
    if not np.isfinite(embeddings).all():
        raise ValueError("ABMIL: the embeddings hold non-finite values; check the CNN they came from")
    fit_rows, select_rows = _rows(fit, len(labels), "fit"), _rows(select, len(labels), "select")
    if len(np.unique(labels[fit_rows])) < 2:
        raise ValueError(f"ABMIL: the {len(fit_rows)} fit rows hold "
                         f"{'no patient' if not len(fit_rows) else 'one class only'}; the attention model needs "
                         "both ER and NER patients to learn from")
    return labels.astype(np.int64), fit_rows, select_rows


def train_abmil(embeddings: np.ndarray, labels: np.ndarray, fit: np.ndarray, select: np.ndarray,
                cfg: ABMILConfig, seed: int, device: torch.device | str = "cpu", desc: str = "ABMIL") -> ABMILResult:
    """Fit :class:`GatedAttentionMIL` on the ``fit`` rows, choose its epoch on the ``select`` rows, predict all.

    Each embedding dimension is standardised with the mean and SD of the fit rows' slices only; full-batch Adam
    (``cfg.lr``, ``cfg.weight_decay``) on BCE-with-logits with ``pos_weight`` = n_negative / n_positive of the fit
    rows. After each epoch an eval-mode pass gives the select rows' AUC; the first epoch with the best AUC is
    kept; training stops after ``cfg.patience`` epochs without improvement, or after ``cfg.epochs``. When the
    select rows hold one class only (or none) the last epoch is kept and a note says so. Other rows never enter
    anything but the final pass. ``torch.manual_seed(seed)``: same inputs and seed give the same numbers on the CPU.

    Args:
        embeddings: (n_patients, K, D), e.g. :func:`slice_embeddings`.
        labels: (n_patients,) 0/1 ER.
        fit, select: boolean masks (n_patients,) or row indices.

    Raises:
        ValueError: shapes disagree, labels are not 0/1, or the fit rows do not hold both classes.
    """
    embeddings = np.asarray(embeddings)
    labels, fit_rows, select_rows = _check(embeddings, labels, fit, select)
    start, device, notes = time.perf_counter(), torch.device(device), []
    fit_slices = np.asarray(embeddings[fit_rows], dtype=np.float64).reshape(-1, embeddings.shape[2])
    mean, sd = fit_slices.mean(axis=0), fit_slices.std(axis=0)
    sd[sd < 1e-12] = 1.0  # a constant dimension stays constant (0) instead of dividing by zero
    x = torch.as_tensor(((embeddings - mean) / sd).astype(np.float32), device=device)
    y = torch.as_tensor(labels, dtype=torch.float32, device=device)
    fit_index = torch.as_tensor(fit_rows, device=device)
    select_index = torch.as_tensor(select_rows, device=device)
    n_pos = int(labels[fit_rows].sum())
    pos_weight = torch.tensor((len(fit_rows) - n_pos) / n_pos, device=device)

    torch.manual_seed(seed)
    model = GatedAttentionMIL(x.shape[2], cfg.hidden, cfg.attention, cfg.dropout).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    selecting = len(np.unique(labels[select_rows])) == 2
    if not selecting:
        notes.append(f"the {len(select_rows)} select rows hold {'no patient' if not len(select_rows) else 'one class'}"
                     f" only: no selection AUC; the last epoch is kept")
    history, best_state, best_epoch, best_auc, since_best = [], None, 0, -math.inf, 0
    bar = progress(range(1, cfg.epochs + 1), desc=desc, unit="epoch", disable=summary_mode(), mininterval=1.0)
    for epoch in bar:
        model.train()
        logits, _ = model(x[fit_index])
        loss = F.binary_cross_entropy_with_logits(logits, y[fit_index], pos_weight=pos_weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        select_auc = float("nan")
        if selecting:
            model.eval()
            with torch.no_grad():
                select_logits, _ = model(x[select_index])
            select_auc = safe_auc(labels[select_rows], select_logits.double().cpu().numpy())
        history.append({"epoch": epoch, "loss": float(loss.detach()), "selection_auc": select_auc})
        score = select_auc if math.isfinite(select_auc) else -math.inf
        if not selecting or best_state is None or score > best_auc:
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_epoch, best_auc, since_best = epoch, score, 0
        else:
            since_best += 1
        if selecting and since_best >= cfg.patience:
            notes.append(f"stopped after epoch {epoch}: {cfg.patience} epochs without a better selection AUC")
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        logits, weights = model(x)
    seconds = time.perf_counter() - start
    selection_auc = best_auc if math.isfinite(best_auc) else float("nan")
    if summary_mode():
        chosen = (f"best epoch {best_epoch}, selection AUC {selection_auc:.3f}" if math.isfinite(selection_auc)
                  else f"epoch {best_epoch} kept (no selection AUC)")
        print(f"{desc}: {len(history)} {plural(len(history), 'epoch')} in {seconds:.1f} s, {chosen}", flush=True)
    return ABMILResult(prob=torch.sigmoid(logits).double().cpu().numpy(), weights=weights.double().cpu().numpy(),
                       best_epoch=best_epoch, selection_auc=selection_auc,
                       history=pd.DataFrame(history, columns=HISTORY_COLUMNS), fit_rows=fit_rows,
                       select_rows=select_rows, seconds=seconds, notes=notes)
