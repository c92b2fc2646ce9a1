r"""Power of the paired t-test and the minimum detectable effect at the seeds a study has.

Under i.i.d. normal differences with mean ``μ`` and sd ``σ``, the paired t statistic with ``n``
seeds follows a noncentral t distribution with ``n - 1`` degrees of freedom and noncentrality
``λ = sqrt(n) μ / σ``. The two-sided test at level ``α`` rejects when ``|T| >= c`` with
``c = t_{n-1, 1-α/2}``, so its power is

    ``power(μ) = P(T'_{n-1, λ} >= c) + P(T'_{n-1, λ} <= -c)``          (scipy.stats.nct)

(one-sided: the first term with ``c = t_{n-1, 1-α}``). The **minimum detectable effect** (MDE) is
the ``μ > 0`` at which the power reaches the target (0.8 by convention, Cohen 1988 §2.4), solved
exactly on the noncentral t. It is close to the textbook approximation
``(t_{n-1, 1-α/2} + t_{n-1, power}) σ / sqrt(n)`` at moderate levels and larger beyond it:

=====================  =================  =================
n, level               MDE (noncentral t)  approximation
=====================  =================  =================
5, α = 0.05            1.68 σ             1.66 σ
10, α = 0.05           1.00 σ             0.99 σ
5, α = 0.05/20         3.78 σ             3.44 σ
10, α = 0.05/20        1.64 σ             1.59 σ
=====================  =================  =================

So a study of 5 seeds detects, with 80% power, only differences of about 1.7 seed-to-seed sd at
0.05, and about 3.8 sd once the level is shared by 20 arm × condition cells (Bonferroni 0.05/20,
the first step of Holm). ``σ`` is the sd of the *paired differences*; pairing by seed makes it
smaller than the sd of either arm when seeds move both arms together.

Example:
    >>> from smoothflip.analysis import minimum_detectable_effect, power_of_paired_t
    >>> round(minimum_detectable_effect(5, 1.0, alpha=0.05), 2)
    1.68
    >>> round(power_of_paired_t(1.0, 1.0, 10, alpha=0.05), 3)
    0.803
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import optimize, stats

from smoothflip._validation import check_range
from smoothflip.analysis._arrays import out

__all__ = ["minimum_detectable_effect", "power_of_paired_t"]


def _check_n(n: Any) -> np.ndarray:
    try:
        a = np.asarray(n, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"n must be a number of seeds or an array of them, got {n!r}") from error
    if np.any(np.isnan(a)) or np.any(a < 0) or np.any(a != np.floor(a)):
        raise ValueError(f"n must hold whole numbers of seeds >= 0, got {n!r}")
    return a


def _check_sd(sd: Any) -> np.ndarray:
    try:
        a = np.asarray(sd, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"sd must be a number or an array of numbers, got {sd!r}") from error
    if np.any(a < 0) or np.any(np.isinf(a)):
        raise ValueError(f"sd must be finite and >= 0 (NaN allowed: an unknown sd), got {sd!r}")
    return a


def rejection_power(ncp: Any, df: Any, critical: Any, *, two_sided: bool = True) -> np.ndarray:
    """``P(T' >= c) (+ P(T' <= -c))`` for ``T'`` noncentral t with ``df`` and noncentrality ``ncp``.

    Vectorized; ``c = inf`` gives 0. The lower tail is computed as ``P(T'(-ncp) >= c)``, which
    scipy evaluates without the NaN its ``cdf`` returns far in the tail.
    """
    ncp, df, critical = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (ncp, df, critical)))
    with np.errstate(invalid="ignore", over="ignore"):
        upper = np.nan_to_num(stats.nct.sf(critical, df, ncp), nan=0.0)
        lower = np.nan_to_num(stats.nct.sf(critical, df, -ncp), nan=0.0) if two_sided else 0.0
    return np.where(np.isinf(critical), 0.0, np.clip(upper + lower, 0.0, 1.0))


def mde_in_sd(n: Any, critical: Any, *, power: float, two_sided: bool = True) -> np.ndarray:
    """The standardized effect ``μ / σ`` at which ``|T| >= critical`` has the given power at ``n`` seeds.

    Solved once per distinct ``(n, critical)`` pair; ``inf`` for ``n < 2`` or ``critical = inf``.
    """
    n, critical = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(critical, dtype=float))
    result = np.full(n.shape, math.inf)
    pairs, inverse = np.unique(np.stack([n.ravel(), critical.ravel()], axis=-1), axis=0, return_inverse=True)
    solved = np.empty(len(pairs))
    for i, (k, c) in enumerate(pairs):
        if k < 2 or not math.isfinite(c):
            solved[i] = math.inf
            continue

        def gap(effect: float, k: float = k, c: float = c) -> float:
            return float(rejection_power(effect * math.sqrt(k), k - 1, c, two_sided=two_sided)) - power

        if gap(0.0) >= 0:
            solved[i] = 0.0
            continue
        high = 1.0
        while gap(high) < 0:
            high *= 2.0
        solved[i] = optimize.brentq(gap, 0.0, high, xtol=1e-10, rtol=1e-10)
    result.ravel()[:] = solved[inverse.ravel()]
    return result


def _critical_t(n: np.ndarray, alpha: float, two_sided: bool) -> np.ndarray:
    q = 1.0 - alpha / 2.0 if two_sided else 1.0 - alpha
    with np.errstate(invalid="ignore"):
        return np.where(n >= 2, stats.t.ppf(q, np.maximum(n - 1, 1)), math.inf)


def minimum_detectable_effect(
    n: Any, sd: Any, *, alpha: float = 0.05, power: float = 0.8, two_sided: bool = True
) -> Any:
    """Smallest true mean difference the paired t-test detects with the given power at ``n`` seeds.

    Solves ``power = P(|T'_{n-1, sqrt(n) μ/σ}| >= t_{n-1, 1-α/2})`` for ``μ`` on the noncentral t
    (one-sided: ``P(T' >= t_{n-1, 1-α})``) and returns ``μ`` in the units of ``sd``. Pass the
    corrected level for a family: ``alpha / m`` is Holm's first (strictest) step.

    Args:
        n: seeds (paired differences); an int or an array.
        sd: sd of the paired differences (broadcast with ``n``; NaN gives NaN).
        alpha: significance level, in ``(0, 1)``.
        power: target power, in ``(0, 1)``.
        two_sided: two-sided test (default) or one-sided.

    Returns:
        The MDE (float, or an array of the broadcast shape); ``inf`` for ``n < 2``, 0 for ``sd = 0``.

    Raises:
        ValueError: ``n`` not whole numbers ``>= 0``; a negative or infinite ``sd``; a bad level.

    Example:
        >>> [round(minimum_detectable_effect(n, 1.0), 2) for n in (3, 5, 10, 20)]
        [3.26, 1.68, 1.0, 0.66]
        >>> round(minimum_detectable_effect(5, 1.0, alpha=0.05 / 20), 2)   # Bonferroni, 20 cells
        3.78
        >>> minimum_detectable_effect(1, 1.0)
        inf
    """
    alpha = check_range("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    power = check_range("power", power, low=0.0, high=1.0, low_open=True, high_open=True)
    k = _check_n(n)
    s = _check_sd(sd)
    in_sd = mde_in_sd(k, _critical_t(k, alpha, two_sided), power=power, two_sided=two_sided)
    with np.errstate(invalid="ignore"):
        result = np.where(s == 0, np.where(k >= 2, 0.0, math.inf), in_sd * s)
    return out(np.asarray(result))


def power_of_paired_t(effect: Any, sd: Any, n: Any, *, alpha: float = 0.05, two_sided: bool = True) -> Any:
    """Power of the paired t-test at level ``alpha`` against a true mean difference ``effect``.

    ``P(|T'_{n-1, λ}| >= t_{n-1, 1-α/2})`` with ``λ = sqrt(n) effect / sd`` (one-sided: against
    ``effect > 0``, ``P(T' >= t_{n-1, 1-α})``).

    Args:
        effect: true mean of the paired differences (broadcast with ``sd`` and ``n``).
        sd: their sd.
        n: seeds.
        alpha: significance level, in ``(0, 1)``.
        two_sided: two-sided test (default) or one-sided.

    Returns:
        The power (float or array); NaN for ``n < 2``; for ``sd = 0``: 1 for a nonzero effect,
        ``alpha`` for a zero one.

    Example:
        >>> round(power_of_paired_t(0.0, 1.0, 8), 3)    # no effect: the level
        0.05
        >>> round(power_of_paired_t(1.68, 1.0, 5), 2)
        0.8
    """
    alpha = check_range("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    k = _check_n(n)
    s = _check_sd(sd)
    e = np.asarray(effect, dtype=float)
    if np.any(np.isinf(e)):
        raise ValueError(f"effect must be finite, got {effect!r}")
    e, s, k = np.broadcast_arrays(e, s, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        ncp = np.where(s > 0, np.sqrt(k) * e / np.where(s > 0, s, 1.0), 0.0)
    p = rejection_power(ncp, np.maximum(k - 1, 1), _critical_t(k, alpha, two_sided), two_sided=two_sided)
    p = np.where(s == 0, np.where(e != 0, 1.0, alpha), p)
    if not two_sided:
        p = np.where((s == 0) & (e < 0), 0.0, p)
    p = np.where(np.isnan(s) | np.isnan(e), np.nan, p)
    return out(np.asarray(np.where(k >= 2, p, np.nan)))
