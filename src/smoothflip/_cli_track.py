"""``smoothflip run --track`` and ``smoothflip export --to``: experiment trackers from the command line.

- :func:`tracker_warning`: how a tracker that fails during ``smoothflip run --track mlflow[=URI]
  --track tensorboard[=DIR]`` is reported: one ``warning:`` line, and the study goes on (the
  trackers themselves are opened by :func:`smoothflip.api.running.run_study_here`, as for
  ``study.run(track=...)``; a missing one is a one-line error before anything trains).
- :func:`export_to` pushes a stored study to a tracker (``smoothflip export DIR --to mlflow``): every
  finished run the tracker does not hold yet, and the report; here a failure is an error (exit 2).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from smoothflip._text import printable
from smoothflip.errors import SmoothflipError

__all__ = ["TRACK_HELP", "export_to", "tracker_warning"]

TRACK_HELP = (
    "Log the study to an experiment tracker as it trains: mlflow[=URI] (a tracking server, or a folder; "
    "default MLFLOW_TRACKING_URI or ./mlruns) or tensorboard[=DIR] (default ./runs); repeatable. "
    "Needs smoothflip[mlflow] / smoothflip[tensorboard]."
)


def tracker_warning(console: Console) -> Callable[[str], None]:
    """Reports a tracker's failure as one ``warning:`` line on ``console``."""

    def warn(message: str) -> None:
        console.print(f"warning: {escape(printable(message))}", highlight=False, soft_wrap=True)

    return warn


def export_to(
    directory: Path, target: str, out: Console, *, file_options: dict[str, Any] | None = None
) -> None:
    """Push the study stored in ``directory`` to the tracker ``target`` (``mlflow[=URI]`` ...).

    Args:
        file_options: the file export's options given too (``{"--format": True, "--out": None}``):
            any that is set is refused, not silently ignored.

    Raises:
        SmoothflipError: a file export's option with ``--to``; no finished runs; a tracker that is not
            installed, not reachable or fails.
    """
    given = [name for name, value in (file_options or {}).items() if value]
    if given:
        raise SmoothflipError(
            f"{' and '.join(given)}: options of the file export; --to {target} pushes to a tracker "
            "(run them as two commands)"
        )
    from smoothflip.report import write_report
    from smoothflip.study.results import load_study_data
    from smoothflip.tracking.session import TrackingSession

    data = load_study_data(directory)  # no study, a damaged store: one line, before any tracker call
    if not data.results and not data.incomplete:
        raise SmoothflipError(f"{directory} holds no finished runs to export yet")
    session = TrackingSession.open([target], strict=True)
    with tempfile.TemporaryDirectory(prefix="smoothflip-report-") as folder:
        report = directory / "report"
        if not (report / "index.html").is_file():  # the study directory is left as it is
            report = write_report(directory, out=Path(folder) / "report").parent
        session.begin(directory)
        before = dict(session.counts)
        session.finish(directory, report)
    for tracker in session.trackers:
        added = session.counts.get(tracker.name, 0) - before.get(tracker.name, 0)
        total = len(data.results) + len(data.incomplete)
        report_note = "; the report attached" if getattr(tracker, "keeps_report", False) else ""
        out.print(
            f"exported {directory} to {tracker.describe()}: {added} run(s) logged, "
            f"{total - added} already there{report_note}",
            markup=False,
            highlight=False,
        )
