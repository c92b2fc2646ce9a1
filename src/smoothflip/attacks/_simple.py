"""The attacks that need no surrogate: random flips and targeted (source to target) flips.

``"random"`` flips uniformly chosen examples to uniformly chosen other classes (the baseline every
other attack should beat); ``"targeted"`` relabels uniformly chosen examples of one source class as
the target class. Used by :func:`smoothflip.attacks.label_flip`.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np

from smoothflip.attacks._common import _resolve_budget


def _random_flips(y: np.ndarray, n_flip: int, k: int, rng: np.random.Generator) -> np.ndarray:
    chosen = rng.choice(y.size, size=n_flip, replace=False)
    z = y.copy()
    z[chosen] = (y[chosen] + rng.integers(1, k, size=n_flip)) % k  # uniform over the other K - 1
    return z


def _targeted(
    y: np.ndarray, budget: Any, k: int, rng: np.random.Generator, *, source: Any, target: Any
) -> np.ndarray:
    for name, value in (("source", source), ("target", target)):
        if isinstance(value, bool | np.bool_) or not isinstance(value, Integral) or not 0 <= value < k:
            raise ValueError(f"{name} must be a class index in [0, {k}), got {value!r}")
    source, target = int(source), int(target)
    if source == target:
        raise ValueError(f"source and target must be different classes, both are {source}")
    members = np.flatnonzero(y == source)
    if members.size == 0:
        raise ValueError(f"source={source} has no examples in y; nothing to flip")
    n_flip = _resolve_budget(budget, members.size, what=f"examples of source class {source}")
    z = y.copy()
    z[rng.choice(members, size=n_flip, replace=False)] = target
    return z
