"""The verdict as rows of text, shared by ``smoothflip verdict`` (terminal) and the report (HTML and
Markdown), so both show the same words, intervals and minimum detectable effects.

:func:`verdict_rows` turns a :class:`~smoothflip.study.verdict.StudyVerdict` into

- ``design``: sentences that state how the verdicts were read (primary metric, correction, error
  rate, intervals, margins, the until-settled design and why it stopped);
- ``primary``: one row per arm x condition for the primary metric;
- ``secondary``: one row per arm x condition x secondary metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from smoothflip.analysis import format_diff, format_size

__all__ = ["design_sentences", "verdict_rows"]


def _bare(text: str, unit: str) -> str:
    suffix = f" {unit}"
    return text[: -len(suffix)] if unit and text.endswith(suffix) else text


def _row(c: Any, label: str) -> dict[str, Any]:
    metric = c.metric
    finite = math.isfinite(c.ci_low) and math.isfinite(c.ci_high)
    low, high = (_bare(format_diff(v, metric), metric.unit) for v in (c.ci_low, c.ci_high))
    interval = (
        f"[{low}, {high}]" if finite else ("[-inf, inf]" if c.n >= 2 and c.verdict != "no verdict" else "")
    )
    mde = "" if math.isnan(c.mde) else format_size(c.mde, metric)
    p = "" if math.isnan(c.p_adjusted) else f"{c.p_adjusted:.3g}"
    return {
        "condition": c.condition,
        "arm": label,
        "metric": metric.label,
        "unit": metric.unit,
        "n": c.n,
        "diff": format_diff(c.mean_diff, metric) if c.n else "n/a",
        "interval": interval,
        "verdict": c.verdict,
        "mde": mde,
        "p": p,
        "role": c.role,
    }


def _seeds_range(settle: Mapping[str, Any]) -> str:
    counts = [int(c.get("seeds", 0)) for c in settle.get("seeds_per_cell", []) if isinstance(c, Mapping)]
    if not counts:
        return "unknown"
    low, high = min(counts), max(counts)
    return f"{low}" if low == high else f"{low} to {high}"


def design_sentences(result: Any) -> list[str]:
    """How the verdicts were read, in sentences (the same in the terminal and the report)."""
    if result.primary is None or not result.families:
        return []
    primary = result.families.get(result.primary.key)
    alpha = f"{100 * result.alpha:g}%"
    out = []
    if primary is not None:
        margin = primary.margin
        size = format_size(margin / primary.metric.scale, primary.metric)
        eq = (
            f"; equivalent = the difference lies within ±{size} "
            "(two one-sided tests, in the same Holm family)"
            if math.isfinite(margin)
            else ""
        )
        out.append(
            f"Primary metric: {primary.metric.label}. Its verdicts over all {primary.tested} arm × condition "
            f"cells control the family-wise error rate at {alpha} (Holm's step-down on paired "
            f"{'anytime-valid e-process p-values' if result.design == 'sequential' else 't-tests'}){eq}; "
            f"intervals are {primary.interval}."
        )
    out.append(
        f"Secondary metrics (every other metric, labelled secondary): Benjamini-Hochberg per metric, false "
        f"discovery rate {alpha}, per-cell {100 * (1 - result.alpha):g}% intervals; they are not covered by "
        "the primary metric's family-wise guarantee."
    )
    out.append(
        f"MDE: the smallest true difference each cell would detect with {100 * result.power:g}% power at "
        "the seeds it has, at the level of Holm's first step (alpha / m); inconclusive cells could hide "
        "effects up to about that size."
    )
    settle = result.settle
    if settle:
        start, size, cap = (settle.get(k, "?") for k in ("start_seeds", "round_size", "max_seeds"))
        out.append(
            f"Design: until settled (smoothflip run --until-settled): {start} seeds first, then {size} "
            f"more per round to every cell whose primary verdict was open, at most {cap} per cell; "
            f"{settle.get('rounds', 0)} round(s) added seeds; cells got {_seeds_range(settle)} paired "
            "seeds. The tests are the safe t-test e-process (anytime-valid: the error rate holds although "
            f"the verdicts were looked at after every round). Stopped because {settle.get('stopped', '?')}."
        )
    else:
        out.append("Design: fixed (the seeds were planned; t-tests and t intervals).")
    return out


def verdict_rows(result: Any) -> dict[str, Any]:
    """``{"design": [...], "primary": [...], "secondary": [...]}`` for a study verdict."""
    rows: dict[str, Any] = {"design": design_sentences(result), "primary": [], "secondary": []}
    primary_key = result.primary.key if result.primary is not None else None
    by_key = {(c.condition, c.arm, c.metric.key): c for c in result.comparisons}
    for condition in result.conditions:
        for arm in result.arms:
            label = arm if result.single_baseline else f"{arm} vs {result.baselines[arm]}"
            for metric in result.metrics:
                c = by_key.get((condition, arm, metric.key))
                if c is None:
                    continue
                target = "primary" if metric.key == primary_key else "secondary"
                rows[target].append(_row(c, label))
    return rows
