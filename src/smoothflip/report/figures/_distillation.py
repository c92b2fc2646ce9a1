"""The distillation study's figure: each teacher's test accuracy against its students'.

:func:`distillation` draws one point per teacher label smoothing and distillation temperature,
with the directly trained students as reference lines. Re-exported by
:mod:`smoothflip.report.figures`.
"""

from __future__ import annotations

import math

import matplotlib
from matplotlib.figure import Figure

from smoothflip.report.data import StudyData, metric_values, t_interval
from smoothflip.report.figures._common import (
    FigureSkipped,
    _figure,
    _hide_unused,
    _selection_text,
    _shared_legend,
    _unique_handles,
    plain,
)


def distillation(data: StudyData) -> tuple[Figure, str]:
    """Teacher accuracy vs student accuracy: one point per teacher smoothing and temperature."""
    d = data.spec.distillation
    if "distillation" not in data.kind.report_parts or d is None:
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
