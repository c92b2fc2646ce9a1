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


# ------------------------------------------------------------------ the pooled MDE of the rule

# three precise studies and three noisy ones (variances 30x): the weighted and the unweighted test
# disagree often, so needing both costs power well beyond either test's own MDE
V = np.array([1, 1, 1, 30, 30, 30]) * 1e-4
Y = np.array([0.02, -0.015, 0.005, 0.05, -0.03, 0.02])


def rule_power(mu: float, tau2: float, method: str, *, reps: int, seed: int) -> float:
    """Share of studies drawn from the fitted model (true effect ``mu``) where the pooled rule claims
    helps at level 0.05: both tests reject ``μ = 0``, both estimates above 0."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        tests = pooled_tests(random_effects(rng.normal(mu, np.sqrt(V + tau2)), V, method=method))
        hits += max(t.p_value() for t in tests) <= 0.05 and all(t.estimate > 0 for t in tests)
    return hits / reps


@pytest.mark.parametrize("method", ["fe", "reml"])
def test_pooled_mde_is_the_effect_the_rule_detects_with_the_stated_power(method):
    fit = random_effects(Y, V, method=method)
    verdict = pooled_verdicts([fit], higher_is_better=True, margin=None, correction="none", power=0.8)
    mde = float(verdict.mde[0])
    assert mde == meta_family.pooled_mde(fit, 0.05, 0.8)  # deterministic
    # each test alone would detect a smaller effect: their larger MDE is not the rule's
    assert mde > 1.3 * max(t.mde(0.05, 0.8) for t in pooled_tests(fit))
    # 2000 simulated pooled analyses at the true effect = MDE: Monte-Carlo sd of the power 0.9 points,
    # so +-3.5 points is 3.9 sd (a false failure has probability ~1e-4). With "fe" the model is exact;
    # with REML the rule re-estimates tau² in every draw, which the MDE holds fixed (measured: 79-81%).
    # The larger of the two tests' own MDEs gave 53-60% here.
    assert rule_power(mde, fit.tau2, method, reps=2000, seed=11) == pytest.approx(0.8, abs=0.035)


def test_pooled_mde_grows_with_the_family_and_the_power():
    fit = random_effects(Y, V)
    base = meta_family.pooled_mde(fit, 0.05, 0.8)
    assert meta_family.pooled_mde(fit, 0.05 / 15, 0.8) > base
    assert meta_family.pooled_mde(fit, 0.05, 0.9) > base
    assert meta_family.pooled_mde(fit, 0.05, 0.5) < base
    family = pooled_verdicts([fit] * 3, higher_is_better=True, margin=None)  # Holm: level alpha / 3
    assert family.mde.tolist() == [meta_family.pooled_mde(fit, 0.05 / 3, 0.8)] * 3
    with pytest.raises(ValueError, match="at least 2 studies"):
        meta_family.pooled_mde(random_effects([0.1], [0.01]), 0.05, 0.8)
