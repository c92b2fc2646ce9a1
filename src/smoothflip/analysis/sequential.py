r"""Anytime-valid paired tests: the safe t-test e-process, its p-values and confidence sequences.

``--until-settled`` adds seeds in rounds to the cells whose verdict is still open and recomputes
every verdict after each round. A fixed-``n`` test looked at after every round is no longer a test
at its level: each look is another chance for noise to cross the line (measured below: FWER 5% at
one look, far more over a dozen). This module gives tests whose error rate holds *whatever* the
stopping rule, the number of looks and the number of seeds.

**Method: the safe t-test** (Grünwald, de Heide & Koolen 2024, "Safe testing", JRSS-B 86;
Pérez-Ortiz, Lardy, de Heide & Grünwald 2024, "E-statistics, group invariance and anytime-valid
testing", Ann. Statist. 52). The paired differences are i.i.d. ``N(μ, σ²)`` with ``σ`` unknown; the
null is ``μ = μ0``. Put a normal prior ``δ ~ N(0, g)`` on the standardized effect ``δ = (μ - μ0)/σ``
and the right-Haar prior ``1/σ`` on the scale. The resulting Bayes factor depends on the data only
through the t statistic of the first ``n`` differences (``ν = n - 1``):

    ``E_n = (1 + n g)^{-1/2} · [(1 + t²/ν) / (1 + t² / (ν (1 + n g)))]^{n/2}``

(Rouder et al. 2009, eq. 11 with a fixed ``g``; ``E_n = 1`` before two values, and
``E_n -> (1 + n g)^{(n-1)/2}`` as ``|t| -> inf``). Because the prior on the nuisance scale is the
right-Haar measure of the scale group, ``E_n`` is a nonnegative martingale with mean 1 under *every*
null distribution, whatever ``σ`` is (Pérez-Ortiz et al. 2024, Thm. 3 / §4.1), so Ville's
inequality gives

    ``P(sup_n E_n >= 1/a) <= a``   for every ``a`` in ``(0, 1)``.

Consequences used here:

- the **anytime-valid p-value** ``p_n = min(1, 1 / max_{k <= n} E_k)`` satisfies ``P(p_n <= a) <= a``
  at every ``n`` simultaneously — under *any* stopping rule, including rules that read other
  cells or other metrics. Every prefix of the seeds counts as a look for free (taking the maximum
  over more looks keeps the bound), so the seeds only need to come in a fixed order (the order of
  the seed list), not at planned looks;
- the p-values are valid marginally, so Holm across cells (:func:`smoothflip.analysis.holm`)
  controls the family-wise error rate under any dependence between cells (cells that share a
  baseline are dependent);
- inverting the test over ``μ0`` gives a **confidence sequence**: ``CS_n = {μ0 : E_n(μ0) < 1/a}``
  is the interval ``mean_n ± c_n(a) · sd_n / sqrt(n)`` with the closed-form critical value of
  :func:`sequential_critical_t`, and ``P(μ ∈ CS_n for every n) >= 1 - a``. The running
  intersection over prefixes is shown, and the equivalence test reads it: "equivalent within
  ``δ``" at level ``a`` is claimed when some prefix excludes ``+δ`` from above and some prefix
  excludes ``-δ`` from below, which is false only if the sequence missed the true mean
  (``P <= a`` whenever ``|μ| >= δ``).

**Validity conditions.** Differences i.i.d. normal within a cell, or at least close to symmetric
(measured below); seeds entered in a fixed order; the prior (``prior_sd = sqrt(g)``) fixed before
the data are seen. No maximum number of looks or seeds has to be planned; a budget can be raised
later. Any dependence between cells is allowed.

**Why not alpha spending.** A Lan-DeMets spending function (O'Brien-Fleming or Pocock shape) is
more powerful at its planned looks, but it needs the maximum information fixed in advance, and
its boundaries are derived for z statistics with known variance; with unknown variance at 3-10
seeds they are approximations, and the number of looks of a cell here is data dependent (a cell
stops when it settles). The e-process is exact at every ``n >= 2``, for any number of looks.
**Why not a max-statistic bootstrap** for the family: at 5 seeds a bootstrap distribution has at
most 126 distinct resampled means, too coarse for tail probabilities of ``0.05 / 20``.

**Choice of the prior.** ``prior_sd = 1`` (a standard normal prior on the standardized effect, the
unit-information choice). With ``m = 20`` cells at Bonferroni level ``0.0025``, power to detect a
1-sd effect (running maximum up to ``n`` seeds; 2000 simulations each) was, for prior sd 0.5 / 1 /
2: 0.4% / 2.5% / 4.8% at n = 10, 43% / 47% / 47% at n = 20, 85% / 85% / 84% at n = 30, and in the
until-settled loop below 81% / 84% / 81%. The largest attainable ``E_n`` is
``(1 + n g)^{(n-1)/2}``: with ``g = 1`` and ``1/a = 400`` (20 cells at 0.05) no claim is possible
before 7 seeds, however clear the data.

**Measured** (20 cells, Holm at 0.05, normal differences unless said; an A/A study has no effect
in any cell; 10 000 simulated studies for one look, 4000 for the loop; the loop starts at 5 seeds
and adds 5 to every inconclusive cell per round, margin 0.5 sd):

=====================================================  ==================  ====================
family-wise rate of false helps/hurts                  fixed t-test        safe t-test
=====================================================  ==================  ====================
A/A, one look at n = 3 / 5 / 10 / 30                   5.3 / 4.9 / 5.0 /   0 / 0 / 0.3 / 1.3%
                                                       4.6%
A/A, no correction, one look (any n)                   64%                 —
A/A, loop up to 30 seeds                               19.9% (naive)       1.5%
A/A, loop up to 50 seeds (5 or 1 per round)            25.6% / 38.8%       2.0% / 2.0%
A/A, cells sharing a baseline, loop up to 50           21.8%               1.8%
false "equivalent" at μ = ±margin, n = 10 / 30 / 50    0.5 / 2.3 / 5.0%    0 / 0.1 / 0.9%
=====================================================  ==================  ====================

Power (fraction of 5 cells with a planted effect called "helps"; 15 null cells beside them; 2000
studies) and the seeds it took:

==========  ================================  ===============================  =========================
effect      fixed design at n = 10 / 20 / 30  safe t-test, all prefixes to     loop up to 30 seeds:
                                              n = 10 / 20 / 30                 power (mean seeds used)
==========  ================================  ===============================  =========================
1.0 sd      27% / 81% / 98%                   3% / 46% / 84%                   84% (23.2)
1.5 sd      70% / 99.7% / 100%                16% / 94% / 100%                 100% (16.1)
2.0 sd      95% / 100% / 100%                 45% / 99.9% / 100%               100% (12.9)
3.0 sd      100% (58% at n = 5)               93% / 100% / 100%                100% (10.3)
==========  ================================  ===============================  =========================

So at a fixed number of seeds the anytime-valid test needs about 1.5 times the seeds of the fixed
t-test for the same power (80% at 1 sd: 20 seeds fixed, 30 sequential) — the price of being
allowed to look after every round. In the loop it stops early on clear effects: an effect of 2 sd
settles after 13 seeds on average. Cells without an effect settle only as "equivalent", which at a
margin of 0.5 sd takes more than 50 seeds, so they spend the whole budget (30.0 seeds of 30).

**Beyond normality** (A/A, one look at n = 5 / 10 / 30, fixed / sequential): symmetric heavy tails
are conservative (Laplace, the difference of two exponentials: 2.1 / 1.9 / 3.4% and 0 / 0.03 /
0.5%; t with 3 df: 3.0 / 2.5 / 3.1% and 0 / 0.1 / 0.7%). Skewed differences with a zero mean are
not: skewness 0.5 gives 5.2 / 6.0 / 6.0% and 0 / 0.2 / 2.7%, skewness 1 gives 10 / 13 / 9.7% and
0 / 1.3 / 8.1%, skewness 2 (exponential) 37 / 39 / 25% and 0 / 13 / 37% (the loop up to 50: 42%);
the tails at ``0.05 / 20`` are where the t statistic of skewed data is furthest from Student's.
Differences between an arm and a baseline that behave alike are symmetric (the pair is
exchangeable), so this matters only when the arms differ in shape but not in mean (an arm that
sometimes fails and otherwise does better).

Example:
    >>> import numpy as np
    >>> from smoothflip.analysis import anytime_p_value, confidence_sequence, t_e_process
    >>> d = np.array([1.2, 0.8, 1.9, 1.1, 0.7, 1.5, 1.3, 0.9])
    >>> t_e_process(d).round(1).tolist()
    [1.0, 1.6, 2.6, 5.9, 11.1, 30.4, 94.0, 249.0]
    >>> round(anytime_p_value(d), 5)
    0.00402
    >>> low, high = confidence_sequence(d)
    >>> round(low, 3), round(high, 3)
    (0.581, 1.769)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from smoothflip._validation import check_number, check_range
from smoothflip.analysis._arrays import as_values, out, ratio
from smoothflip.analysis.power import _check_n, _check_sd, mde_in_sd

__all__ = [
    "DEFAULT_PRIOR_SD",
    "anytime_p_value",
    "confidence_sequence",
    "sequential_critical_t",
    "sequential_minimum_detectable_effect",
    "t_e_process",
]

#: Default sd of the normal prior on the standardized effect ``δ = μ / σ`` (``g = 1``).
DEFAULT_PRIOR_SD = 1.0


def _check_prior(prior_sd: Any) -> float:
    return check_range("prior_sd", prior_sd, low=0.0, low_open=True)


def log_e_value(t2: Any, n: Any, g: float) -> np.ndarray:
    """``log E_n`` of the module docstring from ``t²`` and ``n`` (vectorized; 0 for ``n < 2``)."""
    t2, n = np.broadcast_arrays(np.asarray(t2, dtype=float), np.asarray(n, dtype=float))
    nu = np.maximum(n - 1.0, 1.0)
    spread = np.log1p(n * g)
    with np.errstate(invalid="ignore", divide="ignore"):
        finite = 0.5 * n * (np.log1p(t2 / nu) - np.log1p(t2 / (nu * (1.0 + n * g))))
    body = np.where(np.isinf(t2), 0.5 * n * spread, finite)
    return np.where(n >= 2, body - 0.5 * spread, 0.0)


def critical_t_squared(n: Any, log_threshold: Any, g: float) -> np.ndarray:
    """``t²`` at which ``log E_n`` reaches ``log_threshold`` (``inf`` when it cannot; ``n >= 2``)."""
    n, log_threshold = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(log_threshold, float))
    spread = 1.0 + n * g
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = np.exp(2.0 / n * (log_threshold + 0.5 * np.log(spread)))
        x = (r - 1.0) / (1.0 - r / spread)
    x = np.where(r >= spread, math.inf, np.maximum(x, 0.0))
    return np.where(n >= 2, np.maximum(n - 1.0, 1.0) * x, math.inf)


@dataclass(frozen=True)
class Prefixes:
    """Statistics of every prefix of the seeds (``[..., N]``): count, mean and standard error."""

    k: np.ndarray
    mean: np.ndarray
    se: np.ndarray


def prefixes(x: np.ndarray) -> Prefixes:
    """:class:`Prefixes` of ``x`` along its last axis; NaN entries are skipped (missing seeds).

    No values at all count as one missing value (a single prefix of count 0).
    """
    if x.shape[-1] == 0:
        x = np.full((*x.shape[:-1], 1), np.nan)
    finite = np.isfinite(x)
    first = np.take_along_axis(x, np.argmax(finite, axis=-1)[..., None], axis=-1)
    first = np.where(np.isfinite(first), first, 0.0)
    y = np.where(finite, x - first, 0.0)  # shifted: equal values give exactly zero variance
    k = np.cumsum(finite, axis=-1).astype(float)
    s1 = np.cumsum(y, axis=-1)
    s2 = np.cumsum(y * y, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_y = s1 / k
        var = np.maximum(s2 - s1 * mean_y, 0.0) / (k - 1.0)
        se = np.sqrt(var / k)
    mean = np.where(k > 0, mean_y + first, np.nan)
    return Prefixes(k=k, mean=mean, se=np.where(k >= 2, se, np.nan))


def prefix_log_e(p: Prefixes, null: Any, g: float) -> np.ndarray:
    """``log E`` of ``H0: μ = null`` at every prefix (0 before two values)."""
    t = ratio(p.mean - np.asarray(null, dtype=float), p.se)
    return np.where(p.k >= 2, log_e_value(np.where(p.k >= 2, t * t, 0.0), p.k, g), 0.0)


def prefix_interval(p: Prefixes, level: Any, g: float) -> tuple[np.ndarray, np.ndarray]:
    """Running intersection of the level-``level`` confidence sequence over the prefixes.

    ``level`` broadcasts against the leading axes (one level per slice). An empty intersection
    (probability ``<= 1 - level`` under the model) falls back to the last prefix's interval.
    """
    a = np.asarray(level, dtype=float)[..., None]
    c = np.sqrt(critical_t_squared(p.k, np.log(1.0 / (1.0 - a)), g))
    with np.errstate(invalid="ignore"):
        half = np.where(np.isinf(c), math.inf, np.where(p.se == 0, 0.0, c * p.se))
    valid = (p.k >= 2) & np.isfinite(p.mean)
    low = np.where(valid, p.mean - half, -math.inf)
    high = np.where(valid, p.mean + half, math.inf)
    run_low, run_high = low.max(axis=-1), high.min(axis=-1)
    empty = run_low > run_high
    return np.where(empty, low[..., -1], run_low), np.where(empty, high[..., -1], run_high)


def t_e_process(
    diffs: Any, *, null: float = 0.0, prior_sd: float = DEFAULT_PRIOR_SD, axis: int = -1
) -> np.ndarray:
    """The safe t-test e-process ``E_1, ..., E_n`` of ``H0: μ = null`` over the prefixes of ``diffs``.

    Args:
        diffs: ``[..., n, ...]`` per-seed differences **in seed order**; NaN marks a missing seed
            (the e-value then repeats).
        null: the mean under ``H0``.
        prior_sd: sd of the normal prior on the standardized effect (``g = prior_sd²``).
        axis: the axis that holds the seeds.

    Returns:
        ``E_k`` for every prefix, the shape of ``diffs`` (1 before two values).

    Raises:
        ValueError: ``±inf`` in ``diffs``; a bad option.

    Example:
        >>> t_e_process([0.0, 0.0, 0.0]).round(4).tolist()     # no evidence against H0
        [1.0, 0.5774, 0.5]
    """
    null = check_number("null", null)
    g = _check_prior(prior_sd) ** 2
    x = np.moveaxis(as_values(diffs), axis, -1)
    e = np.exp(prefix_log_e(prefixes(x), null, g))[..., : x.shape[-1]]
    return np.moveaxis(e, -1, axis)


def anytime_p_value(
    diffs: Any, *, null: float = 0.0, prior_sd: float = DEFAULT_PRIOR_SD, axis: int = -1
) -> Any:
    """Anytime-valid p-value ``min(1, 1 / max_k E_k)`` of ``H0: μ = null`` (two-sided).

    Valid at every ``n`` and under any stopping rule: ``P(p <= a) <= a`` (Ville's inequality).

    Args:
        diffs: ``[..., n, ...]`` per-seed differences in seed order; NaN marks a missing seed.
        null: the mean under ``H0``.
        prior_sd: sd of the normal prior on the standardized effect.
        axis: the axis that holds the seeds.

    Returns:
        The p-value (float for one-dimensional input, else an array of the other axes).

    Example:
        >>> anytime_p_value([0.3, -0.2, 0.1, 0.0, -0.1])
        1.0
    """
    null = check_number("null", null)
    g = _check_prior(prior_sd) ** 2
    x = np.moveaxis(as_values(diffs), axis, -1)
    best = prefix_log_e(prefixes(x), null, g).max(axis=-1, initial=0.0)
    return out(np.exp(-best))


def confidence_sequence(
    diffs: Any, *, confidence: float = 0.95, prior_sd: float = DEFAULT_PRIOR_SD, axis: int = -1
) -> tuple[Any, Any]:
    """Anytime-valid confidence interval of the mean: the running intersection of the sequence.

    ``P(μ in the interval at every n) >= confidence`` for i.i.d. normal differences. The interval
    is ``(-inf, inf)`` until the e-process can reach ``1 / (1 - confidence)`` at all.

    Args:
        diffs: ``[..., n, ...]`` per-seed differences in seed order; NaN marks a missing seed.
        confidence: coverage, in ``(0, 1)``.
        prior_sd: sd of the normal prior on the standardized effect.
        axis: the axis that holds the seeds.

    Returns:
        ``(low, high)``, floats for one-dimensional input, else arrays of the other axes.

    Example:
        >>> confidence_sequence([1.0, 2.0, 3.0])       # 3 seeds cannot reach E = 20
        (-inf, inf)
        >>> confidence_sequence([0.5] * 8)
        (0.5, 0.5)
    """
    confidence = check_range("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    g = _check_prior(prior_sd) ** 2
    x = np.moveaxis(as_values(diffs), axis, -1)
    low, high = prefix_interval(prefixes(x), confidence, g)
    return out(low), out(high)


def sequential_critical_t(n: Any, *, alpha: float = 0.05, prior_sd: float = DEFAULT_PRIOR_SD) -> Any:
    """``|t|`` at which the safe t-test's ``E_n`` reaches ``1 / alpha`` at ``n`` seeds (closed form).

    Solving ``E_n = 1/α`` for ``x = t²/ν``: with ``r = exp((2/n)(log(1/α) + log(1 + n g)/2))``,
    ``x = (r - 1) / (1 - r / (1 + n g))``, and ``inf`` when ``r >= 1 + n g`` (no data reach it).

    Example:
        >>> [round(sequential_critical_t(n, alpha=0.05), 2) for n in (3, 5, 10, 30)]
        [inf, 8.45, 3.87, 3.35]
    """
    alpha = check_range("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    g = _check_prior(prior_sd) ** 2
    k = _check_n(n)
    return out(np.sqrt(critical_t_squared(k, math.log(1.0 / alpha), g)))


def sequential_minimum_detectable_effect(
    n: Any, sd: Any, *, alpha: float = 0.05, power: float = 0.8, prior_sd: float = DEFAULT_PRIOR_SD
) -> Any:
    """Mean difference the safe t-test detects with the given power at ``n`` seeds (one look).

    The power of ``|t_n| >= sequential_critical_t(n)`` on the noncentral t; a study that also looked
    at earlier prefixes has at least this power, so the value is conservative. ``inf`` while no
    data can reach ``1 / alpha``.

    Example:
        >>> round(sequential_minimum_detectable_effect(10, 1.0, alpha=0.05), 2)
        1.55
        >>> sequential_minimum_detectable_effect(5, 1.0, alpha=0.05 / 20)
        inf
    """
    alpha = check_range("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    power = check_range("power", power, low=0.0, high=1.0, low_open=True, high_open=True)
    g = _check_prior(prior_sd) ** 2
    k = _check_n(n)
    s = _check_sd(sd)
    critical = np.sqrt(critical_t_squared(k, math.log(1.0 / alpha), g))
    in_sd = mde_in_sd(k, critical, power=power)
    with np.errstate(invalid="ignore"):
        result = np.where(s == 0, np.where(np.isfinite(critical), 0.0, math.inf), in_sd * s)
    return out(np.asarray(result))
