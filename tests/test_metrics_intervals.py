"""Tests for smoothflip.metrics.calibration_error_interval (percentile bootstrap over examples).

The vectorized resampling is checked against recomputing each metric from scratch on the resampled
rows; coverage is checked in a small simulation whose population value is known in closed form.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from smoothflip import metrics
from smoothflip.metrics import (
    MetricInterval,
    calibration_error_interval,
    classwise_calibration_error,
    expected_calibration_error,
    smooth_ece,
)
from smoothflip.metrics.calibration import _resampled_binned_errors
from smoothflip.metrics.smooth import _smooth_ece_rows

BINNED = [("ece", strategy, norm) for strategy in ("uniform", "quantile") for norm in ("l1", "l2", "max")] + [
    ("classwise_ece", strategy, "l1") for strategy in ("uniform", "quantile")
]


def draw(rng, n, k, temperature=1.0):
    z = rng.normal(size=(n, k)) * 2.0
    y = (rng.uniform(size=(n, 1)) > softmax(z, axis=1).cumsum(axis=1)).sum(axis=1)
    return softmax(temperature * z, axis=1), y


def constant_gap_population(rng, n, k=10, gap=0.1):
    """Top-label confidence c ~ U(0.5, 1) with P(correct | c) = c − gap: every bin of every width has
    accuracy − confidence = −gap, so the population ECE and smooth ECE are exactly ``gap``."""
    c = rng.uniform(0.5, 1.0, n)
    p = np.repeat(((1.0 - c) / (k - 1))[:, None], k, axis=1)
    p[:, 0] = c
    correct = rng.uniform(size=n) < c - gap
    return p, np.where(correct, 0, rng.integers(1, k, n))


def weights_of(index: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(index, minlength=n)[None, :].astype(np.float64)


@pytest.mark.parametrize(("metric", "strategy", "norm"), BINNED)
def test_resampled_errors_equal_the_metric_recomputed_on_the_resample(metric, strategy, norm):
    rng = np.random.default_rng(0)
    p, y = draw(rng, 300, 4, 1.5)
    p = np.round(p, 2)  # ties in the scores exercise the equal-count rule
    p /= p.sum(axis=1, keepdims=True)
    public = expected_calibration_error if metric == "ece" else classwise_calibration_error
    for trial in range(5):
        index = rng.integers(0, 300, 300) if trial else np.arange(300)
        w = weights_of(index, 300)
        if metric == "ece":
            pairs = [(p.max(axis=1), (p.argmax(axis=1) == y).astype(float))]
        else:
            pairs = [(p[:, c], (y == c).astype(float)) for c in range(4)]
        fast = np.mean([_resampled_binned_errors(s, o, w, 15, strategy, norm)[0] for s, o in pairs])
        slow = public(p[index], y[index], n_bins=15, strategy=strategy, norm=norm)
        assert fast == pytest.approx(slow, abs=1e-12)


def test_resampled_smooth_ece_equals_the_metric_recomputed_on_the_resample():
    rng = np.random.default_rng(1)
    p, y = draw(rng, 400, 5, 1.5)
    f, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    index = rng.integers(0, 400, size=(6, 400))
    w = np.stack([weights_of(row, 400)[0] for row in index])
    values, sigmas = _smooth_ece_rows(f, correct, w, bandwidth=None, min_bandwidth=1e-3, start=0.05)
    for row, value, sigma in zip(index, values, sigmas, strict=True):
        expected, expected_sigma = smooth_ece(p[row], y[row], return_bandwidth=True)
        assert value == pytest.approx(expected, abs=1e-9)
        assert sigma == pytest.approx(expected_sigma, abs=1e-8)


def test_same_seed_same_interval_and_the_global_rng_is_untouched():
    rng = np.random.default_rng(2)
    p, y = draw(rng, 500, 10, 1.5)
    state = np.random.get_state()  # noqa: NPY002 (the legacy global RNG must stay untouched)
    for metric in ("ece", "classwise_ece", "smooth_ece"):
        a = calibration_error_interval(p, y, metric=metric, n_resamples=200, seed=3)
        b = calibration_error_interval(p, y, metric=metric, n_resamples=200, seed=3)
        c = calibration_error_interval(p, y, metric=metric, n_resamples=200, seed=4)
        d = calibration_error_interval(p, y, metric=metric, n_resamples=200, seed=np.random.default_rng(3))
        assert isinstance(a, MetricInterval)
        assert a == b == d
        assert a.estimate == c.estimate
        assert (a.low, a.high) != (c.low, c.high)
        assert a.low <= a.high
    assert np.array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002


def test_estimate_is_the_metric_and_the_interval_its_bootstrap_quantiles():
    rng = np.random.default_rng(5)
    p, y = draw(rng, 300, 3, 2.0)
    est, low, high = calibration_error_interval(p, y, metric="ece", n_resamples=400, seed=9, n_bins=10)
    assert est == expected_calibration_error(p, y, n_bins=10)
    generator = np.random.default_rng(9)
    draws = generator.integers(0, 300, size=(400, 300))
    values = [expected_calibration_error(p[row], y[row], n_bins=10) for row in draws]
    assert (low, high) == pytest.approx(tuple(np.quantile(values, [0.025, 0.975])), abs=1e-12)
    assert calibration_error_interval(p, y, metric="smooth_ece", n_resamples=10).estimate == smooth_ece(p, y)


@pytest.mark.parametrize(("metric", "reps", "n_resamples"), [("ece", 100, 200), ("smooth_ece", 40, 150)])
def test_interval_covers_the_population_value(metric, reps, n_resamples):
    # Nominal 95 %: with 100 (40) replications the hit count is ~Binomial, sd 2.2 % (3.4 %); a
    # percentile interval that ignored the sampling spread (or was much too wide) would leave the band.
    rng = np.random.default_rng(6)
    hits = 0
    for rep in range(reps):
        p, y = constant_gap_population(rng, 500)
        _, low, high = calibration_error_interval(p, y, metric=metric, n_resamples=n_resamples, seed=rep)
        hits += low <= 0.1 <= high
    assert 0.85 <= hits / reps <= 1.0
    if metric != "ece":
        return
    # an interval of the wrong width fails: the middle 50 % covers far less than 95 %
    narrow = 0
    for rep in range(reps):
        p, y = constant_gap_population(rng, 500)
        _, low, high = calibration_error_interval(p, y, n_resamples=n_resamples, seed=rep, level=0.5)
        narrow += low <= 0.1 <= high
    assert narrow / reps < 0.75


def test_bad_arguments_name_the_argument():
    rng = np.random.default_rng(7)
    p, y = draw(rng, 50, 3)
    with pytest.raises(ValueError, match="n_bins only apply to the binned metrics"):
        calibration_error_interval(p, y, metric="smooth_ece", n_bins=10)
    with pytest.raises(ValueError, match="metric"):
        calibration_error_interval(p, y, metric="mce")
    with pytest.raises(ValueError, match="level"):
        calibration_error_interval(p, y, level=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        calibration_error_interval(p, y, n_resamples=0)
    with pytest.raises(TypeError, match="seed"):
        calibration_error_interval(p, y, seed=1.5)
    with pytest.raises(ValueError, match="strategy"):
        calibration_error_interval(p, y, strategy="adaptive")
    assert metrics.calibration_error_interval is calibration_error_interval
