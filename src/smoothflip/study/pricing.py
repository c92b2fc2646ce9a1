"""What an answer would cost: each inconclusive cell of a stored study priced in seeds and minutes.

:func:`price_family` adapts a family of stored cells to :func:`smoothflip.analysis.plan_cells` (the
statistics, on arrays) and adds what the extra seeds would cost to train, from the stored timings.

**Seeds.** For every inconclusive cell (primary and secondary): the total paired seeds at which it
would detect a true difference of its MDE target with the study's power (``[analysis] power``), at
its observed sd and at its family's strictest level (primary: Holm's ``alpha / m`` over the ``m``
arm × condition cells; secondary: Benjamini-Hochberg's ``alpha / M`` over the metric's ``M``
hypotheses), and the total paired seeds at which it would show equivalence within the margin
(TOST) if the true difference is 0. The target is ``[analysis] target_mde`` (display units; default
twice the metric's equivalence margin: 1 point of accuracy). A study read with the until-settled
design is planned with the anytime-valid test's critical values (a lower bound on its power).

**Minutes.** A run's cost is its pack's training and evaluation time (``train_seconds`` +
``eval_seconds``, summed over every process that worked on the pack) divided by the pack's members
(``pack_size``); runs stored without that clock use ``seconds_per_run`` (the pack's wall time per
member). Each arm's cost per run is the mean over its stored runs under the condition (else over
all its runs, else over the study's). One more paired seed for a cell is one more run of the arm
and one of its baseline, unless one of them already has a run at that seed (another cell of the
condition went further, or a run of the other is missing): a cell that needs ``N`` paired seeds
costs ``max(0, N - a)`` arm runs and ``max(0, N - b)`` baseline runs, ``a`` and ``b`` the arm's and
the baseline's stored runs under the condition (:meth:`CellPrice.runs`; when both hold seeds the
other lacks and fewer new pairs are needed than those seeds, each new pair costs one run). The baseline's
runs serve every cell of the condition, so the cells of one condition together cost the sum of their
arm runs plus ``max(0, max N - b)`` baseline runs (:func:`total_cost`); a run also serves every
metric, so an arm × condition is charged once, for the largest ``N`` over its metrics. The time is
that of training one pack after another at the stored per-run rate: new seeds trained in smaller
packs can take longer per run (packs share the fixed costs of a step), more workers less.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from smoothflip import analysis
from smoothflip.study.results import StudyData
from smoothflip.study.store import RunResult

__all__ = [
    "CellPrice",
    "Cost",
    "grow_cost",
    "price_family",
    "run_seconds",
    "seconds_per_run",
    "study_seconds",
    "total_cost",
]


@dataclass(frozen=True)
class CellPrice:
    """What one inconclusive cell would need. Sizes in the metric's display units.

    Attributes:
        condition: the condition's display label.
        arm: the arm.
        baseline: its baseline.
        metric: the metric key.
        role: ``"primary"`` or ``"secondary"``.
        seeds: paired seeds now.
        sd: sd of the paired differences now.
        level: the per-test level planned at.
        target: the true difference to detect (NaN: none).
        seeds_detect: total paired seeds to detect ``target`` (``inf``: beyond a million; NaN: no
            target).
        power_detect: the power at ``seeds_detect``.
        seeds_equivalence: total paired seeds to show equivalence within the margin if the true
            difference is 0 (NaN: no margin).
        power_equivalence: the power at ``seeds_equivalence``.
        arm_stored: the arm's stored runs under the condition.
        baseline_stored: the baseline's stored runs under the condition.
        arm_seconds: estimated seconds per run of the arm (NaN: no timings stored).
        baseline_seconds: the same for the baseline.
    """

    condition: str
    arm: str
    baseline: str
    metric: str
    role: str
    seeds: int
    sd: float
    level: float
    target: float
    seeds_detect: float
    power_detect: float
    seeds_equivalence: float
    power_equivalence: float
    arm_stored: int
    baseline_stored: int
    arm_seconds: float
    baseline_seconds: float

    def runs(self, seeds: float) -> tuple[float, float]:
        """New runs (arm, baseline) to reach ``seeds`` paired seeds (``inf`` / NaN pass through).

        The new pairs first use the seeds only the arm has (a baseline run each), then those only the
        baseline has (an arm run each), then fresh seeds (one run of each): ``max(0, seeds - a)`` arm
        runs and ``max(0, seeds - b)`` baseline runs (``a``, ``b``: their stored runs) whenever that
        many new pairs are needed, and never more runs than new pairs need.

        Example:
            >>> p = CellPrice("clean", "ls", "ce", "test_acc", "primary", 3, 1.0, 0.01, 1.0, 10.0, 0.8,
            ...               20.0, 0.8, 5, 3, 2.0, 1.0)        # ls has 5 runs, ce 3: 3 pairs
            >>> p.runs(10.0), p.runs(4.0)
            ((5.0, 7.0), (0.0, 1.0))
        """
        if not math.isfinite(seeds):
            return seeds, seeds
        need = max(0.0, seeds - self.seeds)
        arm_only = max(0.0, float(self.arm_stored - self.seeds))  # seeds the baseline lacks
        base_only = max(0.0, float(self.baseline_stored - self.seeds))  # seeds the arm lacks
        base_runs_at_arm_seeds = min(arm_only, need)
        arm_runs_at_base_seeds = min(base_only, need - base_runs_at_arm_seeds)
        fresh = need - base_runs_at_arm_seeds - arm_runs_at_base_seeds
        return arm_runs_at_base_seeds + fresh, base_runs_at_arm_seeds + fresh

    def minutes(self, seeds: float) -> float:
        """Estimated training minutes of those runs (NaN when a needed timing is unknown)."""
        arm, base = self.runs(seeds)
        if not (math.isfinite(arm) and math.isfinite(base)):
            return arm + base
        cost = (arm * self.arm_seconds if arm else 0.0) + (base * self.baseline_seconds if base else 0.0)
        return cost / 60.0


@dataclass(frozen=True)
class Cost:
    """The runs and time a set of cells needs together (:func:`total_cost`).

    Attributes:
        cells: the cells counted.
        arm_runs: new runs of the compared arms.
        baseline_runs: new runs of their baselines (shared by the cells of a condition).
        minutes: estimated training minutes (NaN: some timing unknown; ``inf``: some cell unreachable).
    """

    cells: int
    arm_runs: float
    baseline_runs: float
    minutes: float


def run_seconds(run: RunResult) -> float:
    """Seconds one stored run cost: its pack's training + evaluation time per member (else the pack's
    wall time per member; NaN when neither is stored)."""
    t = run.timings or {}

    def num(key: str) -> float:
        v = t.get(key)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan

    size = num("pack_size")
    clock = num("train_seconds") + num("eval_seconds")
    if math.isfinite(clock) and size >= 1:
        return clock / size
    per_run = num("seconds_per_run")
    return per_run if math.isfinite(per_run) and per_run >= 0 else math.nan


def seconds_per_run(data: StudyData) -> Any:
    """``(arm, condition_id) -> seconds``: the mean stored cost of a run of that arm under that
    condition, falling back to the arm's mean over all conditions, then to the study's mean."""
    by_cell: dict[tuple[str, str], list[float]] = {}
    by_arm: dict[str, list[float]] = {}
    every: list[float] = []
    for r in data.results:
        s = run_seconds(r)
        if math.isfinite(s):
            by_cell.setdefault((r.arm, r.condition_id), []).append(s)
            by_arm.setdefault(r.arm, []).append(s)
            every.append(s)
    study = float(np.mean(every)) if every else math.nan

    def lookup(arm: str, condition_id: str) -> float:
        for found in (by_cell.get((arm, condition_id)), by_arm.get(arm)):
            if found:
                return float(np.mean(found))
        return study

    return lookup


def price_family(
    data: StudyData,
    cells: Sequence[tuple[Any, str]],
    verdicts: analysis.FamilyVerdicts,
    metric: analysis.MetricSpec,
    *,
    role: str,
    target: float,
    seconds: Any = None,
) -> dict[tuple[str, str, str], CellPrice]:
    """Price the inconclusive cells of one metric's family.

    Args:
        data: the study.
        cells: the family's ``(condition, arm)`` pairs, in the verdicts' order.
        verdicts: their family verdicts (:func:`smoothflip.study.verdict.metric_family`).
        metric: the metric.
        role: ``"primary"`` or ``"secondary"``.
        target: the MDE target in display units (NaN: none).
        seconds: :func:`seconds_per_run` of the study (computed when not given).

    Returns:
        ``(condition label, arm, metric key) -> CellPrice`` for every planned cell.
    """
    seconds = seconds or seconds_per_run(data)
    raw_target = target / metric.scale if math.isfinite(target) else math.nan
    plans = analysis.plan_cells(verdicts, target=raw_target)
    baselines = data.baselines
    prices: dict[tuple[str, str, str], CellPrice] = {}
    for i, (condition, arm) in enumerate(cells):
        if not plans.planned[i]:
            continue
        base = baselines[arm]
        prices[(condition.label, arm, metric.key)] = CellPrice(
            condition=condition.label,
            arm=arm,
            baseline=base,
            metric=metric.key,
            role=role,
            seeds=int(verdicts.n[i]),
            sd=float(verdicts.sd[i]) * metric.scale,
            level=float(plans.level[i]),
            target=float(target),
            seeds_detect=float(plans.seeds_detect[i]),
            power_detect=float(plans.power_detect[i]),
            seeds_equivalence=float(plans.seeds_equivalence[i]),
            power_equivalence=float(plans.power_equivalence[i]),
            arm_stored=len(data.runs(arm, condition)),
            baseline_stored=len(data.runs(base, condition)),
            arm_seconds=seconds(arm, condition.condition_id),
            baseline_seconds=seconds(base, condition.condition_id),
        )
    return prices


def total_cost(prices: Iterable[CellPrice], *, goal: str = "detect") -> Cost:
    """The runs and minutes the given cells need together (``goal``: ``"detect"`` or ``"equivalence"``).

    An arm × condition counts once, for the most seeds any of its cells (metrics) needs; a baseline
    under a condition once, for the most seeds any cell comparing with it there needs.

    Example:
        >>> a = CellPrice("clean", "ls", "ce", "test_acc", "primary", 5, 1.0, 0.01, 1.0, 12.0, 0.8,
        ...               40.0, 0.8, 5, 5, 2.0, 1.0)
        >>> b = CellPrice("clean", "gce", "ce", "test_acc", "primary", 5, 1.0, 0.01, 1.0, 9.0, 0.8,
        ...               30.0, 0.8, 5, 5, 3.0, 1.0)
        >>> total_cost([a, b])     # ls: 7 runs, gce: 4, ce: 7 (shared); 7*2 + 4*3 + 7*1 = 33 s
        Cost(cells=2, arm_runs=11.0, baseline_runs=7.0, minutes=0.55)
    """
    field = {"detect": "seeds_detect", "equivalence": "seeds_equivalence"}[goal]
    arms: dict[tuple[str, str], tuple[float, CellPrice]] = {}
    bases: dict[tuple[str, str], tuple[float, CellPrice]] = {}
    count = 0
    for p in prices:
        need = getattr(p, field)
        if math.isnan(need):
            continue
        count += 1
        for table, key in ((arms, (p.condition, p.arm)), (bases, (p.condition, p.baseline))):
            if key not in table or need > table[key][0]:
                table[key] = (need, p)
    arm_runs = base_runs = 0.0
    minutes = 0.0
    for need, p in arms.values():
        runs = p.runs(need)[0]
        arm_runs += runs
        minutes += runs * p.arm_seconds / 60.0 if runs else 0.0
    for need, p in bases.values():
        runs = p.runs(need)[1]
        base_runs += runs
        minutes += runs * p.baseline_seconds / 60.0 if runs else 0.0
    return Cost(count, arm_runs, base_runs, minutes)


def study_seconds(prices: Mapping[Any, CellPrice]) -> dict[str, float]:
    """The per-run seconds behind the prices, per arm (baselines included), averaged over conditions."""
    found: dict[str, list[float]] = {}
    for p in prices.values():
        found.setdefault(p.arm, []).append(p.arm_seconds)
        found.setdefault(p.baseline, []).append(p.baseline_seconds)
    return {arm: float(np.mean(v)) for arm, v in found.items()}


def grow_cost(data: StudyData, seeds: float, seconds: Any = None) -> Cost:
    """The runs and minutes of growing the study file to ``seeds`` seeds: every arm, baselines
    included, under every condition, up to ``seeds`` stored runs (``smoothflip run`` on a grown file)."""
    if not math.isfinite(seeds):
        return Cost(0, seeds, seeds, seeds)
    seconds = seconds or seconds_per_run(data)
    baselines = set(data.baselines.values())
    arm_runs = base_runs = minutes = 0.0
    for condition in data.conditions:
        for arm in data.arms:
            runs = max(0.0, seeds - len(data.runs(arm, condition)))
            if not runs:
                continue
            if arm in baselines:
                base_runs += runs
            else:
                arm_runs += runs
            minutes += runs * seconds(arm, condition.condition_id) / 60.0
    return Cost(len(data.conditions) * len(data.arms), arm_runs, base_runs, minutes)
