"""The study-level numbers of the README's "Verdicts" section, by simulation (no training).

Runs the helpers of ``tests/test_study_stats.py`` at larger sizes: A/A family-wise error rates
(fixed design at 5 and 10 seeds, and the until-settled loop), coverage of the per-cell 95% paired
intervals on normal and skewed differences at n = 5, 10, 30, and the power against a planted 1-sd
effect at the seeds where the MDE shown is 1 sd. About 5 minutes on 2 cores.

    python benchmarks/study_verdicts.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_study_stats as t
from smoothflip.analysis import family_verdicts, minimum_detectable_effect, power_of_paired_t
from smoothflip.study.settle import plan_round, seed_sequence


def se(p: float, s: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / s)


def aa_fixed(n: int, s: int) -> None:
    spec = t.make_spec(4, [0.0, 0.1, 0.2, 0.3, 0.4], n)
    rng = np.random.default_rng(10_000 + n)
    hits, raw = [], []
    for _ in range(s):
        data = t.Sim(spec, t.draw_values(rng, 5, 5, n)).data()
        diffs, v = t.metric_family(data, t.cells_of(data), t.ACC, primary=True, design="fixed")
        hits.append(t.claims(v.verdict).any())
        r = family_verdicts(diffs, higher_is_better=True, margin=0.005, correction="none")
        raw.append(t.claims(r.verdict).any())
    p, q = np.mean(hits), np.mean(raw)
    print(
        f"A/A fixed n={n}: FWER {100 * p:.1f}% ± {100 * se(p, s):.1f}% ({s} studies); "
        f"uncorrected {100 * q:.0f}%"
    )


def aa_loop(s: int, cap: int = 20, size: int = 5) -> None:
    spec = t.make_spec(4, [0.0, 0.1, 0.2, 0.3, 0.4], 5)
    sequence = seed_sequence(spec.seeds, cap)
    rng = np.random.default_rng(20_000)
    hits, naive, seeds = [], [], []
    for _ in range(s):
        sim = t.Sim(spec, t.draw_values(rng, 5, 5, cap))
        revealed = {(a, c, k) for a in range(5) for c in range(5) for k in range(5)}
        index = {name: i for i, name in enumerate(sim.arms)}
        cids = {cond.condition_id: i for i, cond in enumerate(sim.conditions)}
        while True:
            plan = plan_round(
                sim.data(revealed, design={"m": 1}), t.ACC, max_seeds=cap, round_size=size, sequence=sequence
            )
            if plan.stopped is not None:
                break
            revealed |= {(index[a], cids[cid], sequence.index(seed)) for a, cid, seed in plan.wanted}
        hits.append(t.claims(plan.verdicts.verdict).any())
        seeds.append(np.mean([c["seeds"] for c in plan.seeds_per_cell]))
        cells = np.transpose(sim.values[1:] - sim.values[:1], (1, 0, 2)).reshape(20, cap)
        peek = t.replay_until_settled(
            cells, start=5, round_size=size, design="fixed", higher_is_better=True, margin=0.005
        )
        naive.append(t.claims(peek.verdicts.verdict).any())
    p, q = np.mean(hits), np.mean(naive)
    print(
        f"A/A until settled (5 + {size}/round up to {cap}): FWER {100 * p:.1f}% ± {100 * se(p, s):.1f}% "
        f"({s} studies, mean seeds per cell {np.mean(seeds):.1f}); fixed t-tests re-read: {100 * q:.1f}%"
    )


def coverage(studies: int) -> None:
    print("coverage of per-cell 95% intervals (cells = 40 x studies):")
    for draw in t.DRAWS:
        row = []
        for n in (5, 10, 30):
            c, _ = t.cell_interval_coverage(draw, n, studies=studies, seed=500 + n, sim_class=t._NllSim)
            row.append(f"{100 * c:.1f}%")
        print(f"  {draw}: n=5 {row[0]}, n=10 {row[1]}, n=30 {row[2]} ({40 * studies} cells each)")


def power(s: int) -> None:
    m = 20
    n = next(k for k in range(5, 60) if minimum_detectable_effect(k, 1.0, alpha=0.05 / m) <= 1.0)
    promised = power_of_paired_t(1.0, 1.0, n, alpha=0.05 / m)
    spec = t.make_spec(4, [0.0, 0.1, 0.2, 0.3, 0.4], n)
    rng = np.random.default_rng(30_000)
    effects = np.zeros((5, 5))
    effects[1] = 0.01 * math.sqrt(2)
    found = []
    for _ in range(s):
        data = t.Sim(spec, t.draw_values(rng, 5, 5, n, effects=effects, sd=0.01)).data()
        cells = t.cells_of(data)
        _, v = t.metric_family(data, cells, t.ACC, primary=True, design="fixed")
        planted = np.array([arm == "a0" for _, arm in cells])
        found.append(np.mean(v.verdict[planted] == "helps"))
    p = float(np.mean(found))
    print(
        f"planted 1 sd at n={n} (MDE <= 1 sd): found {100 * p:.1f}% ± {100 * se(p, 5 * s):.1f}% of "
        f"cells; promised {100 * promised:.1f}% ({s} studies)"
    )


if __name__ == "__main__":
    aa_fixed(5, 2000)
    aa_fixed(10, 2000)
    aa_loop(1000)
    coverage(250)
    power(400)
