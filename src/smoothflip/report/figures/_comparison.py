"""Figures that set each arm against the baseline: reliability diagrams and the verdict heat-map.

:func:`reliability` pairs the baseline's pooled test-set reliability with each smoothing-type arm's
under clean labels; :func:`verdict_heatmap` shows every arm × condition × metric comparison, the
colour its verdict and the text its mean paired difference. Re-exported by
:mod:`smoothflip.report.figures`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.colors
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from smoothflip.report.data import StudyData, pooled_reliability
from smoothflip.report.figures._common import (
    VERDICT_COLORS,
    FigureSkipped,
    _figure,
    _grid,
    _hide_unused,
    _shared_legend,
    _square_grid,
    arm_styles,
    plain,
)

# --------------------------------------------------------------------------- reliability


def reliability(data: StudyData) -> tuple[Figure, str]:
    """Reliability diagrams with correct labels: the baseline against each smoothing-type arm."""
    clean = data.clean
    if clean is None:
        raise FigureSkipped("Reliability diagrams need the clean label condition, which this study lacks.")
    base = pooled_reliability(data.runs(data.baseline, clean))
    if base is None:
        raise FigureSkipped("The baseline's clean runs store no reliability bins.")
    arms = [(a, pooled_reliability(data.runs(a, clean))) for a in data.smoothing_arms]
    arms = [(a, p) for a, p in arms if p is not None]
    if not arms:
        raise FigureSkipped("No arm other than the baseline has reliability bins under clean labels.")
    styles = arm_styles(data)
    nrows, ncols, height = _square_grid(len(arms))
    fig, axes = _figure(nrows, ncols, height=height)
    handles: dict[str, Any] = {}
    for ax, (arm, pooled) in zip(axes.flat, arms, strict=False):
        (diagonal,) = ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1.0)
        handles.setdefault("perfect calibration", diagonal)
        for name, p in ((data.baseline, base), (arm, pooled)):
            used = p.count > 0
            (line,) = ax.plot(
                p.confidence[used],
                p.accuracy[used],
                color=styles[name]["color"],
                marker=styles[name]["marker"],
                markersize=4,
                linewidth=1.4,
            )
            handles.setdefault(plain(name), line)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        limit = 34 - 4 * ncols
        ax.set_title(
            f"{plain(arm, limit=limit)}\nECE {pooled.ece * 100:.1f}% "
            f"({plain(data.baseline, limit=limit // 2)}: {base.ece * 100:.1f}%)",
            fontsize=9.5,
        )
        ax.set_xlabel("confidence")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    _hide_unused(axes, len(arms))
    _shared_legend(fig, list(handles.values()), list(handles), ncols=7)
    caption = (
        "Test-set reliability with correct training labels at the selected epoch, pooled over seeds "
        "(bin counts summed; confidence and accuracy averaged per bin, weighted by count; 15 equal-width "
        "bins; empty bins left out). Each panel sets one smoothing or flipping arm against the baseline. "
        "Points below the diagonal are over-confident, above it under-confident. The ECE in each title "
        "is that of the pooled bins."
    )
    return fig, caption


# --------------------------------------------------------------------------- verdict heat-map


def verdict_heatmap(
    data: StudyData, comparisons: Sequence[Any], *, format_diff: Callable[[float, Any], str]
) -> tuple[Figure, str]:
    """Arms (rows) × conditions (columns), one panel per metric; colour = verdict, text = difference.

    Args:
        data: the study.
        comparisons: ``smoothflip.analysis.Comparison`` objects.
        format_diff: ``smoothflip.analysis.format_diff``.
    """
    if not comparisons:
        raise FigureSkipped("There is nothing to compare: the study has no arm besides the baseline.")
    metrics: dict[str, Any] = {}
    for c in comparisons:
        metrics.setdefault(c.metric.key, c.metric)
    arms = [a for a in data.others if any(c.arm == a for c in comparisons)]
    labels = [c.label for c in data.conditions if any(x.condition == c.label for x in comparisons)]
    table = {(c.metric.key, c.arm, c.condition): c for c in comparisons}
    max_cols = 3 if len(labels) <= 3 else 2 if len(labels) <= 6 else 1
    nrows, ncols = _grid(len(metrics), max_cols)
    cell_h = 0.36
    height = nrows * (1.0 + cell_h * len(arms)) + 0.5
    fig, axes = _figure(nrows, ncols, height=height)
    tick_labels = [textwrap.fill(plain(x, limit=30), 10) for x in labels]
    for index, (ax, (key, metric)) in enumerate(zip(axes.flat, metrics.items(), strict=False)):
        rgb = np.ones((len(arms), len(labels), 3))
        for i, arm in enumerate(arms):
            for j, label in enumerate(labels):
                comp = table.get((key, arm, label))
                verdict = comp.verdict if comp is not None else "no verdict"
                rgb[i, j] = matplotlib.colors.to_rgb(VERDICT_COLORS.get(verdict, "#ffffff"))
                text = "—" if comp is None else format_diff(comp.mean_diff, comp.metric)
                faint = verdict == "no verdict"
                ax.text(
                    j,
                    i,
                    plain(text, limit=None),
                    ha="center",
                    va="center",
                    fontsize=8.5,
                    color="#777777" if faint else "#111111",
                )
                if faint:
                    ax.add_patch(
                        Rectangle((j - 0.47, i - 0.47), 0.94, 0.94, fill=False, edgecolor="#cccccc", lw=0.8)
                    )
        ax.imshow(rgb, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(tick_labels, fontsize=8)
        ax.xaxis.tick_top()
        ax.set_yticks(range(len(arms)))
        first_column = index % ncols == 0
        ax.set_yticklabels([plain(a, limit=22) for a in arms] if first_column else [])
        ax.set_xticks(np.arange(-0.5, len(labels)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(arms)), minor=True)
        ax.grid(False)
        ax.grid(which="minor", color="white", linewidth=2)
        ax.tick_params(which="both", length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        arrow = "higher is better" if metric.higher_is_better else "lower is better"
        ax.set_title(f"{textwrap.fill(plain(metric.label, limit=None), 30)}\n({arrow})", fontsize=9.5)
    _hide_unused(axes, len(metrics))
    patches = [Patch(facecolor=color, edgecolor="#999999", label=v) for v, color in VERDICT_COLORS.items()]
    fig.legend(handles=patches, loc="outside lower center", ncols=5, frameon=False)
    caption = (
        f"Each arm against the baseline ({data.baseline}) trained on the same labels and seeds: the "
        "text is the mean paired difference (arm − baseline), the colour its verdict (the primary metric "
        "with family-wise error control, the others secondary with false-discovery control; see the "
        "verdict tables)."
    )
    return fig, caption
