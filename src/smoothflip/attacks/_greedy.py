"""The ``greedy`` attack: rounds of influence-scored flips against a logistic-regression surrogate.

Each round fits the surrogate, solves ``v = H⁻¹ g`` by preconditioned conjugate gradients with
exact Hessian-vector products, scores every candidate flip with the first-order influence estimate
(Koh & Liang 2017) and flips the best batch, optionally re-scoring a pool exactly by refitting.
:func:`smoothflip.attacks.label_flip` documents what is computed.
"""

from __future__ import annotations

import copy
import math
from numbers import Integral
from typing import Any

import numpy as np

from smoothflip._validation import check_choice, check_int, check_range
from smoothflip.attacks._common import _check_c, _resolve_budget, _top, _zscore
from smoothflip.attacks._surrogate import _softmax, _Surrogate, _with_bias

_OBJECTIVES = ("error", "ce")
_CG_DAMPING = 1e-6  # ridge added to the surrogate's Hessian (its intercepts are unpenalized)


def _greedy(x: np.ndarray, y: np.ndarray, budget: Any, rng: np.random.Generator, opts: dict) -> np.ndarray:
    rounds = check_int("rounds", opts["rounds"], low=1)
    n_candidates = check_int("candidates", opts["candidates"], low=0)
    frac = check_range("validation_fraction", opts["validation_fraction"], low=0.0, high=1.0, high_open=True)
    objective = check_choice("objective", opts["objective"], _OBJECTIVES)
    c = _check_c(opts["C"])

    n = y.size
    held = np.zeros(n, dtype=bool)
    if frac > 0:
        for cls in np.unique(y):
            members = np.flatnonzero(y == cls)
            take = min(math.floor(frac * members.size), members.size - 1)
            held[rng.choice(members, size=take, replace=False)] = True
    train = np.flatnonzero(~held)
    val = np.flatnonzero(held) if held.any() else np.arange(n)
    eligible = (
        "examples"
        if train.size == n
        else f"examples outside the validation part (validation_fraction={frac:g})"
    )
    if isinstance(budget, Integral) and not isinstance(budget, bool | np.bool_):
        n_flip = _resolve_budget(budget, train.size, what=eligible)
    else:
        n_flip = _resolve_budget(budget, n, what="examples")
        if n_flip > train.size:
            raise ValueError(
                f"budget={budget!r} means {n_flip} flips, more than the {train.size} {eligible}; "
                f"lower the budget or validation_fraction"
            )

    xb = _with_bias(_zscore(x))
    x_train, x_val, y_val = xb[train], xb[val], y[val]
    current = y.copy()
    flipped = np.zeros(n, dtype=bool)
    surrogate = _Surrogate(c=c)
    n_rounds = min(rounds, n_flip)
    for r in range(n_rounds):
        batch = n_flip // n_rounds + (r < n_flip % n_rounds)
        if np.unique(current[train]).size < 2:  # one class left: no surrogate to fit
            _flip_rest_at_random(y, current, train[~flipped[train]], n_flip - int(flipped.sum()), rng)
            break
        surrogate.fit(x_train[:, :-1], current[train])
        v = _influence_direction(surrogate, x_train, x_val, y_val, objective)
        cand = train[~flipped[train]]
        rows = np.arange(cand.size)
        gain = xb[cand] @ v.T  # [n_cand, m]: v_c · [x_i, 1]
        own = surrogate.index(y[cand])
        gain -= gain[rows, own][:, None]
        gain[rows, own] = -np.inf
        best_col = gain.argmax(axis=1)
        best_gain = gain[rows, best_col]
        if n_candidates > batch:
            pool = _top(best_gain, min(n_candidates, cand.size), rng)
            measured = np.array(
                [
                    _loss_after_flip(
                        surrogate,
                        x_train,
                        current[train],
                        int(np.searchsorted(train, cand[p])),
                        int(surrogate.classes[best_col[p]]),
                        x_val,
                        y_val,
                        objective,
                    )
                    for p in pool
                ]
            )
            pick = pool[_top(measured, batch, rng)]
        else:
            pick = _top(best_gain, batch, rng)
        current[cand[pick]] = surrogate.classes[best_col[pick]]
        flipped[cand[pick]] = True
    return current


