"""The words around a comparison: differences in display units and one-sentence headlines.

Example:
    >>> from smoothflip.analysis import METRICS, format_diff
    >>> format_diff(0.024, METRICS[0])
    '+2.4 pts'
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from smoothflip.analysis.compare import Comparison, MetricSpec, _names
from smoothflip.analysis.intervals import MIN_SEEDS

__all__ = ["format_diff", "format_size", "headline", "headlines"]

_SUFFIX = re.compile(r"^(?P<head>.*?)\s*(?P<suffix>\([^()]*\))$")


def format_diff(value: float, metric: MetricSpec) -> str:
    """A difference in the metric's display units with an explicit sign.

    Accuracy (``unit="pts"``) gets 1 decimal, other metrics 3; a nonzero value that would round to
    zero gets just enough decimals to show its first digit. NaN gives ``"n/a"``.

    Args:
        value: difference in raw units (accuracy as a fraction).
        metric: the metric it belongs to.

    Example:
        >>> from smoothflip.analysis import METRICS
        >>> format_diff(0.003, METRICS[0]), format_diff(-0.0123, METRICS[2]), format_diff(2e-4, METRICS[4])
        ('+0.3 pts', '-0.012', '+0.0002')
    """
    text = _number(value, metric)
    return f"{text} {metric.unit}" if metric.unit and text != "n/a" else text


def format_size(value: float, metric: MetricSpec) -> str:
    """An unsigned size in display units (a minimum detectable effect): ``"1.2 pts"``, ``"0.004"``,
    ``"inf"`` when no effect can be detected at these seeds.

    Example:
        >>> from smoothflip.analysis import METRICS
        >>> format_size(0.0123, METRICS[0]), format_size(float("inf"), METRICS[2])
        ('1.2 pts', 'inf')
    """
    if value == math.inf:
        return "inf"
    return format_diff(abs(value), metric).lstrip("+")


def _number(value: float, metric: MetricSpec) -> str:
    if not math.isfinite(value):
        return "n/a"
    v = value * metric.scale
    decimals = 1 if metric.unit else 3
    if v != 0 and round(v, decimals) == 0:
        first_digit = -math.floor(math.log10(abs(v)))
        if first_digit <= decimals + 5:
            decimals = first_digit
        else:
            v = 0.0
    text = f"{v:+.{decimals}f}"
    return "+" + text[1:] if float(text) == 0 else text  # no "-0.000"


def _condition_phrase(comparison: Comparison) -> str:
    if comparison.condition == "clean" or comparison.noise == "none":
        return "With correct labels"
    match = _SUFFIX.match(comparison.condition)
    if match:
        return f"At {match['head']} noise {match['suffix']}"
    return f"At {comparison.condition} noise"


def _metric_phrase(c: Comparison) -> str:
    label = c.metric.label
    if c.n == 0:
        return f"{label} n/a (no paired seeds: no verdict possible)"
    diff = format_diff(c.mean_diff, c.metric)
    if c.n < MIN_SEEDS or c.verdict == "no verdict":
        seeds = "1 seed" if c.n == 1 else f"{c.n} seeds"
        return f"{label} {diff} ({seeds}: no verdict possible)"
    low, high = _number(c.ci_low, c.metric), _number(c.ci_high, c.metric)
    text = f"{label} {diff} [{low}, {high}], {c.verdict}"
    if c.verdict == "inconclusive" and not math.isnan(c.mde):
        text += f" (MDE {format_size(c.mde, c.metric)})"
    return text


def headline(
    comparisons: Sequence[Comparison], *, arm: str, metrics: Sequence[str] = ("test_acc", "test_ece")
) -> str:
    """A short answer in words for one arm: one sentence per condition.

    Each sentence gives, per metric, the mean difference from the baseline (accuracy in points with
    one decimal, other metrics in raw units with three), its bootstrap interval and the verdict.
    Conditions come in the order of ``comparisons``; a metric missing under a condition is left out.

    Args:
        comparisons: output of :func:`compare` (other arms are ignored).
        arm: the arm to describe.
        metrics: metric keys to mention, in order.

    Returns:
        The sentences joined by spaces.

    Raises:
        ValueError: no comparison for ``arm``, or a metric key that none of its comparisons has.

    Example:
        >>> from smoothflip.analysis import METRICS
        >>> acc, ece = METRICS[0], METRICS[2]
        >>> def c(metric, diff, low, high, verdict, n=5):
        ...     return Comparison("clean", "none", 0.0, "ls", "ce", metric, n, 0, 0, 0, 0,
        ...                       diff, 0, low, high, 0.5, verdict)
        >>> print(headline([c(acc, 0.003, -0.004, 0.010, "no detectable effect"),
        ...                 c(ece, -0.012, -0.015, -0.009, "helps")], arm="ls"))
        ... # doctest: +NORMALIZE_WHITESPACE
        With correct labels: accuracy +0.3 pts [-0.4, +1.0], no detectable effect;
        ECE -0.012 [-0.015, -0.009], helps.
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    mine = [c for c in comparisons if c.arm == arm]
    if not mine:
        arms = list(dict.fromkeys(c.arm for c in comparisons))
        raise ValueError(f"arm {arm!r} has no comparisons; arms there: {_names(arms)}")
    keys = {c.metric.key for c in mine}
    unknown = [m for m in metrics if m not in keys]
    if unknown:
        raise ValueError(f"metrics: {_names(unknown)} not compared for arm {arm!r}; compared: {_names(keys)}")
    by_condition: dict[str, dict[str, Comparison]] = {}
    for c in mine:
        by_condition.setdefault(c.condition, {}).setdefault(c.metric.key, c)
    sentences = []
    for found in by_condition.values():
        parts = [_metric_phrase(found[m]) for m in metrics if m in found]
        if parts:
            first = next(iter(found.values()))
            sentences.append(f"{_condition_phrase(first)}: {'; '.join(parts)}.")
    return " ".join(sentences)


def headlines(
    comparisons: Sequence[Comparison],
    *,
    arms: Sequence[str] | None = None,
    metrics: Sequence[str] = ("test_acc", "test_ece"),
) -> dict[str, str]:
    """:func:`headline` for several arms (default: every arm in ``comparisons``, first-seen order).

    Example:
        >>> headlines([])
        {}
    """
    if arms is None:
        arms = list(dict.fromkeys(c.arm for c in comparisons))
    elif isinstance(arms, str):
        arms = [arms]
    return {arm: headline(comparisons, arm=arm, metrics=metrics) for arm in arms}
