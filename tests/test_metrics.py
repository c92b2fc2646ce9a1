"""Tests for smoothflip.metrics: outside references (torchmetrics, scikit-learn, torch), hand-computed
cases, and properties checked with hypothesis."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp, softmax
from sklearn.metrics import brier_score_loss, log_loss
from torchmetrics.functional.classification import multiclass_calibration_error

from smoothflip import metrics
from smoothflip.metrics import (
    PenultimatePlane,
    ReliabilityDiagram,
    accuracy,
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    mutual_information,
    nll,
    nll_from_logits,
    penultimate_plane,
    penultimate_projection,
    reliability_diagram,
)

FAST = settings(max_examples=40, deadline=None)
NORMS = ("l1", "l2", "max")


def random_probs(rng: np.random.Generator, n: int, k: int, scale: float = 2.0) -> np.ndarray:
    return softmax(rng.normal(size=(n, k)) * scale, axis=1)


def probs_from_confidences(conf: list[float], k: int = 10) -> np.ndarray:
    """Rows whose top-label confidence (class 0) is ``conf``; the rest is spread evenly."""
    conf_arr = np.asarray(conf, dtype=np.float64)
    p = np.repeat(((1.0 - conf_arr) / (k - 1))[:, None], k, axis=1)
    p[:, 0] = conf_arr
    assert np.all(np.argmax(p, axis=1) == 0)
    return p


# ----------------------------------------------------------------------------------------------
# Input conversion
# ----------------------------------------------------------------------------------------------


def test_torch_inputs_match_numpy():
    rng = np.random.default_rng(0)
    p = random_probs(rng, 50, 4)
    y = rng.integers(0, 4, 50)
    pt = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(y)
    for fn in (accuracy, nll, brier_score, expected_calibration_error):
        assert fn(pt, yt) == pytest.approx(fn(p, y), rel=1e-12)
    assert isinstance(nll(pt, yt), float)


def test_low_precision_tensors_are_accepted():
    z = torch.randn(20, 3, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    y = torch.zeros(20, dtype=torch.int64)
    expected = nll_from_logits(z.to(torch.float64).numpy(), y.numpy())
    assert nll_from_logits(z, y) == pytest.approx(expected, rel=1e-12)
    assert apply_temperature(z, 1.0).dtype == np.float64


def test_lists_are_accepted():
    assert accuracy([[0.9, 0.1], [0.2, 0.8]], [0, 0]) == 0.5


# ----------------------------------------------------------------------------------------------
# Accuracy, NLL, Brier
# ----------------------------------------------------------------------------------------------


def test_accuracy_ties_go_to_first_index():
    p = np.array([[0.5, 0.5], [0.5, 0.5]])
    assert accuracy(p, np.array([0, 1])) == 0.5


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), k=st.integers(2, 8))
def test_nll_matches_sklearn(seed, n, k):
    rng = np.random.default_rng(seed)
    p = random_probs(rng, n, k)
    y = rng.integers(0, k, n)
    assert nll(p, y) == pytest.approx(log_loss(y, p, labels=np.arange(k)), rel=1e-9)


def test_nll_floor_gives_large_finite_value():
    value = nll(np.array([[1.0, 0.0]]), np.array([1]))
    assert value == pytest.approx(-math.log(metrics.PROB_FLOOR))
    assert math.isfinite(value)


def test_nll_from_logits_matches_torch_and_nll():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(40, 6)) * 3
    y = rng.integers(0, 6, 40)
    expected = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(y)).item()
    assert nll_from_logits(z, y) == pytest.approx(expected, rel=1e-12)
    assert nll_from_logits(z, y) == pytest.approx(nll(softmax(z, axis=1), y), rel=1e-12)


def test_nll_from_logits_is_stable_for_huge_logits():
    assert nll_from_logits(np.array([[1e4, 0.0]]), np.array([1])) == pytest.approx(1e4)
    assert nll_from_logits(np.array([[1e4, 0.0]]), np.array([0])) == 0.0


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), k=st.integers(3, 8))
def test_brier_matches_sklearn_multiclass(seed, n, k):
    rng = np.random.default_rng(seed)
    p = random_probs(rng, n, k)
    y = rng.integers(0, k, n)
    expected = brier_score_loss(y, p, labels=np.arange(k), scale_by_half=False)
    assert brier_score(p, y) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_brier_binary_is_twice_sklearn_binary():
    rng = np.random.default_rng(2)
    p1 = rng.uniform(size=100)
    p = np.stack([1 - p1, p1], axis=1)
    y = rng.integers(0, 2, 100)
    assert brier_score(p, y) == pytest.approx(2 * brier_score_loss(y, p1), rel=1e-12)


def test_brier_range_ends():
    eye = np.eye(3)
    assert brier_score(eye, np.array([0, 1, 2])) == 0.0
    assert brier_score(eye, np.array([1, 2, 0])) == 2.0


# ----------------------------------------------------------------------------------------------
# ECE and reliability diagrams
# ----------------------------------------------------------------------------------------------


def _away_from_edges(p: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop rows whose confidence is within 1e-6 of an edge k / n_bins (where conventions differ)."""
    conf = p.max(axis=1)
    keep = np.abs(conf * n_bins - np.round(conf * n_bins)) > 1e-6 * n_bins
    return p[keep], y[keep]


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    k=st.integers(2, 10),
    n_bins=st.integers(1, 30),
    scale=st.floats(0.1, 6.0),
)
def test_ece_matches_torchmetrics(seed, n, k, n_bins, scale):
    rng = np.random.default_rng(seed)
    p, y = _away_from_edges(random_probs(rng, n, k, scale), rng.integers(0, k, n), n_bins)
    if y.size == 0:
        return
    for norm in NORMS:
        expected = multiclass_calibration_error(
            torch.tensor(p), torch.tensor(y), k, n_bins=n_bins, norm=norm
        ).item()
        ours = expected_calibration_error(p, y, n_bins=n_bins, norm=norm)
        assert ours == pytest.approx(expected, rel=1e-5, abs=1e-6), norm


