"""Instance-dependent label noise: Xia et al. 2020's part-dependent model (IDN).

:func:`instance_dependent` draws a per-example flip rate from a truncated normal (by default
located so that its mean is the requested rate) and a feature-dependent wrong class from a random
projection of the example's features. Re-exported by :mod:`smoothflip.noise`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import optimize, stats

from smoothflip._validation import SeedLike, as_generator, check_int, check_range
from smoothflip.noise._common import NoisyLabels, _check_labels, _check_rate, _result


def _truncnorm_loc_for_mean(rate: float, sd: float) -> float:
    """The location of a normal(loc, sd) truncated to ``[0, 1]`` whose mean is ``rate`` (in (0, 1))."""

    def excess(loc: float) -> float:
        return float(stats.truncnorm.mean((0.0 - loc) / sd, (1.0 - loc) / sd, loc=loc, scale=sd)) - rate

    lo, hi = rate - 1.0, rate + 1.0  # the truncated mean increases with loc, from 0 to 1
    while excess(lo) > 0 and lo > -1e6:
        lo = rate - 2.0 * (rate - lo)
    while excess(hi) < 0 and hi < 1e6:
        hi = rate + 2.0 * (hi - rate)
    if not excess(lo) <= 0 <= excess(hi):
        raise ValueError(
            f"cannot match rate={rate!r} with rate_std={sd!r}; pass match_rate=False or a larger rate_std"
        )
    return float(optimize.brentq(excess, lo, hi, xtol=1e-12))


def instance_dependent(
    features: Any,
    labels: Any,
    *,
    rate: float,
    num_classes: int | None = None,
    rate_std: float = 0.1,
    normalize: bool = True,
    match_rate: bool = True,
    seed: SeedLike = None,
) -> NoisyLabels:
    """Instance-dependent ("part-dependent") noise of Xia et al. 2020 (NeurIPS), IDN.

    For each example ``i`` with true label ``y``:

    1. a flip rate ``q_i ~ TruncNormal(loc, sd=rate_std)`` truncated to ``[0, 1]``, with ``loc``
       chosen so that the *truncated* distribution's mean is ``rate`` (``match_rate=True``), or
       ``loc = rate`` as in Xia et al.'s code (``match_rate=False``);
    2. a random projection ``W ~ N(0, 1)`` of shape ``[K, d, K]`` (drawn once per call, one
       ``[d, K]`` slice at a time, so memory stays ``O(d·K)``);
    3. ``logits = x_i · W[y]`` with ``x_i`` the flattened features, **L2-normalized per example**
       (``normalize=True``); ``logits[y] = -inf``;
    4. ``p = q_i·softmax(logits)``, ``p[y] = 1 - q_i``; the noisy label is drawn from ``p``.

    So example ``i`` is flipped with probability ``q_i`` to a feature-dependent wrong class.
    Most public copies of Xia's ``get_instance_noisy_label`` skip the normalization; with raw
    pixel-scale features the logits are huge and the softmax is nearly one-hot (every example of a
    class flips to one feature-determined class). ``normalize=False`` reproduces that behaviour.

    **The realized rate.** With ``match_rate=False`` the expected rate is the truncated normal's
    mean, far above ``rate`` for small rates (``rate_std=0.1``: 0.02 gives about 0.09, 0.05 about
    0.10, 0.2 about 0.2055), because truncation at 0 cuts off the lower tail. The default solves
    for the location instead (``rate=0.02``: ``loc`` about -0.46), so the expected rate is
    ``rate`` at every rate and only the spread of ``q_i`` follows ``rate_std``. ``rate == 0`` means
    no noise at all; ``rate_std=0`` gives every example ``q_i = rate``.

    Args:
        features: ``[N, ...]`` finite numeric features, flattened to ``[N, d]``.
        labels: ``[N]`` integer labels in ``[0, K)``.
        rate: mean flip rate in ``[0, 1)``.
        num_classes: ``K``; default ``max(labels) + 1`` (at least 2).
        rate_std: standard deviation of the per-example flip rate before truncation (``>= 0``).
        normalize: L2-normalize each example's feature vector (zero vectors are left as zeros).
        match_rate: make the mean per-example flip rate equal ``rate`` (see above).
        seed: int, ``numpy.random.Generator`` or ``None``.

    Returns:
        :class:`NoisyLabels` (``[N]`` labels, mask, realized ``[K, K]`` matrix, realized rate).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(2000, 8)), rng.integers(0, 4, 2000)
        >>> out = instance_dependent(x, y, rate=0.3, seed=0)
        >>> 0.25 < out.rate < 0.35, bool((out.labels[out.flipped] != y[out.flipped]).all())
        (True, True)
    """
    rate = _check_rate(rate)
    rate_std = check_range("rate_std", rate_std, low=0.0)
    if num_classes is None:
        num_classes = max(int(_check_labels(labels, None).max()) + 1, 2)
    k = check_int("num_classes", num_classes, low=2)
    y = _check_labels(labels, k)
    n = y.shape[0]
    try:
        x = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"features must be a numeric array: {exc}") from None
    if x.ndim == 0 or x.shape[0] != n:
        raise ValueError(f"features must have N={n} rows like labels, got shape {x.shape}")
    x = x.reshape(n, -1)
    if x.shape[1] == 0:
        raise ValueError("features must have at least one value per example")
    if not np.isfinite(x).all():
        raise ValueError("features must be finite (found NaN or inf)")
    rng = as_generator(seed)

    if rate == 0.0:
        q = np.zeros(n)
    elif rate_std == 0.0:
        q = np.full(n, rate)
    else:
        loc = _truncnorm_loc_for_mean(rate, rate_std) if match_rate else rate
        a, b = (0.0 - loc) / rate_std, (1.0 - loc) / rate_std
        q = stats.truncnorm.rvs(a, b, loc=loc, scale=rate_std, size=n, random_state=rng)
    flip = rng.random(n) < q
    pick = rng.random(n)

    z = y.copy()
    flipped_idx = np.flatnonzero(flip)
    flipped_idx = flipped_idx[np.argsort(y[flipped_idx], kind="stable")]
    bounds = np.searchsorted(y[flipped_idx], np.arange(k + 1))
    for c in range(k):
        w_c = rng.standard_normal((x.shape[1], k))  # W[c], drawn for every class in order
        idx = flipped_idx[bounds[c] : bounds[c + 1]]
        if idx.size == 0:
            continue
        xc = x[idx]
        if normalize:  # only the flipped rows are ever projected
            norm = np.sqrt(np.einsum("ij,ij->i", xc, xc))[:, None]
            xc = xc / np.where(norm > 0, norm, 1.0)
        logits = xc @ w_c
        logits[:, c] = -np.inf
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        cdf = np.cumsum(p, axis=1)
        cdf /= cdf[:, -1:]
        z[idx] = (cdf <= pick[idx, None]).sum(axis=1)
    return _result(y, z, k)
