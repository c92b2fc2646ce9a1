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
from pathlib import Path
from typing import Any

from smoothflip.engine.runner import run_study
from smoothflip.errors import SmoothflipError
from smoothflip.study.kinds import get_kind
from smoothflip.study.results import DESIGN_KEY, load_study_data
from smoothflip.study.settle import METHOD, SettleRound, plan_round, seed_sequence
from smoothflip.study.spec.analysis import primary_metric
from smoothflip.study.spec.schema import StudySpec
from smoothflip.study.store import Store

__all__ = ["METHOD", "SettleRound", "run_until_settled", "seed_sequence"]


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
        The recorded design (also stored in the study's store, meta ``design``).

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
    metric = primary_metric(spec.analysis, get_kind(spec.kind).study_metrics(spec))
    design: dict[str, Any] = {
        "method": METHOD,
        "primary": metric.key,
        "alpha": spec.analysis.alpha,
        "start_seeds": len(spec.seeds),
        "max_seeds": max_seeds,
        "round_size": round_size,
        "rounds": 0,
        "stopped": "it was interrupted or is still running (the same command continues it)",
    }
    run_study(spec, out_dir, **run_options)
    grown = spec
    look = 0
    while True:
        data = dataclasses.replace(load_study_data(out_dir), design=design)
        plan = plan_round(data, metric, max_seeds=max_seeds, round_size=round_size, sequence=sequence)
        design["seeds_per_cell"] = plan.seeds_per_cell
        stopped = plan.stopped
        if stopped is None:
            before = len(data.results)
            needed = max(sequence.index(s) for _, _, s in plan.wanted) + 1
            grown = dataclasses.replace(grown, seeds=tuple(dict.fromkeys((*grown.seeds, *sequence[:needed]))))
            wanted = frozenset(plan.wanted)
            run_study(
                grown,
                out_dir,
                select=lambda r, wanted=wanted: (r.arm.name, r.condition.condition_id, r.seed) in wanted,
                **run_options,
            )
            design["rounds"] = look + 1
            if len(load_study_data(out_dir).results) == before:
                stopped = "a round stored no new run (its runs failed); rerun to retry them"
        if on_round is not None:
            on_round(SettleRound(look, plan.open_cells, plan.extended if stopped is None else 0, stopped))
        if stopped is not None:
            design["stopped"] = stopped
            _record(out_dir, design)
            return design
        _record(out_dir, design)
        look += 1
