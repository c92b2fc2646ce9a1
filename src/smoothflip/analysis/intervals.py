"""Intervals for the mean of paired differences, and the interquartile mean.

Two intervals for the mean of ``n`` per-seed differences ``arm - baseline``:

- :func:`paired_t_interval`: ``mean ± t_{n-1, 1-α/2} · sd / sqrt(n)``, exact when the differences
  are normally distributed. **This is the interval the family verdicts show**
  (:func:`smoothflip.analysis.family_verdicts`, fixed design), because the verdict's test is the
  paired t-test and the interval then agrees with it: it excludes 0 exactly when the unadjusted
  two-sided t-test rejects.
- :func:`paired_interval`: an expanded-percentile bootstrap interval (below), the one
  :func:`smoothflip.analysis.paired_comparison` shows today.

**Which bootstrap.** :func:`paired_interval` uses ``scipy.stats.bootstrap`` with
``method="percentile"``, not scipy's default BCa, and *expands* the percentile level for small
samples (Hesterberg 2015, "What teachers should know about the bootstrap", §5.3). A study has 3-10
seeds, and there BCa is fragile: its acceleration is a jackknife estimate from a handful of values
and its bias correction reads a very discrete bootstrap distribution (3 values have only 10
distinct resamples), so it returns NaN or warns (``DegenerateDataWarning``) on degenerate samples.
The plain percentile interval is stable but too narrow with few seeds: for normally distributed
differences it covers the true mean about 77% of the time with 3 seeds, 81% with 4, 84% with 5 and
92% with 10 (measured, 400 repetitions each). The expanded percentile interval asks the bootstrap
for the level ``1 - 2 Φ(-sqrt(n/(n-1)) t_{n-1, 1-α/2})`` instead of ``1 - α``, which corrects the
narrowness: measured coverage 88% with 4 seeds, 94% with 5, 93% with 6, 95% with 8 and 96% with 10
(400 repetitions each; 2000 repetitions below give 92.7% with 5).
With 3 seeds no bootstrap interval can do better than ``[min, max]`` of the three differences
(every resampled mean lies inside it), which covers the true mean 75% of the time: a verdict from
3 seeds is weak evidence, and 5 or more seeds are recommended. The interval always lies within
``[min(diffs), max(diffs)]``, is never NaN for two or more finite values, and is deterministic for a
given seed.

**Measured coverage** of a nominal 95% interval for the mean of ``n`` i.i.d. differences
(2000 repetitions each, so ±1 point; bootstrap with 9999 resamples):

==============================  ======================  ======================
distribution (skewness)         t interval, n = 5/10/30  bootstrap, n = 5/10/30
==============================  ======================  ======================
normal (0)                      95.1 / 94.8 / 95.6%     92.7 / 94.6 / 95.5%
gamma, shape 4 (1)              94.0 / 93.9 / 94.0%     91.3 / 94.3 / 94.2%
gamma, shape 1 (2)              88.6 / 90.0 / 92.2%     87.0 / 90.6 / 92.8%
lognormal, σ = 1 (6.2)          82.3 / 83.8 / 88.0%     81.7 / 85.2 / 88.5%
==============================  ======================  ======================

So both reach 93% from 10 seeds on normal or mildly skewed differences; at 5 seeds the t interval
does (95.1% normal, 94.0% at skewness 1) and the bootstrap does not (92.7%, 91.3%). On strongly
skewed differences (skewness 2 and more) neither reaches 93% even at 30 seeds: no interval from so
few values can, and the report should say the differences are skewed rather than trust either.
At 10 and 30 seeds the two are within 1.5 points of each other; at 5 seeds the t interval is
better on every distribution measured, which is why the family verdicts show it.

Example:
    >>> from smoothflip.analysis import paired_t_interval
    >>> low, high = paired_t_interval([0.01, 0.03, 0.02, 0.05, 0.04])
    >>> round(low, 4), round(high, 4)
    (0.0104, 0.0496)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from smoothflip._validation import as_generator, check_int, check_range
from smoothflip.analysis._arrays import as_values, moments, out

__all__ = [
    "MIN_SEEDS",
    "MIN_SEEDS_IQM",
    "expanded_level",
    "interquartile_mean",
    "paired_interval",
    "paired_t_interval",
]

#: Fewer paired seeds than this give the verdict ``"no verdict"``.
MIN_SEEDS = 3
#: Fewer values than this give a NaN interquartile mean.
MIN_SEEDS_IQM = 4


def interquartile_mean(values: Iterable[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle half, ``scipy.stats.trim_mean(values, 0.25)``.

    Non-finite values are dropped first. With 4 values it is the mean of the middle two, with 5 the
    mean of the middle three (``int(0.25 * n)`` values are cut from each end).

    Args:
        values: ``[n]`` numbers.

    Returns:
        The interquartile mean, or NaN for fewer than :data:`MIN_SEEDS_IQM` finite values.

    Example:
        >>> interquartile_mean([1.0, 2.0, 3.0, 4.0, 100.0])
        3.0
        >>> interquartile_mean([1.0, 2.0, 3.0])
        nan
    """
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size < MIN_SEEDS_IQM:
        return math.nan
    return float(stats.trim_mean(x, 0.25))


