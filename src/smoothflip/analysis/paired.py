r"""Tests on paired differences: the paired t-test, an exact sign-flip test, and equivalence (TOST).

All three take the per-seed differences ``d_1 .. d_n`` of ``arm - baseline`` (one seed fixes the
noisy labels, the initialization and the data order of *both* runs, so the differences are the
unit of evidence). NaN marks a missing seed and is dropped; ``±inf`` raises.

**Paired t-test** (:func:`paired_t_test`): ``t = (mean - μ0) / (sd / sqrt(n))`` on ``n - 1``
degrees of freedom (Student 1908). Exact when the differences are i.i.d. normal; at the few seeds
of a study it is also the most powerful test there is against a shift under normality, which is
why the family verdicts (:func:`smoothflip.analysis.family_verdicts`) use it. When every
difference is equal ``sd = 0``: ``t = ±inf`` (p = 0) for a nonzero mean, ``t = 0`` (two-sided
p = 1) for a zero mean — identical arms are "no difference", never a division by zero.

**Sign-flip permutation test** (:func:`sign_flip_test`): under ``H0`` the differences are
symmetric about ``μ0``, so every one of the ``2^n`` sign patterns of ``d_i - μ0`` is equally likely
(Fisher 1935; Good 2005, *Permutation, Parametric, and Bootstrap Tests of Hypotheses*, §3). The
p-value is the fraction of sign patterns whose sum is at least as extreme as the observed one:
exact enumeration up to ``max_exact`` values (default 16, 65 536 patterns), and beyond that a
seeded Monte Carlo estimate ``(1 + #{as extreme}) / (1 + B)`` that is itself a valid p-value
(Phipson & Smyth 2010). It needs no normality, but it is discrete: with ``n`` pairs the smallest
two-sided p-value is ``2 / 2^n`` — with 5 seeds that is 0.0625, so at least 6 seeds are needed to
reject at 0.05 at all, and at least ``ceil(log2(2 m / α))`` for a Bonferroni level ``α / m``
(10 seeds for 20 cells at 0.05).

**Equivalence** (:func:`tost`, Schuirmann 1987): the arm is equivalent to the baseline within a
margin ``δ > 0`` when both one-sided t-tests reject, ``H0⁻: μ ≤ -δ`` with
``t⁻ = (mean + δ) / se`` and ``H0⁺: μ ≥ δ`` with ``t⁺ = (mean - δ) / se``; the TOST p-value is the
larger of the two one-sided p-values. Equivalently (at level α) the ``1 - 2α`` t interval of the
mean lies within ``[-δ, δ]``. The test is exact under normality and controls the rate of false
equivalence claims at α for every ``|μ| ≥ δ``.

Example:
    >>> from smoothflip.analysis import paired_t_test, tost
    >>> r = paired_t_test([0.01, 0.03, 0.02, 0.05, 0.04])
    >>> round(r.t, 3), r.df, round(r.p_two_sided, 4)
    (4.243, 4, 0.0132)
    >>> tost([0.0, 0.0, 0.0], margin=0.01).equivalent      # identical arms
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from smoothflip._validation import as_generator, check_int, check_number, check_range
from smoothflip.analysis._arrays import as_values, moments, out, ratio

__all__ = ["PairedTTest", "SignFlipTest", "Tost", "paired_t_test", "sign_flip_test", "tost"]


@dataclass(frozen=True)
class PairedTTest:
    """A paired t-test of ``H0: μ = null``; floats for one-dimensional input, else arrays.

    Attributes:
        n: finite differences used.
        mean: their mean.
        sd: their sample sd (``ddof=1``; NaN for ``n < 2``).
        t: ``(mean - null) / (sd / sqrt(n))`` (``±inf`` or 0 when ``sd = 0``, NaN for ``n < 2``).
        df: degrees of freedom ``n - 1``.
        p_two_sided: ``P(|T| >= |t|)`` (NaN for ``n < 2``).
        p_greater: one-sided p-value against ``μ > null``: ``P(T >= t)``.
        p_less: one-sided p-value against ``μ < null``: ``P(T <= t)``.
    """

    n: Any
    mean: Any
    sd: Any
    t: Any
    df: Any
    p_two_sided: Any
    p_greater: Any
    p_less: Any


def _t_stat(n: np.ndarray, mean: np.ndarray, sd: np.ndarray, null: Any) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        se = sd / np.sqrt(n)
    return np.where(n >= 2, ratio(mean - null, se), np.nan)


def _t_sf(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where(df >= 1, stats.t.sf(t, np.maximum(df, 1)), np.nan)


def paired_t_test(diffs: Any, *, null: float = 0.0, axis: int = -1) -> PairedTTest:
    """Paired (one-sample) t-test of ``H0: μ = null`` on the differences, one- and two-sided.

    ``t = (mean - null) / (sd / sqrt(n))`` with ``n - 1`` degrees of freedom; the module docstring
    gives the conventions for ``sd = 0``.

    Args:
        diffs: ``[..., n, ...]`` per-seed differences; NaN marks a missing seed.
        null: the mean under ``H0``.
        axis: the axis that holds the seeds.

    Returns:
        A :class:`PairedTTest` (floats for one-dimensional input, else arrays of the other axes).

    Raises:
        ValueError: ``±inf`` in ``diffs``; a non-finite ``null``.

    Example:
        >>> r = paired_t_test([1.0, 2.0, 3.0])
        >>> round(r.t, 4), round(r.p_two_sided, 4), round(r.p_greater, 4)
        (3.4641, 0.0742, 0.0371)
        >>> paired_t_test([0.5, 0.5, 0.5]).p_two_sided       # constant, nonzero: t = inf
        0.0
        >>> paired_t_test([0.0, 0.0, 0.0]).p_two_sided       # identical arms
        1.0
    """
    null = check_number("null", null)
    n, mean, sd = moments(as_values(diffs), axis=axis)
    t = _t_stat(n, mean, sd, null)
    df = n - 1
    p_greater = _t_sf(t, df)
    p_less = _t_sf(-t, df)
    p_two = np.minimum(1.0, 2.0 * _t_sf(np.abs(t), df))
    return PairedTTest(
        n=out(n),
        mean=out(mean),
        sd=out(sd),
        t=out(t),
        df=out(df),
        p_two_sided=out(p_two),
        p_greater=out(p_greater),
        p_less=out(p_less),
    )


@dataclass(frozen=True)
class SignFlipTest:
    """A sign-flip permutation test of ``H0``: the differences are symmetric about ``null``.

    Attributes:
        n: finite differences used.
        mean: their mean.
        p_two_sided: fraction of sign patterns with ``|sum| >=`` the observed ``|sum|``.
        p_greater: fraction with ``sum >=`` the observed sum (against ``μ > null``).
        p_less: fraction with ``sum <=`` the observed sum (against ``μ < null``).
        exact: whether all ``2^n`` patterns were enumerated.
        n_permutations: patterns counted (``2^n`` exact, else ``n_resamples`` plus the identity).
    """

    n: int
    mean: float
    p_two_sided: float
    p_greater: float
    p_less: float
    exact: bool
    n_permutations: int


def sign_flip_test(
    diffs: Any,
    *,
    null: float = 0.0,
    max_exact: int = 16,
    n_resamples: int = 9999,
    seed: int | np.random.Generator = 0,
) -> SignFlipTest:
    """Exact (or seeded Monte Carlo) sign-flip permutation test on paired differences.

    The statistic is ``sum(d_i - null)``. With ``n <= max_exact`` every sign pattern is enumerated
    and the p-values are exact; beyond it ``n_resamples`` random patterns are drawn from ``seed``
    and ``p = (1 + #{as extreme}) / (1 + n_resamples)``. Ties within a relative ``1e-9`` count as
    "as extreme". See the module docstring for the smallest attainable p-value.

    Args:
        diffs: ``[n]`` per-seed differences; NaN marks a missing seed.
        null: the centre of symmetry under ``H0``.
        max_exact: enumerate exactly up to this many values (at most 20).
        n_resamples: random sign patterns beyond ``max_exact``.
        seed: seed or ``numpy.random.Generator`` for the Monte Carlo patterns.

    Returns:
        A :class:`SignFlipTest`; p-values NaN for no values.

    Raises:
        ValueError: ``diffs`` is not one-dimensional or holds ``±inf``; a bad option.

    Example:
        >>> r = sign_flip_test([0.01, 0.03, 0.02, 0.05, 0.04])   # all 5 positive
        >>> r.p_two_sided, r.p_greater, r.exact, r.n_permutations
        (0.0625, 0.03125, True, 32)
    """
    null = check_number("null", null)
    max_exact = check_int("max_exact", max_exact, low=0, high=20)
    n_resamples = check_int("n_resamples", n_resamples, low=1)
    d = as_values(diffs)
    if d.ndim != 1:
        raise ValueError(f"diffs must be one-dimensional [n], got shape {d.shape}")
    d = d[np.isfinite(d)] - null
    n = int(d.size)
    if n == 0:
        return SignFlipTest(0, math.nan, math.nan, math.nan, math.nan, True, 1)
    observed = float(d.sum())
    tol = 1e-9 * float(np.abs(d).sum())
    if n <= max_exact:
        codes = np.arange(2**n, dtype=np.int64)[:, None]
        signs = 1.0 - 2.0 * ((codes >> np.arange(n)) & 1)
        sums = signs @ d
        total, extra = sums.size, 0
    else:
        rng = as_generator(seed)
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(n_resamples, n))
        sums = signs @ d
        total, extra = n_resamples + 1, 1  # the observed pattern counts once (Phipson & Smyth 2010)

    def p(count: int) -> float:
        return min(1.0, (count + extra) / total)

    return SignFlipTest(
        n=n,
        mean=observed / n + null,
        p_two_sided=p(int(np.count_nonzero(np.abs(sums) >= abs(observed) - tol))),
        p_greater=p(int(np.count_nonzero(sums >= observed - tol))),
        p_less=p(int(np.count_nonzero(sums <= observed + tol))),
        exact=n <= max_exact,
        n_permutations=total,
    )


@dataclass(frozen=True)
class Tost:
    """Two one-sided t-tests for equivalence within ``(-margin, margin)``.

    Floats for one-dimensional input, else arrays.

    Attributes:
        n: finite differences used.
        mean: their mean.
        sd: their sample sd.
        margin: the equivalence margin ``δ``.
        p_lower: p-value of ``H0⁻: μ <= -δ`` (small when the mean is clearly above ``-δ``).
        p_upper: p-value of ``H0⁺: μ >= δ`` (small when the mean is clearly below ``δ``).
        p_value: ``max(p_lower, p_upper)``, the TOST p-value (NaN for ``n < 2``).
        ci_low: lower end of the ``1 - 2 alpha`` t interval.
        ci_high: upper end of that interval.
        equivalent: ``p_value <= alpha``, i.e. the interval lies within ``[-δ, δ]``.
    """

    n: Any
    mean: Any
    sd: Any
    margin: Any
    p_lower: Any
    p_upper: Any
    p_value: Any
    ci_low: Any
    ci_high: Any
    equivalent: Any


def check_margin(margin: Any) -> np.ndarray:
    """``margin`` as a float array of finite values ``> 0``, or raise naming it."""
    try:
        m = np.asarray(margin, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"margin must be a number or an array of numbers, got {margin!r}") from error
    if not (np.all(np.isfinite(m)) and np.all(m > 0)):
        raise ValueError(f"margin must be finite and > 0 (in the metric's raw units), got {margin!r}")
    return m


def tost(diffs: Any, *, margin: Any, alpha: float = 0.05, axis: int = -1) -> Tost:
    """Equivalence test of paired differences within ``(-margin, margin)`` by two one-sided t-tests.

    ``p = max(P(T >= (mean + δ) / se), P(T <= (mean - δ) / se))`` on ``n - 1`` degrees of freedom;
    ``equivalent`` is ``p <= alpha``, which is the same as the ``1 - 2 alpha`` t interval lying
    within ``[-δ, δ]``. With ``sd = 0`` the mean alone decides (identical arms are equivalent).

    Args:
        diffs: ``[..., n, ...]`` per-seed differences; NaN marks a missing seed.
        margin: ``δ > 0`` in the differences' units; a scalar or an array broadcastable to the
            result (one margin per slice).
        alpha: level of each one-sided test, in ``(0, 0.5)``.
        axis: the axis that holds the seeds.

    Returns:
        A :class:`Tost` (floats for one-dimensional input, else arrays).

    Raises:
        ValueError: a margin that is not finite and positive; a bad ``alpha``; ``±inf`` in ``diffs``.

    Example:
        >>> r = tost([0.001, -0.002, 0.0, 0.002, -0.001], margin=0.005)
        >>> r.equivalent, round(r.p_value, 5), round(r.ci_low, 4), round(r.ci_high, 4)
        (True, 0.00106, -0.0015, 0.0015)
        >>> tost([0.001, 0.009, -0.004], margin=0.005).equivalent
        False
    """
    delta = check_margin(margin)
    alpha = check_range("alpha", alpha, low=0.0, high=0.5, low_open=True, high_open=True)
    n, mean, sd = moments(as_values(diffs), axis=axis)
    df = n - 1
    p_lower = _t_sf(_t_stat(n, mean, sd, -delta), df)
    p_upper = _t_sf(-_t_stat(n, mean, sd, delta), df)
    p_value = np.fmax(p_lower, p_upper)
    p_value = np.where(np.isnan(p_lower) | np.isnan(p_upper), np.nan, p_value)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(1.0 - alpha, np.maximum(df, 1)) * sd / np.sqrt(n)
    half = np.where(n >= 2, np.where(sd == 0, 0.0, half), np.nan)
    return Tost(
        n=out(n),
        mean=out(mean),
        sd=out(sd),
        margin=out(delta),
        p_lower=out(p_lower),
        p_upper=out(p_upper),
        p_value=out(p_value),
        ci_low=out(mean - half),
        ci_high=out(mean + half),
        equivalent=out(np.asarray(p_value <= alpha)),
    )
