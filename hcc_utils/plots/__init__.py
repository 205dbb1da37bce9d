"""Figures, one module per stage; every function returns a matplotlib Figure."""
