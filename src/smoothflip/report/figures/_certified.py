"""The certified study's figure: certified accuracy against the number of label flips, per arm.

One panel per ``k`` and label condition; one line per arm (mean over seeds) with its 95% Student-t
band, from every test point's stored radius. Re-exported by :mod:`smoothflip.report.figures`.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from smoothflip.report.certified import curve, ensemble
from smoothflip.report.data import StudyData
from smoothflip.report.figures._common import (
    FigureSkipped,
    _figure,
    _hide_unused,
    _percent_axis,
    _shared_legend,
    _unique_handles,
    arm_styles,
    plain,
)


def certified_accuracy(data: StudyData) -> tuple[Figure, str]:
    """Certified accuracy (%) vs radius (label flips) per arm, one panel per ``k`` and condition."""
    cert = data.spec.certify
    if "certified" not in data.kind.report_parts or cert is None:
        raise FigureSkipped("Only certified studies have certificates.")
    panels = [(k, c) for k in cert.partitions for c in data.conditions]
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = _figure(nrows, ncols, height=0.9 + 3.0 * nrows)
    styles = arm_styles(data)
    drawn = False
    for ax, (k, condition) in zip(axes.flat, panels, strict=False):
        runs_by_arm = {arm: data.runs(arm, condition) for arm in data.arms}
        top = 0
        for runs in runs_by_arm.values():
            for run in runs:
                found = ensemble(run, k)
                if found is not None and found["radius"]:
                    top = max(top, int(max(found["radius"])))
        radii = np.arange(top + 2)
        for arm, runs in runs_by_arm.items():
            mean, low, high = curve(runs, k, radii.tolist())
            if not np.isfinite(mean).any():
                continue
            style = styles.get(arm, {})
            ax.step(
                radii, 100 * mean, where="post", color=style.get("color"), label=plain(arm), linewidth=1.4
            )
            ax.fill_between(
                radii,
                100 * np.clip(low, 0, 1),
                100 * np.clip(high, 0, 1),
                step="post",
                color=style.get("color"),
                alpha=0.15,
                linewidth=0,
            )
            drawn = True
        for r in cert.radii:
            ax.axvline(r, color="0.85", linewidth=0.6, zorder=0)
        ax.set_title(plain(f"k = {k}, {condition.label}", limit=48))
        ax.set_xlabel("label flips r")
        ax.set_ylabel("certified accuracy")
        ax.set_ylim(0, 100)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _percent_axis(ax)
    _hide_unused(axes, len(panels))
    if not drawn:
        raise FigureSkipped("No certified runs are stored yet.")
    handles, labels = _unique_handles(axes)
    _shared_legend(fig, handles, labels, ncols=4)
    caption = (
        "The fraction of test points predicted correctly by the partition ensemble and certified against "
        "r flipped training labels (DPA's vote-gap certificate, Finite Aggregation's for d > 1), for each "
        "arm's base learners: mean over seeds with 95% Student-t bands. At r = 0 it is the ensemble's clean "
        "accuracy; it cannot exceed 0 past k / 2. Grey lines mark the study's radii."
    )
    return fig, caption
