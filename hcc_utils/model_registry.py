"""The models the book fits and compares (docs/method.md sections 5-6; the paper's Table 4): one entry each.

Notebooks 05-08, ``hcc_utils.comparison`` and the figures read this list; a model's files in the run folder are
named by its slug (``hcc_utils.artifacts``: ``models/<slug>.joblib``, ``predictions/<slug>_patients.csv``).
Adding a model is one ``ModelSpec`` here plus its section in notebook 05 (which calls ``modeling.fit_recipe``
with the model's name and feature table; the Combined model is fitted by ``hcc_utils.combined`` instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hcc_utils.palette import NEUTRAL_GREY, OKABE_ITO


@dataclass(frozen=True)
class ModelSpec:
    """One model: ``name`` in tables and figures, ``slug`` in file names, ``features`` where its inputs come from,
    ``colour`` in every figure (one of :data:`hcc_utils.palette.OKABE_ITO`)."""

    name: str
    slug: str
    features: str
    colour: str


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("DL-MIL", "dl_mil", "the 26 PLH and BoW features of notebook 04 (tables/mil_features.csv)",
              OKABE_ITO["vermillion"]),
    ModelSpec("Radiomics", "radiomics", "PyRadiomics features with ICC(3,1) above radiomics.icc_threshold",
              OKABE_ITO["blue"]),
    ModelSpec("Clinical", "clinical", "the clinical variables of Table 2 with training p below clinical.p_threshold",
              OKABE_ITO["bluish green"]),
    ModelSpec("Combined", "combined", "the DL-MIL score (logit of its out-of-fold probability on training patients) "
              "and the Clinical model's variables, in a logistic regression (hcc_utils.combined)", OKABE_ITO["orange"]),
)
"""In the order of the paper's tables (DeLong pairs follow it: DL-MIL vs Radiomics, vs Clinical, ...). Colours: the
paper's red, blue and green/cyan for DL-MIL, Radiomics and Clinical, in their Okabe-Ito form; Combined (orange, set
apart from DL-MIL's vermillion by its lightness as well as its hue) is not the paper's: it is fitted after the
three, from their outputs (docs/method.md section 5, "Combined")."""

REFERENCE_COLOURS = {"Treat all": NEUTRAL_GREY, "Treat none": OKABE_ITO["black"]}
"""Decision curves' reference strategies (neutral: no model's colour)."""

DL_MIL = MODELS[0]
"""The study's model: SHAP (notebook 07) and the pathology correlation (notebook 08) are about it."""


def names() -> list[str]:
    """Model names in table order."""
    return [m.name for m in MODELS]


def spec(name: str) -> ModelSpec:
    """The entry of model ``name`` (``KeyError`` naming the known models)."""
    for model in MODELS:
        if model.name == name:
            return model
    raise KeyError(f"unknown model {name!r}; the registry (hcc_utils/model_registry.py) has {names()}")


def slug(name: str) -> str:
    """File-name form of a model name: the registry's slug, or a lower-case form of any other name."""
    known = {m.name: m.slug for m in MODELS}
    return known.get(name) or re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def colour(name: str) -> str | None:
    """A model's (or a reference strategy's) colour in figures; None lets matplotlib choose."""
    known = {m.name: m.colour for m in MODELS} | REFERENCE_COLOURS
    return known.get(name)
