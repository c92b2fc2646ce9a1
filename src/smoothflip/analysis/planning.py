r"""What an answer would cost: the paired seeds each inconclusive cell of a family needs.

A cell is *inconclusive* when its corrected test neither rejects "no difference" nor shows
equivalence. :func:`plan_cells` prices each such cell of a :class:`~smoothflip.analysis.FamilyVerdicts`
at its **observed spread** (the sample sd of its paired differences, taken as the true one), at the
**level its family tests it at**, with the family's **power**, in two ways:

- **to detect** a true difference of ``target`` (the cell's MDE target): the smallest total ``n`` at
  which the cell's test rejects "no difference" with probability ``>= power`` — the ``n`` at which
  the cell's minimum detectable effect reaches the target;
- **to show equivalence** within the family's margin when the true difference is ``true_diff``
  (0 by default: the arm does nothing): the smallest ``n`` at which the two one-sided tests reject
  with probability ``>= power``. A true difference closer to the margin needs more; at the margin,
  no number of seeds suffices.

**The level** (:func:`planning_level`) is the strictest per-test level the family's correction can
apply, so the power promised holds whatever the other cells show:

- ``"holm"`` (the primary metric): ``alpha / m`` over the ``m`` tested cells — Holm's first step.
  With Shaffer's bound (``max_true = m`` of the ``2m`` hypotheses) every one of the first ``m + 1``
  steps divides by ``m``, so a p-value at or below ``alpha / m`` is always rejected, and the family's
  other cells can only lift the level once more than ``m`` hypotheses are rejected: the promise is
  close to exact (a test holds the two within 3 points).
- ``"bh"`` (a secondary metric): ``alpha / M`` over the ``M`` hypotheses Benjamini-Hochberg corrects
  together (two per tested cell when there is a margin: "no difference" and "not equivalent"):
  BH's first step, which rejects a p-value whatever the others. BH rejects at ``(R + 1) alpha / M``
  once ``R`` other hypotheses are discoveries, so the power is at least the promise and may be more.
- ``"none"``: ``alpha``.

**The test.** Fixed design: the paired t-test on the exact noncentral t and the exact TOST power
(:mod:`smoothflip.analysis.power`). Sequential design (until settled): the safe t-test's critical
``|t|`` at ``n`` (:mod:`smoothflip.analysis.sequential`) in place of Student's; the power computed
is that of the last look alone, a lower bound, since the anytime-valid test may also settle at an
earlier prefix.

A cell whose current seeds already reach the power keeps its ``n`` (it needs no more; its effect is
then likely smaller than the target). Cells with fewer than 2 seeds, NaN sd, or a settled or
"no verdict" word are not planned (NaN).

Example:
    >>> import numpy as np
    >>> from smoothflip.analysis import family_verdicts, plan_cells
    >>> rng = np.random.default_rng(0)
    >>> d = rng.normal(0.0, 0.01, size=(4, 5))      # 4 cells, 5 seeds, sd 1 point
    >>> v = family_verdicts(d, higher_is_better=True, margin=0.005)
    >>> plan = plan_cells(v, target=0.01)
    >>> v.verdict.tolist()
    ['inconclusive', 'inconclusive', 'inconclusive', 'inconclusive']
    >>> float(plan.level[0]) == 0.05 / 4, v.sd.round(4).tolist()
    (True, [0.0043, 0.0109, 0.0095, 0.0074])
    >>> plan.seeds_detect.tolist(), plan.seeds_equivalence.tolist()
    ([6.0, 17.0, 14.0, 10.0], [12.0, 62.0, 47.0, 30.0])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from smoothflip._validation import check_int
from smoothflip.analysis import sequential as seq
from smoothflip.analysis.intervals import MIN_SEEDS
from smoothflip.analysis.power import (
    MAX_PLAN_SEEDS,
    detect_power_in_sd,
    equivalence_power_in_sd,
    smallest_n,
)
from smoothflip.analysis.verdicts import FamilyVerdicts

__all__ = ["CellPlans", "plan_cells", "planning_level"]


@dataclass(frozen=True)
class CellPlans:
    """The seeds each cell of a family would need; arrays ``[..., m]`` like the verdicts.

    Attributes:
        planned: the cells priced (inconclusive, at least 2 seeds, a finite sd).
        level: the per-test level planned at (:func:`planning_level`).
        target: the true difference to detect (raw units; NaN: none).
        seeds_detect: total paired seeds to detect ``target`` with ``power`` (``>= n``; ``inf``:
            more than the search bound; NaN: not planned or no target).
        power_detect: the power at ``seeds_detect`` (at least ``power``).
        seeds_equivalence: total paired seeds to show equivalence within the margin with ``power``
            when the true difference is ``true_diff`` (NaN: not planned or no margin).
        power_equivalence: the power at ``seeds_equivalence``.
        power: the power planned for.
        true_diff: the true difference assumed for equivalence (raw units).
        design: ``"fixed"`` or ``"sequential"``.
    """

    planned: np.ndarray
    level: np.ndarray
    target: np.ndarray
    seeds_detect: np.ndarray
    power_detect: np.ndarray
    seeds_equivalence: np.ndarray
    power_equivalence: np.ndarray
    power: float
    true_diff: float
    design: str


def planning_level(verdicts: FamilyVerdicts) -> np.ndarray:
    """The strictest per-test level of each cell's family (see the module docstring), ``[..., m]``.

    Example:
        >>> from smoothflip.analysis import family_verdicts
        >>> d = [[0.1, 0.2, 0.3], [0.3, 0.1, 0.2], [0.0, 0.1]]
        >>> [round(float(x), 5) for x in planning_level(family_verdicts(d, higher_is_better=True,
        ...     margin=0.05, correction="bh"))]           # 2 tested cells, 2 hypotheses each
        [0.0125, 0.0125, 0.0125]
    """
    shape = verdicts.verdict.shape
    if verdicts.correction == "holm":
        return np.array(verdicts.mde_level, dtype=float)
    if verdicts.correction == "bh":
        hypotheses = np.sum(~np.isnan(verdicts.p_value), axis=-1) + np.sum(
            ~np.isnan(verdicts.p_equivalence), axis=-1
        )
        level = verdicts.alpha / np.maximum(hypotheses, 1)
        return np.broadcast_to(np.asarray(level, dtype=float)[..., None], shape).copy()
    return np.full(shape, verdicts.alpha)


def _critical(design: str, g: float, level: np.ndarray, *, two_sided: bool) -> Any:
    """``n -> critical value`` of the family's test at ``level`` (one- or two-sided t; the e-process
    has one critical ``|t|`` for both)."""
    if design == "sequential":
        return lambda n: np.sqrt(seq.critical_t_squared(n, np.log(1.0 / level), g))
    q = 1.0 - level / 2.0 if two_sided else 1.0 - level
    return lambda n: stats.t.ppf(q, np.maximum(n - 1, 1))


def _power_at(power: Any, need: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """``power(need)`` where ``need`` is finite (1 for a zero sd), NaN elsewhere."""
    finite = np.isfinite(need)
    value = power(np.where(finite, need, 2.0))
    return np.where(finite, np.where(sd == 0, 1.0, value), np.nan)


def plan_cells(
    verdicts: FamilyVerdicts,
    *,
    target: Any,
    true_diff: float = 0.0,
    prior_sd: float = seq.DEFAULT_PRIOR_SD,
    min_n: int = MIN_SEEDS,
    max_n: int = MAX_PLAN_SEEDS,
) -> CellPlans:
    """Price every inconclusive cell of a family in paired seeds; see the module docstring.

    Args:
        verdicts: the family (:func:`~smoothflip.analysis.family_verdicts`); its ``sd``, ``n``,
            ``margin``, ``alpha``, ``power``, ``correction`` and ``design`` are used.
        target: the true difference to detect, ``> 0`` in raw units (a number or one per cell;
            NaN or None: no detection plan).
        true_diff: the true difference assumed when planning equivalence (raw units, ``|true_diff|``
            below the margin).
        prior_sd: the e-process prior's sd (sequential design only; the verdicts' own).
        min_n: the fewest seeds a plan returns (a cell needs 3 for a verdict).
        max_n: the search bound; cells needing more get ``inf``.

    Returns:
        A :class:`CellPlans`.

    Raises:
        ValueError: a target that is not ``> 0`` (NaN allowed), a non-finite ``true_diff``.
    """
    min_n = check_int("min_n", min_n, low=2)
    max_n = check_int("max_n", max_n, low=min_n)
    design = verdicts.design
    shape = verdicts.verdict.shape
    goal = np.broadcast_to(np.asarray(np.nan if target is None else target, dtype=float), shape)
    if np.any(goal <= 0) or np.any(np.isinf(goal)):
        raise ValueError(f"target must be a finite difference > 0 (NaN: none), got {target!r}")
    if not math.isfinite(true_diff):
        raise ValueError(f"true_diff must be finite, got {true_diff!r}")
    g = seq._check_prior(prior_sd) ** 2
    n, sd = verdicts.n.astype(float), verdicts.sd
    planned = (verdicts.verdict == "inconclusive") & (n >= 2) & np.isfinite(sd)
    level = planning_level(verdicts)
    cells = np.nonzero(planned)

    seeds_detect = np.full(shape, np.nan)
    power_detect = np.full(shape, np.nan)
    seeds_eq = np.full(shape, np.nan)
    power_eq = np.full(shape, np.nan)
    if cells[0].size:
        s = sd[cells]
        safe = np.where(s > 0, s, 1.0)
        now, lv = n[cells], level[cells]
        floor = np.maximum(now, min_n)

        effect = goal[cells] / safe
        two = _critical(design, g, lv, two_sided=True)
        detect = lambda k: detect_power_in_sd(k, effect, two(k))  # noqa: E731
        need = np.maximum(smallest_n(detect, verdicts.power, effect.shape, min_n=min_n, max_n=max_n), floor)
        need = np.where(s == 0, floor, need)
        need = np.where(np.isnan(effect), np.nan, need)
        seeds_detect[cells] = need
        power_detect[cells] = _power_at(detect, need, s)

        margin = verdicts.margin[cells] / safe
        diff = true_diff / safe
        one = _critical(design, g, lv, two_sided=False)
        equivalent = lambda k: equivalence_power_in_sd(k, diff, margin, one(k))  # noqa: E731
        need = np.maximum(smallest_n(equivalent, verdicts.power, s.shape, min_n=min_n, max_n=max_n), floor)
        need = np.where(np.abs(diff) >= margin, math.inf, need)
        need = np.where(s == 0, np.where(abs(true_diff) < verdicts.margin[cells], floor, math.inf), need)
        need = np.where(np.isnan(margin), np.nan, need)
        seeds_eq[cells] = need
        power_eq[cells] = _power_at(equivalent, need, s)
    return CellPlans(
        planned=planned,
        level=level,
        target=np.array(goal),
        seeds_detect=seeds_detect,
        power_detect=power_detect,
        seeds_equivalence=seeds_eq,
        power_equivalence=power_eq,
        power=verdicts.power,
        true_diff=float(true_diff),
        design=design,
    )
