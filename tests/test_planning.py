"""Planning: the seeds an inconclusive cell needs (``analysis/power.py``, ``analysis/planning.py``).

Outside references: statsmodels' ``TTestPower`` (power of the one-sample / paired t-test on the
noncentral t) and ``tt_solve_power``; statsmodels' ``ttost_paired`` (the TOST itself) and SciPy's
adaptive ``quad`` for the exact TOST power. The promise of a plan — the planned seeds give the
promised power — is checked by simulating the family's own verdicts (``family_verdicts``) at the
planned seeds: ``R = 4000`` simulated families give a Monte-Carlo sd of at most 0.8 points at a power
near 0.8, so the ±3-point band is about 4 sd wide (a false failure about once in 30 000 runs).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from smoothflip.analysis import (
    family_verdicts,
    minimum_detectable_effect,
    plan_cells,
    planning_level,
    power_of_equivalence,
    power_of_paired_t,
    seeds_to_detect,
    seeds_to_show_equivalence,
)

smp = pytest.importorskip("statsmodels.stats.power")
weightstats = pytest.importorskip("statsmodels.stats.weightstats")

R = 4000  # simulated families per promise
BAND = 0.03  # the promised power, within 3 points


# ---------------------------------------------------------------------------------------- paired t


@settings(max_examples=25, deadline=None)
@given(
    effect=st.floats(0.25, 3.0),
    alpha=st.sampled_from([0.1, 0.05, 0.01, 0.05 / 15, 0.05 / 40, 1e-4]),
    power=st.floats(0.5, 0.95),
    two_sided=st.booleans(),
)
def test_seeds_to_detect_is_the_smallest_n_by_statsmodels_power(effect, alpha, power, two_sided):
    n = seeds_to_detect(effect, 1.0, alpha=alpha, power=power, two_sided=two_sided)
    alternative = "two-sided" if two_sided else "larger"
    ref = smp.TTestPower()
    # statsmodels' far lower tail of the noncentral t is NaN at tiny levels: nothing to compare there
    for nobs in {max(n - 1, 2), n}:
        assume(not np.isnan(ref.power(effect_size=effect, nobs=nobs, alpha=alpha, alternative=alternative)))
    assert ref.power(effect_size=effect, nobs=n, alpha=alpha, alternative=alternative) >= power - 1e-9
    if n > 2:
        assert ref.power(effect_size=effect, nobs=n - 1, alpha=alpha, alternative=alternative) < power
    # the same n is where the cell's MDE first reaches the effect
    assert minimum_detectable_effect(n, 1.0, alpha=alpha, power=power, two_sided=two_sided) <= effect + 1e-9
    if n > 2:
        assert minimum_detectable_effect(n - 1, 1.0, alpha=alpha, power=power, two_sided=two_sided) > effect


@pytest.mark.parametrize(
    ("effect", "alpha", "power"), [(1.0, 0.05, 0.8), (0.5, 0.05 / 15, 0.8), (2.0, 0.01, 0.9)]
)
def test_seeds_to_detect_is_statsmodels_solved_n_rounded_up(effect, alpha, power):
    solved = smp.tt_solve_power(effect_size=effect, nobs=None, alpha=alpha, power=power)
    assert seeds_to_detect(effect, 1.0, alpha=alpha, power=power) == math.ceil(solved)


def test_seeds_to_detect_scales_with_sd_and_is_exact_not_normal():
    # units: detecting 2 points at sd 4 is detecting 0.5 sd
    assert seeds_to_detect(2.0, 4.0, alpha=0.01) == seeds_to_detect(0.5, 1.0, alpha=0.01)
    assert seeds_to_detect(-1.0, 1.0) == seeds_to_detect(1.0, 1.0)  # two-sided: the sign does not matter
    # the normal approximation undercounts at a corrected level and a large effect
    z = stats.norm.ppf(1 - 0.05 / 30) + stats.norm.ppf(0.8)
    assert seeds_to_detect(2.0, 1.0, alpha=0.05 / 15) == 8 > math.ceil((z / 2.0) ** 2) == 4
    many = seeds_to_detect(np.array([0.5, 1.0, 2.0]), np.array([1.0, 1.0, np.nan]))
    assert many[:2].tolist() == [34.0, 10.0]
    assert math.isnan(many[2])


def test_seeds_to_detect_edge_cases_and_errors():
    assert seeds_to_detect(1.0, 0.0) == 2  # no spread: the fewest seeds
    assert seeds_to_detect(0.0, 1.0) == math.inf  # no effect is never detected
    assert seeds_to_detect(-1.0, 1.0, two_sided=False) == math.inf
    assert seeds_to_detect(1e-3, 1.0, max_n=1000) == math.inf
    assert seeds_to_detect(1.0, 1.0, min_n=30) == 30
    for bad, match in [
        ({"sd": -1.0}, "sd must be"),
        ({"alpha": 0.0}, "alpha"),
        ({"power": 1.0}, "power"),
        ({"min_n": 1}, "min_n"),
        ({"effect": math.inf}, "effect must be finite"),
    ]:
        kwargs = {"effect": 1.0, "sd": 1.0, **bad}
        with pytest.raises(ValueError, match=match):
            seeds_to_detect(kwargs.pop("effect"), kwargs.pop("sd"), **kwargs)


# ---------------------------------------------------------------------------------------- TOST


def _quad_tost(e: float, d: float, n: int, alpha: float) -> float:
    """The exact TOST power by SciPy's adaptive quadrature (Owen's integral, in sd units)."""
    df = n - 1
    c = stats.t.ppf(1 - alpha, df)
    top = min(d * math.sqrt(n * df) / c, math.sqrt(df) + 20.0)

    def f(v: float) -> float:
        inside = stats.norm.cdf(math.sqrt(n) * (d - e) - c * v / math.sqrt(df)) - stats.norm.cdf(
            -math.sqrt(n) * (d + e) + c * v / math.sqrt(df)
        )
        return max(inside, 0.0) * stats.chi.pdf(v, df)

    peak = [math.sqrt(df)] if math.sqrt(df) < top else None
    return integrate.quad(f, 0.0, top, points=peak, limit=200, epsabs=1e-12)[0]


@pytest.mark.parametrize("n", [2, 3, 5, 12, 40, 300])
def test_equivalence_power_matches_adaptive_quadrature(n):
    for e in (0.0, 0.2, 0.45):
        for d in (0.5, 1.0, 2.5):
            for alpha in (0.05, 0.05 / 30):
                ours = power_of_equivalence(e, 1.0, n, margin=d, alpha=alpha)
                assert ours == pytest.approx(_quad_tost(e, d, n, alpha), abs=1e-8)


@pytest.mark.parametrize(("n", "diff", "margin", "alpha"), [(8, 0.0, 1.0, 0.05), (20, 0.3, 0.8, 0.01)])
def test_equivalence_power_matches_statsmodels_ttost_by_simulation(n, diff, margin, alpha):
    """2000 samples through statsmodels' own TOST: the rate is within 4 binomial sd of our power."""
    rng = np.random.default_rng(11)
    hits = 0
    reps = 2000
    for _ in range(reps):
        x = rng.normal(diff, 1.0, n)
        p = weightstats.ttost_paired(x, np.zeros(n), -margin, margin)[0]
        hits += p <= alpha
    expected = power_of_equivalence(diff, 1.0, n, margin=margin, alpha=alpha)
    assert hits / reps == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / reps))


