"""hcc_utils: the package behind the analysis book reproducing Cen et al. 2025 (2.5D DL-MIL for early recurrence
of hepatocellular carcinoma on arterial-phase CT). One module per stage; see the README's layout."""

import warnings

# shap imports tqdm.auto, which warns in Jupyter when ipywidgets is absent; our progress bars are plain text.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
