"""What :meth:`smoothflip.api.Study.run` and ``smoothflip run`` do: one function for both.

:func:`run_study_here` trains (or resumes) with :func:`smoothflip.engine.run_study` (or the
until-settled loop), showing a progress display that fits where it runs (a notebook line, or a bar on
the console it is given) and each warning once; hands each stored pack to the experiment trackers;
writes the report once the display is closed; lets the trackers log whatever is stored but not yet
logged and attach the report; and returns the study's :class:`~smoothflip.api.results.Results`.
The command line differs only in what it passes: its console, ``--quiet``, trackers that print
``warning:`` lines, a report step that prints the summary table first, and an exit code for failed
runs where Python gets a :class:`RunWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smoothflip.api.display import progress_display, warnings_once
from smoothflip.api.results import Results
from smoothflip.study.spec import StudySpec

__all__ = ["RunWarning", "plan_text", "round_text", "run_study_here", "warn_failures", "write_report_at"]


class RunWarning(UserWarning):
    """Something about a finished study run the caller should know (runs that failed)."""


def plan_text(spec: StudySpec, plan: Any, *, where: str, workers: int = 1) -> str:
    """One line about the plan: runs, what is stored, packs, where, the data and the estimate."""
    from smoothflip.engine.planning import describe_data

    data = describe_data(spec, plan.dataset)
    stored = f"{len(plan.runs)} runs ({len(plan.done)} already stored)"
    if not plan.packs:
        return f"{stored}: nothing to train; data {data}"
    text = (
        f"{stored}, {len(plan.packs)} pack(s) of up to {plan.pack_size} {where}"
        f"{f', {workers} at once' if workers > 1 else ''}; data {data}"
    )
    if plan.estimate is not None:
        text += f"; {plan.estimate.describe()}"
    return text


def round_text(look: Any) -> str:
    """One look of the until-settled loop (a :class:`~smoothflip.study.settle.SettleRound`)."""
    what = look.stopped or f"{look.extended} open cell(s) get more seeds"
    return f"look {look.round}: {look.open_cells} cell(s) inconclusive; {what}"


def write_report_at(out: Path) -> Path:
    """Write the report of the study in ``out``; the path of its ``index.html``."""
    from smoothflip.report import write_report

    return write_report(out)


def run_study_here(
    spec: StudySpec,
    out: Path,
    *,
    options: dict[str, Any],
    settle: tuple[int | None, int] | None = None,
    track: Any = None,
    progress: bool = True,
    console: Any = None,
    warn: Callable[[str], None] | None = None,
    report: Callable[[Path], Path | None] | None = write_report_at,
) -> Results:
    """Run ``spec`` into ``out`` (see the module docstring).

    Args:
        spec: the study.
        out: the study directory.
        options: :func:`smoothflip.engine.run_study`'s options (``device``, ``executor``, ``workers``,
            ``pack_size``, ...; the ones left out keep their defaults).
        settle: ``(max_seeds, round_size)``: run until settled; None: the study's seeds.
        track: the experiment trackers (:meth:`smoothflip.tracking.session.TrackingSession.open`);
            a tracker that is not installed fails here, before anything trains.
        progress: show the plan, the progress and each until-settled look.
        console: the rich ``Console`` the progress display draws on (``smoothflip run``'s); None: a
            notebook line in a Jupyter kernel, else a bar on stderr.
        warn: how a tracker that fails is reported (default: a ``TrackingWarning``).
        report: called when training is done and the display is closed: writes the report and
            returns its ``index.html`` (its folder is attached to the trackers), or None.
    """
    from smoothflip.engine.runner import run_study
    from smoothflip.tracking.session import TrackingSession

    session = TrackingSession.open(track, warn=warn)
    executor, device = options.get("executor", "local"), options.get("device", "cpu")
    where = "on a Ray cluster" if executor == "ray" else f"on {device}"
    workers = options.get("workers", 1)
    with warnings_once():
        display = progress_display(spec.name, enabled=progress, console=console)
        with display as shown, session.ending_on_error():

            def on_plan(plan: Any) -> None:
                session.begin(out)
                shown.on_plan(plan, plan_text(spec, plan, where=where, workers=workers))

            run_options = {**options, "progress": shown.on_progress, "on_plan": on_plan}
            run_options["on_stored"] = session.log
            if settle is None:
                run_study(spec, out, **run_options)
            else:
                from smoothflip.engine.settle import run_until_settled

                max_seeds, round_size = settle
                run_until_settled(
                    spec,
                    out,
                    max_seeds=max_seeds,
                    round_size=round_size,
                    on_round=lambda look: shown.on_round(round_text(look)),
                    **run_options,
                )
        index = report(out) if report is not None else None
        session.finish(out, index.parent if index is not None else None)
    return Results(out, trained=shown.trained)


def warn_failures(results: Results) -> None:
    """A :class:`RunWarning` when runs of the study failed (the caller's caller is blamed)."""
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