def test_seeds_to_show_equivalence_is_the_smallest_n():
    for sd, margin, diff, alpha in [(1.0, 0.5, 0.0, 0.05), (2.0, 0.5, 0.1, 0.05 / 15), (1.0, 1.0, 0.0, 0.01)]:
        n = seeds_to_show_equivalence(sd, margin=margin, true_diff=diff, alpha=alpha)
        assert power_of_equivalence(diff, sd, n, margin=margin, alpha=alpha) >= 0.8
        assert power_of_equivalence(diff, sd, n - 1, margin=margin, alpha=alpha) < 0.8
    # a true difference nearer the margin needs more; at the margin, no number of seeds does it
    assert seeds_to_show_equivalence(1.0, margin=0.5, true_diff=0.25) > seeds_to_show_equivalence(
        1.0, margin=0.5
    )
    assert seeds_to_show_equivalence(1.0, margin=0.5, true_diff=-0.5) == math.inf
    assert seeds_to_show_equivalence(0.0, margin=0.5) == 2
    assert power_of_equivalence(0.6, 0.0, 5, margin=0.5) == 0.0
    with pytest.raises(ValueError, match="margin must be"):
        seeds_to_show_equivalence(1.0, margin=0.0)
    with pytest.raises(ValueError, match="alpha"):
        power_of_equivalence(0.0, 1.0, 5, margin=1.0, alpha=0.5)