def test_ece_matches_torchmetrics_15_bins_large_sample():
    rng = np.random.default_rng(3)
    p, y = _away_from_edges(random_probs(rng, 5000, 10, 3.0), rng.integers(0, 10, 5000), 15)
    for norm in NORMS:
        expected = multiclass_calibration_error(torch.tensor(p), torch.tensor(y), 10, n_bins=15, norm=norm)
        assert expected_calibration_error(p, y, norm=norm) == pytest.approx(expected.item(), rel=1e-5)


def test_confidence_one_falls_in_last_bin():
    # torchmetrics issue #3510: 1.0 must share the last bin (14/15, 1] with 0.95.
    p = np.array([[1.0, 0.0], [0.95, 0.05]])
    y = np.array([1, 0])  # the 1.0 prediction is wrong, the 0.95 one right
    d = reliability_diagram(p, y, n_bins=15)
    assert d.count.tolist() == [0] * 14 + [2]
    assert d.accuracy[-1] == 0.5
    assert d.confidence[-1] == pytest.approx(0.975)
    # one bin with acc 0.5 and conf 0.975: every norm gives 0.475
    for norm in NORMS:
        assert expected_calibration_error(p, y, norm=norm) == pytest.approx(0.475)


def test_bin_assignment_at_both_ends_and_on_edges():
    edges = metrics._uniform_edges(15)
    conf = np.array([0.0, 1e-300, edges[1], np.nextafter(edges[1], 1.0), 0.5, edges[14], 1.0])
    index = metrics._assign_bins(conf, edges)
    # 0.0 -> first bin; bins are (lo, hi], so an edge value belongs to the bin below it; 1.0 -> last
    assert index.tolist() == [0, 0, 0, 1, 7, 13, 14]


