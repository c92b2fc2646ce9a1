"""What :meth:`smoothflip.api.Study.run` does: the same steps as ``smoothflip run``, for Python.

Train (or resume) with :func:`smoothflip.engine.run_study` (or the until-settled loop), showing a
progress display that fits where it runs and each warning once; hand each stored pack to the
experiment trackers; write the report; let the trackers log whatever is stored but not yet logged
and attach the report; return the study's :class:`~smoothflip.api.results.Results`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from smoothflip.api.display import progress_display, warnings_once
from smoothflip.api.results import Results
from smoothflip.study.spec import StudySpec

__all__ = ["RunWarning", "plan_text", "run_study_here"]


class RunWarning(UserWarning):
    """Something about a finished study run the caller should know (runs that failed)."""


def plan_text(spec: StudySpec, plan: Any, *, where: str, workers: int = 1) -> str:
    """One line about the plan: runs, what is stored, packs, where, the data and the estimate."""
    from smoothflip.engine.planning import describe_data

    data = describe_data(spec, plan.dataset)
    if not plan.packs:
        return f"all {len(plan.runs)} runs are stored: nothing to train; data {data}"
    text = (
        f"{len(plan.runs)} runs ({len(plan.done)} already stored), {len(plan.packs)} pack(s) of up to "
        f"{plan.pack_size} {where}{f', {workers} at once' if workers > 1 else ''}; data {data}"
    )
    if plan.estimate is not None:
        text += f"; {plan.estimate.describe()}"
    return text


def run_study_here(
    spec: StudySpec,
    out: Path,
    *,
    options: dict[str, Any],
    settle: tuple[int | None, int] | None,
    track: Any,
    progress: bool,
    report: bool,
) -> Results:
    """Run ``spec`` into ``out`` (see the module docstring); the options are ``run_study``'s."""
    from smoothflip.engine.runner import run_study
    from smoothflip.tracking.session import TrackingSession

    session = TrackingSession.open(track)  # a tracker that is not installed fails here, before training
    where = "on a Ray cluster" if options["executor"] == "ray" else f"on {options['device']}"
    with progress_display(spec.name, enabled=progress) as shown, warnings_once():

        def on_plan(plan: Any) -> None:
            session.begin(out)
            shown.on_plan(plan, plan_text(spec, plan, where=where, workers=options["workers"]))

        run_options = {**options, "progress": shown.on_progress, "on_plan": on_plan, "on_stored": session.log}
        with session.ending_on_error():
            if settle is None:
                run_study(spec, out, **run_options)
            else:
                from smoothflip.engine.settle import run_until_settled

                max_seeds, round_size = settle
                run_until_settled(spec, out, max_seeds=max_seeds, round_size=round_size, **run_options)
        index = None
        if report:
            from smoothflip.report import write_report

            index = write_report(out)
        session.finish(out, index.parent if index is not None else None)
    results = Results(out, trained=shown.trained)
    failed = results.failures
    if len(failed):
        first = failed.iloc[0]
        where = f"{first['arm']} / {first['condition']} / seed {first['seed']}"
        warnings.warn(
            f"{len(failed)} run(s) failed (first: {where}: {first['message']}); the other runs are "
            "stored: fix the problem and run again to retry them",
            RunWarning,
            stacklevel=3,
        )
    return results
