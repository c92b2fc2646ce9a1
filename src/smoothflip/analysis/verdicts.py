r"""Verdicts for a family of cells: helps / hurts / equivalent / inconclusive, with error control.

A *cell* is one arm against its baseline under one label condition, on one metric; its evidence is
the per-seed differences ``arm - baseline``. A *family* is the set of cells whose verdicts are read
together — for the primary metric, every arm × condition of a study. :func:`family_verdicts` takes
the differences of every cell and gives each cell one word:

- **helps** / **hurts**: the corrected test rejects ``μ = 0``; the sign of the mean difference and
  the metric's direction say which;
- **equivalent**: the corrected equivalence test rejects ``|μ| >= margin`` (the arm is within the
  practical margin of the baseline); a cell that also rejects ``μ = 0`` gets helps / hurts, with
  ``equivalent`` still set (a real but practically small difference);
- **inconclusive**: neither — more seeds are needed (see ``mde``: the effect the cell could detect);
- **no verdict**: fewer than ``min_n`` differences; such a cell is not tested and not counted in
  the family.

**The tests.** ``design="fixed"``: the paired t-test (two-sided p-value) and TOST
(:mod:`smoothflip.analysis.paired`), exact under normal differences and the most powerful tests
there are at 3-10 seeds; the interval shown is the t interval, which agrees with the test.
``design="sequential"``: the safe t-test e-process (:mod:`smoothflip.analysis.sequential`), whose
p-values and confidence sequences stay valid when seeds are added and the verdicts recomputed
after every round; the interval shown is the confidence sequence. Both assume differences that are
close to normal, or at least symmetric: symmetric heavy tails make them conservative, skewness
with a zero mean makes them anti-conservative at corrected levels (measured in
:mod:`smoothflip.analysis.sequential`: A/A family-wise rate 5-6% at skewness 0.5, 10-13% at 1).

**Multiplicity** (``correction``). Each cell carries two hypotheses, ``H0: μ = 0`` (rejecting it
claims helps / hurts) and ``H0_eq: |μ| >= margin`` (rejecting it claims equivalent). They cannot
both be true (``margin > 0``), so of the ``2m`` hypotheses of ``m`` tested cells at most ``m`` are
true, and both kinds of claim are corrected together:

- ``"holm"`` (the primary metric): Holm's step-down over the ``2m`` p-values with Shaffer's bound
  ``max_true = m`` (:func:`smoothflip.analysis.holm`): the divisor is ``min(m, 2m - i + 1)``. The
  probability of *any* false helps/hurts or equivalent claim in the family is ``<= alpha``, under
  any dependence between cells (cells sharing a baseline are positively dependent). Holm rather
  than a max-statistic bootstrap: it needs only valid per-cell p-values, works with different
  seeds per cell, and at 3-10 seeds a bootstrap cannot resolve tail probabilities of
  ``0.05 / 20``. Holm controls errors about ``μ = 0``; a rejection's direction is read from the
  sign (for independent t statistics this also bounds wrong-sign claims, Shaffer 1980), and in the
  sequential design the confidence sequence makes wrong-sign claims part of the same bound.
- ``"bh"`` (secondary metrics): Benjamini-Hochberg over the same ``2m`` p-values: the expected
  fraction of false claims among all claims is ``<= alpha`` (under independence or positive
  dependence).
- ``"none"``: each cell at level ``alpha`` (for one cell, or for exploration).

**Minimum detectable effect.** ``mde`` is the mean difference the cell's test would detect with
probability ``power`` at its current seeds and sd, at the level ``mde_level``: ``alpha / m`` for
Holm and BH (Holm's first, strictest step and Bonferroni's level — a cell reached later in the
step-down is tested at a larger level, so the MDE shown is conservative), ``alpha`` without a
correction. Fixed design: the noncentral t (:func:`smoothflip.analysis.minimum_detectable_effect`);
sequential: the same at the e-process's critical ``|t|``
(:func:`smoothflip.analysis.sequential_minimum_detectable_effect`; ``inf`` while no data can reach
the level).

**The until-settled loop.** :func:`cells_to_extend` says which cells get more seeds after a round
(inconclusive or "no verdict", below the per-cell cap and within the budget);
:func:`replay_until_settled` runs the whole loop on a table of differences already at hand (a
simulation, or a study replayed). Only ``design="sequential"`` keeps its error rate in this loop;
the module docstring of :mod:`smoothflip.analysis.sequential` and the tests give the numbers.

Example:
    >>> import numpy as np
    >>> from smoothflip.analysis import family_verdicts
    >>> diffs = [[0.021, 0.018, 0.025, 0.02, 0.023],      # clearly better
    ...          [0.001, -0.001, 0.0, 0.001, -0.001],     # within the margin
    ...          [0.01, -0.02, 0.03, -0.01, 0.0]]         # noisy
    >>> v = family_verdicts(diffs, higher_is_better=True, margin=0.005)
    >>> v.verdict.tolist()
    ['helps', 'equivalent', 'inconclusive']
    >>> v.p_adjusted.round(5).tolist()
    [0.00018, 1.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import stats

from smoothflip._validation import check_choice, check_int, check_range
from smoothflip.analysis import sequential as seq
from smoothflip.analysis._arrays import as_values, moments, ratio
from smoothflip.analysis.intervals import MIN_SEEDS
from smoothflip.analysis.multiplicity import CORRECTIONS, read_family
from smoothflip.analysis.paired import check_margin
from smoothflip.analysis.power import mde_in_sd

__all__ = [
    "CORRECTIONS",
    "DESIGNS",
    "FAMILY_VERDICTS",
    "CellVerdict",
    "FamilyVerdicts",
    "UntilSettled",
    "cells_to_extend",
    "family_verdicts",
    "replay_until_settled",
    "sequential_verdicts",
    "tost_p_value",
]

#: Every word :func:`family_verdicts` can give.
FAMILY_VERDICTS = ("helps", "hurts", "equivalent", "inconclusive", "no verdict")
#: The designs of :func:`family_verdicts`.
DESIGNS = ("fixed", "sequential")
_SETTLED = ("helps", "hurts", "equivalent")


@dataclass(frozen=True)
class CellVerdict:
    """One cell of a :class:`FamilyVerdicts` (the same fields, as scalars)."""

    verdict: str
    n: int
    mean_diff: float
    sd: float
    ci_low: float
    ci_high: float
    simultaneous_low: float
    simultaneous_high: float
    p_value: float
    p_adjusted: float
    p_equivalence: float
    p_equivalence_adjusted: float
    significant: bool
    equivalent: bool
    mde: float
    mde_level: float


@dataclass(frozen=True)
class FamilyVerdicts:
    """Verdicts of a family of cells: arrays of shape ``[..., m]`` (``m`` cells, leading batch axes).

    Attributes:
        verdict: one of :data:`FAMILY_VERDICTS` per cell.
        n: finite differences per cell.
        mean_diff: their mean (``arm - baseline``, raw units).
        sd: their sample sd.
        ci_low: lower end of the cell's interval at level ``1 - alpha`` (fixed: t interval;
            sequential: confidence sequence).
        ci_high: its upper end.
        simultaneous_low: lower end at ``1 - alpha / m`` (Bonferroni: all ``m`` cover at once with
            probability ``>= 1 - alpha``); when it excludes 0 the Holm verdict is helps / hurts.
        simultaneous_high: its upper end.
        p_value: raw two-sided p-value of ``μ = 0`` (sequential: anytime-valid); NaN if untested.
        p_adjusted: after the correction.
        p_equivalence: raw p-value of ``|μ| >= margin`` (NaN without a margin or if untested).
        p_equivalence_adjusted: after the correction.
        significant: ``p_adjusted <= alpha``.
        equivalent: ``p_equivalence_adjusted <= alpha``.
        mde: minimum detectable effect at ``n``, the sd and ``mde_level`` (raw units).
        mde_level: the level the MDE is computed at (``alpha / m`` for Holm and BH).
        alpha: the error rate controlled.
        margin: the equivalence margin (NaN: none).
        correction: one of :data:`CORRECTIONS`.
        design: one of :data:`DESIGNS`.
        power: the power the MDE is computed for.
    """

    verdict: np.ndarray
    n: np.ndarray
    mean_diff: np.ndarray
    sd: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    simultaneous_low: np.ndarray
    simultaneous_high: np.ndarray
    p_value: np.ndarray
    p_adjusted: np.ndarray
    p_equivalence: np.ndarray
    p_equivalence_adjusted: np.ndarray
    significant: np.ndarray
    equivalent: np.ndarray
    mde: np.ndarray
    mde_level: np.ndarray
    alpha: float
    margin: np.ndarray
    correction: str
    design: str
    power: float

    @property
    def settled(self) -> np.ndarray:
        """Cells whose verdict is helps, hurts or equivalent."""
        return np.isin(self.verdict, _SETTLED)

    def __len__(self) -> int:
        return int(self.verdict.shape[-1])

    def cell(self, index: int | tuple[int, ...]) -> CellVerdict:
        """The cell at ``index`` (an int for a single family, else a tuple over all axes)."""
        names = [f.name for f in fields(CellVerdict)]
        values = {name: getattr(self, name)[index] for name in names}
        if any(np.ndim(v) for v in values.values()):
            raise IndexError(f"index {index!r} must pick one cell of shape {self.verdict.shape}")
        return CellVerdict(**{k: v.item() if hasattr(v, "item") else v for k, v in values.items()})

    def cells(self) -> list[CellVerdict]:
        """Every cell of a single family (``verdict`` one-dimensional), in input order."""
        if self.verdict.ndim != 1:
            raise ValueError(f"cells() needs a single family (shape [m]), got shape {self.verdict.shape}")
        return [self.cell(i) for i in range(len(self))]


def stack_cells(diffs_per_cell: Any) -> np.ndarray:
    """``[..., m, n_max]`` float array from ragged per-cell sequences (NaN-padded) or an array."""
    if isinstance(diffs_per_cell, np.ndarray):
        x = as_values(diffs_per_cell, name="diffs_per_cell", min_ndim=2)
    elif isinstance(diffs_per_cell, Sequence) and not isinstance(diffs_per_cell, str):
        rows = [as_values(d, name="diffs_per_cell[i]", min_ndim=0) for d in diffs_per_cell]
        if any(r.ndim > 1 for r in rows):
            raise ValueError("diffs_per_cell must hold one-dimensional sequences (one per cell)")
        rows = [r.reshape(-1) for r in rows]
        width = max((r.size for r in rows), default=0)
        x = np.full((len(rows), width), np.nan)
        for i, r in enumerate(rows):
            x[i, : r.size] = r
    else:
        raise TypeError(
            f"diffs_per_cell must be a sequence of per-cell arrays or an array [..., m, n], "
            f"got {type(diffs_per_cell).__name__}"
        )
    if x.shape[-2] == 0:
        raise ValueError("diffs_per_cell must hold at least one cell")
    return x


def _t_interval(n: np.ndarray, mean: np.ndarray, sd: np.ndarray, level: Any) -> tuple[np.ndarray, ...]:
    with np.errstate(invalid="ignore", divide="ignore"):
        c = stats.t.ppf(0.5 + np.asarray(level) / 2.0, np.maximum(n - 1, 1))
        half = np.where(sd == 0, 0.0, c * sd / np.sqrt(n))
    half = np.where(n >= 2, half, np.nan)
    return mean - half, mean + half


_Tests = tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, ...], tuple[np.ndarray, ...]]


def _fixed(
    n: np.ndarray, mean: np.ndarray, sd: np.ndarray, delta: np.ndarray | None, alpha: float, sim_level: Any
) -> _Tests:
    """Raw p-values (difference, equivalence), the sign, and the two intervals of the fixed design."""
    with np.errstate(invalid="ignore", divide="ignore"):
        se = sd / np.sqrt(n)
    df = np.maximum(n - 1, 1)
    t0 = ratio(mean, se)
    p0 = np.minimum(1.0, 2.0 * stats.t.sf(np.abs(t0), df))
    p_eq = np.full(n.shape, np.nan)
    if delta is not None:
        p_low = stats.t.sf(ratio(mean + delta, se), df)
        p_up = stats.t.sf(-ratio(mean - delta, se), df)
        p_eq = np.maximum(p_low, p_up)
    ci = _t_interval(n, mean, sd, 1.0 - alpha)
    sim = _t_interval(n, mean, sd, sim_level)
    return p0, np.sign(mean), p_eq, ci, sim


def _sequential(
    x: np.ndarray,
    n: np.ndarray,
    mean: np.ndarray,
    delta: np.ndarray | None,
    alpha: float,
    sim_level: Any,
    g: float,
) -> _Tests:
    """The same from the safe t-test e-process over every prefix of the seeds."""
    pre = seq.prefixes(x)
    log_e0 = seq.prefix_log_e(pre, 0.0, g)
    best = log_e0.max(axis=-1, initial=0.0)
    p0 = np.exp(-best)
    at_best = np.take_along_axis(pre.mean, np.argmax(log_e0, axis=-1)[..., None], axis=-1)[..., 0]
    sign = np.where(best > 0, np.sign(at_best), np.sign(mean))
    p_eq = np.full(n.shape, np.nan)
    if delta is not None:
        d = np.broadcast_to(delta, n.shape)[..., None]
        up = np.where(pre.mean < d, seq.prefix_log_e(pre, d, g), -math.inf).max(axis=-1, initial=0.0)
        low = np.where(pre.mean > -d, seq.prefix_log_e(pre, -d, g), -math.inf).max(axis=-1, initial=0.0)
        p_eq = np.maximum(np.exp(-up), np.exp(-low))
    ci = seq.prefix_interval(pre, 1.0 - alpha, g)
    sim = seq.prefix_interval(pre, np.broadcast_to(sim_level, n.shape), g)
    return p0, sign, p_eq, ci, sim


def family_verdicts(
    diffs_per_cell: Any,
    *,
    higher_is_better: bool | Any,
    margin: Any,
    alpha: float = 0.05,
    correction: str = "holm",
    design: str = "fixed",
    min_n: int = MIN_SEEDS,
    power: float = 0.8,
    prior_sd: float = seq.DEFAULT_PRIOR_SD,
) -> FamilyVerdicts:
    """Verdicts for a family of cells with family-wise (or FDR) error control; see the module docstring.

    Args:
        diffs_per_cell: the per-seed differences ``arm - baseline`` of each cell: a sequence of
            ``m`` one-dimensional arrays (lengths may differ), or an array ``[..., m, n]`` with NaN
            for missing seeds (leading axes: independent families, e.g. simulated studies). For
            ``design="sequential"`` the seeds must be in the order they were run.
        higher_is_better: the metric's direction (a bool, or one per cell).
        margin: equivalence margin ``> 0`` in the metric's raw units (a number, or one per cell);
            ``None``: no equivalence claims.
        alpha: the family-wise error rate (Holm), false discovery rate (BH) or per-cell level
            (none), in ``(0, 0.5)``.
        correction: ``"holm"`` (primary metric), ``"bh"`` (secondary metrics) or ``"none"``.
        design: ``"fixed"`` (the seeds were planned) or ``"sequential"`` (seeds were, or may be,
            added after looking at verdicts).
        min_n: cells with fewer differences get "no verdict" and are not tested (at least 2).
        power: the power the MDE is computed for, in ``(0, 1)``.
        prior_sd: sd of the prior on the standardized effect (sequential design only).

    Returns:
        A :class:`FamilyVerdicts` of arrays ``[..., m]``.

    Raises:
        ValueError: a bad option or margin; ``±inf`` among the differences; no cells.
        TypeError: ``diffs_per_cell`` is neither a sequence of arrays nor an array.

    Example:
        >>> v = family_verdicts([[0.0, 0.0, 0.0, 0.0]], higher_is_better=True, margin=0.01)
        >>> v.cell(0).verdict, v.cell(0).p_value, v.cell(0).mde     # identical arms
        ('equivalent', 1.0, 0.0)
        >>> family_verdicts([[0.01, 0.02]], higher_is_better=False, margin=None).verdict.tolist()
        ['no verdict']
    """
    alpha = check_range("alpha", alpha, low=0.0, high=0.5, low_open=True, high_open=True)
    check_choice("correction", correction, CORRECTIONS)
    check_choice("design", design, DESIGNS)
    min_n = check_int("min_n", min_n, low=2)
    power = check_range("power", power, low=0.0, high=1.0, low_open=True, high_open=True)
    g = seq._check_prior(prior_sd) ** 2
    x = stack_cells(diffs_per_cell)
    n, mean, sd = moments(x)
    delta = None if margin is None else np.broadcast_to(check_margin(margin), n.shape)
    better_up = np.broadcast_to(np.asarray(higher_is_better, dtype=bool), n.shape)

    tested = n >= min_n
    m = np.maximum(tested.sum(axis=-1), 1)
    level = alpha / m if correction != "none" else np.full(m.shape, alpha)
    sim_level = 1.0 - alpha / m[..., None]
    if design == "fixed":
        p0, sign, p_eq, ci, sim = _fixed(n, mean, sd, delta, alpha, sim_level)
    else:
        p0, sign, p_eq, ci, sim = _sequential(x, n, mean, delta, alpha, sim_level, g)
    p0 = np.where(tested, p0, np.nan)
    p_eq = np.where(tested, p_eq, np.nan)

    read = read_family(p0, p_eq, sign, tested, higher_is_better=better_up, alpha=alpha, correction=correction)

    cell_level = np.broadcast_to(level[..., None], n.shape)
    if design == "fixed":
        with np.errstate(invalid="ignore"):
            critical = np.where(n >= 2, stats.t.ppf(1.0 - cell_level / 2.0, np.maximum(n - 1, 1)), math.inf)
    else:
        critical = np.sqrt(seq.critical_t_squared(n, np.log(1.0 / cell_level), g))
    in_sd = mde_in_sd(n, critical, power=power)
    with np.errstate(invalid="ignore"):
        mde = np.where(sd == 0, np.where(np.isfinite(critical), 0.0, math.inf), in_sd * sd)
    mde = np.where(n >= 2, mde, math.inf)

    return FamilyVerdicts(
        verdict=read.verdict,
        n=n,
        mean_diff=mean,
        sd=sd,
        ci_low=ci[0],
        ci_high=ci[1],
        simultaneous_low=sim[0],
        simultaneous_high=sim[1],
        p_value=p0,
        p_adjusted=read.p_adjusted,
        p_equivalence=p_eq,
        p_equivalence_adjusted=read.p_equivalence_adjusted,
        significant=read.significant,
        equivalent=read.equivalent,
        mde=mde,
        mde_level=np.array(cell_level),
        alpha=alpha,
        margin=np.full(n.shape, np.nan) if delta is None else np.array(delta),
        correction=correction,
        design=design,
        power=power,
    )


def tost_p_value(estimate: float, se: float, df: float, margin: float) -> float:
    """TOST p-value of ``|μ| >= margin`` for an ``estimate`` with standard error ``se`` on a t with ``df``.

    ``max(P(T >= (estimate + margin) / se), P(T <= (estimate - margin) / se))`` with ``T`` a t on ``df``
    degrees of freedom (``inf``: normal); ``se = 0`` gives 0 when ``|estimate| < margin``, else 1. The
    one TOST of a pooled effect: :meth:`smoothflip.analysis.meta.MetaResult.tost` and the pooled tests
    of :mod:`smoothflip.analysis.meta_family` call it.

    Example:
        >>> round(tost_p_value(0.0, 0.01, 4.0, 0.05), 4), tost_p_value(0.2, 0.0, 4.0, 0.05)
        (0.0037, 1.0)
    """
    if se == 0:
        return 0.0 if abs(estimate) < margin else 1.0
    upper = _sf((estimate + margin) / se, df)
    lower = _sf(-(estimate - margin) / se, df)
    return float(max(upper, lower))


def _sf(x: float, df: float) -> float:
    return float(stats.norm.sf(x) if math.isinf(df) else stats.t.sf(x, df))


def sequential_verdicts(diffs_per_cell: Any, **options: Any) -> FamilyVerdicts:
    """:func:`family_verdicts` with ``design="sequential"``: the verdicts to read after every round.

    Example:
        >>> v = sequential_verdicts([[1.0, 1.2, 0.9]], higher_is_better=True, margin=0.5)
        >>> v.verdict.tolist(), float(v.mde[0])      # 3 seeds cannot reach 1 / 0.05 at all
        (['inconclusive'], inf)
    """
    if "design" in options:
        raise TypeError("sequential_verdicts() sets design='sequential'; call family_verdicts() otherwise")
    return family_verdicts(diffs_per_cell, design="sequential", **options)


def cells_to_extend(
    verdicts: FamilyVerdicts, *, max_n: int, round_size: int = 1, budget: Any = None
) -> np.ndarray:
    """Which cells get ``round_size`` more seeds in the next round of the until-settled loop.

    A cell is extended when its verdict is inconclusive or "no verdict" and it has fewer than
    ``max_n`` differences. With a ``budget`` (seeds still allowed per family, an int or one per
    leading index) smaller than ``round_size`` times the number of such cells, the cells with the
    fewest seeds go first (ties: input order) — a rule that reads no outcome.

    Args:
        verdicts: the current verdicts (:func:`sequential_verdicts`).
        max_n: the most seeds a cell may get.
        round_size: seeds added to each extended cell.
        budget: seeds left for the family (``None``: no limit beyond ``max_n``).

    Returns:
        A boolean array ``[..., m]``; all False when the loop is done.

    Example:
        >>> v = sequential_verdicts([[1.0, 1.2, 0.9], [0.0] * 12], higher_is_better=True, margin=0.5)
        >>> v.verdict.tolist(), cells_to_extend(v, max_n=10).tolist()
        (['inconclusive', 'equivalent'], [True, False])
    """
    max_n = check_int("max_n", max_n, low=1)
    round_size = check_int("round_size", round_size, low=1)
    wanted = ~verdicts.settled & (verdicts.n < max_n)
    if budget is None:
        return wanted
    b = np.asarray(budget)
    if not np.issubdtype(b.dtype, np.integer) or np.any(b < 0):
        raise ValueError(f"budget must be a whole number of seeds >= 0 (or one per family), got {budget!r}")
    slots = np.broadcast_to(b // round_size, wanted.shape[:-1])[..., None]
    m = wanted.shape[-1]
    key = np.where(wanted, verdicts.n * (m + 1) + np.arange(m), np.iinfo(np.int64).max)
    order = np.argsort(key, axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(m), order.shape), axis=-1)
    return wanted & (rank < slots)


@dataclass(frozen=True)
class UntilSettled:
    """Result of :func:`replay_until_settled`.

    Attributes:
        verdicts: the verdicts after the last round.
        n_used: seeds revealed per cell ``[..., m]``.
        rounds: rounds in which the family added seeds ``[...]``.
    """

    verdicts: FamilyVerdicts
    n_used: np.ndarray
    rounds: np.ndarray


def replay_until_settled(
    diffs_per_cell: Any,
    *,
    start: int,
    round_size: int,
    max_n: int | None = None,
    budget: Any = None,
    design: str = "sequential",
    **options: Any,
) -> UntilSettled:
    """Run the until-settled loop on differences already at hand, revealing seeds in order.

    Every cell starts with its first ``start`` seeds; after each round the verdicts are recomputed
    (:func:`family_verdicts` with ``design`` and ``options``) and the cells of
    :func:`cells_to_extend` get their next ``round_size`` seeds, until no cell is extended (all
    settled, ``max_n`` reached, the data or the ``budget`` used up).

    Args:
        diffs_per_cell: ``[..., m, N]`` differences (or a sequence of per-cell arrays) in seed order.
        start: seeds per cell before the first look.
        round_size: seeds added per extended cell and round.
        max_n: cap per cell (default: all ``N``).
        budget: seeds allowed per family beyond the first ``start`` (default: no limit).
        design: ``"sequential"`` (valid under this loop) or ``"fixed"`` (naive; for comparison).
        **options: passed to :func:`family_verdicts` (``higher_is_better`` and ``margin`` needed).

    Returns:
        An :class:`UntilSettled`.

    Example:
        >>> import numpy as np
        >>> d = np.random.default_rng(0).normal(2.0, 1.0, size=(3, 30))
        >>> r = replay_until_settled(d, start=5, round_size=5, higher_is_better=True, margin=0.5)
        >>> r.verdicts.verdict.tolist(), r.n_used.tolist()
        (['helps', 'helps', 'helps'], [10, 10, 10])
    """
    x = stack_cells(diffs_per_cell)
    total = x.shape[-1]
    start = check_int("start", start, low=1)
    round_size = check_int("round_size", round_size, low=1)
    cap = total if max_n is None else min(check_int("max_n", max_n, low=1), total)
    left = None if budget is None else np.array(np.broadcast_to(budget, x.shape[:-2]), dtype=np.int64)
    revealed = np.full(x.shape[:-1], min(start, cap), dtype=np.int64)
    rounds = np.zeros(x.shape[:-2], dtype=np.int64)
    position = np.arange(total)
    while True:
        shown = np.where(position < revealed[..., None], x, np.nan)
        verdicts = family_verdicts(shown, design=design, **options)
        grow = cells_to_extend(verdicts, max_n=cap, round_size=round_size, budget=left)
        grow &= revealed < cap
        if not grow.any():
            return UntilSettled(verdicts=verdicts, n_used=revealed, rounds=rounds)
        step = np.where(grow, np.minimum(round_size, cap - revealed), 0)
        revealed = revealed + step
        rounds = rounds + grow.any(axis=-1)
        if left is not None:
            left = left - step.sum(axis=-1)