def test_confidence_zero_is_counted_in_first_bin():
    d = metrics._reliability(np.array([0.0, 0.05, 1.0]), np.array([False, True, True]), 10, "uniform")
    assert d.count.tolist() == [2] + [0] * 8 + [1]
    assert d.accuracy[0] == 0.5
    assert d.confidence[0] == pytest.approx(0.025)


def test_edge_confidence_goes_to_lower_bin_through_public_api():
    edge = metrics._uniform_edges(5)[3]  # 0.6 as linspace computes it
    d = reliability_diagram(np.array([[edge, 1.0 - edge]]), np.array([0]), n_bins=5)
    assert d.count.tolist() == [0, 0, 1, 0, 0]


def test_quantile_hand_case_with_leftover():
    # 7 confidences, 3 bins -> sizes 3, 2, 2 (the first N mod B bins take the extra example)
    conf = [0.9, 0.3, 0.5, 0.4, 0.95, 0.6, 0.7]
    correct = [True, False, True, True, True, False, True]
    y = np.where(correct, 0, 1)
    p = probs_from_confidences(conf)
    d = reliability_diagram(p, y, n_bins=3, strategy="quantile")
    assert d.count.tolist() == [3, 2, 2]
    np.testing.assert_allclose(d.edges, [0.0, 0.5, 0.7, 1.0])
    np.testing.assert_allclose(d.confidence, [0.4, 0.65, 0.925])
    np.testing.assert_allclose(d.accuracy, [2 / 3, 0.5, 1.0])
    expected = (3 * abs(2 / 3 - 0.4) + 2 * abs(0.5 - 0.65) + 2 * abs(1.0 - 0.925)) / 7
    assert expected_calibration_error(p, y, n_bins=3, strategy="quantile") == pytest.approx(expected)
    assert expected_calibration_error(p, y, n_bins=3, strategy="quantile", norm="max") == pytest.approx(
        2 / 3 - 0.4
    )


def test_quantile_keeps_ties_together():
    # target cut after 2 of 4 falls inside the tie at 0.5 -> moves to its end: bins {0.5 x3}, {0.9}
    p = probs_from_confidences([0.5, 0.9, 0.5, 0.5])
    y = np.array([0, 0, 1, 1])
    d = reliability_diagram(p, y, n_bins=2, strategy="quantile")
    assert d.count.tolist() == [3, 1]
    np.testing.assert_allclose(d.edges, [0.0, 0.5, 1.0])
    # all equal -> one bin holds everything, the others are empty (NaN)
    d = reliability_diagram(
        probs_from_confidences([0.5] * 5), np.zeros(5, int), n_bins=3, strategy="quantile"
    )
    assert d.count.tolist() == [5, 0, 0]
    assert np.isnan(d.accuracy[1:]).all()
    assert np.isnan(d.confidence[1:]).all()


