"""Paired statistics and verdicts: does an arm help, hurt, or make no detectable difference?

The package splits the former ``analysis.py``: :mod:`~smoothflip.analysis.compare` (comparisons of
stored runs), :mod:`~smoothflip.analysis.intervals` (bootstrap and t intervals, interquartile
mean) and :mod:`~smoothflip.analysis.text` (differences and headlines in words).
"""

from smoothflip.analysis.compare import (
    LM_METRICS,
    METRICS,
    VERDICTS,
    Comparison,
    MetricSpec,
    compare,
    comparisons_frame,
    diverged_counts,
    metrics_for,
    verdict_of,
)
from smoothflip.analysis.intervals import (
    MIN_SEEDS,
    MIN_SEEDS_IQM,
    expanded_level,
    interquartile_mean,
    paired_interval,
    paired_t_interval,
)
from smoothflip.analysis.text import format_diff, headline, headlines

__all__ = [
    "LM_METRICS",
    "METRICS",
    "MIN_SEEDS",
    "MIN_SEEDS_IQM",
    "VERDICTS",
    "Comparison",
    "MetricSpec",
    "compare",
    "comparisons_frame",
    "diverged_counts",
    "expanded_level",
    "format_diff",
    "headline",
    "headlines",
    "interquartile_mean",
    "metrics_for",
    "paired_interval",
    "paired_t_interval",
    "verdict_of",
]
