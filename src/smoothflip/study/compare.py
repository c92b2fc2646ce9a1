"""Stored runs adapted to the paired statistics: each arm against its baseline, per condition and metric.

The statistics of :mod:`smoothflip.analysis` take arrays; this module is the study layer's adapter.
:func:`compare` groups stored runs (:class:`~smoothflip.study.store.RunResult`) by condition, arm
and seed, reads one metric into two arrays paired by seed (seeds where both runs exist) and hands
them to :func:`smoothflip.analysis.compare.paired_comparison`. :func:`diverged_counts` counts the
diverged runs per condition and arm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from smoothflip._validation import check_choice, check_int, check_range
from smoothflip.analysis.compare import (
    METRICS,
    Comparison,
    MetricSpec,
    _names,
    metric_specs,
    paired_comparison,
)
from smoothflip.study.store import RunResult

__all__ = ["compare", "diverged_counts", "run_value"]

_AT = ("selected", "last")


def compare(
    results: Iterable[RunResult],
    *,
    baseline: str | Mapping[str, str],
    arms: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
    metrics: Sequence[MetricSpec | str] = METRICS,
    at: str = "selected",
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> list[Comparison]:
    """Compare every arm with the baseline under every condition, for every metric, paired by seed.

    Each comparison bootstraps with a fresh generator seeded with ``seed``, so its interval does
    not depend on which other arms, conditions or metrics are compared.

    Args:
        results: stored runs (``Store.results()``), any order.
        baseline: the arm every other arm is compared with, or a mapping ``arm -> its baseline``
            (a distillation study compares each student with the student of the hard-label teacher
            at the same temperature); arms missing from the mapping, and the baselines themselves,
            are not compared.
        arms: arms to compare (default: every arm in ``results``, first-seen order); the baseline
            is skipped.
        conditions: condition labels to compare (default: all, first-seen order).
        metrics: :class:`~smoothflip.analysis.MetricSpec` objects, or keys of
            :data:`~smoothflip.analysis.METRICS`.
        at: ``"selected"`` (the epoch chosen on validation data) or ``"last"`` (the final epoch).
        confidence: level of the bootstrap interval.
        n_resamples: bootstrap resamples per comparison.
        seed: bootstrap seed.

    Returns:
        One :class:`~smoothflip.analysis.Comparison` per (condition, arm, metric), ordered by
        condition, arm, metric. An arm without runs under a condition gets ``n = 0`` and the
        verdict ``"no verdict"``.

    Raises:
        ValueError: the baseline, an arm or a condition is not in ``results``; two runs share a
            condition, arm and seed; a bad option.

    Example:
        >>> def run(arm, seed, acc):
        ...     m = {"selected": {"test_acc": acc}, "last": {"test_acc": acc}, "diverged": False}
        ...     return RunResult(f"{arm}{seed}", arm, "clean", "none", 0.0, seed, {}, m, {})
        >>> runs = [run("ce", s, 0.80 + 0.01 * s) for s in range(5)]
        >>> runs += [run("ls", s, 0.82 + 0.01 * s + 0.001 * (-1) ** s) for s in range(5)]
        >>> [c] = compare(runs, baseline="ce", metrics=["test_acc"])
        >>> c.n, round(c.mean_diff, 4), c.prob_improvement, c.verdict
        (5, 0.0202, 1.0, 'helps')
    """
    if not isinstance(baseline, str | Mapping):
        raise TypeError(f"baseline must be an arm name (str) or a mapping, got {type(baseline).__name__}")
    check_choice("at", at, _AT)
    check_range("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    check_int("n_resamples", n_resamples, low=1)
    seed = check_int("seed", seed, low=0)
    specs = metric_specs(metrics)

    runs = list(results)
    for r in runs:
        if not isinstance(r, RunResult):
            raise TypeError(f"results must hold RunResult objects, got {type(r).__name__}")
    seen_arms = list(dict.fromkeys(r.arm for r in runs))
    seen_conditions = list(dict.fromkeys(r.condition for r in runs))
    if isinstance(baseline, str):
        baseline_of = {a: baseline for a in seen_arms if a != baseline}
    else:
        baseline_of = {a: b for a, b in baseline.items() if a != b}
    for base in sorted(set(baseline_of.values())):
        if base not in seen_arms:
            raise ValueError(f"baseline {base!r} has no runs in results; arms there: {_names(seen_arms)}")
    arm_list = [a for a in _pick("arms", arms, seen_arms) if a in baseline_of]
    condition_list = _pick("conditions", conditions, seen_conditions)

    table: dict[tuple[str, str], dict[int, RunResult]] = {}
    coordinates: dict[str, tuple[str, float]] = {}
    for r in runs:
        by_seed = table.setdefault((r.condition, r.arm), {})
        if r.seed in by_seed:
            raise ValueError(
                f"results hold two runs for condition {r.condition!r}, arm {r.arm!r}, seed {r.seed} "
                f"({by_seed[r.seed].run_id!r} and {r.run_id!r}); compare one study at a time"
            )
        by_seed[r.seed] = r
        coordinates.setdefault(r.condition, (r.noise, float(r.rate)))

    out = []
    for condition in condition_list:
        noise, rate = coordinates[condition]
        for arm in arm_list:
            base_runs = table.get((condition, baseline_of[arm]), {})
            arm_runs = table.get((condition, arm), {})
            common = sorted(set(arm_runs) & set(base_runs))
            for spec in specs:
                out.append(
                    paired_comparison(
                        [run_value(arm_runs[s], spec.key, at) for s in common],
                        [run_value(base_runs[s], spec.key, at) for s in common],
                        metric=spec,
                        arm=arm,
                        baseline=baseline_of[arm],
                        condition=condition,
                        noise=noise,
                        rate=rate,
                        confidence=confidence,
                        n_resamples=n_resamples,
                        seed=seed,
                    )
                )
    return out


def run_value(run: RunResult, key: str, at: str) -> float:
    """The stored metric ``key`` of ``run`` at epoch ``at`` (``"selected"`` / ``"last"``); NaN if absent.

    Example:
        >>> r = RunResult("r", "ce", "clean", "none", 0.0, 0, {}, {"selected": {"test_acc": 0.9}}, {})
        >>> run_value(r, "test_acc", "selected"), run_value(r, "test_nll", "selected")
        (0.9, nan)
    """
    block = run.metrics.get(at)
    if not isinstance(block, Mapping):
        return math.nan
    value = block.get(key)
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _pick(name: str, wanted: Sequence[str] | None, available: list[str]) -> list[str]:
    if wanted is None:
        return list(available)
    if isinstance(wanted, str):
        wanted = [wanted]
    missing = [w for w in wanted if w not in available]
    if missing:
        raise ValueError(f"{name}: {_names(missing)} not in results; there: {_names(available)}")
    return list(dict.fromkeys(wanted))


def diverged_counts(results: Iterable[RunResult]) -> dict[tuple[str, str], int]:
    """Diverged runs per ``(condition, arm)``, zeros included, in first-seen order.

    Example:
        >>> runs = [RunResult(str(s), "nls", "clean", "none", 0.0, s, {}, {"diverged": s == 1}, {})
        ...         for s in range(3)]
        >>> diverged_counts(runs)
        {('clean', 'nls'): 1}
    """
    counts: dict[tuple[str, str], int] = {}
    for r in results:
        key = (r.condition, r.arm)
        flag = r.metrics.get("diverged")
        hit = (
            isinstance(flag, bool | int | float | np.bool_ | np.number) and math.isfinite(flag) and bool(flag)
        )
        counts[key] = counts.get(key, 0) + int(hit)
    return counts
