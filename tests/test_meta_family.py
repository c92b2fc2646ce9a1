"""Pooled verdicts (smoothflip.analysis.meta_family): one rule shared with a study's verdicts, and the
pooled MDE of the rule a claim must pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.weightstats import ttost_paired

import smoothflip.analysis.meta_family as meta_family
import smoothflip.analysis.verdicts as verdicts
from smoothflip.analysis import family_verdicts
from smoothflip.analysis.intervals import MIN_SEEDS
from smoothflip.analysis.meta import random_effects
from smoothflip.analysis.meta_family import pooled_tests, pooled_verdicts
from smoothflip.analysis.multiplicity import read_family
from smoothflip.analysis.verdicts import tost_p_value

# ------------------------------------------------------------------ one TOST, one family rule


@settings(max_examples=60, deadline=None)
@given(
    x=st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=2, max_size=12).filter(
        lambda x: np.std(x) > 1e-6
    ),
    margin=st.floats(0.01, 2.0),
)
def test_tost_p_value_matches_statsmodels_ttost_paired(x, margin):
    x = np.asarray(x)
    n = x.size
    se = float(np.std(x, ddof=1)) / math.sqrt(n)
    expected = ttost_paired(x, np.zeros(n), -margin, margin)[0]
    assert tost_p_value(float(x.mean()), se, float(n - 1), margin) == pytest.approx(expected, rel=1e-9)


def test_meta_tost_and_pooled_equivalence_are_the_shared_tost():
    r = random_effects([0.01, -0.02, 0.0, 0.015, 0.004], [1e-4, 2e-4, 1e-4, 3e-4, 1e-4])
    for margin in (0.005, 0.02, 0.1):
        assert r.tost(margin) == tost_p_value(r.estimate, r.se, r.df, margin)
        for test in pooled_tests(r):
            assert test.p_equivalence(margin) == tost_p_value(test.estimate, test.se, test.df, margin)
    # a zero standard error: equivalent iff strictly inside the margin, in both
    exact = random_effects([0.01, 0.01], [1e-30, 1e-30], method="fe", interval="wald")
    assert tost_p_value(0.01, 0.0, 3.0, 0.02) == 0.0
    assert tost_p_value(0.02, 0.0, 3.0, 0.02) == 1.0
    assert exact.tost(0.5) == pytest.approx(0.0, abs=1e-12)


def spy(monkeypatch, module) -> list[int]:
    calls: list[int] = []

    def counted(*args, **kwargs):
        calls.append(1)
        return read_family(*args, **kwargs)

    monkeypatch.setattr(module, "read_family", counted)
    return calls


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    correction=st.sampled_from(["holm", "bh", "none"]),
    up=st.booleans(),
    margin=st.sampled_from([None, 0.2]),
)
def test_study_and_pooled_verdicts_read_their_p_values_with_the_same_rule(seed, correction, up, margin):
    rng = np.random.default_rng(seed)
    means = rng.choice([0.0, 0.5, -0.5, 2.0], size=6)
    diffs = [rng.normal(mu, 0.5, size=rng.integers(1, 8)) for mu in means]
    study = family_verdicts(diffs, higher_is_better=up, margin=margin, correction=correction)
    again = read_family(
        study.p_value,
        study.p_equivalence,
        np.sign(study.mean_diff),
        study.n >= MIN_SEEDS,
        higher_is_better=up,
        alpha=study.alpha,
        correction=correction,
    )
    assert again.verdict.tolist() == study.verdict.tolist()
    np.testing.assert_array_equal(again.p_adjusted, study.p_adjusted)
    np.testing.assert_array_equal(again.p_equivalence_adjusted, study.p_equivalence_adjusted)

    fits = [
        random_effects(rng.normal(mu, 0.3, size=k), rng.uniform(0.01, 0.1, size=k))
        for mu, k in zip(means, rng.integers(1, 7, size=means.size), strict=True)
    ]
    pooled = pooled_verdicts(fits, higher_is_better=up, margin=margin, correction=correction)
    signs = [0.0 if r.k < 2 else meta_family._common_sign(pooled_tests(r)) for r in fits]
    again = read_family(
        pooled.p_value,
        pooled.p_equivalence,
        signs,
        [r.k >= 2 for r in fits],
        higher_is_better=up,
        alpha=pooled.alpha,
        correction=correction,
    )
    assert again.verdict.tolist() == pooled.verdict.tolist()
    np.testing.assert_array_equal(again.p_adjusted, pooled.p_adjusted)


def test_both_verdict_families_call_the_one_rule(monkeypatch):
    study_calls = spy(monkeypatch, verdicts)
    pooled_calls = spy(monkeypatch, meta_family)
    family_verdicts([[0.1, 0.2, 0.15]], higher_is_better=True, margin=0.05)
    pooled_verdicts([random_effects([0.1, 0.2, 0.15], [0.01] * 3)], higher_is_better=True, margin=0.05)
    assert (len(study_calls), len(pooled_calls)) == (1, 1)
