"""``smoothflip run STUDY --until-settled --max-seeds N``: add seeds only where the verdict is open.

The loop (:func:`run_until_settled`):

1. train the study as its file says (every arm x condition at the file's seeds);
2. read the **primary** metric's verdicts of every arm x condition cell with the sequential design:
   the safe t-test e-process (:mod:`smoothflip.analysis.sequential`; Grünwald, de Heide & Koolen
   2024) gives each cell an anytime-valid p-value and confidence sequence, and Holm over the cells
   controls the family-wise error rate (:func:`smoothflip.analysis.family_verdicts`,
   ``design="sequential"``);
3. every cell still *inconclusive* (or without a verdict) and below ``max_seeds`` paired seeds gets
   the next ``round_size`` seeds of the study's seed sequence (the file's seeds, then the next
   unused integers): the arm and its baseline train at those seeds, nothing else
   (:func:`smoothflip.analysis.cells_to_extend`, a rule that reads no outcome beyond the verdict);
4. repeat until every cell is settled (helps, hurts or equivalent), the open cells reached
   ``max_seeds``, or a round could store no new run.

Why the error rate survives the peeking: the e-process is a nonnegative martingale under the null
whatever the stopping rule (Ville's inequality), so each cell's p-value is valid at whichever round
the loop stops, and Holm needs nothing more. A fixed-n t-test re-read after each round is not
(20-cell A/A simulations in :mod:`smoothflip.analysis.sequential`: 19.9% false claims with up to
30 seeds, against 1.5%). The price: no claim is possible before about 7 seeds at 20 cells, and
about 1.5 times the seeds of a fixed design for the same power.

The store records the design (meta ``design``, JSON): the method, the primary metric, ``alpha``,
the start, the cap and the round size, the rounds run, the seeds each cell got and why the loop
stopped; the report and ``smoothflip verdict`` read it and use the sequential design for every
metric of the study.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smoothflip import analysis
from smoothflip.engine.runner import run_study
from smoothflip.errors import SmoothflipError
from smoothflip.study.results import DESIGN_KEY, load_study_data
from smoothflip.study.spec.analysis import primary_metric
from smoothflip.study.spec.schema import StudySpec
from smoothflip.study.store import Store
from smoothflip.study.verdict import metric_family

__all__ = ["METHOD", "SettleRound", "run_until_settled", "seed_sequence"]

METHOD = (
    "until settled: seeds added in rounds to the cells whose primary verdict is open; safe t-test "
    "e-process (anytime-valid p-values and confidence sequences, prior sd 1), Holm over the cells"
)


@dataclass(frozen=True)
class SettleRound:
    """What the progress callback is told after each look at the verdicts.

    Attributes:
        round: the look (0: after the study file's own seeds).
        open_cells: cells still inconclusive.
        extended: cells that get more seeds now (0 when the loop stops).
        stopped: why the loop stops, or None while it goes on.
    """

    round: int
    open_cells: int
    extended: int
    stopped: str | None


def seed_sequence(seeds: tuple[int, ...], length: int) -> tuple[int, ...]:
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


def _record(out_dir: Path, design: dict[str, Any]) -> None:
    with Store.open(out_dir) as store:
        store.set_meta(DESIGN_KEY, json.dumps(design, sort_keys=True))


def run_until_settled(
    spec: StudySpec,
    out_dir: str | Path,
    *,
    max_seeds: int,
    round_size: int = 2,
    on_round: Callable[[SettleRound], None] | None = None,
    **run_options: Any,
) -> dict[str, Any]:
    """Run the study, then add seeds in rounds to the cells whose primary verdict is open.

    Args:
        spec: the study (its seeds are the first round).
        out_dir: the study directory.
        max_seeds: the most paired seeds a cell may get (at least the file's seeds).
        round_size: seeds added to each open cell per round.
        on_round: called after every look at the verdicts.
        **run_options: passed to :func:`smoothflip.engine.run_study` (device, executor, ...).

    Returns:
        The recorded design (also stored in the study's store).

    Raises:
        SmoothflipError: ``max_seeds`` below the file's seeds or ``round_size < 1``.
    """
    if isinstance(max_seeds, bool) or not isinstance(max_seeds, int) or max_seeds < len(spec.seeds):
        raise SmoothflipError(
            f"--max-seeds {max_seeds}: must be at least the study's {len(spec.seeds)} seeds"
        )
    if isinstance(round_size, bool) or not isinstance(round_size, int) or round_size < 1:
        raise SmoothflipError(f"--round-size {round_size}: must be a whole number >= 1")
    out_dir = Path(out_dir)
    sequence = seed_sequence(spec.seeds, max_seeds)
    metric = primary_metric(spec.analysis, _kind_metrics(spec))
    design: dict[str, Any] = {
        "method": METHOD,
        "primary": metric.key,
        "alpha": spec.analysis.alpha,
        "start_seeds": len(spec.seeds),
        "max_seeds": max_seeds,
        "round_size": round_size,
        "rounds": 0,
        "stopped": "running",
    }
    run_study(spec, out_dir, **run_options)
    grown = spec
    look = 0
    while True:
        data = dataclasses.replace(load_study_data(out_dir), design=design)
        cells = [(c, arm) for c in data.conditions for arm in data.others]
        diffs, verdicts = metric_family(data, cells, metric, primary=True, design="sequential")
        if verdicts is None:
            raise SmoothflipError("the first round stored no paired runs of the primary metric to read")
        extend = analysis.cells_to_extend(verdicts, max_n=max_seeds, round_size=round_size)
        open_cells = int((~verdicts.settled).sum())
        design["seeds_per_cell"] = [
            {
                "condition": c.label,
                "condition_id": c.condition_id,
                "arm": arm,
                "seeds": int(d.size),
                "verdict": v,
            }
            for (c, arm), d, v in zip(cells, diffs, verdicts.verdict.tolist(), strict=True)
        ]
        wanted: set[tuple[str, str, int]] = set()
        for (condition, arm), grow in zip(cells, extend.tolist(), strict=True):
            if not grow:
                continue
            used = _paired_seeds(data, arm, condition)
            for seed in [s for s in sequence if s not in used][:round_size]:
                wanted.add((arm, condition.condition_id, seed))
                wanted.add((data.baselines[arm], condition.condition_id, seed))
        stopped = _why_stopped(open_cells, wanted, max_seeds)
        if stopped is None:
            before = len(data.results)
            needed = max(sequence.index(s) for _, _, s in wanted) + 1
            grown = dataclasses.replace(grown, seeds=tuple(dict.fromkeys((*grown.seeds, *sequence[:needed]))))
            run_study(
                grown,
                out_dir,
                select=lambda r, wanted=frozenset(wanted): (
                    (r.arm.name, r.condition.condition_id, r.seed) in wanted
                ),
                **run_options,
            )
            design["rounds"] = look + 1
            if len(load_study_data(out_dir).results) == before:
                stopped = "a round stored no new run (its runs failed); rerun to retry them"
        if on_round is not None:
            on_round(SettleRound(look, open_cells, int(extend.sum()) if stopped is None else 0, stopped))
        if stopped is not None:
            design["stopped"] = stopped
            _record(out_dir, design)
            return design
        _record(out_dir, design)
        look += 1


def _kind_metrics(spec: StudySpec) -> tuple[Any, ...]:
    from smoothflip.study.kinds import get_kind

    return get_kind(spec.kind).metrics


def _paired_seeds(data: Any, arm: str, condition: Any) -> set[int]:
    base = {r.seed for r in data.runs(data.baselines[arm], condition)}
    return {r.seed for r in data.runs(arm, condition)} & base


def _why_stopped(open_cells: int, wanted: set[tuple[str, str, int]], max_seeds: int) -> str | None:
    if open_cells == 0:
        return "every cell is settled (helps, hurts or equivalent)"
    if not wanted:
        return f"the budget is spent: {open_cells} open cell(s) reached --max-seeds {max_seeds}"
    return None
