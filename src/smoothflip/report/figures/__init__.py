"""The report's figures: matplotlib ``Figure`` objects rendered with Agg to deterministic PNG bytes.

No pyplot: every figure is a :class:`matplotlib.figure.Figure` with a ``FigureCanvasAgg``, drawn
under matplotlib's default style plus a few fixed settings (so a user's ``matplotlibrc`` does not
change the report), and saved at a fixed DPI without a ``Software`` entry in the PNG metadata, so
the same study gives the same bytes.

Each figure builder takes a :class:`~smoothflip.report.data.StudyData` and returns ``(figure,
caption)`` or raises :class:`FigureSkipped` with a one-line note saying what data is missing.
:func:`build_figures` runs them all. User strings (arm names, condition labels, class names) are
drawn as plain text: :func:`plain` escapes ``$`` so mathtext never interprets them.

Layout: :mod:`~smoothflip.report.figures._common` holds the style, :class:`FigureResult`,
:class:`FigureSkipped`, :func:`plain` and the layout helpers every figure uses;
:mod:`~smoothflip.report.figures._noise` the metrics-vs-noise-rate figures and memorization;
:mod:`~smoothflip.report.figures._comparison` the reliability diagrams and the verdict heat-map;
:mod:`~smoothflip.report.figures._representation` the penultimate-layer projections and mutual
information; :mod:`~smoothflip.report.figures._distillation` teachers against students;
:mod:`~smoothflip.report.figures._certified` certified accuracy against label flips. This
module lists the figures (:data:`FIGURE_NAMES`) and draws them (:func:`build_figures`); import
everything from :mod:`smoothflip.report.figures` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import matplotlib
import matplotlib.style
from matplotlib.figure import Figure

from smoothflip.report.data import StudyData
from smoothflip.report.figures._certified import certified_accuracy
from smoothflip.report.figures._common import (
    _RC,
    BASELINE_COLOR,
    DPI,
    MAX_LABEL,
    VERDICT_COLORS,
    WIDTH,
    FigureResult,
    FigureSkipped,
    arm_styles,
    plain,
    to_png,
)
from smoothflip.report.figures._comparison import reliability, verdict_heatmap
from smoothflip.report.figures._distillation import distillation
from smoothflip.report.figures._noise import (
    ACCURACY,
    ECE,
    NLL,
    accuracy_vs_noise,
    calibration_vs_noise,
    memorization,
)
from smoothflip.report.figures._representation import mutual_information, projection

__all__ = [
    "ACCURACY",
    "ALL_FIGURE_NAMES",
    "BASELINE_COLOR",
    "DPI",
    "ECE",
    "FIGURE_NAMES",
    "MAX_LABEL",
    "NLL",
    "VERDICT_COLORS",
    "WIDTH",
    "FigureResult",
    "FigureSkipped",
    "accuracy_vs_noise",
    "arm_styles",
    "build_figures",
    "calibration_vs_noise",
    "certified_accuracy",
    "distillation",
    "draw_figure",
    "figure_names",
    "memorization",
    "mutual_information",
    "plain",
    "projection",
    "reliability",
    "to_png",
    "verdict_heatmap",
]


# --------------------------------------------------------------------------- all figures


def _figure_specs(
    data: StudyData, comparisons: Sequence[Any], format_diff: Callable[[float, Any], str]
) -> list[tuple[str, str, Callable[[], tuple[Figure, str]]]]:
    """``(name, title, build)`` of every figure of the report, in report order."""
    specs: list[tuple[str, str, Callable[[], tuple[Figure, str]]]] = [
        ("accuracy_vs_noise", "Accuracy vs noise rate", lambda: accuracy_vs_noise(data)),
        (
            "calibration_vs_noise",
            "Calibration (ECE and NLL) vs noise rate",
            lambda: calibration_vs_noise(data),
        ),
        ("reliability", "Reliability diagrams, correct labels", lambda: reliability(data)),
        ("memorization", "Memorization of flipped labels", lambda: memorization(data)),
        (
            "verdicts",
            "Verdicts at a glance",
            lambda: verdict_heatmap(data, comparisons, format_diff=format_diff),
        ),
        ("projection", "Penultimate-layer projections", lambda: projection(data)),
        ("mutual_information", "Mutual information over training", lambda: mutual_information(data)),
    ]
    if "distillation" in data.kind.report_parts:
        specs.insert(0, ("distillation", "Teachers and their students", lambda: distillation(data)))
    if "certified" in data.kind.report_parts:
        specs.insert(
            0, ("certified_accuracy", "Certified accuracy vs label flips", lambda: certified_accuracy(data))
        )
    return specs


def build_figures(
    data: StudyData,
    comparisons: Sequence[Any],
    *,
    format_diff: Callable[[float, Any], str],
) -> list[FigureResult]:
    """Draw every figure of the report (skipped ones carry a note), in report order."""
    out = []
    with matplotlib.style.context(["default", _RC]):
        for name, title, build in _figure_specs(data, comparisons, format_diff):
            try:
                fig, caption = build()
            except FigureSkipped as skipped:
                out.append(FigureResult(name=name, title=title, caption="", png=None, note=str(skipped)))
                continue
            out.append(FigureResult(name=name, title=title, caption=caption, png=to_png(fig)))
    return out


def figure_names(data: StudyData) -> tuple[str, ...]:
    """The names of the figures of ``data``'s report, in report order (its kind's own figures first;
    some may be skipped when the study lacks their data)."""
    return tuple(name for name, _title, _build in _figure_specs(data, (), format_diff=lambda d, m: ""))


def draw_figure(
    name: str,
    data: StudyData,
    comparisons: Sequence[Any],
    *,
    format_diff: Callable[[float, Any], str],
) -> tuple[Figure, str]:
    """One figure of the report as ``(figure, caption)``, drawn as the report draws it.

    Raises:
        KeyError: ``name`` is not a figure of this study's report.
        FigureSkipped: the study lacks what the figure shows (the note says what).
    """
    for figure_name, _title, build in _figure_specs(data, comparisons, format_diff):
        if figure_name == name:
            with matplotlib.style.context(["default", _RC]):
                return build()
    raise KeyError(name)


FIGURE_NAMES = (
    "accuracy_vs_noise",
    "calibration_vs_noise",
    "reliability",
    "memorization",
    "verdicts",
    "projection",
    "mutual_information",
)
"""File stems of the figures of every report."""

ALL_FIGURE_NAMES = ("certified_accuracy", "distillation", *FIGURE_NAMES)
"""Every figure the report may write (stale ones are removed on a rewrite)."""