# ---------------------------------------------------------------------------------------- families


def _pilot(m: int, n: int, sd: float, seed: int = 0, mean: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, size=(m, n))


def test_plan_cells_uses_each_family_strictest_level():
    d = _pilot(6, 5, 0.01)
    holm = family_verdicts(d, higher_is_better=True, margin=0.002)
    bh = family_verdicts(d, higher_is_better=True, margin=0.002, correction="bh")
    bh_no_margin = family_verdicts(d, higher_is_better=True, margin=None, correction="bh")
    assert np.allclose(planning_level(holm), 0.05 / 6)
    assert np.allclose(planning_level(bh), 0.05 / 12)  # two hypotheses per cell
    assert np.allclose(planning_level(bh_no_margin), 0.05 / 6)
    for v in (holm, bh):
        plan = plan_cells(v, target=0.01)
        assert plan.planned.all()
        for i in range(6):
            level = float(plan.level[i])
            detect = seeds_to_detect(0.01, float(v.sd[i]), alpha=level)
            equivalent = seeds_to_show_equivalence(float(v.sd[i]), margin=0.002, alpha=level)
            assert plan.seeds_detect[i] == max(detect, 5)
            assert plan.seeds_equivalence[i] == max(equivalent, 5)
            assert plan.power_detect[i] == pytest.approx(
                power_of_paired_t(0.01, v.sd[i], detect, alpha=level)
            )
    # a settled cell and a "no verdict" cell are not priced
    mixed = [np.full(8, 0.02) + _pilot(1, 8, 0.001)[0], [0.01, 0.0], *_pilot(2, 5, 0.01, seed=3)]
    v = family_verdicts(mixed, higher_is_better=True, margin=0.002)
    plan = plan_cells(v, target=0.01)
    assert v.verdict.tolist()[:2] == ["helps", "no verdict"]
    assert plan.planned.tolist() == [False, False, True, True]
    assert np.isnan(plan.seeds_detect[:2]).all()
    assert np.isfinite(plan.seeds_detect[2:]).all()
    # no target: no detection plan; no margin: no equivalence plan
    assert np.isnan(plan_cells(v, target=None).seeds_detect).all()
    no_margin = plan_cells(family_verdicts(mixed, higher_is_better=True, margin=None), target=0.01)
    assert np.isnan(no_margin.seeds_equivalence).all()
    with pytest.raises(ValueError, match="target"):
        plan_cells(v, target=0.0)


def test_a_cell_that_already_has_the_seeds_keeps_its_n():
    v = family_verdicts(_pilot(2, 40, 0.01, seed=6), higher_is_better=True, margin=0.0001)
    plan = plan_cells(v, target=0.05)  # 5 sd: a handful of seeds would do
    assert v.verdict.tolist() == ["inconclusive", "inconclusive"]
    assert plan.seeds_detect.tolist() == [40.0, 40.0]


def test_sequential_plans_need_more_seeds_than_fixed():
    d = _pilot(5, 8, 0.01, seed=2)
    fixed = plan_cells(family_verdicts(d, higher_is_better=True, margin=0.004), target=0.01)
    anytime = plan_cells(
        family_verdicts(d, higher_is_better=True, margin=0.004, design="sequential"), target=0.01
    )
    assert anytime.design == "sequential"
    assert (anytime.seeds_detect > fixed.seeds_detect).all()
    assert (anytime.seeds_equivalence > fixed.seeds_equivalence).all()
    ratio = np.median(anytime.seeds_detect / fixed.seeds_detect)
    assert 1.2 < ratio < 2.5  # the module docstring of sequential.py: about 1.5 times


# ---------------------------------------------------------------------------------------- the promise


def _simulate(n_cells: int, n: int, sd: float, means: np.ndarray, margin: np.ndarray, seed: int, **options):
    rng = np.random.default_rng(seed)
    x = rng.normal(means[None, :, None], sd, size=(R, n_cells, n))
    return family_verdicts(x, higher_is_better=True, margin=margin, **options)


