"""One patient's 2.5D stack written as pictures: the ``crop`` command (docs/method.md section 2).

``crop_patient`` makes the stack exactly as the book does (``hcc_utils.stack.make_stack``) and writes, into one
folder, ``slice_<offset>.png`` per offset (8-bit grey, the windowed [0, 1] values x 255) and ``stack.json`` (the
chosen axial indices in the resampled 1 mm grid, the central index, the crop box in mm, clamped offsets,
warnings and the parameters used). ``python -m hcc_utils crop`` calls it.

Example::

    >>> info = crop_patient("ct.nii.gz", "tumour.nii.gz", "out/", params_file=None)
    >>> info["central_index"], info["crop_box_mm"]["side_mm"]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hcc_utils.config import PreprocessConfig, SlicesConfig, load_stage_sections

SLICE_FILE = "slice_{offset}.png"
INFO_FILE = "stack.json"


def crop_patient(image: Path | str, mask: Path | str, out: Path | str,
                 params_file: Path | str | None = None) -> dict:
    """Write one patient's 2.5D stack to ``out`` and return its info (what ``stack.json`` holds).

    ``params_file``: a full params file or one with only ``preprocess``/``slices`` sections; None for the
    defaults.

    Raises:
        PatientInputError: the image or mask cannot be used (the message names the file and what to do).
        ParamsError: the params file is missing or invalid.
    """
    from PIL import Image

    from hcc_utils.stack import make_stack

    pre, cfg = _stage_params(params_file)
    stack = make_stack(image, mask, pre, cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for offset, pixels in zip(cfg.offsets, stack.images, strict=True):
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(out / SLICE_FILE.format(offset=offset))
    info = {**stack.info, "preprocess": pre.model_dump(mode="json"),
            "slices": cfg.model_dump(mode="json", exclude={"n_jobs"})}
    (out / INFO_FILE).write_text(json.dumps(info, indent=1))
    return info


def _stage_params(params_file: Path | str | None) -> tuple[PreprocessConfig, SlicesConfig]:
    if params_file is None:
        return PreprocessConfig(), SlicesConfig()
    sections = load_stage_sections(params_file, {"preprocess": PreprocessConfig, "slices": SlicesConfig})
    return sections["preprocess"], sections["slices"]
