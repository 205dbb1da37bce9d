"""hcc_utils: the package behind the analysis book reproducing Cen et al. 2025 (2.5D DL-MIL for early recurrence
of hepatocellular carcinoma on arterial-phase CT). One module per stage; see the README's layout."""

__version__ = "0.1.0"