@pytest.mark.parametrize(("correction", "seed"), [("holm", 1), ("bh", 2)])
def test_planned_seeds_give_the_promised_power(correction, seed):
    """Plan one inconclusive cell of an 8-cell family from a 5-seed pilot, then draw R families at the
    planned seeds with the cell's true sd equal to the observed one: the cell is called helps (true
    difference = the target) and equivalent (true difference 0) as often as promised, within 3
    points. For BH the other cells are given no way to be discoveries (a vanishing margin, no
    effect), so its level is the planned alpha / M."""
    m, margin_value = 8, 0.004
    pilot = _pilot(m, 5, 0.01, seed=seed)
    margin = np.full(m, margin_value)
    if correction == "bh":
        margin[1:] = 1e-12
    v = family_verdicts(pilot, higher_is_better=True, margin=margin, correction=correction)
    assert v.verdict[0] == "inconclusive"
    plan = plan_cells(v, target=0.01)
    sd = float(v.sd[0])

    n = int(plan.seeds_detect[0])
    means = np.zeros(m)
    means[0] = 0.01
    found = _simulate(m, n, sd, means, margin, seed + 10, correction=correction)
    rate = float(np.mean(found.verdict[:, 0] == "helps"))
    assert plan.power_detect[0] >= 0.8
    assert abs(rate - plan.power_detect[0]) <= BAND, (rate, plan.power_detect[0], n)

    n = int(plan.seeds_equivalence[0])
    shown = _simulate(m, n, sd, np.zeros(m), margin, seed + 20, correction=correction)
    rate = float(np.mean(shown.equivalent[:, 0]))
    assert plan.power_equivalence[0] >= 0.8
    assert abs(rate - plan.power_equivalence[0]) <= BAND, (rate, plan.power_equivalence[0], n)

    # and the plan is tight: one seed fewer misses the promise
    fewer = _simulate(m, int(plan.seeds_detect[0]) - 1, sd, means, margin, seed + 30, correction=correction)
    assert plan.power_detect[0] - float(np.mean(fewer.verdict[:, 0] == "helps")) > 0.0


def test_sequential_plans_are_a_lower_bound_on_the_power():
    """The until-settled design's plan counts the last look only; the anytime-valid test also reads
    every earlier prefix, so its power at the planned seeds is at least the promise (minus 3 points)."""
    m = 6
    pilot = _pilot(m, 8, 0.01, seed=4)
    margin = np.full(m, 0.005)
    v = family_verdicts(pilot, higher_is_better=True, margin=margin, design="sequential")
    plan = plan_cells(v, target=0.012)
    i = int(np.flatnonzero(plan.planned)[0])
    means = np.zeros(m)
    means[i] = 0.012
    found = _simulate(m, int(plan.seeds_detect[i]), float(v.sd[i]), means, margin, 40, design="sequential")
    assert float(np.mean(found.verdict[:, i] == "helps")) >= plan.power_detect[i] - BAND
    shown = _simulate(
        m, int(plan.seeds_equivalence[i]), float(v.sd[i]), np.zeros(m), margin, 41, design="sequential"
    )
    assert float(np.mean(shown.equivalent[:, i])) >= plan.power_equivalence[i] - BAND


@pytest.mark.slow
@pytest.mark.parametrize("m", [4, 15, 30])
@pytest.mark.parametrize("pilot", [3, 5, 10])
def test_the_promise_holds_across_families_and_pilots(m, pilot):
    """Holm families of 4 to 30 cells planned from 3 to 10 pilot seeds, every other cell null: the
    planned cell is called helps at the target, and equivalent at no effect, within 3 points of the
    power promised; BH families (the other cells may be discoveries here) at least as often."""
    margin = np.full(m, 0.005)
    for correction in ("holm", "bh"):
        for seed in range(40):  # the first pilot whose cell 0 is inconclusive
            v = family_verdicts(
                _pilot(m, pilot, 0.01, seed=100 + seed),
                higher_is_better=True,
                margin=margin,
                correction=correction,
            )
            if v.verdict[0] == "inconclusive":
                break
        plan = plan_cells(v, target=0.012)
        sd = float(v.sd[0])
        means = np.zeros(m)
        means[0] = 0.012
        found = _simulate(m, int(plan.seeds_detect[0]), sd, means, margin, 7, correction=correction)
        shown = _simulate(
            m, int(plan.seeds_equivalence[0]), sd, np.zeros(m), margin, 8, correction=correction
        )
        rates = (float(np.mean(found.verdict[:, 0] == "helps")), float(np.mean(shown.equivalent[:, 0])))
        promised = (float(plan.power_detect[0]), float(plan.power_equivalence[0]))
        for rate, promise in zip(rates, promised, strict=True):
            assert rate >= promise - BAND, (correction, rates, promised)
            if correction == "holm":
                assert rate <= promise + BAND, (correction, rates, promised)
