"""The until-settled loop's decisions, on a study as stored (no training here).

:func:`plan_round` reads the primary metric's verdicts of every arm x condition cell with the
sequential design (the safe t-test e-process with Holm over the cells) and says which runs the next
round trains: the next ``round_size`` seeds of the seed sequence for every cell that is still
inconclusive and below ``max_seeds`` (the arm and its baseline), or why the loop stops.
:func:`smoothflip.engine.settle.run_until_settled` trains them; the tests replay the same decisions
on simulated runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from smoothflip import analysis
from smoothflip.errors import SmoothflipError
from smoothflip.study.results import StudyData
from smoothflip.study.verdict import metric_family

__all__ = ["METHOD", "RoundPlan", "SettleRound", "plan_round", "seed_sequence"]

METHOD = (
    "until settled: seeds added in rounds to the cells whose primary verdict is open; safe t-test "
    "e-process (anytime-valid p-values and confidence sequences, prior sd 1), Holm over the cells"
)


@dataclass(frozen=True)
class SettleRound:
    """What the progress callback is told after each look at the verdicts.

    Attributes:
        round: the look (0: after the study file's own seeds).
        open_cells: cells still inconclusive (or without a verdict).
        extended: cells that get more seeds now (0 when the loop stops).
        stopped: why the loop stops, or None while it goes on.
    """

    round: int
    open_cells: int
    extended: int
    stopped: str | None


@dataclass(frozen=True)
class RoundPlan:
    """One look of the loop.

    Attributes:
        verdicts: the primary family's sequential verdicts, one per cell.
        cells: the ``(condition, arm)`` cells, in order.
        wanted: runs to train next, as ``(arm, condition_id, seed)`` (baselines included).
        open_cells: cells not settled.
        extended: cells that get more seeds.
        stopped: why the loop stops now, or None.
        seeds_per_cell: per cell its condition, arm, paired seeds and verdict (what the store records).
    """

    verdicts: Any
    cells: list[tuple[Any, str]]
    wanted: set[tuple[str, str, int]] = field(default_factory=set)
    open_cells: int = 0
    extended: int = 0
    stopped: str | None = None
    seeds_per_cell: list[dict[str, Any]] = field(default_factory=list)


def seed_sequence(seeds: Sequence[int], length: int) -> tuple[int, ...]:
    """The study's seeds, then the next unused integers, up to ``length`` seeds.

    Example:
        >>> seed_sequence((0, 1, 2), 5), seed_sequence((7, 3), 4)
        ((0, 1, 2, 3, 4), (7, 3, 8, 9))
    """
    out = list(dict.fromkeys(int(s) for s in seeds))
    candidate = max(out, default=-1) + 1
    while len(out) < length:
        if candidate not in out:
            out.append(candidate)
        candidate += 1
    return tuple(out)


def _paired_seeds(data: StudyData, arm: str, condition: Any) -> set[int]:
    base = {r.seed for r in data.runs(data.baselines[arm], condition)}
    return {r.seed for r in data.runs(arm, condition)} & base


def plan_round(
    data: StudyData, metric: Any, *, max_seeds: int, round_size: int, sequence: Sequence[int]
) -> RoundPlan:
    """Read the primary verdicts (sequential design) and plan the next round, or say why it stops.

    Raises:
        SmoothflipError: no cell has two paired seeds of the primary metric.
    """
    cells = [(c, arm) for c in data.conditions for arm in data.others]
    diffs, verdicts = metric_family(data, cells, metric, primary=True, design="sequential")
    if verdicts is None:
        raise SmoothflipError("the study has no paired runs of the primary metric to read yet")
    extend = analysis.cells_to_extend(verdicts, max_n=max_seeds, round_size=round_size)
    open_cells = int((~verdicts.settled).sum())
    seeds_per_cell = [
        {"condition": c.label, "condition_id": c.condition_id, "arm": arm, "seeds": int(d.size), "verdict": v}
        for (c, arm), d, v in zip(cells, diffs, verdicts.verdict.tolist(), strict=True)
    ]
    wanted: set[tuple[str, str, int]] = set()
    extended = 0
    for (condition, arm), grow in zip(cells, extend.tolist(), strict=True):
        if not grow:
            continue
        used = _paired_seeds(data, arm, condition)
        new = [s for s in sequence if s not in used][:round_size]
        extended += bool(new)
        for seed in new:
            wanted.add((arm, condition.condition_id, seed))
            wanted.add((data.baselines[arm], condition.condition_id, seed))
    stopped = None
    if open_cells == 0:
        stopped = "every cell is settled (helps, hurts or equivalent)"
    elif not wanted:
        stopped = f"the budget is spent: {open_cells} open cell(s) reached --max-seeds {max_seeds}"
    return RoundPlan(verdicts, cells, wanted, open_cells, extended, stopped, seeds_per_cell)
