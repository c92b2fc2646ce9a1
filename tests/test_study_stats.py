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
        assert len(diffs) == 20 and all(d.size == n for d in diffs)
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
        peek = replay_until_settled(cells, start=5, round_size=size, design="fixed", higher_is_better=True, margin=0.005)
        naive.append(claims(peek.verdicts.verdict).any())
    assert max(used) <= cap
    assert float(np.mean(valid)) <= upper(ALPHA, s)
    assert lower(float(np.mean(naive)), s) > ALPHA  # peeking with fixed-n tests
