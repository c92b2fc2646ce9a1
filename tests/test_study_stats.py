"""Study-level statistics by simulation: the verdicts a stored study gets (``study/verdict.py``) and the
until-settled loop's decisions (``study/settle.py``), on simulated runs (no training).

The library-level properties (Holm, BH, the e-process, coverage of the bare intervals) are tested in
``test_analysis_stats.py``; here the same guarantees are checked through the study layer: runs paired
by seed under a shared baseline, margins and the primary metric from the study file, the design
read from the store, the loop that picks which cells get more seeds. Each bound is paired with a
case that breaks it, so the tests can fail. A rate that must stay below ``level`` is compared with
``level + 2.576 sqrt(level (1 - level) / S)`` (binomial 99% bound for ``S`` simulated studies).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from smoothflip.analysis import (
    METRICS,
    family_verdicts,
    minimum_detectable_effect,
    power_of_paired_t,
    replay_until_settled,
)
from smoothflip.study.conditions import study_conditions
from smoothflip.study.results import StudyData
from smoothflip.study.settle import plan_round, seed_sequence
from smoothflip.study.spec import loads_study
from smoothflip.study.store import RunResult
from smoothflip.study.verdict import metric_family, study_verdict

ALPHA = 0.05
ACC = METRICS[0]


def upper(rate: float, s: int) -> float:
    return rate + 2.576 * math.sqrt(rate * (1 - rate) / s)


def lower(rate: float, s: int) -> float:
    return rate - 2.576 * math.sqrt(rate * (1 - rate) / s)


def make_spec(n_arms: int, rates: list[float], seeds: int, analysis: str = ""):
    """A standard study: baseline ce and ``n_arms`` arms with the identical technique (an A/A study)."""
    arms = "".join(f'\n[[arms]]\nname = "a{i}"\nloss = "ce"\n' for i in range(n_arms))
    text = (
        f'name = "sim"\nseeds = {seeds}\nbaseline = "ce"\n[data]\nsource = "digits"\n[model]\nname = "mlp"\n'
        f'[[arms]]\nname = "ce"\nloss = "ce"\n{arms}\n[[conditions]]\nnoise = "symmetric"\nrates = {rates}\n'
        f"{analysis}"
    )
    return loads_study(text)


class Sim:
    """Simulated runs of one study: ``values[arm, condition, seed]`` of the primary metric."""

    def __init__(self, spec, values: np.ndarray) -> None:
        self.spec = spec
        self.conditions = tuple(study_conditions(spec))
        self.arms = tuple(a.name for a in spec.arms)
        self.values = values
        self._runs: dict[tuple[int, int, int], RunResult] = {}

    def run(self, a: int, c: int, s: int) -> RunResult:
        cond = self.conditions[c]
        metrics = {"selected": {"test_acc": float(self.values[a, c, s])}}
        return RunResult(
            f"{a}-{c}-{s}", self.arms[a], cond.label, cond.noise, cond.rate, s, {}, metrics, {},
            condition_id=cond.condition_id,
        )  # fmt: skip

    def data(self, revealed: set[tuple[int, int, int]] | None = None, design=None) -> StudyData:
        n_arms, n_cond, n_seeds = self.values.shape
        keys = revealed if revealed is not None else {
            (a, c, s) for a in range(n_arms) for c in range(n_cond) for s in range(n_seeds)
        }  # fmt: skip
        for key in keys - self._runs.keys():
            self._runs[key] = self.run(*key)
        results = tuple(self._runs[key] for key in sorted(keys))
        spec = self.spec
        return StudyData(Path("."), spec, self.conditions, self.arms, results, design=design)


def draw_values(rng, n_arms, n_cond, n_seeds, *, effects=None, sd=0.01, seed_sd=0.02):
    """Run values: condition level + a seed effect shared by every arm (the pairing) + run noise."""
    level = 0.9 - 0.1 * np.arange(n_cond)[None, :, None]
    shared = rng.normal(0.0, seed_sd, (1, n_cond, n_seeds))
    noise = rng.normal(0.0, sd, (n_arms, n_cond, n_seeds))
    values = level + shared + noise
    if effects is not None:
        values = values + np.asarray(effects)[:, :, None]
    return values


def cells_of(data):
    return [(c, arm) for c in data.conditions for arm in data.others]


def claims(words) -> np.ndarray:
    return np.isin(np.asarray(words), ["helps", "hurts"])


# ---------------------------------------------------------------------------------------- A/A studies


@pytest.mark.parametrize("n", [5, 10])
def test_aa_studies_keep_the_primary_family_wise_error_rate(n):
    """600 simulated A/A studies (4 identical arms x 5 conditions = 20 cells, one shared baseline per
    condition): P(any false helps/hurts among the primary verdicts) <= 5%; without a correction it is
    far above."""
    s, n_arms, n_cond = 600, 5, 5
    spec = make_spec(n_arms - 1, [0.0, 0.1, 0.2, 0.3, 0.4], n)
    rng = np.random.default_rng(1000 + n)
    any_claim, raw_claim, any_equiv = [], [], []
    for _ in range(s):
        sim = Sim(spec, draw_values(rng, n_arms, n_cond, n))
        data = sim.data()
        diffs, v = metric_family(data, cells_of(data), ACC, primary=True, design="fixed")
        assert len(diffs) == 20
        assert all(d.size == n for d in diffs)
        np.testing.assert_allclose(v.mde_level, ALPHA / 20)
        any_claim.append(claims(v.verdict).any())
        any_equiv.append((v.verdict == "equivalent").any())
        raw = family_verdicts(diffs, higher_is_better=True, margin=0.005, correction="none")
        raw_claim.append(claims(raw.verdict).any())
    fwer = float(np.mean(any_claim))
    assert fwer <= upper(ALPHA, s), fwer
    assert lower(float(np.mean(raw_claim)), s) > ALPHA  # the same data, uncorrected: ~64%


def test_aa_until_settled_loop_keeps_the_error_rate_although_it_peeks():
    """200 A/A studies run through the loop's own decisions (plan_round): 5 seeds, then 5 more per round
    to every open cell, up to 20; the sequential verdicts are re-read after every round. Re-reading
    fixed-design t-tests on the same runs breaks the bound."""
    s, n_arms, n_cond, cap, size = 200, 5, 5, 20, 5
    spec = make_spec(n_arms - 1, [0.0, 0.1, 0.2, 0.3, 0.4], 5)
    sequence = seed_sequence(spec.seeds, cap)
    rng = np.random.default_rng(2000)
    valid, naive, used = [], [], []
    for _ in range(s):
        sim = Sim(spec, draw_values(rng, n_arms, n_cond, cap))
        revealed = {(a, c, k) for a in range(n_arms) for c in range(n_cond) for k in range(5)}
        index = {name: i for i, name in enumerate(sim.arms)}
        cids = {cond.condition_id: i for i, cond in enumerate(sim.conditions)}
        while True:
            data = sim.data(revealed, design={"method": "until settled"})
            plan = plan_round(data, ACC, max_seeds=cap, round_size=size, sequence=sequence)
            if plan.stopped is not None:
                break
            revealed |= {(index[a], cids[cid], sequence.index(seed)) for a, cid, seed in plan.wanted}
        valid.append(claims(plan.verdicts.verdict).any())
        used.append(max(int(c["seeds"]) for c in plan.seeds_per_cell))
        diffs = sim.values[1:] - sim.values[:1]  # [arm, condition, seed] -> cells in condition order
        cells = np.transpose(diffs, (1, 0, 2)).reshape(20, cap)
        peek = replay_until_settled(
            cells, start=5, round_size=size, design="fixed", higher_is_better=True, margin=0.005
        )
        naive.append(claims(peek.verdicts.verdict).any())
    assert max(used) <= cap
    assert float(np.mean(valid)) <= upper(ALPHA, s)
    assert lower(float(np.mean(naive)), s) > ALPHA  # peeking with fixed-n tests


# ---------------------------------------------------------------------------------------- coverage

DRAWS = {
    "normal": lambda rng, size: rng.normal(0.0, 1.0, size),
    "skewed (gamma k=4, skewness 1)": lambda rng, size: rng.gamma(4.0, 0.5, size) - 2.0,
    "skewed (gamma k=1, skewness 2)": lambda rng, size: rng.gamma(1.0, 1.0, size) - 1.0,
}


def cell_interval_coverage(
    draw: str, n: int, *, cells: int = 40, studies: int = 50, seed: int = 0, sim_class=None
):
    """Coverage of the per-cell 95% intervals a study shows for a secondary metric (and of the
    simultaneous ones of the primary metric) when every arm's true difference from the baseline is 0.1
    sd of the differences: ``studies`` studies of ``cells`` arms under one condition."""
    spec = make_spec(cells, [0.0], n)
    rng = np.random.default_rng(seed)
    hit = simultaneous = 0
    true = 0.1
    for _ in range(studies):
        base = rng.normal(0.8, 0.05, (1, 1, n))
        arms = base + 0.01 * (true + DRAWS[draw](rng, (cells, 1, n)))
        sim = (sim_class or Sim)(spec, np.concatenate([base, arms]))
        data = sim.data()
        _, secondary = metric_family(data, cells_of(data), METRICS[1], primary=False, design="fixed")
        _, primary = metric_family(data, cells_of(data), ACC, primary=True, design="fixed")
        truth = 0.01 * true
        hit += int(np.sum((secondary.ci_low <= truth) & (truth <= secondary.ci_high)))
        simultaneous += int(
            np.all((primary.simultaneous_low <= truth) & (truth <= primary.simultaneous_high))
        )
    return hit / (cells * studies), simultaneous / studies


class _NllSim(Sim):
    """The same values stored as both accuracy and NLL (a secondary metric)."""

    def run(self, a: int, c: int, s: int) -> RunResult:
        r = super().run(a, c, s)
        value = r.metrics["selected"]["test_acc"]
        r.metrics["selected"]["test_nll"] = value
        return r


@pytest.mark.parametrize(
    ("draw", "n", "floor"),
    [
        ("normal", 5, 0.93),
        ("normal", 10, 0.93),
        ("normal", 30, 0.93),
        ("skewed (gamma k=4, skewness 1)", 5, 0.93),
        ("skewed (gamma k=4, skewness 1)", 10, 0.93),
        ("skewed (gamma k=4, skewness 1)", 30, 0.93),
        # Strongly skewed differences (exponential): measured 88.2% at n = 5, 89.2% at n = 10, 92.5% at
        # n = 30 (10 000 cells each, benchmarks/study_verdicts.py) - below 93%; the t interval's known
        # weakness, documented in the README.
        ("skewed (gamma k=1, skewness 2)", 5, 0.86),
        ("skewed (gamma k=1, skewness 2)", 30, 0.90),
    ],
)
def test_paired_interval_coverage_through_the_study_layer(draw, n, floor):
    covered, simultaneous = cell_interval_coverage(draw, n, seed=n, sim_class=_NllSim)
    s = 40 * 50
    assert covered >= floor - 2.576 * math.sqrt(0.05 * 0.95 / s), covered
    if draw == "normal":  # all 40 simultaneous intervals at once, nominal 95%
        assert simultaneous >= 0.95 - 2.576 * math.sqrt(0.05 * 0.95 / 50) - 0.05


# ---------------------------------------------------------------------------------------- power


def test_a_planted_one_sd_effect_is_found_with_the_power_the_mde_promises():
    """20 cells (4 arms x 5 conditions), 5 of them with a planted effect of 1 sd of the paired
    differences, at the seeds where the MDE shown for a cell is at most 1 sd (Holm's first step,
    alpha / 20). The planted cells are called helps at least as often as that promise (80%), and
    as often as the noncentral-t power at the Bonferroni level says; the null cells almost never."""
    m = 20
    n = next(k for k in range(5, 60) if minimum_detectable_effect(k, 1.0, alpha=ALPHA / m) <= 1.0)
    promised = power_of_paired_t(1.0, 1.0, n, alpha=ALPHA / m)
    assert promised >= 0.8
    s, n_arms, n_cond = 150, 5, 5
    spec = make_spec(n_arms - 1, [0.0, 0.1, 0.2, 0.3, 0.4], n)
    rng = np.random.default_rng(3000)
    sd = 0.01  # run noise; the paired differences have sd 0.01 * sqrt(2)
    effects = np.zeros((n_arms, n_cond))
    effects[1, :] = 1.0 * sd * math.sqrt(2)  # arm a0 helps by 1 sd under every condition
    found, false, mdes = [], [], []
    for _ in range(s):
        sim = Sim(spec, draw_values(rng, n_arms, n_cond, n, effects=effects, sd=sd))
        data = sim.data()
        cells = cells_of(data)
        _, v = metric_family(data, cells, ACC, primary=True, design="fixed")
        planted = np.array([arm == "a0" for _, arm in cells])
        found.append(np.mean(v.verdict[planted] == "helps"))
        false.append(claims(v.verdict[~planted]).any())
        mdes.append(np.median(v.mde[planted] / (sd * math.sqrt(2))))
    power = float(np.mean(found))
    assert power >= lower(promised, s * 5), (power, promised)
    assert float(np.mean(false)) <= upper(ALPHA, s)
    assert 0.85 <= float(np.median(mdes)) <= 1.15  # the MDE shown is what was promised, near 1 sd


# ---------------------------------------------------------------------------------------- study_verdict


def test_study_verdict_words_margins_and_design_come_from_the_study():
    """The whole verdict: primary first with Holm and simultaneous intervals, the rest BH; a margin
    from [analysis.margin]; a recorded until-settled design switches every family to sequential."""
    spec = make_spec(
        2, [0.0, 0.2], 8, analysis="[analysis]\nalpha = 0.05\n[analysis.margin]\naccuracy = 2.0\n"
    )
    rng = np.random.default_rng(4)
    effects = np.zeros((3, 2))
    effects[1] = 0.05  # a0: +5 points, clearly helps
    values = draw_values(rng, 3, 2, 8, effects=effects, sd=0.003)
    values[2] = values[0] + rng.normal(0, 0.001, values[0].shape)  # a1: within 2 points: equivalent
    sim = Sim(spec, values)
    fixed = study_verdict(sim.data())
    assert fixed.primary.key == "test_acc"
    assert fixed.design == "fixed"
    words = {(c.condition, c.arm): c.verdict for c in fixed.comparisons if c.metric.key == "test_acc"}
    assert set(words.values()) == {"helps", "equivalent"}
    assert all(w == "helps" for (_, arm), w in words.items() if arm == "a0")
    assert fixed.families["test_acc"].role == "primary"
    assert fixed.families["test_acc"].margin == 2.0
    assert fixed.families["test_acc"].interval.startswith("simultaneous 95% t interval")
    acc = next(c for c in fixed.comparisons if c.metric.key == "test_acc" and c.arm == "a0")
    assert acc.role == "primary"
    assert math.isfinite(acc.mde)
    assert acc.p_adjusted <= ALPHA
    assert "helps" in fixed.headlines["a0"][0]
    sequential = study_verdict(sim.data(design={"method": "until settled", "stopped": "test"}))
    assert sequential.design == "sequential"
    assert sequential.settle["stopped"] == "test"
    assert sequential.families["test_acc"].interval.startswith("simultaneous 95% confidence sequence")
    low = next(c for c in sequential.comparisons if c.metric.key == "test_acc" and c.arm == "a0")
    assert low.ci_high - low.ci_low > acc.ci_high - acc.ci_low  # anytime-valid intervals are wider
