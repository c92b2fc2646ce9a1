"""Figures of what a technique does to the representation: projections and mutual information.

:func:`projection` draws penultimate-layer activations projected onto the plane of three class
templates (Müller et al. 2019), baseline against smoothing arms under clean labels;
:func:`mutual_information` draws the example-identity mutual-information estimate over training.
Re-exported by :mod:`smoothflip.report.figures`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from smoothflip.metrics import penultimate_projection
from smoothflip.report.data import StudyData, mean_curve
from smoothflip.report.figures._common import (
    _CLASS_COLORS,
    FigureSkipped,
    _figure,
    _grid,
    _hide_unused,
    _shared_legend,
    _square_grid,
    _unique_handles,
    arm_styles,
    plain,
)
from smoothflip.study.conditions import LabelCondition

# --------------------------------------------------------------------------- penultimate projection


def _class_names(rep: dict[str, Any], classes: Sequence[int]) -> list[str]:
    names = rep.get("class_names")
    if isinstance(names, list) and len(names) == len(classes):
        return [str(n) for n in names]
    if isinstance(names, list) and all(0 <= int(c) < len(names) for c in classes):
        return [str(names[int(c)]) for c in classes]
    return [f"class {int(c)}" for c in classes]


def _representation(data: StudyData, arm: str, condition: LabelCondition) -> tuple[int, dict] | None:
    for run in data.runs(arm, condition):  # by seed: the first seed that was probed
        rep = run.extras.get("representation")
        if isinstance(rep, dict) and all(k in rep for k in ("classes", "labels", "features", "head_weight")):
            return run.seed, rep
    return None


def projection(data: StudyData) -> tuple[Figure, str]:
    """Penultimate-layer projections (Müller et al. 2019): baseline vs smoothing arms, clean labels."""
    clean = data.clean
    if clean is None:
        raise FigureSkipped("Projections are drawn for the clean condition, which this study lacks.")
    panels = []
    problems = []
    for arm in (data.baseline, *data.smoothing_arms):
        found = _representation(data, arm, clean)
        if found is None:
            continue
        seed, rep = found
        bias = rep.get("head_bias")  # None (stored as null, read back as NaN) for a head without bias
        try:
            classes = [int(c) for c in rep["classes"]]
            points, templates = penultimate_projection(
                np.asarray(rep["features"], dtype=float),
                np.asarray(rep["head_weight"], dtype=float),
                classes,
                bias=np.asarray(bias, dtype=float) if isinstance(bias, list) else None,
                return_templates=True,
            )
        except (ValueError, TypeError) as err:
            problems.append(f"{arm}: {err}")
            continue
        labels = np.asarray(rep["labels"], dtype=int)
        panels.append((arm, seed, classes, _class_names(rep, classes), points, templates, labels, rep))
    if not panels:
        note = "No run stores penultimate-layer features (extras['representation']) for the clean condition."
        if problems:
            note += " Projection failed for " + "; ".join(problems) + "."
        raise FigureSkipped(note)
    nrows, ncols, height = _square_grid(len(panels))
    fig, axes = _figure(nrows, ncols, height=height)
    handles: dict[str, Any] = {}
    for ax, (arm, seed, classes, names, points, templates, labels, _rep) in zip(
        axes.flat, panels, strict=False
    ):
        for k, (cls, name) in enumerate(zip(classes, names, strict=True)):
            color = _CLASS_COLORS[k]
            chosen = labels == cls
            ax.scatter(
                points[chosen, 0],
                points[chosen, 1],
                s=7,
                color=color,
                alpha=0.55,
                linewidths=0,
                rasterized=False,
            )
            ax.scatter(
                templates[k, 0],
                templates[k, 1],
                s=150,
                marker="*",
                color=color,
                edgecolors="black",
                linewidths=0.9,
                zorder=5,
            )
            handles.setdefault(
                name,
                Line2D([], [], linestyle="", marker="o", markersize=6, color=color, label=plain(name)),
            )
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"{plain(arm, limit=34 - 4 * ncols)}\n(seed {seed})", fontsize=9.5)
        ax.tick_params(labelsize=7.5)
    _hide_unused(axes, len(panels))
    template = Line2D(
        [],
        [],
        linestyle="",
        marker="*",
        markersize=11,
        color="#bbbbbb",
        markeredgecolor="black",
        label="class template",
    )
    items = [*handles.values(), template]
    _shared_legend(fig, items, [h.get_label() for h in items], ncols=4)
    epochs = sorted({int(p[7].get("epoch", -1)) for p in panels})
    epoch_text = f"epoch {epochs[0]}" if len(epochs) == 1 and epochs[0] >= 0 else "the last epoch"
    caption = (
        "Penultimate-layer activations of test examples of three classes, projected onto the plane "
        "through those classes' templates (final-layer weight rows, bias included; Müller et al. 2019), "
        f"clean labels, {epoch_text}; stars mark the templates. Label smoothing tends to pull each "
        "class into a tight cluster equidistant from the other templates."
    )
    if problems:
        caption += " Left out: " + "; ".join(problems) + "."
    return fig, caption


# --------------------------------------------------------------------------- mutual information


def mutual_information(data: StudyData) -> tuple[Figure, str]:
    """The mutual-information estimate over training, baseline vs smoothing arms, per condition."""
    arms = (data.baseline, *data.smoothing_arms)
    panels = []
    sizes: set[int] = set()
    for c in data.conditions:
        lines = [(arm, mean_curve(data.runs(arm, c), "mi")) for arm in arms]
        lines = [(arm, line) for arm, line in lines if line is not None]
        if lines:
            panels.append((c, lines))
            for arm in arms:
                for run in data.runs(arm, c):
                    info = run.extras.get("mi")
                    if isinstance(info, dict) and isinstance(info.get("examples"), int | float):
                        sizes.add(int(info["examples"]))
    if not panels:
        raise FigureSkipped("No run stores a mutual-information curve (curves['mi']).")
    styles = arm_styles(data)
    nrows, ncols = _grid(len(panels), 3)
    fig, axes = _figure(nrows, ncols, height=0.6 + 2.4 * nrows, sharey=True)
    log2 = math.log(2)
    highest = log2
    for ax, (c, lines) in zip(axes.flat, panels, strict=False):
        top = log2
        for arm, (epochs, mean) in lines:
            ax.plot(
                epochs,
                mean,
                color=styles[arm]["color"],
                marker=styles[arm]["marker"] if epochs.size <= 30 else None,
                markersize=3,
                linewidth=1.8 if arm == data.baseline else 1.3,
                label=plain(arm),
            )
            top = max(top, float(np.nanmax(mean)))
        ax.axhline(log2, color="#777777", linestyle=":", linewidth=1.1)
        ax.annotate(
            "log 2",
            xy=(1.0, log2),
            xycoords=("axes fraction", "data"),
            xytext=(-3, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=8,
            color="#555555",
        )
        if len(sizes) == 1:
            log_n = math.log(next(iter(sizes)))
            if log_n <= 1.3 * top:  # draw the bound only when it does not squash the curves
                ax.axhline(log_n, color="#777777", linestyle="--", linewidth=0.9)
                top = max(top, log_n)
        ax.set_title(plain(c.label))
        ax.set_xlabel("epoch")
        highest = max(highest, top)
    axes[0, 0].set_ylim(0, 1.12 * highest)  # shared: the log 2 line and its label stay inside
    for ax in axes[:, 0]:
        ax.set_ylabel("I(X; Y) estimate (nats)")
    _hide_unused(axes, len(panels))
    handles, labels = _unique_handles(axes)
    _shared_legend(fig, handles, labels, ncols=6)
    if len(sizes) == 1:
        n = next(iter(sizes))
        bound = f"log N = log {n} ≈ {math.log(n):.2f} nats with N = {n} examples"
    else:
        bound = "log N, with N the number of examples"
    caption = (
        "Mutual information between a training example's identity and the difference of two logits "
        "under random augmentations (Müller et al. 2019), over training; mean over the probed runs. "
        f"The dotted line is log 2 (the two classes told apart, nothing else about the example); the "
        f"maximum is {bound}. Label smoothing is expected to erase information about the example "
        "(lower values)."
    )
    return fig, caption
