"""Paired comparisons on arrays: one arm against its baseline, per condition and metric, by seed.

A study trains every arm under every label condition with the same seeds, and one seed fixes the
noisy labels, the initialization and the data order for *all* arms. So the unit of evidence is the
**per-seed difference** ``arm - baseline`` under one condition: :func:`paired_comparison` takes the
two arms' values on the same seeds (arrays; the study layer,
:func:`smoothflip.study.compare.compare`, reads stored runs into them) and summarizes the
differences by

- their mean (``mean_diff``) with a 95% paired bootstrap interval
  (:func:`~smoothflip.analysis.intervals.paired_interval`);
- their interquartile mean (``iqm_diff``, :func:`~smoothflip.analysis.intervals.interquartile_mean`;
  from 4 seeds on);
- the probability of improvement: the fraction of seeds on which the arm beats the baseline
  (ties count one half);
- a verdict word (:func:`verdict_of`): ``helps`` / ``hurts`` when the interval lies entirely on
  one side of zero, ``no detectable effect`` when it contains zero, ``no verdict`` below
  :data:`MIN_SEEDS` paired seeds. These words are per comparison, without a multiplicity
  correction; :func:`smoothflip.analysis.family_verdicts` gives verdicts for a whole family of
  comparisons (Holm / Benjamini-Hochberg, equivalence, sequential designs).

This module also holds the metric table (:class:`MetricSpec`, :data:`METRICS` ...) and
:func:`comparisons_frame`. It imports nothing of the study layer.

Diverged runs keep their last finite metrics and are compared like any other run (divergence is a
result; :func:`smoothflip.study.compare.diverged_counts` counts them); NaN metric values are never counted.

Example:
    >>> from smoothflip.analysis import METRICS, verdict_of
    >>> [m.key for m in METRICS]
    ['test_acc', 'test_nll', 'test_ece', 'test_ece_ts', 'test_brier']
    >>> verdict_of(-0.015, -0.009, 5, higher_is_better=False)   # ECE went down on every resample
    'helps'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from smoothflip._validation import check_int, check_range
from smoothflip.analysis.intervals import MIN_SEEDS, interquartile_mean, paired_interval

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LM_METRICS",
    "METRICS",
    "MIN_SEEDS",
    "SELECTIVE_METRICS",
    "VERDICTS",
    "Comparison",
    "MetricSpec",
    "comparisons_frame",
    "metric_specs",
    "paired_comparison",
    "verdict_of",
]


@dataclass(frozen=True)
class MetricSpec:
    """How one stored metric is read, compared and printed.

    Attributes:
        key: the key in ``RunResult.metrics["selected"]`` / ``["last"]``, e.g. ``"test_acc"``.
        label: the name shown to people, e.g. ``"accuracy"``.
        higher_is_better: whether a larger value is an improvement.
        scale: factor applied for display (100 for accuracy, shown in percentage points).
        unit: display unit after scaling (``"pts"`` for accuracy, ``""`` otherwise).
        name: the short name a study file uses for it (``[analysis] primary = "accuracy"``,
            ``[analysis.margin] ece = 0.5``); default: the key without ``test_``.
        margin: the default equivalence margin in *display* units (accuracy 0.5 points, ECE 0.5
            points of calibration error = 0.005 raw); NaN: none.
    """

    key: str
    label: str
    higher_is_better: bool
    scale: float
    unit: str
    name: str = ""
    margin: float = math.nan

    @property
    def short(self) -> str:
        """The study-file name of the metric (``name``, or the key without ``test_``)."""
        return self.name or self.key.removeprefix("test_")


#: The metrics compared by default, in report order.
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("test_acc", "accuracy", True, 100.0, "pts", "accuracy", 0.5),
    MetricSpec("test_nll", "NLL", False, 1.0, "", "nll", 0.01),
    MetricSpec("test_ece", "ECE", False, 1.0, "", "ece", 0.005),
    MetricSpec("test_ece_ts", "ECE after temperature scaling", False, 1.0, "", "ece_ts", 0.005),
    MetricSpec("test_brier", "Brier score", False, 1.0, "", "brier", 0.005),
)
#: Metrics a classifier run also stores (from smoothflip 0.3): selective classification (the area
#: under the risk-coverage curve and its excess over the oracle ranking, Geifman & El-Yaniv 2017),
#: class-wise ECE (Kull et al. 2019) and the binning-free smooth ECE (Błasiok & Nakkiran 2024).
#: Runs stored before then lack them (their cells read "no verdict").
SELECTIVE_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("test_aurc", "AURC (selective risk)", False, 1.0, "", "aurc", 0.005),
    MetricSpec("test_eaurc", "E-AURC", False, 1.0, "", "eaurc", 0.005),
    MetricSpec("test_classwise_ece", "class-wise ECE", False, 1.0, "", "classwise_ece", 0.002),
    MetricSpec("test_smooth_ece", "smooth ECE", False, 1.0, "", "smooth_ece", 0.005),
)
#: Metrics of a language-model study (``kind = "lm"``): next-token accuracy, per-token NLL (log
#: perplexity), next-token ECE before and after temperature scaling, and the KL divergence from the
#: true next-token distribution (synthetic language only).
LM_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("test_acc", "next-token accuracy", True, 100.0, "pts", "accuracy", 0.5),
    MetricSpec("test_nll", "NLL per token", False, 1.0, "", "nll", 0.01),
    MetricSpec("test_ece", "next-token ECE", False, 1.0, "", "ece", 0.005),
    MetricSpec("test_ece_ts", "ECE after temperature scaling", False, 1.0, "", "ece_ts", 0.005),
    MetricSpec("test_kl", "KL to the true distribution", False, 1.0, "", "kl", 0.005),
)


#: Every verdict word :func:`verdict_of` can give.
VERDICTS = ("helps", "hurts", "no detectable effect", "no verdict")


@dataclass(frozen=True)
class Comparison:
    """One arm against the baseline under one label condition, for one metric, paired by seed.

    Values are in the metric's raw units (accuracy as a fraction); ``metric.scale`` converts them for
    display. Means and IQMs are taken over the ``n`` paired seeds only.

    Attributes:
        condition: display label of the label condition (``"clean"``, ``"symmetric 20%"``, ...).
        noise: noise model (``"none"`` for correct labels).
        rate: noise rate.
        arm: the arm compared.
        baseline: the baseline arm.
        metric: the metric compared.
        n: paired seeds (both runs exist and the metric is finite in both).
        arm_mean: mean of the arm over the paired seeds.
        baseline_mean: mean of the baseline over the paired seeds.
        arm_iqm: interquartile mean of the arm (NaN when ``n < MIN_SEEDS_IQM``).
        baseline_iqm: interquartile mean of the baseline (NaN when ``n < MIN_SEEDS_IQM``).
        mean_diff: mean over seeds of ``arm - baseline``.
        iqm_diff: interquartile mean of the paired differences (NaN when ``n < MIN_SEEDS_IQM``).
        ci_low: lower end of the paired bootstrap interval of ``mean_diff`` (NaN when ``n < 2``).
        ci_high: upper end of that interval (NaN when ``n < 2``).
        prob_improvement: fraction of seeds where the arm is better (ties count 1/2; NaN when n = 0).
        verdict: one of :data:`VERDICTS` (:func:`compare`), or of
            :data:`~smoothflip.analysis.FAMILY_VERDICTS` once a study's family verdicts are applied
            (:func:`smoothflip.study.verdict.study_verdict`).
        mde: minimum detectable effect at ``n`` seeds (raw units; NaN until family verdicts apply).
        p_adjusted: the corrected p-value of ``arm = baseline`` (Holm or BH; NaN until then).
        role: ``"primary"`` or ``"secondary"`` once family verdicts apply, else ``""``.
        interval: what ``ci_low`` / ``ci_high`` are (``"bootstrap 95%"`` from :func:`compare`).
    """

    condition: str
    noise: str
    rate: float
    arm: str
    baseline: str
    metric: MetricSpec
    n: int
    arm_mean: float
    baseline_mean: float
    arm_iqm: float
    baseline_iqm: float
    mean_diff: float
    iqm_diff: float
    ci_low: float
    ci_high: float
    prob_improvement: float
    verdict: str
    mde: float = math.nan
    p_adjusted: float = math.nan
    role: str = ""
    interval: str = "bootstrap 95%"

    @property
    def improvement(self) -> float:
        """``mean_diff`` signed so that a positive value is an improvement (raw units)."""
        return self.mean_diff if self.metric.higher_is_better else -self.mean_diff


def verdict_of(ci_low: float, ci_high: float, n: int, higher_is_better: bool) -> str:
    """The verdict word for an interval of ``arm - baseline``.

    Args:
        ci_low: lower end of the interval.
        ci_high: upper end of the interval.
        n: paired seeds behind it.
        higher_is_better: the metric's direction.

    Returns:
        ``"no verdict"`` below :data:`MIN_SEEDS` seeds (or for a NaN interval); ``"no detectable
        effect"`` when the interval contains 0 (ends included); ``"helps"`` when it lies entirely on
        the better side of 0; ``"hurts"`` otherwise.

    Example:
        >>> verdict_of(0.004, 0.011, 5, True)
        'helps'
        >>> verdict_of(-0.01, 0.0, 5, True)
        'no detectable effect'
        >>> verdict_of(0.004, 0.011, 2, True)
        'no verdict'
    """
    if n < MIN_SEEDS or not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return "no verdict"
    if ci_low <= 0.0 <= ci_high:
        return "no detectable effect"
    above = ci_low > 0.0
    return "helps" if above == bool(higher_is_better) else "hurts"


# ---------------------------------------------------------------------------------------- comparing


def paired_comparison(
    arm_values: Any,
    baseline_values: Any,
    *,
    metric: MetricSpec,
    arm: str = "arm",
    baseline: str = "baseline",
    condition: str = "",
    noise: str = "",
    rate: float = math.nan,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> Comparison:
    """One arm against its baseline from paired per-seed values: arrays in, a :class:`Comparison` out.

    ``arm_values[i]`` and ``baseline_values[i]`` are the metric of the two arms on the same seed;
    pairs where either is NaN are dropped. The study layer
    (:func:`smoothflip.study.compare.compare`) reads stored runs into such arrays; this function
    knows nothing of runs or studies.

    Args:
        arm_values: the arm's values ``[n]``.
        baseline_values: the baseline's values on the same seeds ``[n]``.
        metric: what the values are (its direction decides the verdict and P(improvement)).
        arm: the arm's name (a label for the result).
        baseline: the baseline's name.
        condition: the label condition's display label.
        noise: its noise model.
        rate: its rate.
        confidence: level of the paired bootstrap interval.
        n_resamples: bootstrap resamples.
        seed: bootstrap seed (a fresh generator per call).

    Returns:
        The :class:`Comparison` (``n = 0`` and "no verdict" when no pair is finite).

    Raises:
        ValueError: the arrays differ in length, a bad option.

    Example:
        >>> acc = METRICS[0]
        >>> c = paired_comparison([0.82, 0.83, 0.85, 0.84, 0.86], [0.80, 0.81, 0.82, 0.83, 0.84], metric=acc)
        >>> c.n, round(c.mean_diff, 3), c.prob_improvement, c.verdict
        (5, 0.02, 1.0, 'helps')
    """
    if not isinstance(metric, MetricSpec):
        raise TypeError(f"metric must be a MetricSpec, got {type(metric).__name__}")
    check_range("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    check_int("n_resamples", n_resamples, low=1)
    seed = check_int("seed", seed, low=0)
    a = np.asarray(arm_values, dtype=float).reshape(-1)
    b = np.asarray(baseline_values, dtype=float).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(
            f"arm_values and baseline_values must be paired (same length), got {a.size} and {b.size}"
        )
    keep = np.isfinite(a) & np.isfinite(b)
    found = _paired_stats(a[keep], b[keep], metric, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return Comparison(
        condition=condition, noise=noise, rate=float(rate), arm=arm, baseline=baseline, metric=metric, **found
    )


def _paired_stats(
    a: np.ndarray, b: np.ndarray, spec: MetricSpec, *, confidence: float, n_resamples: int, seed: int
) -> dict[str, Any]:
    """The numeric fields of a :class:`Comparison` from paired values ``a`` (arm) and ``b`` (baseline)."""
    n = int(a.size)
    d = a - b
    if n == 0:
        nan = math.nan
        return {
            "n": 0,
            "arm_mean": nan,
            "baseline_mean": nan,
            "arm_iqm": nan,
            "baseline_iqm": nan,
            "mean_diff": nan,
            "iqm_diff": nan,
            "ci_low": nan,
            "ci_high": nan,
            "prob_improvement": nan,
            "verdict": "no verdict",
        }
    low, high = paired_interval(d, confidence=confidence, n_resamples=n_resamples, seed=seed)
    better = d > 0 if spec.higher_is_better else d < 0
    prob = (np.count_nonzero(better) + 0.5 * np.count_nonzero(d == 0)) / n
    return {
        "n": n,
        "arm_mean": float(a.mean()),
        "baseline_mean": float(b.mean()),
        "arm_iqm": interquartile_mean(a),
        "baseline_iqm": interquartile_mean(b),
        "mean_diff": float(d.mean()),
        "iqm_diff": interquartile_mean(d),
        "ci_low": low,
        "ci_high": high,
        "prob_improvement": float(prob),
        "verdict": verdict_of(low, high, n, spec.higher_is_better),
    }


def metric_specs(metrics: Sequence[MetricSpec | str]) -> list[MetricSpec]:
    """:class:`MetricSpec` objects from specs or keys (``"test_acc"``) of the known metrics.

    Example:
        >>> [m.label for m in metric_specs(["test_acc", "test_ece"])]
        ['accuracy', 'ECE']
    """
    if isinstance(metrics, str | MetricSpec):
        metrics = [metrics]
    known = {m.key: m for m in (*LM_METRICS, *SELECTIVE_METRICS, *METRICS)}
    specs = []
    for m in metrics:
        if isinstance(m, MetricSpec):
            specs.append(m)
        elif isinstance(m, str) and m in known:
            specs.append(known[m])
        else:
            raise ValueError(f"metrics must hold MetricSpec objects or one of {_names(known)}, got {m!r}")
    if not specs:
        raise ValueError("metrics must name at least one metric")
    return specs


def _names(names: Iterable[str]) -> str:
    names = list(names)
    return ", ".join(repr(n) for n in names) if names else "(none)"


# ---------------------------------------------------------------------------------------- tables

_FIELDS = (
    "condition",
    "noise",
    "rate",
    "arm",
    "baseline",
    "metric",
    "metric_label",
    "higher_is_better",
    "unit",
    "scale",
    "n",
    "arm_mean",
    "baseline_mean",
    "arm_iqm",
    "baseline_iqm",
    "mean_diff",
    "iqm_diff",
    "ci_low",
    "ci_high",
    "improvement",
    "prob_improvement",
    "verdict",
)
_SCALED = (
    "arm_mean",
    "baseline_mean",
    "arm_iqm",
    "baseline_iqm",
    "mean_diff",
    "iqm_diff",
    "ci_low",
    "ci_high",
    "improvement",
)


def comparisons_frame(comparisons: Iterable[Comparison]) -> pd.DataFrame:
    """One row per comparison, with display-scaled copies of the numeric columns.

    Columns: ``condition, noise, rate, arm, baseline, metric`` (the key), ``metric_label,
    higher_is_better, unit, scale, n``, the raw statistics (``arm_mean`` ... ``ci_high``,
    ``improvement``, ``prob_improvement``), ``verdict``, then ``<name>_scaled`` (raw value times
    ``scale``: accuracy in points) for each of ``arm_mean, baseline_mean, arm_iqm, baseline_iqm,
    mean_diff, iqm_diff, ci_low, ci_high, improvement``.

    Example:
        >>> list(comparisons_frame([]).columns[:6])
        ['condition', 'noise', 'rate', 'arm', 'baseline', 'metric']
    """
    import pandas as pd

    rows = []
    for c in comparisons:
        row: dict[str, Any] = {
            "condition": c.condition,
            "noise": c.noise,
            "rate": c.rate,
            "arm": c.arm,
            "baseline": c.baseline,
            "metric": c.metric.key,
            "metric_label": c.metric.label,
            "higher_is_better": c.metric.higher_is_better,
            "unit": c.metric.unit,
            "scale": c.metric.scale,
            "n": c.n,
            "arm_mean": c.arm_mean,
            "baseline_mean": c.baseline_mean,
            "arm_iqm": c.arm_iqm,
            "baseline_iqm": c.baseline_iqm,
            "mean_diff": c.mean_diff,
            "iqm_diff": c.iqm_diff,
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "improvement": c.improvement,
            "prob_improvement": c.prob_improvement,
            "verdict": c.verdict,
        }
        for name in _SCALED:
            row[f"{name}_scaled"] = row[name] * c.metric.scale
        rows.append(row)
    columns = [*_FIELDS, *(f"{name}_scaled" for name in _SCALED)]
    return pd.DataFrame(rows, columns=columns)
