"""The ``alfa`` attack: ALFA (Xiao, Xiao & Eckert, ECAI 2012) against a binary linear SVM.

Alternates a linear program (HiGHS) that picks the flips with retraining the SVM on the tainted
labels, rounding to exactly ``budget`` flips; binary labels only.
:func:`smoothflip.attacks.label_flip` documents the steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from smoothflip._validation import check_int
from smoothflip.attacks._common import _zscore


def _alfa(
    x: np.ndarray, y: np.ndarray, n_flip: int, rng: np.random.Generator, *, max_iter: Any, c: float
) -> np.ndarray:
    from scipy import sparse
    from scipy.optimize import linprog

    max_iter = check_int("max_iter", max_iter, low=1)
    classes = np.unique(y)
    n = y.size
    sign = np.where(y == classes[1], 1.0, -1.0)
    z = y.copy()
    if n_flip == 0:
        return z
    xs = _zscore(x)
    f0 = _svm_decision(xs, sign, c)
    psi = np.concatenate([np.maximum(0.0, 1.0 - sign * f0), np.maximum(0.0, 1.0 + sign * f0)])
    xi = rng.random(2 * n)  # first LP: random tainted losses (at f = f0 every cost would be 0)

    eye = sparse.identity(n, format="csr")
    a_eq = sparse.hstack([eye, eye], format="csr")  # keep copy + flipped copy = 1
    a_ub = sparse.hstack([sparse.csr_matrix((1, n)), sparse.csr_matrix(np.ones((1, n)))], format="csr")
    previous: np.ndarray | None = None
    flips = np.zeros(0, dtype=np.int64)
    for _ in range(max_iter):
        cost = xi - psi
        result = linprog(
            cost,
            A_ub=a_ub,
            b_ub=[n_flip],
            A_eq=a_eq,
            b_eq=np.ones(n),
            bounds=(0.0, 1.0),
            method="highs",
        )
        if result.status != 0:  # pragma: no cover - the LP is always feasible and bounded
            raise RuntimeError(f"alfa: the linear program failed: {result.message}")
        q_flip = result.x[n:]
        delta = cost[n:] - cost[:n]  # how much flipping point i lowers the objective (more negative)
        order = np.lexsort((rng.random(n), delta, -np.round(q_flip, 9)))
        flips = np.sort(order[:n_flip])
        if previous is not None and np.array_equal(flips, previous):
            break
        previous = flips
        tainted = sign.copy()
        tainted[flips] = -tainted[flips]
        if np.unique(tainted).size < 2:  # every point of one class flipped: nothing left to fit
            break
        f = _svm_decision(xs, tainted, c)
        xi = np.concatenate([np.maximum(0.0, 1.0 - sign * f), np.maximum(0.0, 1.0 + sign * f)])
    z[flips] = np.where(y[flips] == classes[1], classes[0], classes[1])
    return z


def _svm_decision(xs: np.ndarray, sign: np.ndarray, c: float) -> np.ndarray:
    """Decision values on ``xs`` of a linear SVM trained on ``(xs, sign)``."""
    from sklearn.svm import SVC

    return SVC(kernel="linear", C=c).fit(xs, sign).decision_function(xs)
