"""The report's figures: matplotlib ``Figure`` objects rendered with Agg to deterministic PNG bytes.

No pyplot: every figure is a :class:`matplotlib.figure.Figure` with a ``FigureCanvasAgg``, drawn
under matplotlib's default style plus a few fixed settings (so a user's ``matplotlibrc`` does not
change the report), and saved at a fixed DPI without a ``Software`` entry in the PNG metadata, so
the same study gives the same bytes.

Each figure builder takes a :class:`~smoothflip.report.data.StudyData` and returns ``(figure,
caption)`` or raises :class:`FigureSkipped` with a one-line note saying what data is missing.
:func:`build_figures` runs them all. User strings (arm names, condition labels, class names) are
drawn as plain text: :func:`plain` escapes ``$`` so mathtext never interprets them.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import matplotlib.colors
import matplotlib.style
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from smoothflip.metrics import penultimate_projection
from smoothflip.report.data import (
    StudyData,
    mean_curve,
    metric_values,
    pooled_reliability,
    t_interval,
)
from smoothflip.study.conditions import LabelCondition

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
    "no detectable effect": "#d9d9d9",
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
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


# --------------------------------------------------------------------------- metrics vs noise rate


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


def _selection_text(data: StudyData) -> str:
    what = "validation NLL" if data.spec.train.selection == "val_nll" else "validation accuracy"
    return f"the selected epoch (best {what}, measured on the noisy validation labels)"


def _vs_noise(data: StudyData, rows: Sequence[_MetricAxis]) -> tuple[Figure, str]:
    panels = _noise_panels(data)
    if not panels:
        raise FigureSkipped("The study has only the clean label condition, so there is no noise-rate axis.")
    if not data.results:
        raise FigureSkipped("No runs are stored yet.")
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


def _unique_handles(axes: np.ndarray) -> tuple[list[Any], list[str]]:
    seen: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    return list(seen.values()), list(seen)


def accuracy_vs_noise(data: StudyData) -> tuple[Figure, str]:
    """Test accuracy vs noise rate per arm, one panel per noise model."""
    return _vs_noise(data, [ACCURACY])


def calibration_vs_noise(data: StudyData) -> tuple[Figure, str]:
    """Test ECE (top row) and NLL (bottom row) vs noise rate per arm, one column per noise model."""
    return _vs_noise(data, [ECE, NLL])


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
    fig.legend(handles=patches, loc="outside lower center", ncols=4, frameon=False)
    caption = (
        f"Each arm against the baseline ({data.baseline}) trained on the same labels and seeds: the "
        "text is the mean paired difference (arm − baseline), the colour the verdict from its 95% "
        "interval (see the verdict table)."
    )
    return fig, caption


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


# --------------------------------------------------------------------------- all figures


def distillation(data: StudyData) -> tuple[Figure, str]:
    """Teacher accuracy vs student accuracy: one point per teacher smoothing and temperature."""
    d = data.spec.distillation
    if data.spec.kind != "distillation" or d is None:
        raise FigureSkipped("Only distillation studies have teachers and students.")
    conditions = list(data.conditions)
    ncols = min(3, len(conditions))
    nrows = math.ceil(len(conditions) / ncols)
    fig, axes = _figure(nrows, ncols, height=0.8 + 3.4 * nrows)
    cmap = matplotlib.colormaps["viridis"]
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    drawn = False
    for ax, condition in zip(axes.flat, conditions, strict=False):
        for i, eps in enumerate(d.teacher_eps):
            color = cmap(i / max(1, len(d.teacher_eps) - 1) * 0.9)
            tx, tlo, thi = t_interval(metric_values(data.runs(f"teacher-ls-{eps:g}", condition), "test_acc"))
            if not math.isfinite(tx):
                continue
            for j, temperature in enumerate(d.temperatures):
                runs = data.runs(f"student-T{temperature:g}-from-ls-{eps:g}", condition)
                sy, slo, shi = t_interval(metric_values(runs, "test_acc"))
                if not math.isfinite(sy):
                    continue
                ax.errorbar(
                    [tx * 100],
                    [sy * 100],
                    xerr=[[(tx - max(tlo, 0.0)) * 100], [(min(thi, 1.0) - tx) * 100]],
                    yerr=[[(sy - max(slo, 0.0)) * 100], [(min(shi, 1.0) - sy) * 100]],
                    color=color,
                    marker=markers[j % len(markers)],
                    markersize=6,
                    linestyle="none",
                    capsize=2,
                    elinewidth=0.8,
                    label=f"teacher eps {eps:g}, T = {temperature:g}",
                )
                drawn = True
        direct = t_interval(metric_values(data.runs("student-ls-0", condition), "test_acc"))[0]
        if math.isfinite(direct):
            ax.axhline(direct * 100, color="0.3", linestyle="--", linewidth=1.0, label="student, plain CE")
        best = max(
            (t_interval(metric_values(data.runs(f"student-ls-{e:g}", condition), "test_acc"))[0], e)
            for e in d.student_eps
        )
        if math.isfinite(best[0]) and best[1] != 0:
            ax.axhline(
                best[0] * 100, color="0.3", linestyle=":", linewidth=1.0, label="student, best direct LS"
            )
        ax.set_title(plain(condition.label))
        ax.set_xlabel("teacher test accuracy (%)")
        ax.set_ylabel("student test accuracy (%)")
    _hide_unused(axes, len(conditions))
    if not drawn:
        raise FigureSkipped("No teacher and student runs are stored yet.")
    handles, labels = _unique_handles(axes)
    _shared_legend(fig, handles, labels, ncols=4)
    caption = (
        "Each point is a student distilled from one teacher (colour: the teacher's label smoothing eps; "
        f"marker: the distillation temperature T), at {_selection_text(data)}: the teacher's test accuracy "
        "(x) against the student's (y), means over seeds with 95% Student-t intervals. Dashed: the student "
        "model trained directly with plain cross-entropy; dotted: the best student trained directly with "
        "label smoothing. Müller et al. (2019) report that a better, smoothed teacher can give a worse "
        "student. Intervals are clipped to [0, 100]."
    )
    return fig, caption


def build_figures(
    data: StudyData,
    comparisons: Sequence[Any],
    *,
    format_diff: Callable[[float, Any], str],
) -> list[FigureResult]:
    """Draw every figure of the report (skipped ones carry a note), in report order."""
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
    if data.spec.kind == "distillation":
        specs.insert(0, ("distillation", "Teachers and their students", lambda: distillation(data)))
    out = []
    with matplotlib.style.context(["default", _RC]):
        for name, title, build in specs:
            try:
                fig, caption = build()
            except FigureSkipped as skipped:
                out.append(FigureResult(name=name, title=title, caption="", png=None, note=str(skipped)))
                continue
            out.append(FigureResult(name=name, title=title, caption=caption, png=to_png(fig)))
    return out


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

ALL_FIGURE_NAMES = ("distillation", *FIGURE_NAMES)
"""Every figure the report may write (stale ones are removed on a rewrite)."""
