"""What every report figure shares: fixed style, the result type and the layout helpers.

The DPI, width, rc settings and colour/marker palettes; :class:`FigureSkipped` and
:class:`FigureResult`; :func:`plain` (user strings drawn as plain text, ``$`` escaped) and
:func:`arm_styles`; the panel-grid, shared-legend and axis helpers; and :func:`to_png`, the
deterministic Agg render. Re-exported by :mod:`smoothflip.report.figures`.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from smoothflip.report.data import StudyData, measured_at

DPI = 120
"""Pixels per inch of every PNG (a 9-inch-wide figure is 1080 px, crisp at ~900 px in a browser)."""
WIDTH = 9.0
"""Figure width in inches."""
MAX_LABEL = 36
"""User strings longer than this are shortened (with an ellipsis) inside figures; tables keep them."""

_RC: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.labelsize": 9.5,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.fontsize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "text.usetex": False,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
    "path.simplify": False,
    "svg.hashsalt": "smoothflip",
}

BASELINE_COLOR = "#222222"
# Okabe-Ito (colour-blind safe) without black and the low-contrast yellow, then tab10 leftovers.
_PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#8C564B",
    "#7F7F7F",
    "#BCBD22",
    "#17BECF",
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
_CLASS_COLORS = ("#0072B2", "#D55E00", "#009E73")

VERDICT_COLORS = {
    "helps": "#9fd8a4",
    "hurts": "#f4a99b",
    "equivalent": "#b7d7ef",
    "inconclusive": "#d9d9d9",
    "no verdict": "#ffffff",
}
"""Cell colours of the verdict heat-map (the HTML uses the same hues)."""


class FigureSkipped(Exception):
    """A figure's data is absent; the message is the note the report shows instead."""


@dataclass(frozen=True)
class FigureResult:
    """One figure of the report.

    Attributes:
        name: file stem (``figures/<name>.png``).
        title: section heading.
        caption: what the figure shows (plain text).
        png: the PNG bytes, or None when the figure was skipped.
        note: why it was skipped (None when drawn).
    """

    name: str
    title: str
    caption: str
    png: bytes | None
    note: str | None = None


# --------------------------------------------------------------------------- text and style


def plain(text: Any, *, limit: int | None = MAX_LABEL) -> str:
    """A user string made safe to draw: ``$`` escaped (no mathtext), shortened past ``limit``.

    Example:
        >>> plain("cost $5 $x$")
        'cost \\\\$5 \\\\$x\\\\$'
    """
    s = " ".join(str(text).split())
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    s = s.replace("$", r"\$")
    if s.startswith("_"):  # matplotlib hides legend entries whose label starts with "_"
        s = " " + s
    return s


def arm_styles(data: StudyData) -> dict[str, dict[str, Any]]:
    """A fixed colour and marker per arm (the baseline is near-black), shared by every figure."""
    styles: dict[str, dict[str, Any]] = {data.baseline: {"color": BASELINE_COLOR, "marker": "o"}}
    others = [a for a in data.arms if a != data.baseline]
    for i, arm in enumerate(others):
        styles[arm] = {"color": _PALETTE[i % len(_PALETTE)], "marker": _MARKERS[(i + 1) % len(_MARKERS)]}
    return styles


def _figure(nrows: int, ncols: int, *, height: float, **kwargs: Any) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return -(-n // cols), cols


def _square_grid(n: int) -> tuple[int, int, float]:
    """Rows, columns and figure height for ``n`` square panels: 3 or 4 per row, fewest empty cells."""
    if n <= 4:
        cols = max(n, 1)
    else:
        cols = min((3, 4), key=lambda c: ((-n) % c, -c))
    rows = -(-n // cols)
    panel = (WIDTH - 0.3 - 0.45 * cols) / cols  # tick labels take about 0.45 in per panel
    return rows, cols, 0.45 + rows * (panel + 0.85)


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def _shared_legend(fig: Figure, handles: Sequence[Any], labels: Sequence[str], *, ncols: int = 4) -> None:
    """One legend above the panels, with as many columns as the longest label lets fit the width."""
    if handles:
        item = 0.6 + 0.075 * max(len(label) for label in labels)  # inches per entry at 8.5 pt
        fit = max(1, int((WIDTH - 0.2) // item))
        columns = max(1, min(len(labels), ncols, fit))
        fig.legend(handles, labels, loc="outside upper center", ncols=columns, frameon=False)
        rows = -(-len(labels) // columns)
        fig.set_figheight(fig.get_figheight() + 0.2 * (rows - 1))  # room for a legend of several rows


def _percent_axis(ax: Any, axis: str = "y") -> None:
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _pos: f"{v:g}%")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def to_png(fig: Figure) -> bytes:
    """Render ``fig`` with Agg to PNG bytes (fixed DPI, no software/time metadata)."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    with warnings.catch_warnings():  # a name with a character the font lacks is drawn as a box, quietly
        warnings.filterwarnings("ignore", message=r".*[Gg]lyph .* missing from")
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _selection_text(data: StudyData) -> str:
    return measured_at(data, long=True)


def _unique_handles(axes: np.ndarray) -> tuple[list[Any], list[str]]:
    seen: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    return list(seen.values()), list(seen)