def test_quantile_with_fewer_examples_than_bins():
    d = reliability_diagram(
        probs_from_confidences([0.3, 0.8]), np.array([0, 1]), n_bins=4, strategy="quantile"
    )
    assert d.count.tolist() == [1, 1, 0, 0]


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200), n_bins=st.integers(1, 20))
def test_quantile_counts_are_balanced_without_ties(seed, n, n_bins):
    rng = np.random.default_rng(seed)
    p = random_probs(rng, n, 5)
    d = reliability_diagram(p, rng.integers(0, 5, n), n_bins=n_bins, strategy="quantile")
    expected = [len(part) for part in np.array_split(np.arange(n), n_bins)]
    assert d.count.tolist() == expected


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 100), n_bins=st.integers(1, 10))
def test_quantile_is_invariant_to_row_order_with_ties(seed, n, n_bins):
    rng = np.random.default_rng(seed)
    conf = rng.choice([0.3, 0.5, 0.6, 0.9], size=n)  # many ties
    p = probs_from_confidences(conf.tolist())
    y = rng.integers(0, 2, n)
    perm = rng.permutation(n)
    for norm in NORMS:
        a = expected_calibration_error(p, y, n_bins=n_bins, norm=norm, strategy="quantile")
        b = expected_calibration_error(p[perm], y[perm], n_bins=n_bins, norm=norm, strategy="quantile")
        assert a == pytest.approx(b, abs=1e-12)


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 200),
    n_bins=st.integers(1, 25),
    strategy=st.sampled_from(["uniform", "quantile"]),
)
def test_reliability_diagram_agrees_with_ece(seed, n, n_bins, strategy):
    rng = np.random.default_rng(seed)
    p = random_probs(rng, n, 4)
    y = rng.integers(0, 4, n)
    d = reliability_diagram(p, y, n_bins=n_bins, strategy=strategy)
    assert d.edges.shape == (n_bins + 1,)
    assert d.confidence.shape == d.accuracy.shape == d.count.shape == (n_bins,)
    assert d.count.sum() == n
    assert d.n_bins == n_bins
    assert d.n_samples == n
    assert d.edges[0] == 0.0
    assert d.edges[-1] == 1.0
    assert np.all(np.diff(d.edges) >= 0)
    empty = d.count == 0
    assert np.isnan(d.confidence[empty]).all()
    assert np.isnan(d.accuracy[empty]).all()
    # every non-empty bin's mean confidence lies within its edges
    filled = ~empty
    assert np.all(d.confidence[filled] <= d.edges[1:][filled] + 1e-12)
    assert np.all(d.confidence[filled] >= d.edges[:-1][filled] - 1e-12)
    w = d.count[filled] / n
    gap = np.abs(d.accuracy[filled] - d.confidence[filled])
    expected = {"l1": np.sum(w * gap), "l2": np.sqrt(np.sum(w * gap**2)), "max": gap.max()}
    values = {}
    for norm in NORMS:
        values[norm] = expected_calibration_error(p, y, n_bins=n_bins, norm=norm, strategy=strategy)
        assert values[norm] == pytest.approx(expected[norm], abs=1e-12)
    # weighted mean <= weighted RMS <= max
    assert values["l1"] <= values["l2"] + 1e-12
    assert values["l2"] <= values["max"] + 1e-12
    # overall accuracy is the count-weighted mean of bin accuracies
    assert np.sum(w * d.accuracy[filled]) == pytest.approx(accuracy(p, y), abs=1e-12)


def test_one_bin_is_overall_gap():
    rng = np.random.default_rng(4)
    p = random_probs(rng, 100, 3)
    y = rng.integers(0, 3, 100)
    gap = abs(accuracy(p, y) - p.max(axis=1).mean())
    for norm in NORMS:
        assert expected_calibration_error(p, y, n_bins=1, norm=norm) == pytest.approx(gap)


def test_reliability_diagram_is_frozen_and_read_only():
    d = reliability_diagram(np.array([[0.7, 0.3]]), np.array([0]))
    assert isinstance(d, ReliabilityDiagram)
    with pytest.raises(AttributeError):
        d.count = np.zeros(15)  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        d.count[0] = 5
    assert d.count.dtype == np.int64


# ----------------------------------------------------------------------------------------------
# Temperature scaling
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrated_logits() -> tuple[np.ndarray, np.ndarray]:
    """Logits of a perfectly calibrated model: labels are drawn from softmax(z)."""
    rng = np.random.default_rng(5)
    z = rng.normal(size=(20000, 5)) * 1.5
    cdf = np.cumsum(softmax(z, axis=1), axis=1)
    y = np.minimum((rng.uniform(size=(20000, 1)) > cdf).sum(axis=1), 4)
    return z, y