def expanded_level(confidence: float, n: int) -> float:
    """Hesterberg's expanded percentile level for ``n`` values: ``1 - 2 Φ(-sqrt(n/(n-1)) t_{n-1, 1-α/2})``.

    Example:
        >>> round(expanded_level(0.95, 5), 4)
        0.9981
    """
    if n < 2:
        return confidence
    alpha = 1.0 - confidence
    z = math.sqrt(n / (n - 1)) * float(stats.t.ppf(1.0 - alpha / 2.0, n - 1))
    return float(min(1.0 - 2.0 * stats.norm.sf(z), 1.0 - 1e-12))


def paired_interval(
    diffs: np.ndarray | Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int | np.random.Generator = 0,
    expand: bool = True,
) -> tuple[float, float]:
    """Bootstrap interval of the mean of paired differences (expanded percentile by default).

    Calls ``scipy.stats.bootstrap((diffs,), np.mean, method="percentile", rng=...)`` at the level
    :func:`expanded_level` (``expand=True``, Hesterberg's small-sample correction) or at
    ``confidence`` itself (``expand=False``). The module docstring gives the measured coverage.
    Deterministic for a given ``seed``; never warns.

    Args:
        diffs: ``[n]`` finite per-seed differences ``arm - baseline``.
        confidence: nominal confidence level, in ``(0, 1)``.
        n_resamples: bootstrap resamples.
        seed: seed (or ``numpy.random.Generator``) for the resampling.
        expand: widen the percentile level for small ``n`` (recommended).

    Returns:
        ``(low, high)``; ``(nan, nan)`` for fewer than 2 differences; ``(d, d)`` when every
        difference equals ``d``.

    Raises:
        ValueError: ``diffs`` is not one-dimensional or holds a non-finite value; a bad option.

    Example:
        >>> paired_interval([0.02, 0.02, 0.02])
        (0.02, 0.02)
        >>> low, high = paired_interval([0.01, 0.03, 0.02, 0.05, 0.04], seed=0)
        >>> 0.01 <= low < 0.03 < high <= 0.05
        True
    """
    d = np.asarray(diffs, dtype=float)
    if d.ndim != 1:
        raise ValueError(f"diffs must be one-dimensional [n], got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("diffs must be finite; drop NaN/inf differences before calling paired_interval")
    confidence = check_range("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    n_resamples = check_int("n_resamples", n_resamples, low=1)
    rng = as_generator(seed)
    if d.size < 2:
        return (math.nan, math.nan)
    if np.all(d == d[0]):
        return (float(d[0]), float(d[0]))
    level = expanded_level(confidence, d.size) if expand else confidence
    with warnings.catch_warnings():
        # Percentile intervals do not warn today; keep scipy's degenerate-data notices from users anyway.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (d,),
            np.mean,
            n_resamples=n_resamples,
            confidence_level=level,
            method="percentile",
            vectorized=True,
            rng=rng,
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    # Resampled means lie in [min, max]; clamp away the last-bit rounding of np.mean.
    return (max(low, float(d.min())), min(high, float(d.max())))


def paired_t_interval(
    diffs: Any, *, confidence: float = 0.95, axis: int = -1
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Student-t interval of the mean of paired differences: ``mean ± t_{n-1, 1-α/2} · sd / sqrt(n)``.

    With ``α = 1 - confidence``. Exact for normally distributed differences; the module docstring
    gives its measured coverage on skewed ones. NaN values are missing and dropped.

    Args:
        diffs: ``[..., n, ...]`` per-seed differences ``arm - baseline``; NaN marks a missing seed.
        confidence: confidence level, in ``(0, 1)``.
        axis: the axis that holds the seeds.

    Returns:
        ``(low, high)``, floats for one-dimensional input, else arrays of the other dimensions;
        NaN for fewer than 2 values; ``(d, d)`` when every value equals ``d``.

    Raises:
        ValueError: a bad option, or ``±inf`` in ``diffs``.

    Example:
        >>> paired_t_interval([0.02, 0.02, 0.02])
        (0.02, 0.02)
        >>> low, high = paired_t_interval([[1.0, 2.0, 3.0], [1.0, 1.0, float("nan")]])
        >>> low.round(3).tolist(), high.round(3).tolist()
        ([-0.484, 1.0], [4.484, 1.0])
    """
    confidence = check_range("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    n, mean, sd = moments(as_values(diffs), axis=axis)
    with np.errstate(invalid="ignore"):
        half = stats.t.ppf(0.5 + confidence / 2.0, np.maximum(n - 1, 1)) * sd / np.sqrt(np.maximum(n, 1))
    half = np.where(n >= 2, np.where(sd == 0, 0.0, half), np.nan)
    return out(mean - half), out(mean + half)
