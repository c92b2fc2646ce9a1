"""The logistic-regression surrogate the ``margin`` and ``greedy`` attacks score flips with.

:class:`_Surrogate` wraps scikit-learn's ``LogisticRegression`` (warm-started) and exposes its
parameters as one ``[m, d + 1]`` score matrix; :func:`_softmax` and :func:`_with_bias` are the
small array helpers around it.
"""

from __future__ import annotations

import warnings

import numpy as np

_SURROGATE_MAX_ITER = 500  # L-BFGS iterations of the logistic-regression surrogate


class _Surrogate:
    """A scikit-learn logistic regression with its parameters as one ``[m, d + 1]`` score matrix.

    ``scores(x) = [x, 1] @ W.T`` gives one logit per class in ``classes``; for two classes
    scikit-learn fits a single logit, stored as ``W = [[0, ..., 0], [w, b]]``.
    """

    def __init__(self, *, c: float, max_iter: int = _SURROGATE_MAX_ITER) -> None:
        from sklearn.linear_model import LogisticRegression

        self.c = c
        self.model = LogisticRegression(C=c, max_iter=max_iter, warm_start=True)
        self.classes = np.zeros(0, dtype=np.int64)
        self.weights = np.zeros((0, 0))

    def fit(self, xs: np.ndarray, labels: np.ndarray) -> _Surrogate:
        from sklearn.exceptions import ConvergenceWarning

        classes = np.unique(labels)
        if not np.array_equal(classes, self.classes) and hasattr(self.model, "coef_"):
            self.model = self.model.__class__(**self.model.get_params())  # class set changed: cold start
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit(xs, labels)
        self.classes = self.model.classes_.astype(np.int64)
        coef = np.hstack([self.model.coef_, self.model.intercept_[:, None]])
        self.weights = np.vstack([np.zeros_like(coef), coef]) if self.classes.size == 2 else coef
        return self

    def scores(self, xb: np.ndarray) -> np.ndarray:
        """``[n, m]`` logits of features with a bias column, ``xb`` ``[n, d + 1]``."""
        return xb @ self.weights.T

    def index(self, labels: np.ndarray) -> np.ndarray:
        """Column of each label in :attr:`classes` (``-1`` for a class the surrogate never saw)."""
        pos = np.searchsorted(self.classes, labels).clip(0, self.classes.size - 1)
        return np.where(self.classes[pos] == labels, pos, -1)


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((x.shape[0], 1))])