def test_fit_temperature_recovers_overconfidence(calibrated_logits):
    z, y = calibrated_logits
    t = fit_temperature(3.0 * z, y)
    assert t == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(z, y) == pytest.approx(1.0, rel=0.05)
    before = nll(softmax(3.0 * z, axis=1), y)
    after = nll(apply_temperature(3.0 * z, t), y)
    assert after < before - 0.1
    # argmax (hence accuracy) is unchanged
    assert np.array_equal(np.argmax(apply_temperature(3.0 * z, t), axis=1), np.argmax(z, axis=1))
    assert accuracy(apply_temperature(3.0 * z, t), y) == accuracy(softmax(3.0 * z, axis=1), y)
    # ECE improves
    assert expected_calibration_error(apply_temperature(3.0 * z, t), y) < expected_calibration_error(
        softmax(3.0 * z, axis=1), y
    )


def test_fit_temperature_is_the_grid_argmin():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(500, 4)) * 4
    y = rng.integers(0, 4, 500)
    z[np.arange(500), y] += 2.0  # some signal, very overconfident
    t = fit_temperature(z, y)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 4001))
    losses = np.array([nll_from_logits(z / g, y) for g in grid])
    assert nll_from_logits(z / t, y) <= losses.min() + 1e-12
    assert t == pytest.approx(grid[np.argmin(losses)], rel=2e-3)
    assert fit_temperature(z, y) == t  # deterministic


def test_fit_temperature_warns_at_a_bound():
    z = np.array([[5.0, 0.0], [0.0, 5.0]])  # separable: NLL keeps falling as T -> 0
    with pytest.warns(UserWarning, match="bound"):
        t = fit_temperature(z, np.array([0, 1]), bounds=(0.1, 10.0))
    assert t == pytest.approx(0.1)


def test_apply_temperature_values():
    z = np.array([[2.0, 0.0, -1.0]])
    np.testing.assert_allclose(apply_temperature(z, 1.0), softmax(z, axis=1))
    np.testing.assert_allclose(apply_temperature(z, 2.0), softmax(z / 2.0, axis=1))
    assert apply_temperature(torch.tensor(z), 0.5).sum() == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# Mutual information
# ----------------------------------------------------------------------------------------------


def naive_mi(y: np.ndarray) -> float:
    """The appendix A.2 formula written out directly, with the full [N, L, N] array."""
    n = y.shape[0]
    mu = y.mean(axis=1)
    var = np.mean((y - mu[:, None]) ** 2)
    own = -((y - mu[:, None]) ** 2) / (2 * var)
    cross = -((y[:, :, None] - mu[None, None, :]) ** 2) / (2 * var)
    return float(np.mean(own - (logsumexp(cross, axis=2) - np.log(n))))


def mi_inputs(rng: np.random.Generator, n: int, n_aug: int) -> np.ndarray:
    spread = rng.exponential(2.0)
    noise = rng.exponential(1.0, size=(n, 1))  # per-example noise scale
    return rng.normal(size=(n, 1)) * spread + rng.normal(size=(n, n_aug)) * noise


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 30), n_aug=st.integers(2, 8))
def test_mi_matches_the_formula(seed, n, n_aug):
    y = mi_inputs(np.random.default_rng(seed), n, n_aug)
    assert mutual_information(y, clip=False) == pytest.approx(naive_mi(y), rel=1e-9, abs=1e-10)


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 30), n_aug=st.integers(2, 8))
def test_mi_bounds(seed, n, n_aug):
    y = mi_inputs(np.random.default_rng(seed), n, n_aug)
    clipped = mutual_information(y)
    assert 0.0 <= clipped <= math.log(n)
    assert mutual_information(y, clip=False) <= math.log(n) + 1e-9  # each term is <= log N


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 20),
    a=st.floats(0.01, 100.0) | st.floats(-100.0, -0.01),
    b=st.floats(-1e3, 1e3),
)
def test_mi_is_affine_invariant(seed, n, a, b):
    y = mi_inputs(np.random.default_rng(seed), n, 5)
    base = mutual_information(y, clip=False)
    assert mutual_information(a * y + b, clip=False) == pytest.approx(base, rel=1e-7, abs=1e-9)
    assert naive_mi(a * y + b) == pytest.approx(base, rel=1e-7, abs=1e-9)


