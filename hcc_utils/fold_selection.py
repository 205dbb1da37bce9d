"""Feature selection as a pipeline step, so that it is fitted inside every cross-validation fold (docs/method.md
section 5).

``FeatureSelector`` is a scikit-learn transformer around ``selection.select_features``: ``fit`` runs the whole
funnel (z-score, univariate tests, correlation filter, LassoCV, with the ``selection.fallback`` of each step) on
the rows it is given and nothing else; ``transform`` keeps the selected columns (by name, raw values: the
recipe's StandardScaler z-scores them next); ``get_feature_names_out`` names them. The four steps stay one
transformer because they share one fit: the univariate p of every input orders the correlation filter and ranks
the fallbacks, and the funnel of the figures (``SelectionResult``) is one object.

Inside ``modeling.fit_recipe``'s pipeline the selector is refitted on the training rows of each CV fold of the
grid search and of the out-of-fold predictions, and once more on all training patients for the final model.
``selection_stability`` counts, per feature, in how many of those fold fits it was selected.

Example::

    selector = FeatureSelector(params.selection).fit(x_train, y_train)
    selector.selected_                # the selected features, in input order
    selector.selection_.funnel()      # the funnel of this fit
    selector.transform(x_validation)  # the selected columns of any table holding them
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from hcc_utils.config import SelectionConfig
from hcc_utils.selection import SelectionError, select_features

ALL_STEPS = ("univariate", "correlation", "lasso")
STABILITY_COLUMNS = ["feature", "folds_selected", "n_folds", "in_final"]


class FeatureSelector(TransformerMixin, BaseEstimator):
    """``selection.select_features`` as a transformer: fitted on the rows passed to ``fit`` only.

    Args:
        cfg: ``params.selection`` (thresholds, Lasso folds and seed, fallback).
        steps: the selection steps after the z-score (``select_features``'s ``steps``); ``()`` keeps every
            feature that varies on the fitted rows (the clinical model).

    Fitted attributes: ``selection_`` (the ``SelectionResult`` of this fit: funnel, Lasso path, warnings),
    ``selected_`` (the selected features, in input order).
    """

    def __init__(self, cfg: SelectionConfig, steps: tuple[str, ...] = ALL_STEPS):
        self.cfg = cfg
        self.steps = steps

    def fit(self, X: pd.DataFrame, y=None):
        """Run the funnel on ``X`` (patients x features, a DataFrame) and ``y`` (0/1 ER, same order)."""
        if not isinstance(X, pd.DataFrame):
            raise SelectionError("FeatureSelector needs a DataFrame (feature names select the columns); the "
                                 "recipe's pipeline passes the feature table as one")
        if y is None:
            raise SelectionError("FeatureSelector needs the 0/1 outcome to select features")
        labels = pd.Series(np.asarray(y), index=X.index, name="er")
        try:
            self.selection_ = select_features(X, labels, self.cfg, steps=tuple(self.steps))
        except SelectionError as exc:  # say which fit: a CV fold's training rows or all training patients
            raise SelectionError(f"{exc} (selection fitted on {len(X)} patients, {int(labels.sum())} with ER)") from exc
        self.selected_ = list(self.selection_.selected)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The selected columns of ``X`` (any column order; other columns are ignored), values unchanged."""
        check_is_fitted(self, "selected_")
        if not isinstance(X, pd.DataFrame):
            raise SelectionError("FeatureSelector.transform needs a DataFrame with the selected columns by name")
        missing = [f for f in self.selected_ if f not in X.columns]
        if missing:
            raise SelectionError(f"the table lacks the selected feature(s) {missing[:5]}")
        return X[self.selected_]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """The selected features (whatever the input names)."""
        check_is_fitted(self, "selected_")
        return np.asarray(self.selected_, dtype=object)


class SelectedColumns(TransformerMixin, BaseEstimator):
    """A fitted ``FeatureSelector`` reduced to its outcome: the selected columns, by name, values unchanged.

    What the model bundle stores in a pipeline's ``select`` step (``hcc_utils.bundle``): ``transform`` gives what
    the fitted selector's does, and it holds plain names only (no ``SelectionResult``, no DataFrame), so
    ``skops`` can store and load it without running code. ``frozen(selector)`` makes one.
    """

    def __init__(self, columns: list[str] | None = None):
        self.columns = columns

    def fit(self, X=None, y=None):
        """Nothing to fit: the columns were chosen by the ``FeatureSelector`` it stands for."""
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The selected columns of ``X`` (a DataFrame holding them; other columns are ignored)."""
        columns = list(self.columns or [])
        missing = [f for f in columns if f not in X.columns]
        if missing:
            raise SelectionError(f"the table lacks the selected feature(s) {missing[:5]}")
        return X[columns]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(list(self.columns or []), dtype=object)

    def __sklearn_is_fitted__(self) -> bool:
        return True


def frozen(selector: FeatureSelector) -> SelectedColumns:
    """The fitted ``selector`` as a :class:`SelectedColumns` of its selected features (input order)."""
    check_is_fitted(selector, "selected_")
    return SelectedColumns([str(f) for f in selector.selected_])


def selection_stability(features_in: list[str], fold_selected: list[list[str]], final: list[str]) -> pd.DataFrame:
    """Per feature selected by the final fit or by at least one CV fold fit: in how many folds it was selected.

    Returns feature, folds_selected, n_folds, in_final: the final fit's features first (input order), then the
    others by folds_selected (most first, ties in input order).
    """
    counts = {f: sum(f in chosen for chosen in fold_selected) for f in features_in}
    chosen = set(final)
    others = sorted((f for f in features_in if f not in chosen and counts[f]), key=lambda f: -counts[f])
    order = [f for f in features_in if f in chosen] + others
    return pd.DataFrame({"feature": order, "folds_selected": [counts[f] for f in order],
                         "n_folds": len(fold_selected), "in_final": [f in chosen for f in order]},
                        columns=STABILITY_COLUMNS)


def fold_notes(fold_warnings: list[list[str]]) -> list[str]:
    """The selection warnings of the CV fold fits (fallbacks, fewer Lasso folds), each once with its count."""
    counts: dict[str, int] = {}
    for messages in fold_warnings:
        for message in dict.fromkeys(messages):
            counts[message] = counts.get(message, 0) + 1
    return [f"CV fold fits of the selection: {message} (in {count} of {len(fold_warnings)} folds)"
            for message, count in counts.items()]
