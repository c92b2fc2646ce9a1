"""The rate-only noise models: symmetric (uniform) noise and pair flipping.

:func:`symmetric` in its three literature conventions (``"exclude_true"``, ``"include_true"``,
``"exact"``) and :func:`pair_flip` (class ``i`` to ``(i + 1) mod K``, Han et al. 2018). Both need
only a rate and the number of classes. Re-exported by :mod:`smoothflip.noise`.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from smoothflip._validation import SeedLike, as_generator, check_choice, check_int
from smoothflip.noise._common import (
    Mode,
    NoisyLabels,
    _check_labels,
    _check_rate,
    _choose_per_class,
    _exact_flip_counts,
    _result,
)


def symmetric(
    labels: Any,
    rate: float,
    num_classes: int,
    *,
    mode: Literal["exclude_true", "include_true", "exact"] = "exclude_true",
    seed: SeedLike = None,
) -> NoisyLabels:
    """Symmetric (uniform) label noise, in the three conventions found in the literature.

    Args:
        labels: ``[N]`` integer labels in ``[0, K)`` (list or array-like).
        rate: noise rate in ``[0, 1)``; its meaning depends on ``mode``.
        num_classes: ``K >= 2``.
        mode:
            - ``"exclude_true"`` (default; Patrini 2017, Co-teaching): each label, with probability
              ``rate``, becomes a uniformly chosen *other* class. ``T = (1-rate)·I + rate/(K-1)``
              off the diagonal; the expected wrong fraction is ``rate``.
            - ``"include_true"`` (DivideMix, ELR): with probability ``rate`` the label is *redrawn
              uniformly over all K classes*, so it may land on the true class again. **The realized
              wrong fraction is ``rate·(K-1)/K``, not ``rate``** (e.g. "50%" on CIFAR-10 flips 45%).
            - ``"exact"`` (SCE-style): exactly ``round(rate·N)`` labels (rounded half up) are wrong.
              They are apportioned across classes by largest remainder: class ``k`` flips
              ``floor(rate·n_k)`` or ``ceil(rate·n_k)`` examples, the classes with the largest
              fractional parts (ties at random) taking the extra ones, so the total is exact. The
              flipped examples are chosen uniformly within their class and each goes to a uniformly
              chosen other class.
        seed: int, ``numpy.random.Generator`` or ``None``.

    Returns:
        :class:`NoisyLabels` with ``[N]`` noisy labels, the flip mask, the realized ``[K, K]``
        transition matrix and the realized rate.

    Raises:
        ValueError: bad ``labels``, ``rate``, ``num_classes`` or ``mode``.

    Example:
        >>> y = np.arange(10).repeat(50)
        >>> symmetric(y, 0.3, 10, mode="exact", seed=1).rate
        0.3
        >>> out = symmetric(y, 0.3, 10, seed=1)  # random: about 30% wrong
        >>> 0.2 < out.rate < 0.4
        True
    """
    num_classes = check_int("num_classes", num_classes, low=2)
    mode = check_choice("mode", mode, ("exclude_true", "include_true", "exact"))
    rate = _check_rate(rate)
    y = _check_labels(labels, num_classes)
    rng = as_generator(seed)
    n = y.shape[0]
    if mode == "include_true":
        redraw = rng.random(n) < rate
        new = rng.integers(0, num_classes, size=n)
        z = np.where(redraw, new, y)
    else:
        if mode == "exclude_true":
            flip = rng.random(n) < rate
        else:
            quotas = _exact_flip_counts(y, rate, num_classes, np.ones(num_classes, bool), rng)
            flip = _choose_per_class(y, quotas, num_classes, rng)
        offset = rng.integers(1, num_classes, size=n)  # uniform over the K-1 other classes
        z = np.where(flip, (y + offset) % num_classes, y)
    return _result(y, z, num_classes)


def pair_flip(
    labels: Any,
    rate: float,
    num_classes: int,
    *,
    mode: Mode = "random",
    seed: SeedLike = None,
) -> NoisyLabels:
    """Pair-flip noise (Han et al. 2018, Co-teaching): class ``i`` flips to ``(i + 1) mod K``.

    ``T[i, i] = 1 - rate``, ``T[i, (i+1) mod K] = rate``. The usual benchmark uses ``rate=0.45``.

    Args:
        labels: ``[N]`` integer labels in ``[0, K)``.
        rate: flip probability in ``[0, 1)``.
        num_classes: ``K >= 2``.
        mode: ``"random"`` (each example flips independently with probability ``rate``) or
            ``"exact"`` (``floor``/``ceil`` of ``rate·n_k`` per class, ``round(rate·N)`` in total,
            apportioned as in :func:`symmetric`).
        seed: int, ``numpy.random.Generator`` or ``None``.

    Returns:
        :class:`NoisyLabels` (``[N]`` labels, mask, realized ``[K, K]`` matrix, realized rate).

    Example:
        >>> out = pair_flip([0, 0, 1, 1, 2, 2], 0.5, 3, mode="exact", seed=0)
        >>> out.rate
        0.5
        >>> sorted(set(zip(out.true_labels[out.flipped].tolist(), out.labels[out.flipped].tolist())))
        [(0, 1), (1, 2), (2, 0)]
    """
    num_classes = check_int("num_classes", num_classes, low=2)
    mode = check_choice("mode", mode, ("random", "exact"))
    rate = _check_rate(rate)
    y = _check_labels(labels, num_classes)
    rng = as_generator(seed)
    if mode == "random":
        flip = rng.random(y.shape[0]) < rate
    else:
        quotas = _exact_flip_counts(y, rate, num_classes, np.ones(num_classes, bool), rng)
        flip = _choose_per_class(y, quotas, num_classes, rng)
    z = np.where(flip, (y + 1) % num_classes, y)
    return _result(y, z, num_classes)