def test_mi_separated_and_identical():
    n = 50
    rng = np.random.default_rng(7)
    separated = np.arange(n)[:, None] * 100.0 + rng.normal(size=(n, 5))
    assert mutual_information(separated) == pytest.approx(math.log(n), abs=1e-6)
    identical = np.repeat(rng.normal(size=(1, 5)), n, axis=0)  # varies over augmentations only
    assert mutual_information(identical, clip=False) == pytest.approx(0.0, abs=1e-12)
    assert mutual_information(identical) == 0.0


def test_mi_degenerate_zero_variance():
    n = 8
    assert mutual_information(np.full((n, 4), 3.0)) == 0.0
    distinct = np.repeat(np.arange(n, dtype=float)[:, None], 4, axis=1)
    assert mutual_information(distinct) == pytest.approx(math.log(n))
    two_groups = np.repeat(np.array([0.1, 0.7] * 4)[:, None], 3, axis=1)
    assert mutual_information(two_groups) == pytest.approx(math.log(2))


def test_mi_can_be_negative_raw_and_is_clipped():
    n = n_aug = 10
    y = np.ones((n, n_aug))
    y[0] = -1.0 / (n_aug - 1)
    y[0, 0] = 1.0  # one augmentation of example 0 lands exactly on everyone else's mean
    raw = mutual_information(y, clip=False)
    assert raw == pytest.approx(naive_mi(y), rel=1e-9)
    assert raw < -0.1
    assert mutual_information(y) == 0.0


def test_mi_chunked_equals_unchunked():
    y = mi_inputs(np.random.default_rng(8), 60, 7)
    whole = mutual_information(y, clip=False, chunk_size=60 * 7)
    for chunk in (1, 13, 100, None):
        assert mutual_information(y, clip=False, chunk_size=chunk) == pytest.approx(whole, rel=1e-12)


def test_mi_large_input_is_fast_enough():
    y = mi_inputs(np.random.default_rng(9), 2000, 10)
    value = mutual_information(y)
    assert 0.0 <= value <= math.log(2000)


def test_mi_accepts_tensors():
    y = mi_inputs(np.random.default_rng(10), 10, 3)
    assert mutual_information(torch.tensor(y, dtype=torch.float32)) == pytest.approx(
        mutual_information(y.astype(np.float32).astype(np.float64)), rel=1e-12
    )


# ----------------------------------------------------------------------------------------------
# Penultimate-layer projection
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def layer() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    return rng.normal(size=(40, 8)), rng.normal(size=(6, 8)), rng.normal(size=6)


