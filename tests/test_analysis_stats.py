"""Tests for the array-level statistics of smoothflip.analysis: paired tests, multiplicity, equivalence,
power, the sequential (anytime-valid) design and the family verdicts.

Error rates are checked by simulation, vectorized and seeded. A rate that must stay below a level is
compared with ``level + 2.576 * sqrt(level (1 - level) / S)`` (the binomial 99% upper bound for S
simulated studies), and each bound is paired with a case that breaks it (no correction, naive
peeking), so the tests can fail.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import integrate, stats

from smoothflip.analysis import (
    FAMILY_VERDICTS,
    anytime_p_value,
    benjamini_hochberg,
    cells_to_extend,
    confidence_sequence,
    family_verdicts,
    holm,
    minimum_detectable_effect,
    paired_interval,
    paired_t_interval,
    paired_t_test,
    power_of_paired_t,
    replay_until_settled,
    sequential_critical_t,
    sequential_minimum_detectable_effect,
    sequential_verdicts,
    sign_flip_test,
    t_e_process,
    tost,
)

try:  # a test reference only; not a dependency of smoothflip
    from statsmodels.stats.multitest import multipletests
except ImportError:  # pragma: no cover - depends on the environment
    multipletests = None

needs_statsmodels = pytest.mark.skipif(
    multipletests is None, reason="statsmodels is not installed (a reference for Holm/BH only)"
)

ALPHA = 0.05


def upper(rate: float, s: int) -> float:
    """Binomial 99% upper bound for an observed rate when the true rate is ``rate``."""
    return rate + 2.576 * math.sqrt(rate * (1 - rate) / s)


def lower(rate: float, s: int) -> float:
    return rate - 2.576 * math.sqrt(rate * (1 - rate) / s)


def claims(v) -> np.ndarray:
    return np.isin(v.verdict, ["helps", "hurts"])


# ---------------------------------------------------------------------------------------- multiplicity


def holm_brute(p: np.ndarray, max_true: int | None = None) -> np.ndarray:
    """Holm (with Shaffer's bound) written from the definition: one loop over the sorted p-values."""
    m = len(p)
    k = m if max_true is None else max_true
    order = sorted(range(m), key=lambda i: p[i])
    out = np.empty(m)
    running = 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, min(k, m - step) * p[i]))
        out[i] = running
    return out


def bh_brute(p: np.ndarray) -> np.ndarray:
    m = len(p)
    return np.array(
        [min(1.0, min(m * p[j] / (sum(p <= p[j])) for j in range(m) if p[j] >= p[i])) for i in range(m)]
    )


