"""Tests for smoothflip.metrics.selective: risk-coverage curve, AURC, E-AURC, selective risk.

References: brute-force definitions written plainly here (the curve by thresholding, AURC averaged
over every tie-breaking order), the closed-form oracle AURC of Geifman et al. (2018), and
properties checked with hypothesis.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax

from smoothflip import metrics
from smoothflip.metrics import (
    RiskCoverageCurve,
    aurc,
    excess_aurc,
    risk_coverage_curve,
    selective_risk,
)

FAST = settings(max_examples=40, deadline=None)


def probs_with_correctness(correct: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Rows predicting class 0; the label is 0 where ``correct`` and 1 elsewhere."""
    p = np.full((correct.size, k), 0.1 / (k - 1))
    p[:, 0] = 0.9
    return p, np.where(correct, 0, 1)


def brute_curve(conf: np.ndarray, wrong: np.ndarray) -> tuple[list[float], list[float]]:
    coverage, risk = [], []
    for threshold in sorted(set(conf.tolist()), reverse=True):
        accepted = conf >= threshold
        coverage.append(accepted.mean())
        risk.append(wrong[accepted].mean())
    return coverage, risk


def brute_aurc(conf: np.ndarray, wrong: np.ndarray) -> float:
    """Mean over every order that sorts ``conf`` descending (ties in any order) of mean_k E_k / k."""
    n = conf.size
    values = []
    for perm in itertools.permutations(range(n)):
        c = conf[list(perm)]
        if np.all(c[:-1] >= c[1:]):
            errors = np.cumsum(wrong[list(perm)])
            values.append(np.mean(errors / np.arange(1, n + 1)))
    return float(np.mean(values))


# ----------------------------------------------------------------------------------------------
# Against brute-force definitions
# ----------------------------------------------------------------------------------------------


@FAST
@given(
    conf=st.lists(st.integers(0, 3), min_size=1, max_size=7),
    data=st.data(),
)
def test_curve_and_aurc_match_brute_force_with_ties(conf, data):
    n = len(conf)
    correct = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    p, y = probs_with_correctness(correct)
    c = np.array(conf, dtype=np.float64)
    curve = risk_coverage_curve(p, y, confidence=c)
    coverage, risk = brute_curve(c, ~correct)
    np.testing.assert_allclose(curve.coverage, coverage, rtol=0, atol=1e-12)
    np.testing.assert_allclose(curve.risk, risk, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(curve.threshold, sorted(set(conf), reverse=True))
    assert aurc(p, y, confidence=c) == pytest.approx(brute_aurc(c, ~correct), abs=1e-12)


def test_default_confidence_is_max_probability_and_loss_is_top_label():
    rng = np.random.default_rng(0)
    p = softmax(rng.normal(size=(200, 5)) * 2, axis=1)
    y = rng.integers(0, 5, 200)
    wrong = np.argmax(p, axis=1) != y
    curve = risk_coverage_curve(p, y)
    coverage, risk = brute_curve(p.max(axis=1), wrong)
    np.testing.assert_allclose(curve.coverage, coverage, atol=1e-12)
    np.testing.assert_allclose(curve.risk, risk, atol=1e-12)
    # no ties here: AURC is the plain mean of the top-k error rates
    order = np.argsort(-p.max(axis=1))
    expected = np.mean(np.cumsum(wrong[order]) / np.arange(1, 201))
    assert aurc(p, y) == pytest.approx(expected, abs=1e-12)
    assert aurc(p, y, confidence=p.max(axis=1)) == aurc(p, y)


def test_oracle_matches_geifman_closed_form():
    # AURC* = (1/N) Σ_k max(0, k - n_correct) / k -> r + (1 - r) ln(1 - r) (Geifman et al. 2018)
    rng = np.random.default_rng(1)
    n, r = 200_000, 0.23
    correct = rng.uniform(size=n) >= r
    p, y = probs_with_correctness(correct)
    rate = 1.0 - correct.mean()
    oracle = aurc(p, y) - excess_aurc(p, y)
    assert oracle == pytest.approx(rate + (1 - rate) * math.log(1 - rate), abs=1e-4)


# ----------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------


@FAST
@given(correct=st.lists(st.booleans(), min_size=1, max_size=60), seed=st.integers(0, 2**16))
def test_perfect_ranking_reaches_the_oracle(correct, seed):
    correct = np.array(correct)
    p, y = probs_with_correctness(correct)
    noise = np.random.default_rng(seed).uniform(0, 0.5, correct.size)
    confidence = correct + noise  # every correct example above every error
    n, n_correct = correct.size, int(correct.sum())
    k = np.arange(1, n + 1)
    oracle = np.mean(np.maximum(k - n_correct, 0) / k)
    assert aurc(p, y, confidence=confidence) == pytest.approx(oracle, abs=1e-12)
    assert excess_aurc(p, y, confidence=confidence) == pytest.approx(0.0, abs=1e-12)


@FAST
@given(
    conf=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=80),
    data=st.data(),
)
def test_excess_aurc_is_non_negative_and_aurc_in_range(conf, data):
    n = len(conf)
    correct = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    p, y = probs_with_correctness(correct)
    value = excess_aurc(p, y, confidence=np.array(conf))
    assert 0.0 <= value <= 1.0
    assert 0.0 <= aurc(p, y, confidence=np.array(conf)) <= 1.0


