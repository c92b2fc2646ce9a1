"""The study report: static HTML (self-contained, works offline), a Markdown twin, and PNG figures.

:func:`write_report` reads a study directory (``smoothflip run``'s output) and writes
``DIR/report/index.html``, ``DIR/report/report.md`` and ``DIR/report/figures/*.png``: the headline
per technique, the verdict table (paired differences against the baseline with 95% intervals, from
:mod:`smoothflip.analysis`), the figures, a per-arm summary and the package versions.
"""

from smoothflip.report.data import StudyData, load_study_data
from smoothflip.report.figures import FigureResult, build_figures
from smoothflip.report.render import md_escape, write_report

__all__ = ["FigureResult", "StudyData", "build_figures", "load_study_data", "md_escape", "write_report"]
