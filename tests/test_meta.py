"""Random-effects meta-analysis on arrays (smoothflip.analysis.meta, .meta_family): outside references
(metafor's BCG values, statsmodels, PyMARE), edge cases, properties, and simulated error rates."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from smoothflip.analysis.meta import leave_one_out, random_effects, sensitivity
from smoothflip.analysis.meta_family import (
    paired_probability_of_improvement,
    pooled_tests,
    pooled_verdicts,
)

# metafor's dat.bcg (REFERENCES.md, Meta 1): log relative risks and their variances
TPOS = np.array([4, 6, 3, 62, 33, 180, 8, 505, 29, 17, 186, 5, 27.0])
TNEG = np.array([119, 300, 228, 13536, 5036, 1361, 2537, 87886, 7470, 1699, 50448, 2493, 16886.0])
CPOS = np.array([11, 29, 11, 248, 47, 372, 10, 499, 45, 65, 141, 3, 29.0])
CNEG = np.array([128, 274, 209, 12619, 5761, 1079, 619, 87892, 7232, 1600, 27197, 2338, 17825.0])
BCG_Y = np.log(TPOS / (TPOS + TNEG)) - np.log(CPOS / (CPOS + CNEG))
BCG_V = 1 / TPOS - 1 / (TPOS + TNEG) + 1 / CPOS - 1 / (CPOS + CNEG)
TOL = 1e-4


def test_bcg_matches_metafor_reml_hksj():
    r = random_effects(BCG_Y, BCG_V)  # REML + HKSJ, the defaults
    assert r.method == "reml"
    assert r.k == 13
    assert r.q_df == 12
    assert r.q == pytest.approx(152.2330, abs=TOL)
    assert r.tau2 == pytest.approx(0.313243325980895, abs=TOL)
    assert r.estimate == pytest.approx(-0.714532, abs=TOL)
    assert r.se_model == pytest.approx(0.179782, abs=TOL)
    assert r.ci == pytest.approx((-1.1084, -0.3206), abs=TOL)
    assert r.pi == pytest.approx((-2.0084, 0.5793), abs=TOL)
    assert r.i2 == pytest.approx(92.2214, abs=TOL)
    assert r.df == 12
    wald = random_effects(BCG_Y, BCG_V, interval="wald")
    assert wald.ci == pytest.approx((-1.0669, -0.3622), abs=TOL)
    assert wald.se == pytest.approx(0.179782, abs=TOL)


def test_bcg_matches_metafor_dl_and_pm():
    dl = random_effects(BCG_Y, BCG_V, method="dl", interval="wald")
    assert dl.tau2 == pytest.approx(0.3088, abs=TOL)
    assert dl.estimate == pytest.approx(-0.7141, abs=TOL)
    assert dl.ci == pytest.approx((-1.0644, -0.3638), abs=TOL)
    assert dl.i2 == pytest.approx(92.1173, abs=TOL)
    assert dl.h2 == pytest.approx(12.6861, abs=TOL)
    # for DL metafor's I² equals Higgins' (Q - df) / Q
    assert dl.i2 == pytest.approx(100 * (dl.q - 12) / dl.q, abs=1e-9)
    pm = random_effects(BCG_Y, BCG_V, method="pm")
    assert pm.tau2 == pytest.approx(0.3181, abs=TOL)
    assert pm.method == "pm"


def _random_studies(rng: np.random.Generator, k: int, tau2: float) -> tuple[np.ndarray, np.ndarray]:
    v = rng.uniform(0.05, 1.0, size=k)
    return rng.normal(0.3, np.sqrt(v + tau2)), v


def test_agrees_with_statsmodels_combine_effects():
    from statsmodels.stats.meta_analysis import combine_effects

    rng = np.random.default_rng(11)
    compared = 0
    for k in (3, 5, 8, 20):
        for _ in range(5):
            y, v = _random_studies(rng, k, tau2=0.5)
            ref = combine_effects(y, v, method_re="dl", use_t=True)
            ours = random_effects(y, v, method="dl")
            if ref.tau2 < 0:  # statsmodels' DL does not truncate at 0 (REFERENCES.md pitfall)
                assert ours.tau2 == 0.0
                continue
            compared += 1
            assert ours.tau2 == pytest.approx(ref.tau2, rel=1e-9)
            assert ours.estimate == pytest.approx(ref.mean_effect_re, rel=1e-9, abs=1e-12)
            # conf_int(use_t=True) -> (FE, RE, FE-HKSJ, RE-HKSJ)
            assert ours.ci == pytest.approx(tuple(ref.conf_int(use_t=True)[3]), rel=1e-9)
            wald = random_effects(y, v, method="dl", interval="wald")
            assert wald.ci == pytest.approx(tuple(ref.conf_int(use_t=False)[1]), rel=1e-9)
            assert ours.q == pytest.approx(ref.q, rel=1e-9)
    assert compared >= 12


def test_statsmodels_dl_pitfall_negative_tau2_is_truncated_here():
    from statsmodels.stats.meta_analysis import combine_effects

    y, v = np.array([0.10, 0.11, 0.09, 0.10]), np.array([0.04, 0.05, 0.03, 0.04])  # Q << k - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # statsmodels takes the sqrt of a negative variance
        ref = combine_effects(y, v, method_re="dl")
    assert ref.tau2 < 0
    ours = random_effects(y, v, method="dl")
    assert ours.tau2 == 0.0
    fixed = random_effects(y, v, method="fe")
    assert ours.estimate == pytest.approx(fixed.estimate, rel=1e-12)


@pytest.mark.parametrize(("method", "estimator"), [("reml", "reml"), ("dl", "dl")])
def test_agrees_with_pymare_knapp_hartung(method: str, estimator: str):
    from pymare import Dataset, estimators

    rng = np.random.default_rng(12 if method == "reml" else 13)
    for k in (4, 6, 10, 15):
        y, v = _random_studies(rng, k, tau2=0.3)
        est = (
            estimators.VarianceBasedLikelihoodEstimator(method="REML")
            if estimator == "reml"
            else estimators.DerSimonianLaird()
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit_dataset(Dataset(y=y, v=v))
            fe = est.summary().get_fe_stats()
        tau2 = float(np.ravel(est.params_["tau2"])[0])
        ours = random_effects(y, v, method=method)
        assert ours.tau2 == pytest.approx(tau2, abs=1e-5, rel=1e-4)
        assert ours.estimate == pytest.approx(float(np.ravel(fe["est"])[0]), abs=1e-5)
        assert ours.se == pytest.approx(float(np.ravel(fe["se"])[0]), rel=1e-4)
        assert ours.ci == pytest.approx(
            (float(np.ravel(fe["ci_l"])[0]), float(np.ravel(fe["ci_u"])[0])), abs=1e-4
        )


@pytest.mark.parametrize("method", ["reml", "pm", "dl"])
def test_q_below_its_df_gives_no_heterogeneity(method: str):
    y, v = np.array([0.2, 0.25, 0.22, 0.18, 0.21]), np.full(5, 0.01)
    r = random_effects(y, v, method=method)
    assert r.q < 4
    assert r.tau2 == 0.0
    assert r.i2 == 0.0
    assert r.h2 == 1.0
    assert r.estimate == pytest.approx(np.mean(y))
    assert r.se_model == pytest.approx(math.sqrt(0.01 / 5))


def test_one_study_is_its_own_result_with_a_note():
    r = random_effects([0.4], [0.09])
    assert (r.k, r.estimate, r.se) == (1, 0.4, 0.3)
    assert r.ci == pytest.approx((0.4 - 1.959964 * 0.3, 0.4 + 1.959964 * 0.3), abs=1e-6)
    assert r.pi is None
    assert math.isnan(r.tau2)
    assert math.isnan(r.i2)
    assert "nothing was pooled" in r.notes[0]
    assert r.weights == (1.0,)


def test_two_studies_say_tau2_is_not_estimable_and_few_studies_warn():
    r = random_effects([0.1, 0.5], [0.01, 0.02])
    assert r.pi is None
    assert r.df == 1
    assert any("not estimable" in w for w in r.warnings)
    # HKSJ with 1 df: t_.975 = 12.71
    assert (r.ci[1] - r.estimate) / r.se == pytest.approx(12.7062, abs=1e-3)
    four = random_effects([0.1, 0.5, 0.3, 0.2], [0.01, 0.02, 0.01, 0.02])
    assert any("wide" in w for w in four.warnings)
    assert four.pi is not None
    assert not any("not estimable" in w for w in four.warnings)
    assert not random_effects([0.1, 0.5, 0.3, 0.2, 0.4], [0.01] * 5).warnings


def test_reml_that_does_not_converge_falls_back_and_says_so():
    r = random_effects(BCG_Y, BCG_V, max_iter=1)
    assert r.method == "pm"
    assert r.requested == "reml"
    assert "REML did not converge" in r.notes[0]
    assert r.tau2 == pytest.approx(0.3181, abs=TOL)


def test_modified_hksj_is_never_narrower_and_fe_row():
    y, v = np.array([0.2, 0.21, 0.19, 0.2]), np.array([0.01, 0.02, 0.01, 0.02])  # q < 1: HKSJ very narrow
    hk, mod = random_effects(y, v), random_effects(y, v, interval="hksj_modified")
    assert hk.ci[1] - hk.ci[0] < mod.ci[1] - mod.ci[0]
    rows = sensitivity(hk)
    assert rows["fixed effect"].method == "fe"
    assert rows["fixed effect"].interval == "wald"
    assert rows["hksj_modified"].ci == mod.ci


def test_leave_one_out_refits_without_each_study():
    loo = leave_one_out(BCG_Y, BCG_V)
    assert loo.estimate.shape == (13,)
    for i in (0, 5, 12):
        again = random_effects(np.delete(BCG_Y, i), np.delete(BCG_V, i))
        assert loo.estimate[i] == pytest.approx(again.estimate)
        assert loo.tau2[i] == pytest.approx(again.tau2)
    assert loo.range == (loo.estimate.min(), loo.estimate.max())
    assert random_effects(BCG_Y, BCG_V).leave_one_out().estimate == pytest.approx(loo.estimate)


def test_tost_on_the_pooled_estimate():
    r = random_effects([0.01, -0.01, 0.005, 0.0], [1e-4] * 4)
    assert r.tost(0.1) < 0.01 < r.tost(0.005)
    t_ = stats.t(r.df)
    expected = max(t_.sf((r.estimate + 0.05) / r.se), t_.cdf((r.estimate - 0.05) / r.se))
    assert r.tost(0.05) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("y", "v", "match"),
    [
        ([], [], "at least one"),
        ([0.1, 0.2], [0.1], "one entry per study"),
        ([0.1, float("nan")], [0.1, 0.1], "y must be finite"),
        ([0.1, 0.2], [0.1, 0.0], "v must hold finite variances > 0"),
        ([[0.1]], [[0.1]], "one-dimensional"),
    ],
)
def test_bad_input_is_one_line_naming_the_argument(y, v, match):
    with pytest.raises(ValueError, match=match):
        random_effects(y, v)


def test_bad_options():
    with pytest.raises(ValueError, match="method"):
        random_effects([0.1, 0.2], [0.1, 0.1], method="ml")
    with pytest.raises(ValueError, match="interval"):
        random_effects([0.1, 0.2], [0.1, 0.1], interval="z")
    with pytest.raises(ValueError, match="level"):
        random_effects([0.1, 0.2], [0.1, 0.1], level=95)


studies = st.integers(min_value=2, max_value=9).flatmap(
    lambda k: st.tuples(
        st.lists(st.floats(-5, 5, allow_nan=False), min_size=k, max_size=k),
        st.lists(st.floats(1e-3, 4.0, allow_nan=False), min_size=k, max_size=k),
    )
)


@settings(max_examples=60, deadline=None)
@given(studies, st.randoms(use_true_random=False), st.sampled_from(["reml", "pm", "dl", "fe"]))
def test_permuting_studies_changes_nothing(data, rnd, method):
    y, v = map(np.array, data)
    order = list(range(len(y)))
    rnd.shuffle(order)
    a = random_effects(y, v, method=method)
    b = random_effects(y[order], v[order], method=method)
    assert b.estimate == pytest.approx(a.estimate, rel=1e-7, abs=1e-9)
    assert b.tau2 == pytest.approx(a.tau2, rel=1e-6, abs=1e-9)
    assert b.ci == pytest.approx(a.ci, rel=1e-6, abs=1e-8)
    assert np.array(b.weights) == pytest.approx(np.array(a.weights)[order], rel=1e-6, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(studies, st.floats(0.01, 100.0), st.sampled_from(["reml", "pm", "dl"]))
def test_scaling_y_by_c_and_v_by_c2_scales_the_result(data, c, method):
    y, v = map(np.array, data)
    a = random_effects(y, v, method=method)
    b = random_effects(c * y, c**2 * v, method=method)
    assert b.estimate == pytest.approx(c * a.estimate, rel=1e-6, abs=1e-8 * c)
    assert b.tau2 == pytest.approx(c**2 * a.tau2, rel=1e-5, abs=1e-8 * c**2)
    assert b.ci == pytest.approx((c * a.ci[0], c * a.ci[1]), rel=1e-6, abs=1e-7 * c)
    assert b.i2 == pytest.approx(a.i2, abs=1e-5)
    assert b.q == pytest.approx(a.q, rel=1e-6, abs=1e-9)
    assert b.p_value == pytest.approx(a.p_value, abs=1e-6)


@settings(max_examples=80, deadline=None)
@given(
    studies, st.sampled_from(["reml", "pm", "dl", "fe"]), st.sampled_from(["hksj", "hksj_modified", "wald"])
)
def test_properties(data, method, interval):
    y, v = map(np.array, data)
    r = random_effects(y, v, method=method, interval=interval)
    assert r.tau2 >= 0
    assert 0.0 <= r.i2 < 100.0
    assert r.h2 >= 1.0 or method == "fe"  # metafor's fixed-effect H² is Q / df
    assert sum(r.weights) == pytest.approx(1.0)
    assert y.min() - 1e-9 <= r.estimate <= y.max() + 1e-9
    assert r.ci[0] <= r.estimate <= r.ci[1]
    assert 0.0 <= r.p_value <= 1.0
    wald = random_effects(y, v, method=method, interval="wald")
    modified = random_effects(y, v, method=method, interval="hksj_modified")
    assert modified.ci[0] <= wald.ci[0] + 1e-12
    assert wald.ci[1] <= modified.ci[1] + 1e-12
    if method == "fe":
        assert r.tau2 == 0.0
    # the interval a verdict is read from holds the HKSJ interval at the same level
    verdict = pooled_verdicts([r], higher_is_better=True, margin=None, correction="none")
    hk = random_effects(y, v, method=method)
    assert verdict.simultaneous_low[0] <= hk.ci[0] + 1e-9
    assert hk.ci[1] <= verdict.simultaneous_high[0] + 1e-9


def test_pooled_verdict_words_and_family():
    helps = random_effects([0.02, 0.03, 0.025, 0.022, 0.028], [1e-5] * 5)
    hurts = random_effects([-0.02, -0.03, -0.025, -0.022, -0.028], [1e-5] * 5)
    same = random_effects([0.001, -0.001, 0.0, 0.0005, -0.0005], [1e-6] * 5)
    noisy = random_effects([0.05, -0.04, 0.02, -0.03, 0.01], [1e-3] * 5)
    alone = random_effects([0.05], [1e-4])
    v = pooled_verdicts([helps, hurts, same, noisy, alone], higher_is_better=True, margin=0.005)
    assert v.verdict.tolist() == ["helps", "hurts", "equivalent", "inconclusive", "no verdict"]
    assert math.isnan(v.p_value[4])
    assert v.mde[4] == math.inf
    assert v.mde_level == pytest.approx(0.05 / 4)
    # lower is better flips helps and hurts
    flipped = pooled_verdicts([helps, hurts], higher_is_better=False, margin=None)
    assert flipped.verdict.tolist() == ["hurts", "helps"]
    # the verdict's p-value is the larger of the two tests'
    pair = pooled_tests(noisy)
    raw = pooled_verdicts([noisy], higher_is_better=True, margin=None, correction="none")
    assert raw.p_value[0] == pytest.approx(max(t.p_value() for t in pair))
    # and the verdict interval holds the HKSJ one at the same level
    hk = random_effects(noisy.y, noisy.v, level=0.95)
    assert raw.simultaneous_low[0] <= hk.ci[0]
    assert hk.ci[1] <= raw.simultaneous_high[0]


def test_probability_of_improvement_is_paired_and_stratified():
    p = paired_probability_of_improvement([[0.1, 0.2, -0.1, 0.0], [0.3, 0.1]], higher_is_better=True)
    assert p.estimate == pytest.approx((2.5 / 4 + 1.0) / 2)
    assert (p.studies, p.pairs) == (2, 6)
    assert p.low <= p.estimate <= p.high
    # the second study always improves, so no resample can go below half of the first study's worst
    assert p.low >= 0.5
    worse = paired_probability_of_improvement([[0.1, 0.2], [0.3]], higher_is_better=False)
    assert worse.estimate == 0.0
    assert worse.high == 0.0
    empty = paired_probability_of_improvement([[math.nan]], higher_is_better=True)
    assert empty.studies == 0
    assert math.isnan(empty.estimate)


# ------------------------------------------------------------------------------ simulations


def hksj_coverage(k: int, reps: int, *, seed: int, tau2: float = 1.0) -> float:
    """Share of REML + HKSJ 95% intervals that hold the true mean (0), studies with v ~ U(0.5, 2)."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        v = rng.uniform(0.5, 2.0, size=k)
        r = random_effects(rng.normal(0.0, np.sqrt(v + tau2)), v)
        hits += r.ci[0] <= 0.0 <= r.ci[1]
    return hits / reps


