"""``[analysis]``: the primary metric, the error rate, the power and the equivalence margins.

```toml
[analysis]
primary = "accuracy"     # the metric whose verdicts control the family-wise error rate (Holm)
alpha = 0.05             # family-wise error rate (primary) and false discovery rate (secondary)
power = 0.8              # the power every cell's minimum detectable effect is computed for
target_mde = 1.0         # the effect an inconclusive primary cell is priced to detect (display units;
                         # default: 2 x its equivalence margin); or a table, one value per metric:

[analysis.margin]        # equivalence margins in display units: accuracy in points, the rest raw
accuracy = 0.5           # (default 0.5 points)
ece = 0.005              # (default 0.005; NLL 0.01, Brier 0.005, AURC / E-AURC 0.005, class-wise ECE 0.002)

[analysis.target_mde]    # instead of the number above: per metric (accuracy = the primary's, here)
accuracy = 1.0
ece = 0.01
```

``target_mde`` sets the true difference every inconclusive cell is priced to detect (the seeds at
which its minimum detectable effect reaches it; :mod:`smoothflip.study.pricing`). A number applies to
the primary metric; a table names metrics. A metric without one uses twice its equivalence margin:
an interval narrow enough to show equivalence of a null effect within ``±margin`` also excludes 0
for an effect of ``2 x margin``.

Metrics are named by their short name (``accuracy``, ``nll``, ``ece``, ``ece_ts``, ``brier``,
``aurc``, ``eaurc``, ``classwise_ece``, ``smooth_ece``; ``kl`` for language-model studies) or their
stored key (``test_acc``). Margins not given use the metric's default
(:attr:`smoothflip.analysis.MetricSpec.margin`). The section never enters a study's identity or a
run id: changing it re-reads the stored runs and trains nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from smoothflip.analysis import MetricSpec
from smoothflip.errors import SpecError
from smoothflip.study.spec.schema import AnalysisSpec, frozen
from smoothflip.study.tables import Table, number, show

ANALYSIS_KEYS = ("primary", "alpha", "power", "margin", "target_mde")


def _lookup(name: str, metrics: Sequence[MetricSpec], key: str) -> MetricSpec:
    for m in metrics:
        if name in (m.short, m.key):
            return m
    allowed = ", ".join(repr(m.short) for m in metrics)
    raise SpecError(f"{key} = {show(name)}: must name one of this study's metrics: {allowed}")


def read_analysis(raw: Any, metrics: Sequence[MetricSpec]) -> AnalysisSpec:
    """Validate ``[analysis]`` against the metrics of the study's kind."""
    t = Table(raw, "analysis")
    primary = t.str("primary", metrics[0].short)
    primary_key = _lookup(primary, metrics, "analysis.primary").key
    alpha = t.float("alpha", 0.05, low=0.0, high=0.5, low_open=True, high_open=True)
    power = t.float("power", 0.8, low=0.0, high=1.0, low_open=True, high_open=True)
    margins = Table(t.raw("margin", {}), "analysis.margin")
    given: dict[str, float] = {}
    for name in list(margins.data):
        metric = _lookup(name, metrics, f"analysis.margin.{name}")
        given[metric.key] = number(f"analysis.margin.{name}", margins.raw(name), low=0.0, low_open=True)
    targets = _targets(t.raw("target_mde", {}), metrics, primary_key)
    t.finish(ANALYSIS_KEYS)
    return AnalysisSpec(
        primary="" if primary_key == metrics[0].key else primary_key,
        alpha=alpha,
        power=power,
        margin=frozen(given),
        target_mde=frozen(targets),
    )


def _targets(raw: Any, metrics: Sequence[MetricSpec], primary_key: str) -> dict[str, float]:
    """``target_mde = 1.0`` (the primary metric) or ``[analysis.target_mde]`` (per metric)."""
    if not isinstance(raw, dict):
        return {primary_key: number("analysis.target_mde", raw, low=0.0, low_open=True)}
    table = Table(raw, "analysis.target_mde")
    targets: dict[str, float] = {}
    for name in list(table.data):
        metric = _lookup(name, metrics, f"analysis.target_mde.{name}")
        targets[metric.key] = number(f"analysis.target_mde.{name}", table.raw(name), low=0.0, low_open=True)
    return targets


def primary_metric(analysis: AnalysisSpec, metrics: Sequence[MetricSpec]) -> MetricSpec:
    """The primary metric among ``metrics`` (the first when the study names none)."""
    if not analysis.primary:
        return metrics[0]
    return next((m for m in metrics if m.key == analysis.primary), metrics[0])


def display_margin(analysis: AnalysisSpec, metric: MetricSpec) -> float:
    """The equivalence margin of ``metric`` in display units (given, else its default; NaN: none)."""
    return float(analysis.margin.get(metric.key, metric.margin))


def raw_margin(analysis: AnalysisSpec, metric: MetricSpec) -> float | None:
    """The margin in the metric's raw units (accuracy as a fraction), or None when it has none."""
    value = display_margin(analysis, metric)
    return value / metric.scale if math.isfinite(value) and value > 0 else None


def display_target(analysis: AnalysisSpec, metric: MetricSpec) -> float:
    """The MDE target of ``metric`` in display units: given, else twice its margin (NaN: none)."""
    if metric.key in analysis.target_mde:
        return float(analysis.target_mde[metric.key])
    margin = display_margin(analysis, metric)
    return 2.0 * margin if math.isfinite(margin) and margin > 0 else math.nan


def analysis_table(analysis: AnalysisSpec, metrics: Sequence[MetricSpec]) -> dict[str, Any]:
    """The resolved section for the written study file: every default filled in."""
    return {
        "primary": primary_metric(analysis, metrics).short,
        "alpha": analysis.alpha,
        "power": analysis.power,
        "margin": {m.short: display_margin(analysis, m) for m in metrics if math.isfinite(m.margin)},
        "target_mde": {
            m.short: display_target(analysis, m)
            for m in metrics
            if math.isfinite(display_target(analysis, m))
        },
    }
