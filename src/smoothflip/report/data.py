"""What a report reads from a study directory, and the small aggregations its figures share.

:func:`load_study_data` opens ``DIR/study.toml`` (the resolved study file) and the store, and keeps
the runs of the study's arms and conditions in the study's order. The helpers below aggregate runs
over seeds (means with Student-t intervals, pooled reliability bins, mean curves); they skip
non-finite values, so a diverged run contributes only what it recorded before diverging.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from smoothflip.study.results import StudyData, load_study_data
from smoothflip.study.store import RunResult

__all__ = [
    "PooledReliability",
    "StudyData",
    "load_study_data",
    "mean_curve",
    "mean_sd",
    "mean_sd_text",
    "metric_values",
    "pooled_reliability",
    "t_interval",
]

# --------------------------------------------------------------------------- aggregation


def metric_values(runs: Iterable[RunResult], key: str, *, at: str = "selected") -> np.ndarray:
    """Finite values of ``metrics[at][key]`` over ``runs`` (``[n]`` float64)."""
    values = np.array([float(r.metrics.get(at, {}).get(key, math.nan)) for r in runs], dtype=float)
    return values[np.isfinite(values)]


def mean_sd_text(
    mean: float, sd: float, *, scale: float = 1.0, digits: int = 1, sep: str = " ± ", missing: str = "—"
) -> str:
    """A mean and its standard deviation as a table cell: ``"84.2 ± 1.3"``.

    Both are multiplied by ``scale`` (100: a fraction shown in percent) and written with ``digits``
    decimals; a non-finite ``sd`` (one seed) leaves it out, a non-finite ``mean`` gives ``missing``.

    Example:
        >>> mean_sd_text(0.8421, 0.013, scale=100), mean_sd_text(1.5, math.nan, digits=3)
        ('84.2 ± 1.3', '1.500')
        >>> mean_sd_text(math.nan, 0.1), mean_sd_text(0.5, 0.01, sep="±", missing="-")
        ('—', '0.5±0.0')
    """
    if not math.isfinite(mean):
        return missing
    text = f"{mean * scale:.{digits}f}"
    return f"{text}{sep}{sd * scale:.{digits}f}" if math.isfinite(sd) else text


def mean_sd(values: np.ndarray, *, scale: float = 1.0, digits: int = 1, missing: str = "—") -> str:
    """The finite ``values`` (``[n]``, e.g. one metric over seeds) as ``"mean ± sd"`` (sd with
    ``ddof=1``, from two values): :func:`mean_sd_text` of their mean and standard deviation.

    Example:
        >>> mean_sd(np.array([0.80, 0.84, math.nan]), scale=100), mean_sd(np.array([2.0]))
        ('82.0 ± 2.8', '2.0')
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return missing
    sd = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return mean_sd_text(float(values.mean()), sd, scale=scale, digits=digits, missing=missing)


def t_interval(values: np.ndarray, *, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of the mean: ``(mean, low, high)``.

    With one value the interval collapses to the value; with none everything is NaN.
    """
    n = values.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if n == 1:
        return mean, mean, mean
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, n - 1)) * float(values.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class PooledReliability:
    """Reliability bins pooled over runs: ``[B]`` arrays; empty bins hold NaN (count 0)."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error of the pooled bins."""
        total = float(self.count.sum())
        if total == 0:
            return math.nan
        gap = np.abs(np.nan_to_num(self.accuracy) - np.nan_to_num(self.confidence))
        return float(np.sum(gap * self.count) / total)


def pooled_reliability(runs: Sequence[RunResult]) -> PooledReliability | None:
    """Sum bin counts over runs; count-weighted mean confidence and accuracy per bin.

    Runs without ``extras["reliability"]`` (or with other bin edges than the first run's) are left
    out; ``None`` when no run has usable bins.
    """
    edges = None
    conf_sum = acc_sum = count = None
    for r in runs:
        rel = r.extras.get("reliability")
        if not isinstance(rel, dict) or not all(
            k in rel for k in ("edges", "confidence", "accuracy", "count")
        ):
            continue
        e = np.asarray(rel["edges"], dtype=float)
        c = np.nan_to_num(np.asarray(rel["count"], dtype=float))
        conf = np.asarray(rel["confidence"], dtype=float)
        acc = np.asarray(rel["accuracy"], dtype=float)
        if not (e.ndim == 1 and e.size >= 2 and c.shape == conf.shape == acc.shape == (e.size - 1,)):
            continue
        if edges is None:
            edges = e
            conf_sum, acc_sum, count = np.zeros_like(c), np.zeros_like(c), np.zeros_like(c)
        elif e.shape != edges.shape or not np.allclose(e, edges):
            continue
        used = c > 0
        conf_sum[used] += np.nan_to_num(conf[used]) * c[used]
        acc_sum[used] += np.nan_to_num(acc[used]) * c[used]
        count += c
    if edges is None or count is None or not count.any():
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(count > 0, conf_sum / count, np.nan)
        accuracy = np.where(count > 0, acc_sum / count, np.nan)
    return PooledReliability(edges=edges, confidence=confidence, accuracy=accuracy, count=count)


def mean_curve(runs: Sequence[RunResult], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-epoch mean over runs of ``curves[key]``, ignoring NaN: ``(epochs [E], mean [E])``.

    Runs of different lengths are aligned by epoch number; epochs where no run has a finite value
    are dropped. ``None`` when no run has a finite value.
    """
    table: dict[float, list[float]] = {}
    for r in runs:
        values = r.curves.get(key)
        if not isinstance(values, list):
            continue
        epochs = r.curves.get("epoch") or list(range(1, len(values) + 1))
        for epoch, value in zip(epochs, values, strict=False):
            if value is not None and math.isfinite(float(value)) and math.isfinite(float(epoch)):
                table.setdefault(float(epoch), []).append(float(value))
    if not table:
        return None
    epochs = np.array(sorted(table), dtype=float)
    mean = np.array([np.mean(table[e]) for e in epochs], dtype=float)
    return epochs, mean


def measured_at(data: StudyData, *, long: bool = False) -> str:
    """Where the study's metrics come from, for captions and tables: its kind's own words, else
    the epoch selected on the validation metric (``long``: saying the labels are noisy)."""
    if data.kind.measured_at is not None:
        return data.kind.measured_at(data.spec)
    what = "validation NLL" if data.spec.train.selection == "val_nll" else "validation accuracy"
    if long:
        return f"the selected epoch (best {what}, measured on the noisy validation labels)"
    return f"the epoch selected on {what}"
