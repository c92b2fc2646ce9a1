"""The ``margin`` attack: flip the examples nearest to (or farthest from) a surrogate's boundary.

Each chosen example goes to its runner-up class; with ``one_way`` the flips across each class
boundary go one way first. :func:`smoothflip.attacks.label_flip` documents the exact ranking.
"""

from __future__ import annotations

import numpy as np

from smoothflip.attacks._common import _top, _zscore
from smoothflip.attacks._surrogate import _Surrogate, _with_bias

_SIDES = ("nearest", "farthest")


def _margin(
    x: np.ndarray,
    y: np.ndarray,
    n_flip: int,
    rng: np.random.Generator,
    *,
    side: str,
    one_way: bool,
    c: float,
) -> np.ndarray:
    xb = _with_bias(_zscore(x))
    surrogate = _Surrogate(c=c).fit(xb[:, :-1], y)
    s = surrogate.scores(xb)
    own = surrogate.index(y)
    rows = np.arange(y.size)
    others = s.copy()
    others[rows, own] = -np.inf
    runner_up = others.argmax(axis=1)
    w = surrogate.weights[:, :-1]
    norm = np.linalg.norm(w[own] - w[runner_up], axis=1)
    dist = (s[rows, own] - s[rows, runner_up]) / np.maximum(norm, np.finfo(np.float64).tiny)
    if side == "nearest":  # correctly classified, closest first; then misclassified, least wrong first
        key = np.where(dist >= 0, -dist, dist - (np.abs(dist).max() + 1.0))
    else:
        key = dist
    order = _top(key, y.size, rng)
    if one_way:
        m = surrogate.classes.size
        pairs = np.zeros((m, m), dtype=np.int64)
        np.add.at(pairs, (own, runner_up), 1)
        forward = pairs[own, runner_up]
        backward = pairs[runner_up, own]
        allowed = (forward > backward) | ((forward == backward) & (own < runner_up))
        order = np.concatenate([order[allowed[order]], order[~allowed[order]]])  # stable: keeps the ranking
    chosen = order[:n_flip]
    z = y.copy()
    z[chosen] = surrogate.classes[runner_up[chosen]]
    return z