def test_templates_form_triangle_around_zero(layer):
    _, w, _ = layer
    classes = [4, 1, 2]
    plane = penultimate_plane(w, classes)
    assert isinstance(plane, PenultimatePlane)
    assert plane.classes == (4, 1, 2)
    np.testing.assert_allclose(plane.templates.sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(plane.basis @ plane.basis.T, np.eye(2), atol=1e-12)
    t = w[classes]
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert np.linalg.norm(plane.templates[i] - plane.templates[j]) == pytest.approx(
            np.linalg.norm(t[i] - t[j])
        )
    # the templates project onto their own coordinates; the first basis vector points from a to b
    np.testing.assert_allclose(plane.project(t), plane.templates, atol=1e-12)
    assert plane.templates[1, 1] == pytest.approx(plane.templates[0, 1])
    assert plane.templates[1, 0] > plane.templates[0, 0]


def test_in_plane_feature_projects_exactly(layer):
    _, w, _ = layer
    plane = penultimate_plane(w, [0, 3, 5])
    t = w[[0, 3, 5]]
    s, r = 0.3, -1.7
    x = t[0] + s * (t[1] - t[0]) + r * (t[2] - t[0])
    expected = (1 - s - r) * plane.templates[0] + s * plane.templates[1] + r * plane.templates[2]
    np.testing.assert_allclose(plane.project(x[None]), expected[None], atol=1e-12)


def test_projection_ignores_orthogonal_components(layer):
    x, w, _ = layer
    classes = [0, 1, 2]
    t = w[classes]
    q, _ = np.linalg.qr(np.stack([t[1] - t[0], t[2] - t[0]], axis=1), mode="complete")
    orthogonal = np.random.default_rng(12).normal(size=(x.shape[0], 6)) @ q[:, 2:].T
    np.testing.assert_allclose(
        penultimate_projection(x + orthogonal, w, classes),
        penultimate_projection(x, w, classes),
        atol=1e-10,
    )


def test_bias_equals_appending_one(layer):
    x, w, b = layer
    with_bias, templates = penultimate_projection(x, w, [1, 2, 3], bias=b, return_templates=True)
    x1 = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    w1 = np.concatenate([w, b[:, None]], axis=1)
    manual, manual_templates = penultimate_projection(x1, w1, [1, 2, 3], return_templates=True)
    np.testing.assert_allclose(with_bias, manual, atol=1e-12)
    np.testing.assert_allclose(templates, manual_templates, atol=1e-12)
    assert not np.allclose(with_bias, penultimate_projection(x, w, [1, 2, 3]))


def test_projection_accepts_tensors(layer):
    x, w, b = layer
    expected = penultimate_projection(x, w, [0, 1, 2], bias=b)
    got = penultimate_projection(
        torch.tensor(x), torch.tensor(w), torch.tensor([0, 1, 2]), bias=torch.tensor(b)
    )
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert got.shape == (x.shape[0], 2)


# ----------------------------------------------------------------------------------------------
# Bad inputs: every error names the argument
# ----------------------------------------------------------------------------------------------

P = np.array([[0.7, 0.3], [0.4, 0.6]])
Y = np.array([0, 1])
Z = np.array([[1.0, 0.0], [0.0, 1.0]])

BAD_PROBS_LABELS = [
    (np.array([0.7, 0.3]), Y, "probs"),  # 1-D
    (np.zeros((0, 2)), np.zeros(0, int), "probs"),  # empty
    (np.array([[0.7, 0.2], [0.4, 0.6]]), Y, "probs"),  # does not sum to 1
    (np.array([[1.2, -0.2], [0.4, 0.6]]), Y, "probs"),  # outside [0, 1]
    (np.array([[np.nan, 1.0], [0.4, 0.6]]), Y, "probs"),
    (P, np.array([0, 2]), "labels"),  # out of range
    (P, np.array([-1, 0]), "labels"),
    (P, np.array([0, 1, 1]), "labels"),  # wrong length
    (P, np.array([[0, 1]]), "labels"),
]


@pytest.mark.parametrize(("probs", "labels", "name"), BAD_PROBS_LABELS)
@pytest.mark.parametrize("fn", [accuracy, nll, brier_score, expected_calibration_error, reliability_diagram])
def test_bad_probs_or_labels(fn, probs, labels, name):
    with pytest.raises(ValueError, match=name):
        fn(probs, labels)


@pytest.mark.parametrize("fn", [accuracy, nll, brier_score, expected_calibration_error])
def test_wrong_kinds_raise_type_error(fn):
    with pytest.raises(TypeError, match="labels"):
        fn(P, np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="probs"):
        fn(np.array([["a", "b"], ["c", "d"]]), Y)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"n_bins": 0}, ValueError, "n_bins"),
        ({"n_bins": 2.5}, TypeError, "n_bins"),
        ({"norm": "l3"}, ValueError, "norm"),
        ({"strategy": "kmeans"}, ValueError, "strategy"),
    ],
)
def test_bad_ece_options(kwargs, error, name):
    with pytest.raises(error, match=name):
        expected_calibration_error(P, Y, **kwargs)
    if "norm" not in kwargs:
        with pytest.raises(error, match=name):
            reliability_diagram(P, Y, **kwargs)