def _flip_rest_at_random(
    y: np.ndarray, current: np.ndarray, candidates: np.ndarray, count: int, rng: np.random.Generator
) -> None:
    """Flip ``count`` of ``candidates`` in place, each to a uniformly chosen other class of ``y``."""
    classes = np.unique(y)
    pick = rng.choice(candidates, size=count, replace=False)
    pos = np.searchsorted(classes, y[pick])
    current[pick] = classes[(pos + rng.integers(1, classes.size, size=count)) % classes.size]


def _objective_weights(probs_true: np.ndarray, objective: str) -> np.ndarray:
    """Per-example factor turning the cross-entropy gradient into the objective's gradient.

    ``d CE / d s = p - e_y``; ``d (1 - p_y) / d s = p_y (p - e_y)``.
    """
    return probs_true if objective == "error" else np.ones_like(probs_true)


def _influence_direction(
    surrogate: _Surrogate, x_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, objective: str
) -> np.ndarray:
    """``v = H⁻¹ g`` as an ``[m, d + 1]`` matrix (zero row for the reference class when binary).

    ``H`` is the Hessian of ``Σ_i CE_i + ||W||² / (2C)`` at the surrogate's solution (plus a small
    ridge; scikit-learn leaves the intercept unpenalized) and ``g`` the gradient of the mean
    validation objective (clean labels), both in the surrogate's own parameterization. Solved by
    Jacobi-preconditioned conjugate gradients with exact Hessian-vector products.
    """
    from scipy.sparse.linalg import LinearOperator, cg

    m = surrogate.classes.size
    dim = x_train.shape[1]
    reg = np.full(dim, 1.0 / surrogate.c)
    reg[-1] = 0.0
    reg += _CG_DAMPING
    cols = surrogate.index(y_val)
    known = cols >= 0
    xv = x_val[known]
    count = max(int(known.sum()), 1)
    sq = x_train * x_train
    if m == 2:
        w = surrogate.weights[1]
        p = 1.0 / (1.0 + np.exp(-(x_train @ w)))
        curvature = p * (1.0 - p)
        p_val = 1.0 / (1.0 + np.exp(-(xv @ w)))
        is_one = cols[known] == 1
        factor = _objective_weights(np.where(is_one, p_val, 1.0 - p_val), objective)
        g = (factor * (p_val - is_one)) @ xv / count
        diag = curvature @ sq + reg

        def hvp(vec: np.ndarray) -> np.ndarray:
            return x_train.T @ (curvature * (x_train @ vec)) + reg * vec

        size = dim
    else:
        probs = _softmax(surrogate.scores(x_train))
        p_val = _softmax(surrogate.scores(xv))
        rows = np.arange(xv.shape[0])
        factor = _objective_weights(p_val[rows, cols[known]].copy(), objective)
        p_val[rows, cols[known]] -= 1.0
        g = ((factor[:, None] * p_val).T @ xv / count).ravel()
        diag = ((probs * (1.0 - probs)).T @ sq + reg).ravel()

        def hvp(vec: np.ndarray) -> np.ndarray:
            v = vec.reshape(m, dim)
            a = probs * (x_train @ v.T)
            b = a - probs * a.sum(axis=1, keepdims=True)
            return (b.T @ x_train + reg * v).ravel()

        size = m * dim
    op = LinearOperator((size, size), matvec=hvp, dtype=np.float64)
    jacobi = LinearOperator((size, size), matvec=lambda vec: vec / diag, dtype=np.float64)
    sol, _ = cg(op, g, rtol=1e-6, atol=0.0, maxiter=300, M=jacobi)
    return np.vstack([np.zeros(dim), sol]) if m == 2 else sol.reshape(m, dim)


def _validation_objective(
    surrogate: _Surrogate, x_val: np.ndarray, y_val: np.ndarray, objective: str
) -> float:
    probs = _softmax(surrogate.scores(x_val))
    cols = surrogate.index(y_val)
    ok = cols >= 0
    p_true = probs[np.flatnonzero(ok), cols[ok]]
    if objective == "error":
        return float(1.0 - p_true.mean())
    return float(-np.log(np.maximum(p_true, 1e-300)).mean())


def _loss_after_flip(
    surrogate: _Surrogate,
    x_train: np.ndarray,
    labels: np.ndarray,
    position: int,
    new_label: int,
    x_val: np.ndarray,
    y_val: np.ndarray,
    objective: str,
) -> float:
    """Validation objective after refitting the surrogate (warm-started) with one more flip."""
    trial = copy.deepcopy(surrogate)
    changed = labels.copy()
    changed[position] = new_label
    trial.fit(x_train[:, :-1], changed)
    return _validation_objective(trial, x_val, y_val, objective)