@pytest.mark.parametrize("m", [1, 2, 5, 20, 75])
def test_holm_and_bh_match_brute_force(m):
    rng = np.random.default_rng(m)
    for _ in range(20):
        p = rng.uniform(0, 1, m) ** 3
        p[rng.integers(0, m, m // 4)] = p[0]  # ties
        np.testing.assert_allclose(holm(p).p_adjusted, holm_brute(p), rtol=1e-12)
        np.testing.assert_allclose(benjamini_hochberg(p).p_adjusted, bh_brute(p), rtol=1e-12)
        k = int(rng.integers(1, m + 1))
        np.testing.assert_allclose(holm(p, max_true=k).p_adjusted, holm_brute(p, k), rtol=1e-12)


@needs_statsmodels
@pytest.mark.parametrize("m", [2, 7, 20, 75])
def test_holm_and_bh_match_statsmodels(m):
    rng = np.random.default_rng(100 + m)
    for alpha in (0.01, 0.05, 0.2):
        p = rng.uniform(0, 0.2, m)
        reject, adjusted, _, _ = multipletests(p, alpha=alpha, method="holm")
        h = holm(p, alpha=alpha)
        np.testing.assert_allclose(h.p_adjusted, adjusted, rtol=1e-12)
        np.testing.assert_array_equal(h.reject, reject)
        reject, adjusted, _, _ = multipletests(p, alpha=alpha, method="fdr_bh")
        b = benjamini_hochberg(p, alpha=alpha)
        np.testing.assert_allclose(b.p_adjusted, adjusted, rtol=1e-12)
        np.testing.assert_array_equal(b.reject, reject)


def test_bh_matches_scipy_along_an_axis():
    p = np.random.default_rng(1).uniform(0, 0.3, (6, 40))
    np.testing.assert_allclose(
        benjamini_hochberg(p).p_adjusted, stats.false_discovery_control(p, axis=-1, method="bh"), rtol=1e-12
    )


def test_corrections_are_monotone_and_batched_rows_are_independent():
    p = np.random.default_rng(2).uniform(0, 0.1, (50, 12))
    for result in (holm(p), benjamini_hochberg(p)):
        order = np.argsort(p, axis=-1)
        ranked = np.take_along_axis(result.p_adjusted, order, axis=-1)
        assert np.all(np.diff(ranked, axis=-1) >= 0)
        assert np.all(result.p_adjusted >= p)
    for i in (0, 17, 49):
        np.testing.assert_array_equal(holm(p).p_adjusted[i], holm(p[i]).p_adjusted)


def test_nan_is_an_untested_hypothesis():
    p = np.array([0.01, np.nan, 0.04, 0.02, np.nan])
    finite = p[np.isfinite(p)]
    for correct in (holm, benjamini_hochberg):
        r = correct(p)
        np.testing.assert_allclose(r.p_adjusted[np.isfinite(p)], correct(finite).p_adjusted)
        assert np.isnan(r.p_adjusted[[1, 4]]).all()
        assert not r.reject[[1, 4]].any()
    assert holm([np.nan, np.nan]).reject.tolist() == [False, False]


def test_multiplicity_rejects_bad_input():
    with pytest.raises(ValueError, match="pvalues must lie in"):
        holm([0.1, 1.5])
    with pytest.raises(ValueError, match="alpha"):
        benjamini_hochberg([0.1], alpha=0.0)
    with pytest.raises(ValueError, match="max_true"):
        holm([0.1, 0.2], max_true=0)
    with pytest.raises(TypeError, match="pvalues"):
        holm(["a"])


# ---------------------------------------------------------------------------------------- paired tests


def test_paired_t_test_matches_scipy_one_and_two_sided():
    x = np.random.default_rng(3).normal(0.3, 1.0, (25, 8))
    r = paired_t_test(x)
    for alternative, ours in (("two-sided", r.p_two_sided), ("greater", r.p_greater), ("less", r.p_less)):
        ref = stats.ttest_1samp(x, 0.0, axis=-1, alternative=alternative)
        np.testing.assert_allclose(ours, ref.pvalue, rtol=1e-10)
    np.testing.assert_allclose(r.t, stats.ttest_1samp(x, 0.0, axis=-1).statistic, rtol=1e-12)
    assert np.all(r.df == 7)
    shifted = paired_t_test(x[0], null=0.3)
    np.testing.assert_allclose(shifted.p_two_sided, stats.ttest_1samp(x[0], 0.3).pvalue, rtol=1e-10)


def test_paired_t_test_drops_nan_and_handles_degenerate_samples():
    d = np.array([0.2, np.nan, 0.5, -0.1, 0.4])
    r = paired_t_test(d)
    assert r.n == 4
    assert r.p_two_sided == pytest.approx(stats.ttest_1samp(d, 0.0, nan_policy="omit").pvalue, rel=1e-10)
    same = paired_t_test([0.0, 0.0, 0.0, 0.0])  # identical arms: no evidence, no division by zero
    assert (same.t, same.p_two_sided, same.p_greater) == (0.0, 1.0, 0.5)
    const = paired_t_test([0.01, 0.01, 0.01])
    assert (const.t, const.p_two_sided, const.p_greater, const.p_less) == (math.inf, 0.0, 0.0, 1.0)
    for few in ([], [0.3], [np.nan, 0.3]):
        r = paired_t_test(few)
        assert math.isnan(r.p_two_sided)
        assert math.isnan(r.t)
    with pytest.raises(ValueError, match="inf"):
        paired_t_test([0.1, math.inf])


def sign_flip_brute(d: np.ndarray) -> tuple[float, float, float]:
    sums = np.array([np.dot(s, d) for s in itertools.product([1.0, -1.0], repeat=len(d))])
    obs, tol = d.sum(), 1e-9 * np.abs(d).sum()
    return (
        float(np.mean(np.abs(sums) >= abs(obs) - tol)),
        float(np.mean(sums >= obs - tol)),
        float(np.mean(sums <= obs + tol)),
    )


@pytest.mark.parametrize("n", [1, 3, 5, 8, 12])
def test_sign_flip_test_is_exact_enumeration(n):
    d = np.random.default_rng(n).normal(0.4, 1.0, n)
    r = sign_flip_test(d)
    assert r.exact
    assert r.n_permutations == 2**n
    assert (r.p_two_sided, r.p_greater, r.p_less) == pytest.approx(sign_flip_brute(d), abs=1e-12)
    if n >= 2:
        ref = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf)
        assert r.p_two_sided == pytest.approx(ref.pvalue, abs=1e-12)


def test_sign_flip_test_smallest_p_and_monte_carlo():
    assert sign_flip_test([0.1, 0.2, 0.3, 0.4, 0.5]).p_two_sided == 2 / 32  # 5 seeds cannot reach 0.05
    assert sign_flip_test(np.arange(1.0, 7.0)).p_two_sided == 2 / 64
    d = np.random.default_rng(9).normal(0.5, 1.0, 19)
    exact = sign_flip_test(d, max_exact=20)
    mc = sign_flip_test(d, max_exact=16, n_resamples=20000, seed=4)
    assert not mc.exact
    assert mc.n_permutations == 20001
    assert mc.p_two_sided == pytest.approx(exact.p_two_sided, abs=3 * math.sqrt(0.25 / 20000))
    assert mc == sign_flip_test(d, max_exact=16, n_resamples=20000, seed=4)  # seeded
    assert sign_flip_test([0.0, 0.0, 0.0]).p_two_sided == 1.0
    assert math.isnan(sign_flip_test([np.nan]).p_two_sided)
    with pytest.raises(ValueError, match="one-dimensional"):
        sign_flip_test([[0.1, 0.2]])


def test_tost_is_two_one_sided_t_tests():
    rng = np.random.default_rng(5)
    for _ in range(30):
        d = rng.normal(rng.uniform(-0.5, 0.5), rng.uniform(0.1, 1.0), int(rng.integers(3, 30)))
        margin, alpha = float(rng.uniform(0.1, 1.0)), float(rng.choice([0.01, 0.05, 0.1]))
        r = tost(d, margin=margin, alpha=alpha)
        low = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
        high = stats.ttest_1samp(d, margin, alternative="less").pvalue
        assert (r.p_lower, r.p_upper) == pytest.approx((low, high), rel=1e-9)
        assert r.p_value == pytest.approx(max(low, high), rel=1e-9)
        ci = stats.t.interval(1 - 2 * alpha, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
        assert (r.ci_low, r.ci_high) == pytest.approx(ci, rel=1e-9)
        assert r.equivalent == (-margin <= r.ci_low and r.ci_high <= margin)


def test_tost_edge_cases():
    assert tost([0.0, 0.0, 0.0], margin=1e-6).equivalent  # identical arms
    assert tost([0.3, 0.3, 0.3], margin=0.5).equivalent
    assert not tost([0.5, 0.5, 0.5], margin=0.5).equivalent  # on the margin: not inside
    assert not tost([0.7, 0.7, 0.7], margin=0.5).equivalent
    one = tost([0.1], margin=0.5)
    assert math.isnan(one.p_value)
    assert not one.equivalent
    r = tost(np.zeros((2, 4)), margin=np.array([0.1, 0.2]))
    assert r.equivalent.tolist() == [True, True]
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="margin"):
            tost([0.1, 0.2], margin=bad)
    with pytest.raises(ValueError, match="alpha"):
        tost([0.1, 0.2], margin=0.1, alpha=0.5)


def test_paired_t_interval_matches_scipy():
    x = np.random.default_rng(6).normal(size=(10, 7))
    low, high = paired_t_interval(x, confidence=0.9)
    ref = stats.t.interval(0.9, 6, loc=x.mean(-1), scale=stats.sem(x, axis=-1))
    np.testing.assert_allclose(low, ref[0], rtol=1e-12)
    np.testing.assert_allclose(high, ref[1], rtol=1e-12)
    assert paired_t_interval([0.4, 0.4]) == (0.4, 0.4)
    assert all(math.isnan(v) for v in paired_t_interval([0.4]))


# ---------------------------------------------------------------------------------------- power


def test_minimum_detectable_effect_reference_numbers():
    # REFERENCES.md: about 1.7 sd at n = 5 and 1.0 at n = 10; the issue: about 3.8 sd at 0.05/20, n = 5
    assert minimum_detectable_effect(5, 1.0) == pytest.approx(1.68, abs=0.005)
    assert minimum_detectable_effect(10, 1.0) == pytest.approx(1.0, abs=0.005)
    assert minimum_detectable_effect(5, 1.0, alpha=0.05 / 20) == pytest.approx(3.78, abs=0.005)
    assert minimum_detectable_effect(5, 2.0) == pytest.approx(2 * minimum_detectable_effect(5, 1.0))
    for n, alpha, two_sided in ((5, 0.05, True), (12, 0.01, True), (8, 0.05, False), (40, 0.0025, True)):
        mde = minimum_detectable_effect(n, 1.0, alpha=alpha, two_sided=two_sided)
        assert power_of_paired_t(mde, 1.0, n, alpha=alpha, two_sided=two_sided) == pytest.approx(
            0.8, abs=1e-6
        )
    mdes = minimum_detectable_effect(np.arange(2, 50), 1.0)
    assert np.all(np.diff(mdes) < 0)
    approx = (stats.t.ppf(0.975, 29) + stats.t.ppf(0.8, 29)) / math.sqrt(30)
    assert minimum_detectable_effect(30, 1.0) == pytest.approx(approx, rel=0.02)


def test_minimum_detectable_effect_edge_cases():
    assert minimum_detectable_effect(1, 1.0) == math.inf
    assert minimum_detectable_effect(0, 1.0) == math.inf
    assert minimum_detectable_effect(5, 0.0) == 0.0
    assert math.isnan(minimum_detectable_effect(5, math.nan))
    np.testing.assert_allclose(
        minimum_detectable_effect(np.array([5, 10]), np.array([1.0, 2.0])),
        [minimum_detectable_effect(5, 1.0), 2 * minimum_detectable_effect(10, 1.0)],
    )
    assert power_of_paired_t(0.0, 1.0, 10) == pytest.approx(0.05)
    assert power_of_paired_t(0.3, 0.0, 10) == 1.0
    assert math.isnan(power_of_paired_t(1.0, 1.0, 1))
    with pytest.raises(ValueError, match="n must"):
        minimum_detectable_effect(2.5, 1.0)
    with pytest.raises(ValueError, match="sd"):
        minimum_detectable_effect(5, -1.0)
    with pytest.raises(ValueError, match="power"):
        minimum_detectable_effect(5, 1.0, power=1.0)


def test_planted_effect_is_detected_with_the_promised_power():
    """1 sd planted at n = 10, where the MDE is 1.0 sd: the t-test finds it 80% of the time."""
    s, n = 20000, 10
    assert minimum_detectable_effect(n, 1.0) <= 1.0
    promised = power_of_paired_t(1.0, 1.0, n)
    x = np.random.default_rng(7).normal(1.0, 1.0, (s, n))
    hit = np.mean(paired_t_test(x).p_two_sided <= ALPHA)
    assert hit >= 0.8 - 2.576 * math.sqrt(0.16 / s)
    assert lower(promised, s) <= hit <= upper(promised, s)


def test_family_cells_at_their_mde_are_detected_at_least_as_promised():
    """Every cell of a 20-cell Holm family planted at the MDE shown for it (level 0.05/20)."""
    s, m, n = 1000, 20, 12
    mde = minimum_detectable_effect(n, 1.0, alpha=ALPHA / m)
    x = np.random.default_rng(8).normal(mde, 1.0, (s, m, n))
    v = family_verdicts(x, higher_is_better=True, margin=None)
    np.testing.assert_allclose(v.mde_level, ALPHA / m)
    assert np.mean(v.verdict == "helps") >= 0.8 - 2.576 * math.sqrt(0.16 / (s * m))


# ---------------------------------------------------------------------------------------- sequential


@pytest.mark.parametrize(
    ("n", "t", "prior_sd"), [(2, 1.0, 1.0), (5, 2.0, 1.0), (10, -3.1, 0.5), (30, 2.5, 2.0)]
)
def test_e_value_closed_form_is_the_bayes_factor(n, t, prior_sd):
    """E_n equals ∫ nct.pdf(t; n-1, δ sqrt(n)) N(δ; 0, g) dδ / t.pdf(t; n-1), by quadrature."""
    nu = n - 1
    num = integrate.quad(
        lambda d: stats.nct.pdf(t, nu, d * math.sqrt(n)) * stats.norm.pdf(d, 0, prior_sd), -30, 30, limit=400
    )[0]
    expected = num / stats.t.pdf(t, nu)
    # data with exactly this t statistic: its e-value at the last prefix
    z = np.random.default_rng(n).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    d = z + t / math.sqrt(n)
    assert paired_t_test(d).t == pytest.approx(t)
    assert t_e_process(d, prior_sd=prior_sd)[-1] == pytest.approx(expected, rel=1e-7)


def test_e_process_is_scale_invariant_and_reaches_its_critical_value():
    d = np.random.default_rng(10).normal(0.5, 1.0, 20)
    np.testing.assert_allclose(t_e_process(d), t_e_process(37.0 * d), rtol=1e-10)
    assert t_e_process(d)[0] == 1.0
    for n in (6, 8, 20):
        c = sequential_critical_t(n, alpha=0.01)
        z = np.random.default_rng(n).normal(size=n)
        z = (z - z.mean()) / z.std(ddof=1) + c / math.sqrt(n)
        assert t_e_process(z)[-1] == pytest.approx(100.0, rel=1e-8)
    assert sequential_critical_t(3, alpha=0.05) == math.inf  # max E_3 = (1 + 3)^1 = 4 < 20


def test_ville_bound_holds_over_all_prefixes():
    """Under H0 (any sd), P(max_n E_n >= 1/a) <= a over 60 prefixes; the running p-value never rises."""
    s = 20000
    x = np.random.default_rng(11).normal(0.0, 3.0, (s, 60))
    e = t_e_process(x)
    for a in (0.01, 0.05, 0.2):
        assert np.mean(e.max(axis=-1) >= 1 / a) <= upper(a, s)
    p = np.minimum(1, 1 / np.maximum.accumulate(e, axis=-1))
    assert np.all(np.diff(p, axis=-1) <= 0)
    np.testing.assert_allclose(anytime_p_value(x[:5]), p[:5, -1])


def test_confidence_sequence_is_the_inverted_test_and_covers_uniformly():
    d = np.array([1.2, 0.8, 1.9, 1.1, 0.7, 1.5, 1.3, 0.9])
    grid = np.linspace(0, 3, 6001)
    inside = grid[[t_e_process(d - mu).max() < 20 for mu in grid]]
    low, high = confidence_sequence(d)
    assert low == pytest.approx(inside.min(), abs=1e-3)
    assert high == pytest.approx(inside.max(), abs=1e-3)
    s = 4000
    x = np.random.default_rng(12).normal(0.7, 2.0, (s, 40))
    miss = np.zeros(s, dtype=bool)
    for n in (5, 10, 20, 40):  # coverage holds at every n at once
        low, high = confidence_sequence(x[:, :n])
        miss |= (low > 0.7) | (high < 0.7)
    assert miss.mean() <= upper(0.05, s)
    assert confidence_sequence([0.5] * 8) == (0.5, 0.5)


def test_sequential_mde_is_conservative_by_simulation():
    s, n, level = 4000, 20, ALPHA / 20
    mde = sequential_minimum_detectable_effect(n, 1.0, alpha=level)
    assert minimum_detectable_effect(n, 1.0, alpha=level) < mde < math.inf
    x = np.random.default_rng(13).normal(mde, 1.0, (s, n))
    assert np.mean(anytime_p_value(x) <= level) >= 0.8 - 2.576 * math.sqrt(0.16 / s)
    assert sequential_minimum_detectable_effect(5, 1.0, alpha=level) == math.inf


# ---------------------------------------------------------------------------------------- family verdicts


@pytest.mark.parametrize("n", [5, 10])
def test_aa_family_wise_error_rate_fixed_design(n):
    """2000 A/A studies of 20 null cells: Holm keeps P(any helps/hurts) <= 5%; no correction does not."""
    s, m = 2000, 20
    x = np.random.default_rng(20 + n).normal(0.0, 1.0, (s, m, n))
    v = family_verdicts(x, higher_is_better=True, margin=0.5)
    assert claims(v).any(axis=-1).mean() <= upper(ALPHA, s)
    assert claims(v).mean() <= upper(ALPHA / m, s * m)  # Bonferroni-like per cell
    raw = family_verdicts(x, higher_is_better=True, margin=0.5, correction="none")
    assert claims(raw).any(axis=-1).mean() > 0.5  # 1 - 0.95^20 = 64%
    seq_ = family_verdicts(x, higher_is_better=True, margin=0.5, design="sequential")
    assert claims(seq_).any(axis=-1).mean() <= upper(ALPHA, s)


def test_aa_until_settled_loop_keeps_the_error_rate_only_when_sequential():
    """The loop: start 5 seeds, add 5 to inconclusive cells, up to 30; the verdict is re-read each round."""
    s, m = 2000, 20
    x = np.random.default_rng(30).normal(0.0, 1.0, (s, m, 30))
    options = {"start": 5, "round_size": 5, "higher_is_better": True, "margin": 0.5}
    valid = replay_until_settled(x, design="sequential", **options)
    naive = replay_until_settled(x, design="fixed", **options)
    assert claims(valid.verdicts).any(axis=-1).mean() <= upper(ALPHA, s)
    assert lower(claims(naive.verdicts).any(axis=-1).mean(), s) > ALPHA  # peeking breaks the fixed test
    assert np.all(naive.rounds >= 1)
    assert np.all(valid.n_used <= 30)


def test_false_equivalence_claims_are_controlled_at_the_margin():
    """Cells exactly at ±margin (the equivalence null's boundary), and a family mixing them with nulls."""
    s, m, margin = 2000, 20, 0.5
    rng = np.random.default_rng(40)
    x = rng.normal(0.0, 1.0, (s, m, 50)) + margin * rng.choice([-1.0, 1.0], (s, m, 1))
    fixed = family_verdicts(x, higher_is_better=True, margin=margin)
    assert fixed.equivalent.any(axis=-1).mean() <= upper(ALPHA, s)
    raw = family_verdicts(x, higher_is_better=True, margin=margin, correction="none")
    assert lower(raw.equivalent.any(axis=-1).mean(), s) > ALPHA
    x = rng.normal(0.0, 1.0, (s, m, 30))  # 10 null cells, 10 at the margin: 20 true nulls of 40
    x[:, 10:] += margin * rng.choice([-1.0, 1.0], (s, 10, 1))
    for design in ("fixed", "sequential"):
        v = family_verdicts(x, higher_is_better=True, margin=margin, design=design)
        wrong = claims(v)[:, :10].any(axis=-1) | v.equivalent[:, 10:].any(axis=-1)
        assert wrong.mean() <= upper(ALPHA, s)


def test_verdict_words_and_directions():
    cells = [
        [0.021, 0.018, 0.025, 0.02, 0.023],  # clearly up
        [-0.021, -0.018, -0.025, -0.02, -0.023],  # clearly down
        [0.001, -0.001, 0.0, 0.001, -0.001],  # within 0.005
        [0.01, -0.02, 0.03, -0.01, 0.0],  # noisy
        [0.01, 0.02],  # too few
    ]
    up = family_verdicts(cells, higher_is_better=True, margin=0.005)
    assert up.verdict.tolist() == ["helps", "hurts", "equivalent", "inconclusive", "no verdict"]
    down = family_verdicts(cells, higher_is_better=False, margin=0.005)
    assert down.verdict.tolist() == ["hurts", "helps", "equivalent", "inconclusive", "no verdict"]
    mixed = family_verdicts(cells, higher_is_better=[True, False, True, True, True], margin=0.005)
    assert mixed.verdict.tolist()[:2] == ["helps", "helps"]
    assert set(up.verdict.tolist()) <= set(FAMILY_VERDICTS)
    assert np.isnan(up.p_value[4])
    assert up.mde[4] == pytest.approx(minimum_detectable_effect(2, up.sd[4], alpha=ALPHA / 4))
    np.testing.assert_allclose(up.mde_level[:4], ALPHA / 4)  # 4 cells tested
    none = family_verdicts(cells, higher_is_better=True, margin=None)
    assert none.verdict.tolist()[2] == "inconclusive"
    assert np.isnan(none.p_equivalence).all()


def test_identical_arms_and_constant_differences():
    v = family_verdicts([[0.0] * 5, [0.002] * 5, [0.02] * 5], higher_is_better=True, margin=0.01)
    assert v.verdict.tolist() == ["equivalent", "helps", "helps"]
    assert v.equivalent.tolist() == [True, True, False]  # a real but practically small difference
    assert v.mde.tolist() == [0.0, 0.0, 0.0]
    assert (v.ci_low[0], v.ci_high[0]) == (0.0, 0.0)
    s = sequential_verdicts([[0.0] * 5, [0.0] * 12], higher_is_better=True, margin=0.01)
    assert s.verdict.tolist() == ["inconclusive", "equivalent"]  # 5 seeds cannot reach 2 / 0.05


def test_family_verdicts_agree_with_the_single_cell_functions():
    rng = np.random.default_rng(50)
    cells = [rng.normal(mu, 1.0, n) for mu, n in ((0.0, 6), (1.5, 9), (0.2, 12), (-2.0, 4))]
    cells[2][3] = np.nan
    v = family_verdicts(cells, higher_is_better=True, margin=0.8, correction="none")
    for i, d in enumerate(cells):
        t, e = paired_t_test(d), tost(d, margin=0.8)
        assert v.n[i] == t.n
        assert v.p_value[i] == pytest.approx(t.p_two_sided, rel=1e-10)
        assert v.p_equivalence[i] == pytest.approx(e.p_value, rel=1e-10)
        assert (v.ci_low[i], v.ci_high[i]) == pytest.approx(paired_t_interval(d), rel=1e-10)
        assert v.mde[i] == pytest.approx(minimum_detectable_effect(t.n, t.sd, alpha=ALPHA), rel=1e-8)
    padded = np.full((4, 12), np.nan)
    for i, d in enumerate(cells):
        padded[i, : len(d)] = d
    again = family_verdicts(padded, higher_is_better=True, margin=0.8, correction="none")
    np.testing.assert_array_equal(again.verdict, v.verdict)
    holm_v = family_verdicts(cells, higher_is_better=True, margin=0.8)
    expected = holm(np.concatenate([v.p_value, v.p_equivalence]), max_true=4).p_adjusted
    np.testing.assert_allclose(np.concatenate([holm_v.p_adjusted, holm_v.p_equivalence_adjusted]), expected)
    anytime = family_verdicts(
        cells, higher_is_better=True, margin=0.8, correction="none", design="sequential"
    )
    np.testing.assert_allclose(anytime.p_value, [anytime_p_value(d) for d in cells])


def test_simultaneous_interval_excluding_zero_implies_a_holm_rejection():
    x = np.random.default_rng(60).normal(0.8, 1.0, (500, 10, 8))
    for design in ("fixed", "sequential"):
        v = family_verdicts(x, higher_is_better=True, margin=None, design=design)
        excludes = (v.simultaneous_low > 0) | (v.simultaneous_high < 0)
        assert excludes.any()
        assert np.all(v.significant[excludes])
        assert np.all(v.simultaneous_low <= v.ci_low)
        assert np.all(v.ci_high <= v.simultaneous_high)


def test_bh_is_less_strict_than_holm():
    x = np.random.default_rng(70).normal(0.0, 1.0, (400, 20, 10))
    x[:, :8] += 1.2
    h = family_verdicts(x, higher_is_better=True, margin=None, correction="holm")
    b = family_verdicts(x, higher_is_better=True, margin=None, correction="bh")
    assert np.all(b.significant[h.significant])
    assert b.significant.sum() > h.significant.sum()
    false = claims(b)[:, 8:].sum(axis=-1) / np.maximum(claims(b).sum(axis=-1), 1)
    assert false.mean() <= upper(ALPHA, 400)  # false discovery rate


def test_family_verdicts_rejects_bad_input():
    with pytest.raises(ValueError, match="correction"):
        family_verdicts([[0.1, 0.2, 0.3]], higher_is_better=True, margin=0.1, correction="bonferroni")
    with pytest.raises(ValueError, match="design"):
        family_verdicts([[0.1, 0.2, 0.3]], higher_is_better=True, margin=0.1, design="bayes")
    with pytest.raises(ValueError, match="margin"):
        family_verdicts([[0.1, 0.2, 0.3]], higher_is_better=True, margin=0.0)
    with pytest.raises(ValueError, match="at least one cell"):
        family_verdicts([], higher_is_better=True, margin=0.1)
    with pytest.raises(ValueError, match="dimension"):
        family_verdicts(np.zeros(4), higher_is_better=True, margin=0.1)
    with pytest.raises(ValueError, match="inf"):
        family_verdicts([[0.1, math.inf, 0.3]], higher_is_better=True, margin=0.1)
    with pytest.raises(TypeError, match="design"):
        sequential_verdicts([[0.1, 0.2, 0.3]], higher_is_better=True, margin=0.1, design="fixed")
    v = family_verdicts([[0.1, 0.2, 0.3]], higher_is_better=True, margin=0.1)
    assert v.cells()[0] == v.cell(0)
    assert len(v) == 1
    with pytest.raises(ValueError, match="single family"):
        family_verdicts(np.zeros((2, 1, 3)), higher_is_better=True, margin=0.1).cells()


def test_cells_to_extend_and_the_replayed_loop():
    cells = [[1.0, 1.2, 0.9], [0.0] * 12, [0.1, -0.2, 0.3, 0.0], [0.5]]
    v = sequential_verdicts(cells, higher_is_better=True, margin=0.5)
    assert v.verdict.tolist() == ["inconclusive", "equivalent", "inconclusive", "no verdict"]
    assert cells_to_extend(v, max_n=10).tolist() == [True, False, True, True]
    assert cells_to_extend(v, max_n=4).tolist() == [True, False, False, True]
    # a budget of 2 rounds of 1 seed: the cells with the fewest seeds first
    assert cells_to_extend(v, max_n=10, budget=2).tolist() == [True, False, False, True]
    assert cells_to_extend(v, max_n=10, round_size=5, budget=4).tolist() == [False, False, False, False]
    x = np.random.default_rng(80).normal(0.0, 1.0, (50, 6, 40))
    x[:, 0] += 3.0
    r = replay_until_settled(x, start=5, round_size=5, max_n=25, higher_is_better=True, margin=0.5)
    assert np.all(r.n_used <= 25)
    assert np.all(r.n_used >= 5)
    assert np.all((r.n_used - 5) % 5 == 0)
    assert np.all(r.verdicts.n == r.n_used)
    unsettled = ~r.verdicts.settled
    assert np.all(r.n_used[unsettled] == 25)  # open cells used the whole cap
    assert np.mean(r.verdicts.verdict[:, 0] == "helps") > 0.9
    capped = replay_until_settled(x, start=5, round_size=5, budget=10, higher_is_better=True, margin=0.5)
    assert np.all((capped.n_used - 5).sum(axis=-1) <= 10)


# ---------------------------------------------------------------------------------------- coverage

DRAWS = {
    "normal": lambda rng, size: rng.normal(0.0, 1.0, size),
    "gamma k=4 (skewness 1)": lambda rng, size: rng.gamma(4.0, 0.5, size) - 2.0,
    "gamma k=1 (skewness 2)": lambda rng, size: rng.gamma(1.0, 1.0, size) - 1.0,
}


@pytest.mark.parametrize(
    ("draw", "n", "t_floor"),
    [
        ("normal", 5, 0.93),
        ("normal", 10, 0.93),
        ("normal", 30, 0.93),
        ("gamma k=4 (skewness 1)", 5, 0.93),
        ("gamma k=4 (skewness 1)", 30, 0.93),
        ("gamma k=1 (skewness 2)", 5, 0.86),  # measured 88.6%: below 93%, documented
        ("gamma k=1 (skewness 2)", 30, 0.90),  # measured 92.2%
    ],
)
def test_t_interval_coverage(draw, n, t_floor):
    s = 20000
    x = DRAWS[draw](np.random.default_rng(90 + n), (s, n))
    low, high = paired_t_interval(x)
    assert np.mean((low <= 0) & (high >= 0)) >= t_floor - 2.576 * math.sqrt(0.05 * 0.95 / s)


@pytest.mark.parametrize(
    ("draw", "n", "floor"),
    [
        ("normal", 5, 0.90),  # measured 92.7% (2000 repetitions): just below 93%, documented
        ("normal", 10, 0.93),
        ("normal", 30, 0.93),
        ("gamma k=4 (skewness 1)", 5, 0.88),  # measured 91.3%
        ("gamma k=4 (skewness 1)", 30, 0.93),
    ],
)
def test_bootstrap_interval_coverage(draw, n, floor):
    s = 600
    x = DRAWS[draw](np.random.default_rng(100 + n), (s, n))
    hits = [
        low <= 0 <= high
        for low, high in (paired_interval(d, n_resamples=1999, seed=i) for i, d in enumerate(x))
    ]
    assert np.mean(hits) >= floor - 2.576 * math.sqrt(0.05 * 0.95 / s)
