"""Figures of what noisy labels do: metrics against the noise rate, memorization of flipped labels.

:func:`accuracy_vs_noise` and :func:`calibration_vs_noise` (ECE and NLL) draw each arm's mean
over seeds with Student-t intervals against the noise rate (or attack budget), one panel per
noise model; :func:`memorization` draws how many flipped training examples each arm fits over
the epochs. Re-exported by :mod:`smoothflip.report.figures`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from smoothflip.report.data import StudyData, mean_curve, metric_values, t_interval
from smoothflip.report.figures._common import (
    FigureSkipped,
    _figure,
    _grid,
    _hide_unused,
    _percent_axis,
    _selection_text,
    _shared_legend,
    _unique_handles,
    arm_styles,
    plain,
)
from smoothflip.study.conditions import LabelCondition


@dataclass(frozen=True)
class _MetricAxis:
    key: str
    label: str
    scale: float
    percent: bool
    low: float = 0.0
    high: float = math.inf


ACCURACY = _MetricAxis("test_acc", "test accuracy", 100.0, True, high=100.0)
ECE = _MetricAxis("test_ece", "test ECE, 15 bins", 100.0, True, high=100.0)
NLL = _MetricAxis("test_nll", "test NLL (nats)", 1.0, False)


def _noise_panels(data: StudyData) -> list[tuple[str, list[LabelCondition]]]:
    """Noisy conditions grouped by noise model and options: ``(title, conditions by rate)``."""
    groups: dict[tuple[str, tuple[tuple[str, Any], ...]], list[LabelCondition]] = {}
    for c in data.noisy:
        key = (c.noise, tuple((k, repr(v)) for k, v in c.options))
        groups.setdefault(key, []).append(c)
    panels = []
    for conditions in groups.values():
        c = conditions[0]
        title = c.label.replace(f" {c.rate * 100:.4g}%", "", 1)
        panels.append((title, sorted(conditions, key=lambda x: x.rate)))
    return panels


def _vs_noise(data: StudyData, rows: Sequence[_MetricAxis]) -> tuple[Figure, str]:
    panels = _noise_panels(data)
    if not panels:
        raise FigureSkipped("The study has only the clean label condition, so there is no noise-rate axis.")
    if not data.results:
        raise FigureSkipped("No runs are stored yet.")
    if not any(metric_values(data.results, metric.key).size for metric in rows):
        keys = " or ".join(metric.key for metric in rows)
        raise FigureSkipped(f"No run stores {keys} (this study's runs do not measure it).")
    styles = arm_styles(data)
    clean = data.clean
    ncols = len(panels)
    fig, axes = _figure(len(rows), ncols, height=0.6 + 2.6 * len(rows), sharey="row")
    n_arms = len(data.plot_arms)
    seeds_used: set[int] = set()
    for col, (title, conditions) in enumerate(panels):
        points = ([clean] if clean is not None else []) + conditions
        rates = np.array([c.rate * 100 for c in points])
        span = float(rates.max() - rates.min()) if rates.size > 1 else 10.0
        dodge = 0.012 * span
        for row, metric in enumerate(rows):
            ax = axes[row, col]
            for i, arm in enumerate(data.plot_arms):
                xs, means, lows, highs = [], [], [], []
                for c, rate in zip(points, rates, strict=True):
                    runs = data.runs(arm, c)
                    seeds_used.update(r.seed for r in runs)
                    mean, low, high = t_interval(metric_values(runs, metric.key))
                    if math.isfinite(mean):
                        xs.append(rate + (i - (n_arms - 1) / 2) * dodge)
                        means.append(mean * metric.scale)
                        # Intervals are clipped to the metric's range (few seeds give wide ones).
                        lows.append(max(low * metric.scale, metric.low))
                        highs.append(min(high * metric.scale, metric.high))
                if not xs:
                    continue
                m = np.array(means)
                yerr = np.vstack([m - np.array(lows), np.array(highs) - m])
                style = styles[arm]
                ax.errorbar(
                    xs,
                    m,
                    yerr=yerr,
                    color=style["color"],
                    marker=style["marker"],
                    markersize=4.5,
                    linewidth=1.6 if arm == data.baseline else 1.2,
                    capsize=2.5,
                    elinewidth=0.9,
                    label=plain(arm),
                )
            if row == 0:
                ax.set_title(plain(title))
            if row == len(rows) - 1:
                attacked = all(c.noise == "attack" for c in conditions)
                ax.set_xlabel(
                    "attack budget (% of training labels)" if attacked else "training-label noise rate (%)"
                )
            if col == 0:
                ax.set_ylabel(metric.label + (" (%)" if metric.percent else ""))
            if metric.percent:
                _percent_axis(ax)
            ax.set_xticks(rates)
            ax.set_xticklabels([f"{r:g}" for r in rates])
    handles, labels = _unique_handles(axes)
    _shared_legend(fig, handles, labels, ncols=6)
    caption = (
        f"Mean over seeds at {_selection_text(data)}; error bars are 95% Student-t intervals of the "
        "mean over seeds (mean ± t·sd/√n, clipped to the metric's range). Clean labels (rate 0) appear "
        "in every panel; arms are shifted slightly sideways so their bars do not overlap."
    )
    return fig, caption


def accuracy_vs_noise(data: StudyData) -> tuple[Figure, str]:
    """Test accuracy vs noise rate per arm, one panel per noise model."""
    return _vs_noise(data, [ACCURACY])


def calibration_vs_noise(data: StudyData) -> tuple[Figure, str]:
    """Test ECE (top row) and NLL (bottom row) vs noise rate per arm, one column per noise model."""
    return _vs_noise(data, [ECE, NLL])


# --------------------------------------------------------------------------- memorization


def memorization(data: StudyData) -> tuple[Figure, str]:
    """Training accuracy on flipped examples (against their wrong labels) over epochs, per arm."""
    if not data.noisy:
        raise FigureSkipped("Memorization needs noisy labels; this study has only the clean condition.")
    panels = []
    for c in data.noisy:
        lines = [(arm, mean_curve(data.runs(arm, c), "train_acc_flipped")) for arm in data.plot_arms]
        lines = [(arm, line) for arm, line in lines if line is not None]
        if lines:
            panels.append((c, lines))
    if not panels:
        raise FigureSkipped("No run stores train_acc_flipped curves.")
    styles = arm_styles(data)
    nrows, ncols = _grid(len(panels), 3)
    fig, axes = _figure(nrows, ncols, height=0.6 + 2.4 * nrows, sharey=True)
    for ax, (c, lines) in zip(axes.flat, panels, strict=False):
        for arm, (epochs, mean) in lines:
            ax.plot(
                epochs,
                mean * 100,
                color=styles[arm]["color"],
                linewidth=1.8 if arm == data.baseline else 1.3,
                label=plain(arm),
            )
        ax.set_title(plain(c.label))
        ax.set_xlabel("epoch")
        _percent_axis(ax)
    top = max(float(np.max(mean)) for _c, lines in panels for _a, (_e, mean) in lines) * 100
    axes[0, 0].set_ylim(0, min(100.0, max(5.0, 1.15 * top)))
    for ax in axes[:, 0]:
        ax.set_ylabel("flipped examples fitted")
    _hide_unused(axes, len(panels))
    handles, labels = _unique_handles(axes)
    _shared_legend(fig, handles, labels, ncols=6)
    caption = (
        "Memorization: the share of flipped training examples (on a fixed subset of up to 1,024 "
        "training examples) that the model predicts as their wrong, flipped label, after each epoch; "
        "mean over seeds (a diverged run counts until it diverged). Lower means the arm fits "
        "fewer wrong labels."
    )
    return fig, caption