@FAST
@given(
    conf=st.lists(st.integers(-5, 5), min_size=1, max_size=50),
    data=st.data(),
)
def test_invariant_to_monotone_transforms_and_row_order(conf, data):
    n = len(conf)
    correct = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    p, y = probs_with_correctness(correct)
    c = np.array(conf, dtype=np.float64)
    base = aurc(p, y, confidence=c)
    assert aurc(p, y, confidence=np.exp(0.7 * c) - 3.0) == pytest.approx(base, abs=1e-12)
    assert aurc(p, y, confidence=np.arctan(c)) == pytest.approx(base, abs=1e-12)
    perm = np.random.default_rng(n).permutation(n)
    assert aurc(p[perm], y[perm], confidence=c[perm]) == pytest.approx(base, abs=1e-12)
    assert excess_aurc(p[perm], y[perm], confidence=c[perm]) == pytest.approx(
        excess_aurc(p, y, confidence=c), abs=1e-12
    )


def test_all_tied_confidence_gives_the_error_rate():
    # one tie group: the expected error rate among any k examples is the overall rate
    correct = np.array([True, False, True, True, False, True, False, True])
    p, y = probs_with_correctness(correct)
    rate = 1.0 - correct.mean()
    curve = risk_coverage_curve(p, y)
    assert curve.coverage.tolist() == [1.0]
    assert curve.risk.tolist() == [pytest.approx(rate)]
    assert aurc(p, y) == pytest.approx(rate)
    for coverage in (0.1, 0.5, 1.0):
        assert selective_risk(p, y, coverage=coverage) == pytest.approx(rate)


def test_random_ranking_aurc_is_near_the_error_rate():
    # E[risk at every coverage] = error rate for a random ranking; the sd of AURC here is ~0.003
    rng = np.random.default_rng(2)
    correct = rng.uniform(size=20_000) < 0.7
    p, y = probs_with_correctness(correct)
    value = aurc(p, y, confidence=rng.uniform(size=correct.size))
    assert value == pytest.approx(1 - correct.mean(), abs=0.015)


def test_selective_risk_matches_top_k():
    rng = np.random.default_rng(3)
    p = softmax(rng.normal(size=(50, 4)) * 2, axis=1)
    y = rng.integers(0, 4, 50)
    wrong = np.argmax(p, axis=1) != y
    order = np.argsort(-p.max(axis=1))
    for coverage, k in ((0.02, 1), (0.3, 15), (0.31, 16), (0.5, 25), (1.0, 50)):
        assert selective_risk(p, y, coverage=coverage) == pytest.approx(wrong[order[:k]].mean())
    assert selective_risk(p, y, coverage=1.0) == pytest.approx(1 - metrics.accuracy(p, y))


def test_curve_is_read_only_and_torch_inputs_match():
    rng = np.random.default_rng(4)
    p = softmax(rng.normal(size=(30, 3)), axis=1)
    y = rng.integers(0, 3, 30)
    curve = risk_coverage_curve(p, y)
    assert isinstance(curve, RiskCoverageCurve)
    with pytest.raises(ValueError, match="read-only"):
        curve.risk[0] = 0.5
    pt, yt = torch.tensor(p, dtype=torch.float32), torch.tensor(y)
    assert aurc(pt, yt) == pytest.approx(aurc(p, y), abs=1e-6)
    assert aurc(pt, yt, confidence=torch.tensor(p.max(axis=1))) == pytest.approx(aurc(p, y), abs=1e-6)


def test_bad_inputs_name_the_argument():
    p = np.array([[0.9, 0.1], [0.4, 0.6]])
    y = np.array([0, 0])
    with pytest.raises(ValueError, match="confidence must have shape"):
        aurc(p, y, confidence=np.ones(3))
    with pytest.raises(ValueError, match="confidence must be finite"):
        risk_coverage_curve(p, y, confidence=np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="coverage"):
        selective_risk(p, y, coverage=0.0)
    with pytest.raises(ValueError, match="coverage"):
        selective_risk(p, y, coverage=1.5)
    with pytest.raises(ValueError, match="labels"):
        excess_aurc(p, np.array([0, 2]))
