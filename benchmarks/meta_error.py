"""The pooled verdicts' error rates, by simulation (no training): the numbers in
``smoothflip.analysis.meta_family``'s docstring and the README's "Pooling studies".

A/A atlases: ``k`` studies, 5 arms identical to their baseline (sharing its seeds) under 3 conditions,
``n`` seeds per study, each study's seed noise drawn up to tenfold (``tests/test_meta.py``'s
``aa_family_claims``); the family-wise error of the pooled primary verdicts (15 keys, Holm, margin
0.5 sd) is the share of atlases with any helps / hurts. Compared: the verdict rule smoothflip uses
(modified HKSJ **and** the unweighted t must reject), and each test alone; ``--tau`` makes the arms'
true effects differ between studies around 0 (the random-effects null). Then HKSJ's coverage of
the 95% interval with heterogeneity (tau² = 1, v ~ U(0.5, 2)) at k = 5 and 10. About 10 minutes.

    python benchmarks/meta_error.py [--reps 1000] [--tau 0.5] [--studies 5 10] [--seeds 3 5 10]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_meta as t
from smoothflip.analysis.meta import random_effects
from smoothflip.analysis.meta_family import pooled_tests
from smoothflip.analysis.multiplicity import holm


def alone(rng: np.random.Generator, *, k: int, n: int, which: int, tau: float = 0.0) -> bool:
    """One A/A atlas read with one of the two tests alone (0: modified HKSJ, 1: unweighted t)."""
    p = []
    for _ in range(3):
        sd = np.sqrt(rng.uniform(0.2, 1.0, size=k) * rng.choice([1.0, 10.0], size=k))
        base = rng.normal(0.0, sd[:, None], size=(k, n))
        for _ in range(5):
            d = rng.normal(0.0, sd[:, None], size=(k, n)) - base
            d += rng.normal(0.0, tau, size=(k, 1)) if tau else 0.0
            fit = random_effects(d.mean(axis=1), d.var(axis=1, ddof=1) / n)
            p.append(pooled_tests(fit)[which].p_value())
    return bool(holm(np.array(p), alpha=0.05).reject.any())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument(
        "--tau", type=float, default=0.0, help="sd of the true effects between studies (0: A/A; >0: RE null)"
    )
    parser.add_argument("--studies", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 5, 10])
    args = parser.parse_args()
    reps, tau = args.reps, args.tau
    se = lambda p: math.sqrt(max(p * (1 - p), 1e-12) / reps)  # noqa: E731
    what = "A/A" if not tau else f"random-effects null (true effects ~ N(0, {tau:g}²) per study)"
    print(f"{what}: family-wise error of pooled primary verdicts (15 keys, Holm), {reps} atlases each:")
    print("| studies k | seeds n | both tests (smoothflip) | modified HKSJ alone | unweighted t alone |")
    print("|--:|--:|--:|--:|--:|")
    for k in args.studies:
        for n in args.seeds:
            rng = np.random.default_rng(100 * k + n)
            both = np.mean([t.aa_family_claims(rng, k=k, n=n, tau=tau) for _ in range(reps)])
            mod = np.mean([alone(rng, k=k, n=n, which=0, tau=tau) for _ in range(reps)])
            unw = np.mean([alone(rng, k=k, n=n, which=1, tau=tau) for _ in range(reps)])
            cells = [f"{100 * p:.1f}% ± {100 * se(p):.1f}" for p in (both, mod, unw)]
            print(f"| {k} | {n} | {' | '.join(cells)} |", flush=True)
    for k in (5, 10):
        c = t.hksj_coverage(k, 4 * reps, seed=7 + k)
        sd = 100 * math.sqrt(c * (1 - c) / (4 * reps))
        print(f"HKSJ 95% coverage, k = {k}, tau² = 1: {100 * c:.1f}% ± {sd:.1f}")


if __name__ == "__main__":
    main()
