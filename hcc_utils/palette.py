"""The one categorical palette of the report's figures: Okabe and Ito's eight colours, safe for the common forms of
colour blindness (Okabe M, Ito K. Color Universal Design, 2002; https://jfly.uni-koeln.de/color/).

Every colour that tells categories apart (models, CNN architectures, outcome groups, readers, radiomics image
types) is one of these; continuous scales (heatmaps, Grad-CAM) use their own colour maps. Hex codes are lower case
(what ``matplotlib.colors.to_hex`` returns).
"""

from __future__ import annotations

OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#e69f00",
    "sky blue": "#56b4e9",
    "bluish green": "#009e73",
    "yellow": "#f0e442",
    "blue": "#0072b2",
    "vermillion": "#d55e00",
    "reddish purple": "#cc79a7",
}

NEUTRAL_GREY = "#999999"
"""Reference lines and strategies that are not a category of their own (chance line, "Treat all")."""

OUTCOME_COLOURS = {"NER": OKABE_ITO["blue"], "ER": OKABE_ITO["vermillion"]}
"""The two outcome groups (non-early and early recurrence), and a feature's direction (lowers / raises P(ER))."""

READER_COLOURS = {"reader 1": OKABE_ITO["vermillion"], "reader 2": OKABE_ITO["sky blue"]}
"""The two readers' tumour contours on CT slices (the paper's Figure 2 draws reader 1 in red)."""

MASK_COLOUR = OKABE_ITO["vermillion"]
"""A single tumour contour on a CT slice."""

