"""Tests for smoothflip.metrics.classwise_calibration_error (Kull et al. 2019; Nixon et al. 2019 SCE).

References: torchmetrics' ``binary_calibration_error`` applied to each class (equal-width bins), a
plain equal-count definition written here, an analytic bound for calibrated data, and properties.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax
from torchmetrics.functional.classification import binary_calibration_error

from smoothflip.metrics import classwise_calibration_error, expected_calibration_error

FAST = settings(max_examples=30, deadline=None)
NORMS = ("l1", "l2", "max")


def draw(rng, n, k, temperature=1.0, scale=2.0):
    """Labels drawn from softmax(z) (so softmax(z) is calibrated); probs softmax(temperature * z)."""
    z = rng.normal(size=(n, k)) * scale
    y = (rng.uniform(size=(n, 1)) > softmax(z, axis=1).cumsum(axis=1)).sum(axis=1)
    return softmax(temperature * z, axis=1), y


def plain_equal_count(p: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    """Mean over classes of Σ_b (n_b/N) |freq_b − conf_b| with np.array_split runs (no ties)."""
    errors = []
    for k in range(p.shape[1]):
        order = np.argsort(p[:, k])
        total = 0.0
        for run in np.array_split(order, n_bins):
            if run.size:
                total += run.size / y.size * abs(np.mean(y[run] == k) - np.mean(p[run, k]))
        errors.append(total)
    return float(np.mean(errors))


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    k=st.integers(2, 8),
    n_bins=st.integers(1, 25),
    scale=st.floats(0.2, 5.0),
)
def test_uniform_bins_match_torchmetrics_per_class(seed, n, k, n_bins, scale):
    rng = np.random.default_rng(seed)
    p = softmax(rng.normal(size=(n, k)) * scale, axis=1)
    y = rng.integers(0, k, n)
    # torchmetrics bins [lo, hi) and ours (lo, hi]: skip the (measure-zero) draws that sit on an edge
    if np.any(np.abs(p * n_bins - np.round(p * n_bins)) < 1e-9):
        return
    for norm in NORMS:
        expected = np.mean(
            [
                binary_calibration_error(
                    torch.tensor(p[:, c]), torch.tensor((y == c).astype(np.int64)), n_bins=n_bins, norm=norm
                ).item()
                for c in range(k)
            ]
        )
        ours = classwise_calibration_error(p, y, n_bins=n_bins, norm=norm)
        assert ours == pytest.approx(expected, rel=1e-5, abs=1e-6), norm


@pytest.mark.parametrize(("n", "k", "n_bins"), [(500, 4, 10), (1000, 10, 15), (37, 3, 5), (10, 2, 15)])
def test_quantile_bins_match_the_plain_definition(n, k, n_bins):
    rng = np.random.default_rng(n)
    p, y = draw(rng, n, k, 1.3)
    ours = classwise_calibration_error(p, y, n_bins=n_bins, strategy="quantile")
    assert ours == pytest.approx(plain_equal_count(p, y, n_bins), abs=1e-12)


def test_calibrated_data_stay_below_the_noise_bound():
    # For calibrated data E[freq_b − conf_b | p] = 0 with variance <= 1/(4 n_b), so by Cauchy-Schwarz
    # E[class-wise ECE | p] <= Σ_b (n_b/N) / (2 sqrt(n_b)) <= sqrt(B / (4 N)), here 0.0137.
    n, k, n_bins = 20_000, 5, 15
    bound = math.sqrt(n_bins / (4 * n))
    rng = np.random.default_rng(11)
    p, y = draw(rng, n, k)
    assert classwise_calibration_error(p, y, n_bins=n_bins) < bound
    assert classwise_calibration_error(p, y, n_bins=n_bins, strategy="quantile") < bound
    # the same check fails for a model that is sharpened by a temperature of 1/2
    p_sharp = softmax(2.0 * np.log(p), axis=1)
    assert classwise_calibration_error(p_sharp, y, n_bins=n_bins) > 2 * bound


def test_reduces_to_binary_ece_for_two_classes_at_one_bin():
    # with one bin, class k contributes |mean 1[y=k] − mean p_k|, the same for both classes of K = 2
    rng = np.random.default_rng(12)
    p, y = draw(rng, 200, 2, 1.5)
    value = classwise_calibration_error(p, y, n_bins=1)
    assert value == pytest.approx(abs(np.mean(y == 1) - p[:, 1].mean()), abs=1e-12)


def test_one_hot_correct_predictions_score_zero():
    y = np.array([0, 2, 1, 2, 0])
    p = np.eye(3)[y]
    for norm in NORMS:
        for strategy in ("uniform", "quantile"):
            assert classwise_calibration_error(p, y, norm=norm, strategy=strategy) == 0.0
    assert expected_calibration_error(p, y) == 0.0


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 120), k=st.integers(2, 6))
def test_invariant_to_row_order_and_class_relabelling(seed, n, k):
    rng = np.random.default_rng(seed)
    p = softmax(rng.normal(size=(n, k)) * 2, axis=1)
    y = rng.integers(0, k, n)
    rows, classes = rng.permutation(n), rng.permutation(k)
    relabel = np.argsort(classes)  # new label of old class c is relabel[c]
    for strategy in ("uniform", "quantile"):
        base = classwise_calibration_error(p, y, strategy=strategy)
        assert classwise_calibration_error(p[rows], y[rows], strategy=strategy) == pytest.approx(
            base, abs=1e-12
        )
        moved = classwise_calibration_error(p[:, classes], relabel[y], strategy=strategy)
        assert moved == pytest.approx(base, abs=1e-12)


def test_torch_inputs_and_bad_arguments():
    rng = np.random.default_rng(13)
    p, y = draw(rng, 100, 3)
    value = classwise_calibration_error(torch.tensor(p, dtype=torch.float64), torch.tensor(y))
    assert value == pytest.approx(classwise_calibration_error(p, y), abs=1e-12)
    with pytest.raises(ValueError, match="strategy"):
        classwise_calibration_error(p, y, strategy="adaptive")
    with pytest.raises(ValueError, match="norm"):
        classwise_calibration_error(p, y, norm="l3")
    with pytest.raises(ValueError, match="n_bins"):
        classwise_calibration_error(p, y, n_bins=0)
    with pytest.raises(ValueError, match="probs rows must sum to 1"):
        classwise_calibration_error(p * 0.9, y)
