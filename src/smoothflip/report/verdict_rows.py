"""The verdict as rows of text, shared by ``smoothflip verdict`` (terminal) and the report (HTML and
Markdown), so both show the same words, intervals and minimum detectable effects.

:func:`verdict_rows` turns a :class:`~smoothflip.study.verdict.StudyVerdict` into

- ``design``: sentences that state how the verdicts were read (primary metric, correction, error
  rate, intervals, margins, the until-settled design and why it stopped);
- ``primary``: one row per arm x condition for the primary metric;
- ``secondary``: one row per arm x condition x secondary metric.

Each row holds display text (``diff``, ``interval``, ``mde``, ``needs``, ...) and, under ``values``, the
same numbers for machines (display units: accuracy in points) at full precision: :func:`csv_records`
and :func:`write_csv` (``smoothflip verdict --format csv``) read those, never a second computation, and
the CSV holds each float's shortest round-trip ``repr`` (it parses back to the very same number).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from typing import IO, Any

from smoothflip._text import printable
from smoothflip.analysis import format_diff, format_size

__all__ = [
    "CSV_COLUMNS",
    "cost_sentences",
    "cost_text",
    "csv_records",
    "design_sentences",
    "minutes_text",
    "price_text",
    "verdict_rows",
    "write_csv",
]

#: The columns of ``smoothflip verdict --format csv``, in order: the verdict (``estimate``, ``low``,
#: ``high``, ``mde`` in display units: accuracy in points), then what an inconclusive cell would need.
CSV_COLUMNS = (
    "condition",
    "technique",
    "metric",
    "role",
    "seeds",
    "estimate",
    "low",
    "high",
    "verdict",
    "mde",
    "seeds_needed",
    "p_adjusted",
    "baseline",
    "unit",
    "target_mde",
    "plan_level",
    "minutes_needed",
    "seeds_equivalence",
    "minutes_equivalence",
)


def _bare(text: str, unit: str) -> str:
    suffix = f" {unit}"
    return text[: -len(suffix)] if unit and text.endswith(suffix) else text


def minutes_text(value: float) -> str:
    """``"~3 min"``, ``"~40 s"``, ``"~2.5 h"``; ``"time unknown"`` for NaN, ``"unreachable"`` for inf."""
    if math.isnan(value):
        return "time unknown"
    if value == math.inf:
        return "unreachable"
    if value < 1.0:
        return f"~{value * 60:.0f} s"
    return f"~{value:.0f} min" if value < 120 else f"~{value / 60:.1f} h"


def price_text(price: Any, goal: str = "detect") -> str:
    """``"19 (+14, ~3 min)"``: the total paired seeds a cell needs, how many more, and the time."""
    seeds = price.seeds_detect if goal == "detect" else price.seeds_equivalence
    if math.isnan(seeds):
        return ""
    if seeds == math.inf:
        return "> 1e6"
    more = seeds - price.seeds
    if more <= 0:
        return f"{seeds:.0f} (has them)"
    return f"{seeds:.0f} (+{more:.0f}, {minutes_text(price.minutes(seeds))})"


def _number(value: float) -> Any:
    """A number for a CSV cell: '' for NaN, 'inf', else the float itself at full precision (the CSV
    writes its shortest round-trip ``repr``, so it reads back exactly; the terminal and the report
    round their display text instead)."""
    if value is None or math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def _seeds(value: float) -> Any:
    """A count of seeds for a CSV cell: an int, 'inf' beyond the search, '' for none."""
    return int(value) if math.isfinite(value) else _number(value)


def _values(c: Any, price: Any, target: float) -> dict[str, Any]:
    metric = c.metric
    scale = metric.scale
    low, high = (c.ci_low, c.ci_high) if c.n >= 2 else (math.nan, math.nan)
    out: dict[str, Any] = {
        "condition": c.condition,
        "technique": c.arm,
        "metric": metric.short,
        "role": c.role,
        "seeds": int(c.n),
        "estimate": _number(c.mean_diff * scale) if c.n else "",
        "low": _number(low * scale),
        "high": _number(high * scale),
        "verdict": c.verdict,
        "mde": _number(c.mde * scale),
        "seeds_needed": "",
        "p_adjusted": _number(c.p_adjusted),
        "baseline": c.baseline,
        "unit": metric.unit,
        "target_mde": _number(target),
        "plan_level": "",
        "minutes_needed": "",
        "seeds_equivalence": "",
        "minutes_equivalence": "",
    }
    if price is not None:
        out["seeds_needed"] = _seeds(price.seeds_detect)
        out["plan_level"] = _number(price.level)
        out["minutes_needed"] = _number(price.minutes(price.seeds_detect))
        out["seeds_equivalence"] = _seeds(price.seeds_equivalence)
        out["minutes_equivalence"] = _number(price.minutes(price.seeds_equivalence))
    return out


def _row(c: Any, label: str, price: Any = None, target: float = math.nan) -> dict[str, Any]:
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
        "key": metric.key,
        "unit": metric.unit,
        "n": c.n,
        "diff": format_diff(c.mean_diff, metric) if c.n else "n/a",
        "interval": interval,
        "verdict": c.verdict,
        "mde": mde,
        "p": p,
        "role": c.role,
        "needs": "" if price is None else price_text(price, "detect"),
        "needs_equivalence": "" if price is None else price_text(price, "equivalence"),
        "values": _values(c, price, target),
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
    if result.prices:
        out.append(_price_sentence(result))
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


def _price_sentence(result: Any) -> str:
    primary = result.primary
    target = result.targets.get(primary.key, math.nan)
    margin = result.families[primary.key].margin if primary.key in result.families else math.nan
    default = math.isfinite(margin) and math.isclose(target, 2 * margin)
    size = format_size(target / primary.scale, primary) + (" = 2 × the margin" if default else "")
    test = (
        "the anytime-valid test at its last look" if result.design == "sequential" else "exact noncentral t"
    )
    return (
        "Seeds needed: the total paired seeds at which an inconclusive cell would detect a true difference "
        f"of {size} ([analysis] target_mde; secondary metrics: their own, by default 2 × their margin) with "
        f"{100 * result.power:g}% power, at its observed sd and its family's strictest level (primary "
        "alpha / m, Holm's first step; secondary alpha / M over the metric's M Benjamini-Hochberg "
        f"hypotheses; {test}); then how many more, and the time to train the extra runs of the arm and its "
        "baseline at their stored time per run. Equivalence (smoothflip plan): the seeds that would show "
        "equivalence within the margin if the true difference is 0."
    )


def cost_text(cost: Any) -> str:
    """``"112 arm run(s) + 102 baseline run(s), ~57 s"`` for a :class:`~smoothflip.study.pricing.Cost`."""
    if not math.isfinite(cost.arm_runs):
        return "not reachable within a million seeds"
    runs = f"{cost.arm_runs:.0f} arm run(s) + {cost.baseline_runs:.0f} baseline run(s)"
    return f"{runs}, {minutes_text(cost.minutes).replace('time unknown', 'time unknown (no timings stored)')}"


def cost_sentences(result: Any, directory: str = "DIR") -> list[str]:
    """What settling the inconclusive cells would cost together (the report and ``smoothflip plan``)."""
    from smoothflip.study.pricing import total_cost

    prices = list(result.prices.values())
    if not prices:
        return []
    primary = [p for p in prices if p.role == "primary"]
    out = []
    if primary:
        detect = cost_text(total_cost(primary))
        out.append(f"To detect the target in every inconclusive primary cell: {detect}")
        equivalence = cost_text(total_cost(primary, goal="equivalence"))
        out.append(
            f"To show equivalence in every inconclusive primary cell, if it has no effect: {equivalence}"
        )
    every = cost_text(total_cost(prices))
    out.append(f"To detect the target in every inconclusive cell, primary and secondary: {every}")
    settle = [p for p in result.settle_prices.values() if math.isfinite(p.seeds_detect)]
    if settle:
        cap = max(p.seeds_detect for p in settle)
        out.append(
            "With the until-settled design instead (anytime-valid: it stays valid although seeds are added "
            f"after looking), the primary cells its tests leave open need up to {cap:.0f} paired seeds each "
            f"to detect the target: at most {cost_text(total_cost(settle))}, fewer when effects show early "
            f"(smoothflip run STUDY.toml --out {directory} --until-settled --max-seeds {cap:.0f})"
        )
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
                price = result.prices.get((condition, arm, metric.key))
                rows[target].append(_row(c, label, price, result.targets.get(metric.key, math.nan)))
    return rows


def csv_records(result: Any) -> list[dict[str, Any]]:
    """The verdict rows (primary first, then secondary) as flat records with :data:`CSV_COLUMNS`."""
    rows = verdict_rows(result)
    return [row["values"] for row in (*rows["primary"], *rows["secondary"])]


def write_csv(result: Any, stream: IO[str]) -> int:
    """Write :func:`csv_records` to ``stream`` as CSV (a header, then one line per cell); the count."""
    records = csv_records(result)
    writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: printable(v) if isinstance(v, str) else v for k, v in record.items()})
    return len(records)
