"""Small slice datasets and CNN parameters that train in seconds on one CPU thread (tests of hcc_utils.cnn,
cnn_train, cnn_cross_fit)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hcc_utils.config import params_from_dict


@dataclass
class Slices:
    """Duck-typed ``slices.SliceDataset``."""

    images: np.ndarray
    patients: pd.DataFrame
    offsets: list[int]
    masks: np.ndarray | None = None


def blob_slices(n_patients: int = 48, offsets=(-1, 0, 1), side: int = 32, seed: int = 0) -> Slices:
    """Noise with one disc per slice: bright in ER patients (mean 200), dim in NER (120); 30% validation."""
    rng = np.random.default_rng(seed)
    er = rng.permutation(np.arange(n_patients) % 2)
    split = np.where(rng.permutation(n_patients) < int(0.3 * n_patients), "validation", "train")
    yy, xx = np.mgrid[:side, :side]
    images = np.empty((n_patients, len(offsets), side, side), np.uint8)
    masks = np.zeros_like(images)
    for p in range(n_patients):
        for o in range(len(offsets)):
            image = rng.normal(90, 25, (side, side))
            cy, cx = rng.uniform(10, side - 10, 2)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(4, 7) ** 2
            image[disc] = rng.normal(200 if er[p] else 120, 15, disc.sum())
            images[p, o], masks[p, o] = np.clip(image, 0, 255), disc
    patients = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n_patients)], "er": er, "split": split})
    return Slices(images, patients, list(offsets), masks)


def make_params(protocol: str = "leak_free", **cnn_fields):
    cnn_cfg = {"architectures": ["resnet18"], "epochs": {"resnet18": 3}, "input_size": 32, "batch_size": 16,
               "num_threads": 1, "progress": False, "device": "cpu", **cnn_fields}
    return params_from_dict({"seed": 3, "protocol": protocol, "cohort": {"synthetic": {"n": 8}}, "cnn": cnn_cfg})
