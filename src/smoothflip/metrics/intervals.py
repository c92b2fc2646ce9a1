"""Bootstrap confidence intervals over test examples for a calibration metric.

:func:`calibration_error_interval` resamples the ``N`` test examples with replacement and reports
the percentile interval of the metric. A resample only reweights the examples (each is drawn
``w_i`` times, ``Σ_i w_i = N``), so every resample is scored from the same per-example quantities
at once: bin sums by weighted ``bincount`` for the binned metrics, and weighted cosine moments for
the smooth ECE (see :mod:`~smoothflip.metrics.smooth`).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np

from smoothflip._validation import SeedLike, as_generator, check_choice, check_int, check_range
from smoothflip.metrics._common import _NORMS, _STRATEGIES, _check_probs_labels, _top_label
from smoothflip.metrics.calibration import (
    _resampled_binned_errors,
    classwise_calibration_error,
    expected_calibration_error,
)
from smoothflip.metrics.smooth import _smooth_ece_rows, _smooth_inputs, smooth_ece

__all__ = ["MetricInterval", "calibration_error_interval"]

_METRICS = ("ece", "smooth_ece", "classwise_ece")
# Budget of resample weights held at once ([rows, N] float64, ≈ 16 MB); the work arrays are a few times it.
_BLOCK_ELEMENTS = 1 << 21


class MetricInterval(NamedTuple):
    """A point estimate with a confidence interval; unpacks as ``estimate, low, high``."""

    estimate: float
    low: float
    high: float


def calibration_error_interval(
    probs: Any,
    labels: Any,
    *,
    metric: Literal["ece", "smooth_ece", "classwise_ece"] = "ece",
    level: float = 0.95,
    n_resamples: int = 1000,
    seed: SeedLike = 0,
    n_bins: int | None = None,
    strategy: Literal["uniform", "quantile"] | None = None,
    norm: Literal["l1", "l2", "max"] | None = None,
) -> MetricInterval:
    """Percentile-bootstrap interval over test examples for a calibration metric.

    Each of ``n_resamples`` resamples draws ``N`` examples with replacement (one
    ``numpy.random.Generator`` from ``seed``; the global RNG is never used) and recomputes the metric
    *from scratch*, bins included (equal-count edges are those of the resample, the smooth ECE's
    bandwidth is re-chosen per resample). With ``θ*_r`` the resampled values and ``α = 1 − level``:

    ``low = quantile(θ*, α/2)``, ``high = quantile(θ*, 1 − α/2)`` (NumPy's default linear rule),
    and ``estimate`` is the metric on all ``N`` examples.

    Metrics: ``"ece"`` (:func:`~smoothflip.metrics.expected_calibration_error`, top-label),
    ``"classwise_ece"`` (:func:`~smoothflip.metrics.classwise_calibration_error`) and
    ``"smooth_ece"`` (:func:`~smoothflip.metrics.smooth_ece`, top-label for ``[N, K]`` probs).

    What the interval means. It measures the sampling variability of the *estimator* over test sets
    of this size, with the model held fixed (not over retraining seeds). Calibration errors are
    biased upwards (they are means of absolute values, so noise alone makes them positive), and the
    percentile bootstrap does not remove that bias: for a nearly calibrated model the interval can
    lie entirely above the true (population) value. The smooth ECE's bias shrinks as ``N`` grows;
    the binned ECE's depends on the bins.

    Args:
        probs: ``[N, K]`` class probabilities (``"smooth_ece"`` also takes ``[N]`` binary
            predictions with 0/1 ``labels``).
        labels: ``[N]`` integer labels in ``[0, K)``.
        metric: ``"ece"``, ``"smooth_ece"`` or ``"classwise_ece"``.
        level: confidence level in ``(0, 1)``.
        n_resamples: number of bootstrap resamples ``>= 1``.
        seed: an int, a ``numpy.random.Generator`` or ``None`` (fresh entropy).
        n_bins: bins of the binned metrics (default 15); not allowed with ``"smooth_ece"``.
        strategy: ``"uniform"`` (default) or ``"quantile"`` bins; not allowed with ``"smooth_ece"``.
        norm: ``"l1"`` (default), ``"l2"`` or ``"max"``; not allowed with ``"smooth_ece"``.

    Returns:
        A :class:`MetricInterval` ``(estimate, low, high)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> p = rng.dirichlet(np.ones(3), size=500)
        >>> y = (rng.uniform(size=(500, 1)) > p.cumsum(axis=1)).sum(axis=1)  # y ~ p: calibrated
        >>> est, low, high = calibration_error_interval(p, y, metric="ece", n_resamples=200)
        >>> bool(low <= est <= high)
        True
    """
    metric = check_choice("metric", metric, _METRICS)
    level = check_range("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    n_resamples = check_int("n_resamples", n_resamples, low=1)
    rng = as_generator(seed)
    binned = {"n_bins": n_bins, "strategy": strategy, "norm": norm}
    if metric == "smooth_ece":
        given = [name for name, value in binned.items() if value is not None]
        if given:
            names = ", ".join(given)
            raise ValueError(f"{names} only apply to the binned metrics, not to metric='smooth_ece'")
        f, y = _smooth_inputs(probs, labels)
        estimate, sigma = smooth_ece(probs, labels, return_bandwidth=True)

        def score(weights: np.ndarray) -> np.ndarray:
            return _smooth_ece_rows(f, y, weights, bandwidth=None, min_bandwidth=1e-3, start=sigma)[0]

        n = f.size
    else:
        n_bins = check_int("n_bins", 15 if n_bins is None else n_bins, low=1)
        strategy = check_choice("strategy", "uniform" if strategy is None else strategy, _STRATEGIES)
        norm = check_choice("norm", "l1" if norm is None else norm, _NORMS)
        p, y_int = _check_probs_labels(probs, labels)
        n = p.shape[0]
        if metric == "ece":
            estimate = expected_calibration_error(p, y_int, n_bins=n_bins, strategy=strategy, norm=norm)
            confidence, correct = _top_label(p, y_int)
            pairs = [(confidence, correct.astype(np.float64))]
        else:
            estimate = classwise_calibration_error(p, y_int, n_bins=n_bins, strategy=strategy, norm=norm)
            pairs = [(p[:, k], (y_int == k).astype(np.float64)) for k in range(p.shape[1])]

        def score(weights: np.ndarray) -> np.ndarray:
            values = [_resampled_binned_errors(s, o, weights, n_bins, strategy, norm) for s, o in pairs]
            return np.mean(values, axis=0)

    values = np.empty(n_resamples)
    rows = max(1, _BLOCK_ELEMENTS // n)
    offsets = None
    for start in range(0, n_resamples, rows):
        count = min(rows, n_resamples - start)
        draws = rng.integers(0, n, size=(count, n))
        if offsets is None or offsets.shape[0] != count:
            offsets = (n * np.arange(count))[:, None]
        weights = np.bincount((draws + offsets).ravel(), minlength=count * n).reshape(count, n)
        values[start : start + count] = score(weights.astype(np.float64))
    alpha = 1.0 - level
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return MetricInterval(float(estimate), float(low), float(high))
