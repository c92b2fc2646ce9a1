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

**Planning: how many seeds would settle a cell.** Turned around, the same power gives the seeds a
cell needs: :func:`seeds_to_detect` is the smallest ``n`` at which the paired t-test detects a
true difference ``effect`` with the target power (equivalently, the smallest ``n`` whose MDE is at
most ``effect``), searched over whole ``n`` on the exact noncentral t, never the normal
approximation, which undercounts at small ``n`` (at level 0.05 / 15 and a 2-sd effect: 8 seeds, the
normal approximation says 3.6). :func:`seeds_to_show_equivalence` is the smallest ``n`` at which the
two one-sided tests (TOST) at ``±margin`` reject both ``μ <= -margin`` and ``μ >= margin`` with the
target power when the true difference is ``true_diff`` (0 by default: the arm does nothing). Its
power, :func:`power_of_equivalence`, is exact (Owen 1965; the same integral as R's ``PowerTOST``
"exact" method): with ``x̄ ~ N(μ, σ²/n)`` and ``s = σ v / sqrt(n - 1)``, ``v ~ χ_{n-1}``, TOST at
critical value ``c`` rejects when ``|x̄| < margin - c s / sqrt(n)``, so

    ``power = ∫_0^{v*} [Φ(√n (d - e) - c v / √(n-1)) - Φ(-√n (d + e) + c v / √(n-1))] f_χ(v) dv``

with ``d = margin / σ``, ``e = μ / σ`` and ``v* = d √(n (n - 1)) / c``, computed by Gauss-Legendre
quadrature (128 nodes over the χ density's bulk; within 1e-8 of adaptive quadrature).

    >>> from smoothflip.analysis import seeds_to_detect, seeds_to_show_equivalence
    >>> seeds_to_detect(1.0, 1.0), seeds_to_detect(1.0, 1.0, alpha=0.05 / 15)
    (10, 19)
    >>> seeds_to_show_equivalence(1.0, margin=0.5)
    36
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import optimize, stats

from smoothflip._validation import check_int, check_range
from smoothflip.analysis._arrays import out

__all__ = [
    "MAX_PLAN_SEEDS",
    "minimum_detectable_effect",
    "power_of_equivalence",
    "power_of_paired_t",
    "seeds_to_detect",
    "seeds_to_show_equivalence",
]

#: The most seeds a plan searches; a cell that needs more gets ``inf``.
MAX_PLAN_SEEDS = 1_000_000


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


# ---------------------------------------------------------------------------------------- planning

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(128)
_CHI_HALF_WIDTH = 10.0  # the χ_k density (sd about 0.71) beyond ±10 of sqrt(k) holds < 1e-40


def detect_power_in_sd(n: Any, effect_sd: Any, critical: Any, *, two_sided: bool = True) -> np.ndarray:
    """Power of ``|T| >= critical`` (one-sided: ``T >= critical``) at ``n`` seeds against a true
    standardized difference ``effect_sd = μ / σ``; the critical value may depend on ``n``."""
    n, effect_sd = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(effect_sd, dtype=float))
    p = rejection_power(effect_sd * np.sqrt(n), np.maximum(n - 1, 1), critical, two_sided=two_sided)
    return np.where(n >= 2, p, np.nan)


def equivalence_power_in_sd(n: Any, diff_sd: Any, margin_sd: Any, critical: Any) -> np.ndarray:
    """Exact power of the two one-sided tests at ``±margin_sd`` (both statistics beyond ``critical``)
    at ``n`` seeds when the true standardized difference is ``diff_sd`` (see the module docstring).

    All arguments broadcast; ``critical`` is the one-sided critical value (``t_{n-1, 1-α}`` for the
    t-test, larger for an anytime-valid test); ``inf`` gives 0, ``n < 2`` NaN.
    """
    n, e, d, c = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (n, diff_sd, margin_sd, critical)))
    df = np.maximum(n - 1.0, 1.0)
    root = np.sqrt(df)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        v_max = np.where(c > 0, d * np.sqrt(n) * root / c, math.inf)
        low = np.maximum(root - _CHI_HALF_WIDTH, 0.0)
        high = np.minimum(np.where(np.isfinite(c), v_max, 0.0), root + _CHI_HALF_WIDTH)
        width = np.clip(high - low, 0.0, None)
        v = low[..., None] + (_NODES + 1.0) / 2.0 * width[..., None]  # [..., nodes]
        w = _WEIGHTS / 2.0 * width[..., None]
        shift = (c / root)[..., None] * v
        sq = np.sqrt(n)[..., None]
        upper = stats.norm.cdf(sq * (d - e)[..., None] - shift)
        lower = stats.norm.cdf(-sq * (d + e)[..., None] + shift)
        density = stats.chi.pdf(v, df[..., None])
        p = np.sum(w * np.clip(upper - lower, 0.0, None) * density, axis=-1)
    p = np.where(np.isfinite(c) & (width > 0), np.clip(p, 0.0, 1.0), 0.0)
    return np.where(n >= 2, p, np.nan)


