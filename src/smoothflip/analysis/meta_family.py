r"""Verdicts for a family of pooled effects, and the paired probability of improvement across studies.

:func:`pooled_verdicts` reads a family of :class:`~smoothflip.analysis.meta.MetaResult` (one per
arm x condition, on one metric) the way :func:`~smoothflip.analysis.family_verdicts` reads a
study's cells, with the same words and the same corrections
(:mod:`smoothflip.analysis.multiplicity`):

- each pooled key carries ``H0: μ = 0`` (rejecting it claims helps / hurts) and, with a margin,
  ``H0_eq: |μ| >= margin`` (rejecting it claims equivalent; two one-sided tests);
- ``"holm"`` (the primary metric): Holm's step-down over the ``2m`` p-values with Shaffer's bound
  ``max_true = m`` — one family-wise error rate ``alpha`` covers every helps, hurts and equivalent
  claim; ``"bh"`` (secondary metrics): Benjamini-Hochberg over the same; ``"none"``: per key;
- words: *helps* / *hurts* (``μ = 0`` rejected; the sign and the metric's direction say which),
  *equivalent* (``|μ| >= margin`` rejected), *inconclusive* (neither), *no verdict* (fewer than
  ``min_k`` studies; not tested and not counted in ``m``).

**Which test.** A claim needs **two** tests to agree (its p-value is the larger of the two):

1. the random-effects test with the *modified* HKSJ standard error (``q ← max(q, 1)``, t on
   ``k - 1`` df; never narrower than HKSJ), and
2. the unweighted test across studies: a one-sample t-test of the ``k`` study effects (t on
   ``k - 1`` df), which does not use the studies' variances at all.

Why: a smoothflip study's variance ``s² / n`` comes from a handful of seeds, and inverse-variance
weights built from it are noisy. Simulated atlases (15 keys, Holm; studies whose seed noise differs
up to tenfold; 300-400 atlases per setting, ``benchmarks/meta_error.py``) gave these family-wise
error rates of false helps / hurts. A/A atlases (3-10 studies, 2-10 seeds): the modified-HKSJ test
alone 13-36% with 5-10 studies of 2-3 seeds (at most 6% at 5-10 seeds), the unweighted test alone at
most 2.5%, both together at most 0.8%. The random-effects null (true effects that differ between
studies around 0, sd 0.5; 5 or 10 studies, 3-10 seeds): modified HKSJ alone up to 17% (8-10% with 10
studies even at 5-10 seeds), the unweighted test at most 4.3%, both at most 1.3%. The estimate and
its 95% interval stay REML + HKSJ; the interval a verdict is read from (``simultaneous_*``) is the
hull of the two tests' intervals at ``1 - alpha / m`` and contains the HKSJ one, so a claim is never
made while the HKSJ interval at that level holds 0.

The **pooled MDE** (:func:`pooled_mde`) is the MDE of that rule: the true effect at which *both*
tests reject (in the same direction) with probability ``power``, at Holm's first level ``alpha / m``.
It is computed under the fitted random-effects model, ``y_i ~ N(μ, v_i + τ̂²)`` with ``τ̂²`` and the
weights held at their estimates (as power analyses of meta-analyses do, Hedges & Pigott 2001), from
:data:`MDE_DRAWS` fixed-seed normal draws: deterministic, about a millisecond per key. The two tests are
correlated but not nested, so the rule's MDE is at least the larger of the two tests' own MDEs under
that model, often well above it (``tests/test_meta_family.py`` checks by simulation that the rule
detects an effect of the reported size with the stated power). Each test's own MDE (noncentral t with
``k - 1`` df at its standard error) stays available as :meth:`PooledTest.mde`.

:func:`paired_probability_of_improvement` is the rliable-style view (Agarwal et al. 2021) made
paired: per study, the fraction of its seeds on which the arm beats the baseline (ties count one
half), averaged over studies with equal weight; its interval is a **stratified bootstrap** over
seeds within each study. The studies are fixed, so it is conditional on *these* tasks; it says
nothing about a task not in the set (the pooled estimate's prediction interval does).

Example:
    >>> from smoothflip.analysis.meta import random_effects
    >>> from smoothflip.analysis.meta_family import pooled_verdicts
    >>> fits = [random_effects([0.02, 0.03, 0.025, 0.022], [1e-5] * 4),
    ...         random_effects([0.001, -0.001, 0.0, 0.0005], [1e-6] * 4)]
    >>> pooled_verdicts(fits, higher_is_better=True, margin=0.005).verdict.tolist()
    ['helps', 'equivalent']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import optimize, stats

from smoothflip._validation import check_choice, check_int, check_range
from smoothflip.analysis.meta import MetaResult, random_effects
from smoothflip.analysis.multiplicity import CORRECTIONS, read_family
from smoothflip.analysis.power import mde_in_sd
from smoothflip.analysis.verdicts import tost_p_value

__all__ = [
    "MDE_DRAWS",
    "PooledTest",
    "PooledVerdicts",
    "ProbabilityOfImprovement",
    "paired_probability_of_improvement",
    "pooled_mde",
    "pooled_tests",
    "pooled_verdicts",
]

#: Fixed-seed normal draws behind a pooled MDE (:func:`pooled_mde`): its Monte-Carlo error is about
#: 0.3-0.6% of the MDE.
MDE_DRAWS = 10_000


@dataclass(frozen=True)
class PooledTest:
    """One test of a pooled effect: ``estimate`` over ``se`` on a t with ``df`` (``inf``: normal).

    Attributes:
        name: ``"modified HKSJ"`` or ``"unweighted t"``.
        estimate: the effect it tests.
        se: its standard error.
        df: degrees of freedom.
    """

    name: str
    estimate: float
    se: float
    df: float

    def p_value(self) -> float:
        """Two-sided p-value of ``μ = 0``."""
        if self.se == 0:
            return 0.0 if self.estimate != 0 else 1.0
        return min(1.0, 2.0 * _sf(abs(self.estimate) / self.se, self.df))

    def p_equivalence(self, margin: float) -> float:
        """TOST p-value of ``|μ| >= margin`` (:func:`~smoothflip.analysis.verdicts.tost_p_value`)."""
        return tost_p_value(self.estimate, self.se, self.df, margin)

    def interval(self, level: float) -> tuple[float, float]:
        """Two-sided interval at ``level``."""
        q = 0.5 + level / 2.0
        half = float(stats.norm.ppf(q) if math.isinf(self.df) else stats.t.ppf(q, self.df)) * self.se
        return (self.estimate - half, self.estimate + half)

    def mde(self, level: float, power: float) -> float:
        """The true effect the two-sided test at ``level`` detects with probability ``power``."""
        if self.se == 0:
            return 0.0
        return _mde_in_se(self.df, level, power) * self.se


def _sf(x: float, df: float) -> float:
    return float(stats.norm.sf(x) if math.isinf(df) else stats.t.sf(x, df))


@lru_cache(maxsize=4096)
def _mde_in_se(df: float, level: float, power: float) -> float:
    """The MDE in standard errors: noncentral t with ``df`` (normal for ``inf``)."""
    if math.isinf(df):
        c = float(stats.norm.ppf(1.0 - level / 2.0))

        def gap(effect: float) -> float:
            return float(stats.norm.sf(c - effect) + stats.norm.cdf(-c - effect)) - power

        high = 1.0
        while gap(high) < 0:
            high *= 2.0
        return float(optimize.brentq(gap, 0.0, high, xtol=1e-12))
    k = df + 1.0
    critical = float(stats.t.ppf(1.0 - level / 2.0, df))
    return float(mde_in_sd(k, critical, power=power)) * math.sqrt(k)


@lru_cache(maxsize=64)
def _draws(k: int, draws: int) -> np.ndarray:
    """``[draws, k]`` standard normal draws from a fixed seed (shared, read-only)."""
    z = np.random.default_rng(0).standard_normal((draws, k))
    z.flags.writeable = False
    return z


def pooled_mde(result: MetaResult, level: float, power: float, *, draws: int = MDE_DRAWS) -> float:
    """The MDE of the pooled rule: the true effect at which both :func:`pooled_tests` reject.

    Under the fitted random-effects model ``y_i = μ + e_i``, ``e_i ~ N(0, v_i + τ̂²)`` (``τ̂²`` and the
    weights ``w_i = 1 / (v_i + τ̂²)`` held at their estimates), the modified-HKSJ statistic is
    ``(μ + ē_w) / SE_1`` with ``SE_1 = sqrt(max(q, 1) / Σw)`` and the unweighted one ``(μ + ē) / SE_2``
    with ``SE_2 = s_e / sqrt(k)``; the residual parts do not depend on ``μ``. So each of ``draws``
    fixed-seed draws of ``e`` gives the smallest ``μ`` at which both reject upward (and the largest at
    which both reject downward), and the power ``P(both reject, same sign)`` is a step function of
    ``μ``: the MDE is the smallest ``μ >= 0`` where it reaches ``power``. Both tests two-sided at
    ``level``, t on ``k - 1`` df.

    Args:
        result: the pooled effect (``k >= 2``).
        level: each test's two-sided level (``alpha / m`` in a Holm family).
        power: the power wanted, in ``(0, 1)``.
        draws: Monte-Carlo draws (fixed seed: the same inputs give the same MDE).

    Returns:
        The MDE in the effects' units.

    Example:
        >>> from smoothflip.analysis.meta import random_effects
        >>> r = random_effects([0.012, 0.02, 0.017, 0.01, 0.03], [1e-5, 1e-5, 1e-5, 2e-4, 2e-4])
        >>> round(pooled_mde(r, 0.05, 0.8), 4), [round(t.mde(0.05, 0.8), 4) for t in pooled_tests(r)]
        (0.0159, [0.0083, 0.0133])
    """
    if result.k < 2:
        raise ValueError(f"a pooled MDE needs at least 2 studies, got k = {result.k}")
    v = np.asarray(result.v, dtype=float)
    k = v.size
    tau2 = result.tau2 if math.isfinite(result.tau2) else 0.0
    w = 1.0 / (v + tau2)
    e = _draws(k, draws) * np.sqrt(v + tau2)
    weighted = e @ w / w.sum()
    q = ((e - weighted[:, None]) ** 2) @ w / (k - 1)
    se1 = np.sqrt(np.maximum(q, 1.0) / w.sum())
    plain = e.mean(axis=1)
    se2 = e.std(axis=1, ddof=1) / math.sqrt(k)
    c = float(stats.t.ppf(1.0 - level / 2.0, k - 1))
    up = np.sort(np.maximum(c * se1 - weighted, c * se2 - plain))  # both reject upward iff μ > up
    down = np.sort(np.maximum(c * se1 + weighted, c * se2 + plain))  # both reject downward iff μ < -down
    # at μ = up[j]: the upward rejections of draws 0..j, and the downward ones with down < -μ
    reach = (np.arange(draws) + 1 + np.searchsorted(down, -up, side="left")) / draws
    reach[up < 0] = 0.0  # an MDE is >= 0
    hits = np.flatnonzero(reach >= power)
    return float(max(up[hits[0]], 0.0)) if hits.size else math.inf


def pooled_tests(result: MetaResult) -> tuple[PooledTest, PooledTest]:
    """The two tests a pooled claim must pass (module docstring): modified HKSJ and unweighted t.

    Example:
        >>> from smoothflip.analysis.meta import random_effects
        >>> r = random_effects([0.1, 0.3, 0.2], [0.01, 0.02, 0.01])
        >>> [(t.name, round(t.estimate, 3), t.df) for t in pooled_tests(r)]
        [('modified HKSJ', 0.18, 2.0), ('unweighted t', 0.2, 2.0)]
    """
    if result.k < 2:
        raise ValueError(f"a pooled test needs at least 2 studies, got k = {result.k}")
    modified = random_effects(
        result.y, result.v, method=result.requested, interval="hksj_modified", level=result.level
    )
    y = np.asarray(result.y, dtype=float)
    shifted = y - y[0]  # an exact 0 sd when every study agrees
    sd = float(np.std(shifted, ddof=1))
    return (
        PooledTest("modified HKSJ", modified.estimate, modified.se, modified.df),
        PooledTest("unweighted t", float(y.mean()), sd / math.sqrt(y.size), float(y.size - 1)),
    )


@dataclass(frozen=True)
class PooledVerdicts:
    """Verdicts of a family of pooled effects; arrays ``[m]`` in input order.

    Attributes:
        verdict: helps / hurts / equivalent / inconclusive / no verdict.
        p_value: raw p-value of ``μ = 0`` (the larger of the two tests'; NaN if untested).
        p_adjusted: after the correction.
        p_equivalence: raw TOST p-value of ``|μ| >= margin`` (NaN without a margin or untested).
        p_equivalence_adjusted: after the correction.
        simultaneous_low: lower end of the interval the verdict is read from: the hull of the two
            tests' intervals at ``1 - alpha / m`` (Bonferroni).
        simultaneous_high: its upper end.
        mde: pooled minimum detectable effect at ``mde_level`` and ``power``: of the rule (both tests
            must reject; :func:`pooled_mde`), not of either test alone.
        mde_level: ``alpha / m`` (Holm's first step, BH's strictest) or ``alpha`` without correction.
        alpha: the error rate controlled.
        correction: ``"holm"``, ``"bh"`` or ``"none"``.
        power: the MDE's power.
    """

    verdict: np.ndarray
    p_value: np.ndarray
    p_adjusted: np.ndarray
    p_equivalence: np.ndarray
    p_equivalence_adjusted: np.ndarray
    simultaneous_low: np.ndarray
    simultaneous_high: np.ndarray
    mde: np.ndarray
    mde_level: float
    alpha: float
    correction: str
    power: float


def pooled_verdicts(
    results: Sequence[MetaResult],
    *,
    higher_is_better: bool | Sequence[bool],
    margin: float | None,
    alpha: float = 0.05,
    correction: str = "holm",
    min_k: int = 2,
    power: float = 0.8,
) -> PooledVerdicts:
    """Verdicts for a family of pooled effects with family-wise (or FDR) error control (module docstring).

    Args:
        results: one :class:`~smoothflip.analysis.meta.MetaResult` per key of the family.
        higher_is_better: the metric's direction (one bool, or one per result).
        margin: equivalence margin ``> 0`` in the effects' units, or None (no equivalence claims).
        alpha: family-wise error (Holm), false discovery rate (BH) or per-key level, in ``(0, 0.5)``.
        correction: ``"holm"``, ``"bh"`` or ``"none"``.
        min_k: results from fewer studies get "no verdict" and are not tested (at least 2).
        power: the power of the MDE, in ``(0, 1)``.

    Returns:
        A :class:`PooledVerdicts`.

    Raises:
        ValueError: no results, a bad option or margin.
    """
    results = list(results)
    if not results or not all(isinstance(r, MetaResult) for r in results):
        raise ValueError("results must be a non-empty sequence of MetaResult objects")
    alpha = check_range("alpha", alpha, low=0.0, high=0.5, low_open=True, high_open=True)
    check_choice("correction", correction, CORRECTIONS)
    min_k = check_int("min_k", min_k, low=2)
    power = check_range("power", power, low=0.0, high=1.0, low_open=True, high_open=True)
    if margin is not None:
        margin = check_range("margin", margin, low=0.0, low_open=True)
    size = len(results)
    better_up = np.broadcast_to(np.asarray(higher_is_better, dtype=bool), (size,))
    tested = np.array([r.k >= min_k for r in results])
    m = max(int(tested.sum()), 1)
    tests = [pooled_tests(r) if t else None for r, t in zip(results, tested, strict=True)]
    nan = math.nan
    p0 = np.array([max(t.p_value() for t in pair) if pair else nan for pair in tests])
    p_eq = np.full(size, nan)
    if margin is not None:
        p_eq = np.array([max(t.p_equivalence(margin) for t in pair) if pair else nan for pair in tests])
    # both tests must point the same way (they always do once both reject 0, unless they disagree)
    sign = np.array([_common_sign(pair) for pair in tests])
    read = read_family(p0, p_eq, sign, tested, higher_is_better=better_up, alpha=alpha, correction=correction)
    mde_level = alpha / m if correction != "none" else alpha
    hulls = [_hull(pair, 1.0 - alpha / m) for pair in tests]
    mde = [pooled_mde(r, mde_level, power) if t else math.inf for r, t in zip(results, tested, strict=True)]
    return PooledVerdicts(
        verdict=read.verdict,
        p_value=p0,
        p_adjusted=read.p_adjusted,
        p_equivalence=p_eq,
        p_equivalence_adjusted=read.p_equivalence_adjusted,
        simultaneous_low=np.array([h[0] for h in hulls]),
        simultaneous_high=np.array([h[1] for h in hulls]),
        mde=np.array(mde),
        mde_level=mde_level,
        alpha=alpha,
        correction=correction,
        power=power,
    )


def _common_sign(pair: tuple[PooledTest, ...] | None) -> float:
    if not pair:
        return 0.0
    signs = {float(np.sign(t.estimate)) for t in pair}
    return signs.pop() if len(signs) == 1 else 0.0


def _hull(pair: tuple[PooledTest, ...] | None, level: float) -> tuple[float, float]:
    if not pair:
        return (math.nan, math.nan)
    ends = [t.interval(level) for t in pair]
    return (min(e[0] for e in ends), max(e[1] for e in ends))


@dataclass(frozen=True)
class ProbabilityOfImprovement:
    """The paired probability of improvement over studies and seeds.

    See :func:`paired_probability_of_improvement`.

    Attributes:
        estimate: mean over studies of each study's fraction of seeds where the arm is better.
        low: lower end of the stratified-bootstrap percentile interval.
        high: upper end.
        studies: studies with at least one paired seed.
        pairs: (study, seed) pairs.
        level: the interval's level.
    """

    estimate: float
    low: float
    high: float
    studies: int
    pairs: int
    level: float


def paired_probability_of_improvement(
    diffs_per_study: Sequence[Any],
    *,
    higher_is_better: bool,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> ProbabilityOfImprovement:
    """P(arm beats baseline on a seed), per study then averaged; stratified bootstrap over seeds.

    Args:
        diffs_per_study: per study, its paired differences ``arm - baseline`` (one per seed; NaN
            dropped; a study without any is left out).
        higher_is_better: the metric's direction.
        level: the interval's level.
        n_resamples: bootstrap resamples (each resamples every study's seeds with replacement;
            the set of studies stays fixed: the interval is conditional on these tasks).
        seed: the bootstrap's seed.

    Example:
        >>> p = paired_probability_of_improvement([[0.1, 0.2, -0.1], [0.3, 0.1]], higher_is_better=True)
        >>> round(p.estimate, 3), p.studies, p.pairs
        (0.833, 2, 5)
    """
    level = check_range("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    n_resamples = check_int("n_resamples", n_resamples, low=1)
    seed = check_int("seed", seed, low=0)
    wins = []
    for d in diffs_per_study:
        x = np.asarray(d, dtype=float).reshape(-1)
        x = x[np.isfinite(x)]
        if x.size:
            better = x > 0 if higher_is_better else x < 0
            wins.append(better + 0.5 * (x == 0))
    if not wins:
        return ProbabilityOfImprovement(math.nan, math.nan, math.nan, 0, 0, level)
    estimate = float(np.mean([w.mean() for w in wins]))
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_resamples)
    for w in wins:
        picks = rng.integers(0, w.size, size=(n_resamples, w.size))
        boot += w[picks].mean(axis=1)
    boot /= len(wins)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return ProbabilityOfImprovement(
        estimate, float(low), float(high), len(wins), int(sum(w.size for w in wins)), level
    )
