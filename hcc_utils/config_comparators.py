"""The ``comparators`` section of the parameters: notebook 11's alternatives to the paper's design (issue 19).

Every comparator uses the run's split and protocol: whatever it fits (a recipe, an attention model, a 3D network,
a cut-off) sees training patients only, and under ``leak_free`` its checkpoint is chosen on the CNN's inner
validation patients (``models/cnn_inner_split.csv``). docs/method.md section 12 describes each one.

- ``central_slice``: the chosen CNN's probability on the central slice (offset 0) as the patient's score.
- ``pooling``: the mean, the maximum and the noisy-OR ``1 - prod(1 - p)`` of the slice probabilities.
- ``plh_only``, ``bow_only``: the DL-MIL recipe (notebook 05) on one feature family.
- ``abmil``: gated attention MIL (Ilse et al. 2018) over the slices' CNN embeddings (``abmil``).
- ``offsets``: the DL-MIL recipe on the slices of each set of ``offset_sets``.
- ``cnn3d``: a small 3D ResNet on the tumour's box (``cnn3d``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from hcc_utils.config_sections import _Section

Comparator = Literal["central_slice", "pooling", "plh_only", "bow_only", "abmil", "offsets", "cnn3d"]
ALL_COMPARATORS: list[str] = ["central_slice", "pooling", "plh_only", "bow_only", "abmil", "offsets", "cnn3d"]


class ABMILConfig(_Section):
    """Gated attention MIL (Ilse, Tomczak and Welling, ICML 2018) on the frozen CNN's slice embeddings."""

    hidden: int = Field(128, ge=4, le=4096, description="each slice's embedding after the first layer (Ilse: 500)")
    attention: int = Field(64, ge=4, le=4096, description="the attention layers' size (Ilse: 128)")
    dropout: float = Field(0.25, ge=0, lt=1, description="dropout on the slice embeddings while training")
    lr: float = Field(5e-4, gt=0, le=1, description="Adam learning rate (Ilse: 5e-4)")
    weight_decay: float = Field(1e-4, ge=0, description="Adam weight decay (Ilse: 1e-4)")
    epochs: int = Field(200, ge=1, le=10000, description="full-batch epochs at most")
    patience: int = Field(40, ge=1, le=10000, description="stop after this many epochs without a better "
                          "selection AUC")


class CNN3DConfig(_Section):
    """A 3D ResNet-10 (torchvision's VideoResNet, r3d_18's design with one block per stage, one input channel) on
    the tumour's box (``hcc_utils.comparators_3d``)."""

    size: int = Field(32, ge=8, le=256, description="voxels per side of the resampled tumour box")
    margin_mm: float = Field(5.0, ge=0, le=100, description="added around the tumour's box on each side, mm")
    epochs: int = Field(20, ge=1, le=1000, description="training epochs (the best on the selection set is kept)")
    batch_size: int = Field(8, ge=2, le=512, description="training batch, patients")


class ComparatorsConfig(_Section):
    """Which comparators notebook 11 runs, and their settings (module docstring)."""

    run: list[Comparator] = Field(default_factory=lambda: list(ALL_COMPARATORS),
                                  description="the comparators to run, in the table's order")
    offset_sets: list[list[int]] = Field(
        default_factory=lambda: [[-2, -1, 0, 1, 2], list(range(-9, 10))],
        description="slice offsets (slices from the central one) per offsets comparator")
    abmil: ABMILConfig = Field(default_factory=ABMILConfig)
    cnn3d: CNN3DConfig = Field(default_factory=CNN3DConfig)

    @field_validator("run")
    @classmethod
    def _once(cls, run: list[str]) -> list[str]:
        doubles = sorted({name for name in run if run.count(name) > 1})
        if doubles:
            raise ValueError(f"{doubles} listed more than once")
        return run

    @field_validator("offset_sets")
    @classmethod
    def _offsets(cls, sets: list[list[int]]) -> list[list[int]]:
        for offsets in sets:
            if not offsets:
                raise ValueError("an offset set is empty; list at least one offset, e.g. [-2, -1, 0, 1, 2]")
            if len(set(offsets)) != len(offsets):
                raise ValueError(f"offset set {offsets} repeats an offset")
            if max(abs(o) for o in offsets) > 30:
                raise ValueError(f"offset set {offsets} reaches beyond 30 slices from the central one")
        return [sorted(offsets) for offsets in sets]