@pytest.mark.parametrize(
    ("logits", "labels", "name"),
    [
        (np.array([1.0, 0.0]), Y, "logits"),
        (np.array([[np.inf, 0.0], [0.0, 1.0]]), Y, "logits"),
        (Z, np.array([0, 5]), "labels"),
        (Z, np.array([0]), "labels"),
    ],
)
def test_bad_logits(logits, labels, name):
    for fn in (nll_from_logits, fit_temperature):
        with pytest.raises(ValueError, match=name):
            fn(logits, labels)


@pytest.mark.parametrize(
    ("temperature", "error"),
    [
        (0.0, ValueError),
        (-1.0, ValueError),
        (math.inf, ValueError),
        (math.nan, ValueError),
        (True, TypeError),
    ],
)
def test_bad_temperature(temperature, error):
    with pytest.raises(error, match="temperature"):
        apply_temperature(Z, temperature)


@pytest.mark.parametrize(
    "bounds", [(0.0, 1.0), (-1.0, 2.0), (2.0, 1.0), (1.0, 1.0), (1.0,), 3.0, (0.1, math.inf)]
)
def test_bad_temperature_bounds(bounds):
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature(Z, Y, bounds=bounds)


def test_fit_temperature_needs_two_classes():
    with pytest.raises(ValueError, match="logits"):
        fit_temperature(np.zeros((3, 1)), np.zeros(3, int))


@pytest.mark.parametrize(
    ("values", "name"),
    [
        (np.zeros((1, 5)), "N >= 2"),
        (np.zeros((5, 1)), "L >= 2"),
        (np.zeros(5), "logit_diffs"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "logit_diffs"),
    ],
)
def test_bad_mi_inputs(values, name):
    with pytest.raises(ValueError, match=name):
        mutual_information(values)


def test_bad_mi_chunk_size():
    with pytest.raises(ValueError, match="chunk_size"):
        mutual_information(np.zeros((3, 3)), chunk_size=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"classes": [0, 1, 1]}, ValueError, "classes"),
        ({"classes": [0, 1]}, ValueError, "classes"),
        ({"classes": [0, 1, 2, 3]}, ValueError, "classes"),
        ({"classes": [0, 1, 6]}, ValueError, r"classes\[2\]"),
        ({"classes": [-1, 1, 2]}, ValueError, r"classes\[0\]"),
        ({"classes": [0, 1.5, 2]}, TypeError, "classes"),
        ({"classes": "abc"}, ValueError, "classes"),
        ({"bias": np.zeros(5)}, ValueError, "bias"),
        ({"bias": np.zeros((6, 1))}, ValueError, "bias"),
        ({"features": np.zeros((4, 7))}, ValueError, "features"),
        ({"features": np.zeros(8)}, ValueError, "features"),
        ({"class_weights": np.zeros(8)}, ValueError, "class_weights"),
    ],
)
def test_bad_projection_inputs(layer, kwargs, error, name):
    x, w, _ = layer
    args = {"features": x, "class_weights": w, "classes": [0, 1, 2]} | kwargs
    with pytest.raises(error, match=name):
        penultimate_projection(**args)


def test_collinear_templates_are_rejected():
    w = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="collinear"):
        penultimate_plane(w, [0, 1, 2])
    with pytest.raises(ValueError, match="collinear"):
        penultimate_plane(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), [0, 1, 2])
    with pytest.raises(ValueError, match="collinear"):
        penultimate_plane(np.zeros((3, 4)), [0, 1, 2])
    penultimate_plane(w, [0, 1, 3])  # not collinear: fine
