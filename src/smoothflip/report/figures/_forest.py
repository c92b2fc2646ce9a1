"""Forest plots of a pooled analysis (``smoothflip meta``): studies, the pooled diamond, the prediction
interval and the zero line.

- :func:`forest`: one arm against its baseline on one metric, a panel per condition; a row per
  study (its estimate with its own 95% t interval, the square's area its weight), the pooled
  estimate as a diamond spanning its interval, the prediction interval as a bar below it.
- :func:`pooled_overview`: every arm in one figure (a row each, a panel per condition): the pooled
  diamond, the prediction interval and the studies' estimates as faint dots.

Values are drawn in the metric's display units (accuracy in points).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from scipy import stats

from smoothflip.analysis.meta import INTERVAL_NAMES, METHOD_NAMES
from smoothflip.report.figures._common import (
    _PALETTE,
    VERDICT_COLORS,
    FigureSkipped,
    _figure,
    _grid,
    _hide_unused,
    plain,
)

__all__ = ["forest", "pooled_overview"]

_DIAMOND = "#222222"
_PI = "#D55E00"


def _units(metric: Any) -> str:
    arrow = "higher is better" if metric.higher_is_better else "lower is better"
    unit = f" ({metric.unit})" if metric.unit else ""
    return f"{plain(metric.label, limit=None)} difference{unit}, {arrow}"


def _diamond(
    ax: Any, y: float, low: float, mid: float, high: float, *, color: str, height: float = 0.32
) -> None:
    ax.add_patch(
        Polygon(
            [(low, y), (mid, y + height), (high, y), (mid, y - height)],
            closed=True,
            facecolor=color,
            edgecolor=_DIAMOND,
            linewidth=0.8,
            zorder=3,
        )
    )


def _pooled(
    ax: Any,
    y: float,
    key: Any,
    scale: float,
    lows: list[float],
    highs: list[float],
    *,
    height: float,
    pi_offset: float,
    pi_width: float,
) -> None:
    """A pooled key at ``y``: the diamond (its interval, coloured by its verdict) and, above it, the
    prediction-interval bar, whose ends widen the axis limits in ``lows`` / ``highs``."""
    r = key.result
    color = VERDICT_COLORS.get(key.verdict, "#ffffff")
    _diamond(ax, y, r.ci[0] * scale, r.estimate * scale, r.ci[1] * scale, color=color, height=height)
    if r.pi is not None:
        ax.plot(
            [r.pi[0] * scale, r.pi[1] * scale],
            [y + pi_offset] * 2,
            color=_PI,
            linewidth=pi_width,
            solid_capstyle="butt",
            zorder=2,
        )
        lows.append(r.pi[0] * scale)
        highs.append(r.pi[1] * scale)


def _zero(ax: Any) -> None:
    ax.axvline(0.0, color="#555555", linewidth=0.9, linestyle="--", zorder=1)


def forest(keys: Sequence[Any], study_names: Sequence[str]) -> tuple[Figure, str]:
    """Forest plot of one arm (one metric), a panel per condition.

    Args:
        keys: :class:`~smoothflip.study.meta.PooledKey` objects of one arm, baseline and metric (one
            per condition).
        study_names: names of every pooled study (``PooledKey.effects[i].study`` indexes them).
    """
    if not keys:
        raise FigureSkipped("Nothing was pooled for this arm.")
    metric = keys[0].metric
    scale = metric.scale
    studies = sorted({e.study for k in keys for e in k.effects})
    rows = len(studies) + 2  # studies, a gap, the pooled diamond
    nrows, ncols = _grid(len(keys), 2 if len(keys) > 1 else 1)
    height = nrows * (0.9 + 0.27 * rows) + 0.6
    fig, axes = _figure(nrows, ncols, height=height, sharey=True)
    position = {s: i for i, s in enumerate(studies)}
    for ax, key in zip(axes.flat, keys, strict=False):
        r = key.result
        lows, highs = [], []
        for effect, weight in zip(key.effects, r.weights, strict=True):
            y = position[effect.study]
            t = float(stats.t.ppf(0.975, max(effect.n - 1, 1)))
            mid = effect.estimate * scale
            low, high = mid - t * effect.se * scale, mid + t * effect.se * scale
            lows.append(low)
            highs.append(high)
            ax.plot([low, high], [y, y], color="#444444", linewidth=1.1, zorder=2)
            ax.plot(
                [mid],
                [y],
                marker="s",
                color=_PALETTE[0],
                markersize=3 + 9 * math.sqrt(weight),
                zorder=3,
                linestyle="none",
            )
            ax.text(
                1.01,
                y,
                f"{100 * weight:.0f}%",
                transform=ax.get_yaxis_transform(),
                fontsize=7.5,
                va="center",
                color="#555555",
            )
        _pooled(ax, len(studies) + 1, key, scale, lows, highs, height=0.32, pi_offset=0.55, pi_width=2.2)
        _zero(ax)
        tau = "" if math.isnan(r.tau2) else f", I² {r.i2:.0f}%"
        ax.set_title(f"{plain(key.condition, limit=40)}\nk = {r.k}{tau}, {key.verdict}", fontsize=9.5)
        ax.set_xlabel(_units(metric), fontsize=8.5)
        span = (min([*lows, 0.0]), max([*highs, 0.0]))
        pad = 0.06 * (span[1] - span[0] or 1.0)
        ax.set_xlim(span[0] - pad, span[1] + pad)
    labels = [plain(study_names[s], limit=28) for s in studies] + ["", "pooled (RE)"]
    for ax in axes[:, 0]:
        ax.set_yticks(range(rows))
        ax.set_yticklabels(labels)
        ax.set_ylim(rows - 0.3, -0.7)
    _hide_unused(axes, len(keys))
    first = keys[0]
    caption = (
        f"{first.arm} against {first.baseline} on {metric.label}, per label condition: each study's mean "
        "paired difference over its seeds with its 95% t interval (square area: the study's weight in "
        "the pooled estimate, also printed on the right); the diamond is the random-effects estimate "
        f"({METHOD_NAMES[first.result.requested]}) with its {100 * first.result.level:g}% "
        f"{INTERVAL_NAMES[first.result.interval]} interval, coloured by the pooled verdict; the "
        "orange bar below it is the prediction interval for the effect in a new study like these "
        "(k ≥ 3); the dashed line is no difference."
    )
    return fig, caption


def pooled_overview(keys: Sequence[Any], *, conditions: Sequence[str] | None = None) -> tuple[Figure, str]:
    """Every arm's pooled effect on one metric, a panel per condition (or only ``conditions``)."""
    if not keys:
        raise FigureSkipped("Nothing was pooled on this metric.")
    metric = keys[0].metric
    scale = metric.scale
    labels = list(dict.fromkeys(k.condition for k in keys))
    if conditions is not None:
        labels = [c for c in labels if c in conditions]
    if not labels:
        raise FigureSkipped("None of these conditions was pooled.")
    arms = list(dict.fromkeys(k.arm for k in keys))
    table = {(k.condition, k.arm): k for k in keys}
    nrows, ncols = _grid(len(labels), 3)
    height = nrows * (0.9 + 0.42 * len(arms)) + 0.6
    fig, axes = _figure(nrows, ncols, height=height, sharey=True)
    for ax, label in zip(axes.flat, labels, strict=False):
        lows, highs = [0.0], [0.0]
        for i, arm in enumerate(arms):
            key = table.get((label, arm))
            if key is None:
                continue
            r = key.result
            dots = np.array([e.estimate for e in key.effects]) * scale
            ax.plot(dots, np.full(dots.size, i), "o", color="#9a9a9a", markersize=3, alpha=0.8, zorder=2)
            _pooled(ax, i, key, scale, lows, highs, height=0.28, pi_offset=0.36, pi_width=1.8)
            lows += [r.ci[0] * scale, float(dots.min())]
            highs += [r.ci[1] * scale, float(dots.max())]
            ax.text(
                1.01,
                i,
                f"k={r.k}",
                transform=ax.get_yaxis_transform(),
                fontsize=7.5,
                va="center",
                color="#555555",
            )
        _zero(ax)
        ax.set_title(plain(label, limit=40), fontsize=9.5)
        ax.set_xlabel(_units(metric), fontsize=8.5)
        pad = 0.06 * ((max(highs) - min(lows)) or 1.0)
        ax.set_xlim(min(lows) - pad, max(highs) + pad)
    for ax in axes[:, 0]:
        ax.set_yticks(range(len(arms)))
        ax.set_yticklabels([plain(a, limit=26) for a in arms])
        ax.set_ylim(len(arms) - 0.4, -0.6)
    _hide_unused(axes, len(labels))
    result = keys[0].result
    caption = (
        f"Each technique against its baseline on {metric.label}, pooled over the studies that have it "
        f"(k): the diamond is the random-effects estimate ({METHOD_NAMES[result.requested]}) with its "
        f"{INTERVAL_NAMES[result.interval]} interval, coloured by the pooled verdict (green helps, red "
        "hurts, blue equivalent, grey inconclusive); the orange bar is the prediction interval for a "
        "new study like these; grey dots are the studies' own estimates; the dashed line is no "
        "difference."
    )
    return fig, caption