def smallest_n(
    power_at: Any, target: float, shape: tuple[int, ...], *, min_n: int = 2, max_n: int = MAX_PLAN_SEEDS
) -> np.ndarray:
    """Smallest whole ``n`` in ``[min_n, max_n]`` with ``power_at(n) >= target``, elementwise.

    ``power_at`` maps an integer array of ``shape`` to powers of that shape and must not decrease
    with ``n`` (the search is a vectorized bisection: about ``log2(max_n)`` calls). Elements that
    never reach the target (or whose power is NaN) get ``inf``.

    Example:
        >>> smallest_n(lambda n: 1.0 - 1.0 / n, 0.9, (1,)).tolist()
        [10.0]
    """
    lo = np.full(shape, min_n - 1, dtype=np.int64)  # below the answer
    hi = np.full(shape, max_n, dtype=np.int64)  # at or above it, where it is reached at all
    reached = np.asarray(power_at(hi)) >= target
    while True:
        active = reached & (hi - lo > 1)
        if not active.any():
            break
        mid = np.where(active, (lo + hi) // 2, hi)
        good = np.asarray(power_at(mid)) >= target
        hi = np.where(active & good, mid, hi)
        lo = np.where(active & ~good, mid, lo)
    return np.where(reached, hi.astype(float), math.inf)


def _check_plan(alpha: float, power: float, min_n: int, max_n: int) -> tuple[float, float, int, int]:
    alpha = check_range("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    power = check_range("power", power, low=0.0, high=1.0, low_open=True, high_open=True)
    min_n = check_int("min_n", min_n, low=2)
    max_n = check_int("max_n", max_n, low=min_n)
    return alpha, power, min_n, max_n


def _whole(x: np.ndarray) -> Any:
    """Seeds as ints where finite (a scalar in, a scalar out); ``inf`` / NaN stay floats."""
    if x.ndim == 0:
        value = float(x)
        return int(value) if math.isfinite(value) else value
    return x


def seeds_to_detect(
    effect: Any,
    sd: Any,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    two_sided: bool = True,
    min_n: int = 2,
    max_n: int = MAX_PLAN_SEEDS,
) -> Any:
    """Paired seeds the t-test needs to detect a true mean difference ``effect`` with ``power``.

    The smallest whole ``n >= min_n`` with :func:`power_of_paired_t` ``(effect, sd, n) >= power``,
    on the exact noncentral t; equivalently the smallest ``n`` whose
    :func:`minimum_detectable_effect` is at most ``|effect|``. Pass the corrected level for a family
    (``alpha / m``: Holm's first step).

    Args:
        effect: the true difference to detect (its sign does not matter two-sided; one-sided it must
            be positive to be detectable); broadcast with ``sd``.
        sd: sd of the paired differences (NaN gives NaN).
        alpha: significance level, in ``(0, 1)``.
        power: target power, in ``(0, 1)``.
        two_sided: two-sided test (default) or one-sided.
        min_n: the fewest seeds to return (at least 2).
        max_n: the most seeds searched; beyond it ``inf``.

    Returns:
        An int (scalar input) or a float array of whole numbers; ``inf`` when ``max_n`` seeds do
        not reach the power (or ``effect = 0``), ``min_n`` for ``sd = 0`` and a nonzero effect.

    Raises:
        ValueError: a negative or infinite ``sd``, a non-finite ``effect``, a bad level or bound.

    Example:
        >>> [seeds_to_detect(e, 1.0) for e in (2.0, 1.0, 0.5)]
        [5, 10, 34]
        >>> seeds_to_detect(1.69, 1.0), round(minimum_detectable_effect(5, 1.0), 3)
        (5, 1.682)
    """
    alpha, power, min_n, max_n = _check_plan(alpha, power, min_n, max_n)
    s = _check_sd(sd)
    e = np.asarray(effect, dtype=float)
    if not np.all(np.isfinite(e) | np.isnan(e)):
        raise ValueError(f"effect must be finite, got {effect!r}")
    e, s = np.broadcast_arrays(e, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        effect_sd = np.where(s > 0, e / np.where(s > 0, s, 1.0), 0.0)
    q = (lambda n: 1.0 - alpha / 2.0) if two_sided else (lambda n: 1.0 - alpha)

    def power_at(n: np.ndarray) -> np.ndarray:
        critical = stats.t.ppf(q(n), np.maximum(n - 1, 1))
        return detect_power_in_sd(n, effect_sd, critical, two_sided=two_sided)

    n = smallest_n(power_at, power, e.shape, min_n=min_n, max_n=max_n)
    exact = np.where((e > 0) | (two_sided & (e != 0)), float(min_n), math.inf)
    n = np.where(s == 0, exact, n)
    return _whole(np.where(np.isnan(s) | np.isnan(e), np.nan, n))


def power_of_equivalence(true_diff: Any, sd: Any, n: Any, *, margin: Any, alpha: float = 0.05) -> Any:
    """Exact power of the paired TOST at ``±margin`` (each one-sided test at ``alpha``).

    The probability that both ``μ <= -margin`` and ``μ >= margin`` are rejected (the ``1 - 2α`` t
    interval lies inside ``(-margin, margin)``) at ``n`` seeds when the true mean difference is
    ``true_diff``; see the module docstring for the integral.

    Args:
        true_diff: the true mean difference (broadcast with the others).
        sd: sd of the paired differences.
        n: seeds.
        margin: equivalence margin ``> 0``, same units as ``sd``.
        alpha: level of each one-sided test, in ``(0, 0.5)``.

    Returns:
        The power (float or array); NaN for ``n < 2``; for ``sd = 0``: 1 inside the margin, else 0.

    Example:
        >>> round(power_of_equivalence(0.0, 1.0, 20, margin=0.5), 3)
        0.393
        >>> power_of_equivalence(0.5, 1.0, 20, margin=0.5) <= 0.05    # at the margin: at most alpha
        True
    """
    alpha = check_range("alpha", alpha, low=0.0, high=0.5, low_open=True, high_open=True)
    k = _check_n(n)
    s = _check_sd(sd)
    d = np.asarray(margin, dtype=float)
    if np.any(~np.isfinite(d)) or np.any(d <= 0):
        raise ValueError(f"margin must be finite and > 0, got {margin!r}")
    e = np.asarray(true_diff, dtype=float)
    if np.any(np.isinf(e)):
        raise ValueError(f"true_diff must be finite, got {true_diff!r}")
    e, s, k, d = np.broadcast_arrays(e, s, k, d)
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where(s > 0, s, 1.0)
        critical = stats.t.ppf(1.0 - alpha, np.maximum(k - 1, 1))
        p = equivalence_power_in_sd(k, e / safe, d / safe, critical)
    p = np.where(s == 0, (np.abs(e) < d).astype(float), p)
    p = np.where(np.isnan(s) | np.isnan(e), np.nan, p)
    return out(np.asarray(np.where(k >= 2, p, np.nan)))


def seeds_to_show_equivalence(
    sd: Any,
    *,
    margin: Any,
    true_diff: Any = 0.0,
    alpha: float = 0.05,
    power: float = 0.8,
    min_n: int = 2,
    max_n: int = MAX_PLAN_SEEDS,
) -> Any:
    """Paired seeds TOST at ``±margin`` needs to show equivalence with ``power`` when the true mean
    difference is ``true_diff`` (0 by default).

    The smallest whole ``n >= min_n`` with :func:`power_of_equivalence` ``>= power``. The answer
    grows without bound as ``|true_diff|`` approaches the margin (``inf`` at or beyond it).

    Args:
        sd: sd of the paired differences (NaN gives NaN).
        margin: equivalence margin ``> 0``.
        true_diff: the true difference assumed.
        alpha: level of each one-sided test, in ``(0, 0.5)``.
        power: target power, in ``(0, 1)``.
        min_n: the fewest seeds to return (at least 2).
        max_n: the most seeds searched; beyond it ``inf``.

    Returns:
        An int (scalar input) or a float array of whole numbers (``inf``: not within ``max_n``).

    Example:
        >>> seeds_to_show_equivalence(1.0, margin=1.0), seeds_to_show_equivalence(1.0, margin=0.5)
        (11, 36)
        >>> seeds_to_show_equivalence(1.0, margin=0.5, true_diff=0.5)
        inf
    """
    alpha = check_range("alpha", alpha, low=0.0, high=0.5, low_open=True, high_open=True)
    _, power, min_n, max_n = _check_plan(alpha, power, min_n, max_n)
    s = _check_sd(sd)
    d = np.asarray(margin, dtype=float)
    if np.any(~np.isfinite(d)) or np.any(d <= 0):
        raise ValueError(f"margin must be finite and > 0, got {margin!r}")
    e = np.asarray(true_diff, dtype=float)
    if np.any(np.isinf(e)):
        raise ValueError(f"true_diff must be finite, got {true_diff!r}")
    s, d, e = np.broadcast_arrays(s, d, e)
    safe = np.where(s > 0, s, 1.0)

    def power_at(n: np.ndarray) -> np.ndarray:
        critical = stats.t.ppf(1.0 - alpha, np.maximum(n - 1, 1))
        return equivalence_power_in_sd(n, e / safe, d / safe, critical)

    n = smallest_n(power_at, power, s.shape, min_n=min_n, max_n=max_n)
    n = np.where(np.abs(e) >= d, math.inf, n)
    n = np.where(s == 0, np.where(np.abs(e) < d, float(min_n), math.inf), n)
    return _whole(np.where(np.isnan(s) | np.isnan(e), np.nan, n))