@pytest.mark.slow
@pytest.mark.parametrize("k", [5, 10])
def test_hksj_coverage_with_heterogeneity(k: int):
    # 4000 replications: Monte-Carlo sd of the coverage 0.34 points, so the 93-97% band is +-5.8 sd
    # around 95% (I² about 50%: tau² = 1, typical v about 1)
    coverage = hksj_coverage(k, 4000, seed=100 + k)
    assert 0.93 <= coverage <= 0.97, coverage


def aa_family_claims(
    rng: np.random.Generator,
    *,
    k: int,
    n: int,
    arms: int = 5,
    conditions: int = 3,
    spread: float = 10.0,
    tau: float = 0.0,
) -> bool:
    """One A/A atlas: ``k`` studies, ``arms`` arms identical to the baseline under ``conditions``, ``n``
    seeds; each study's seed noise drawn up to ``spread``-fold. Whether any pooled primary verdict
    (Holm, margin 0.5 sd) claims helps or hurts. With ``tau > 0`` the arms' true effects differ
    between studies (sd ``tau``) around a mean of 0: the random-effects null, not A/A."""
    fits = []
    for _ in range(conditions):
        sd = np.sqrt(rng.uniform(0.2, 1.0, size=k) * rng.choice([1.0, spread], size=k))
        base = rng.normal(0.0, sd[:, None], size=(k, n))
        for _ in range(arms):
            d = rng.normal(0.0, sd[:, None], size=(k, n)) - base  # shares the baseline's seeds
            d += rng.normal(0.0, tau, size=(k, 1)) if tau else 0.0
            fits.append(random_effects(d.mean(axis=1), d.var(axis=1, ddof=1) / n))
    v = pooled_verdicts(fits, higher_is_better=True, margin=0.5, alpha=0.05, correction="holm")
    return bool(np.isin(v.verdict, ["helps", "hurts"]).any())


@pytest.mark.slow
@pytest.mark.parametrize(("k", "n"), [(5, 3), (10, 5)])
def test_aa_familywise_error_of_pooled_primary_verdicts(k: int, n: int):
    reps = 1000
    rng = np.random.default_rng(1000 * k + n)
    false = sum(aa_family_claims(rng, k=k, n=n) for _ in range(reps))
    # the measured rate itself must be at most 5% (Monte-Carlo sd at 5%: 0.7 points); a true rate of
    # 7% would pass with probability 0.6%, one of 8% with probability 0.01%
    assert false / reps <= 0.05, false / reps
