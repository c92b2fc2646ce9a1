"""Pricing through the study layer (``study/pricing.py``, ``study/verdict.py``, ``report/verdict_rows.py``):
stored runs (simulated, no training) with timings, the ``[analysis] target_mde`` key, the prices and
costs of inconclusive cells, and the CSV rows built from the verdict rows."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothflip.analysis import METRICS, plan_cells
from smoothflip.errors import SpecError
from smoothflip.report.verdict_rows import CSV_COLUMNS, cost_sentences, csv_records, verdict_rows, write_csv
from smoothflip.study.conditions import study_conditions
from smoothflip.study.growth import growth_problem
from smoothflip.study.pricing import CellPrice, grow_cost, run_seconds, total_cost
from smoothflip.study.results import StudyData
from smoothflip.study.spec import dumps_study, loads_study
from smoothflip.study.store import RunResult
from smoothflip.study.verdict import metric_family, study_verdict

ACC, ECE = METRICS[0], METRICS[2]


def make_spec(seeds: int, analysis: str = "") -> object:
    arms = "".join(f'[[arms]]\nname = "{arm}"\nloss = "ce"\n' for arm in ("ce", "a", "b"))
    text = (
        f'name = "price"\nseeds = {seeds}\nbaseline = "ce"\n'
        '[data]\nsource = "digits"\n[model]\nname = "mlp"\n'
        f'{arms}[[conditions]]\nnoise = "symmetric"\nrates = [0.0, 0.2]\n{analysis}'
    )
    return loads_study(text)


SECONDS = {"ce": (16.0, 4.0, 10), "a": (8.0, 2.0, 10), "b": None}  # train, eval, pack size; b: old store


def make_data(
    spec, *, seeds: dict[tuple[str, int], int] | None = None, seed: int = 0, design=None
) -> StudyData:
    """Runs of ce, a, b under clean and symmetric 20%: accuracy with a shared seed effect (the pairing)
    and noise, ECE likewise; ``seeds[(arm, condition)]`` stored seeds (default: all of the spec's)."""
    rng = np.random.default_rng(seed)
    conditions = tuple(study_conditions(spec))
    arms = tuple(a.name for a in spec.arms)
    runs = []
    n_max = len(spec.seeds)
    shared = rng.normal(0, 0.02, (len(conditions), n_max))
    for ci, cond in enumerate(conditions):
        for arm in arms:
            count = (seeds or {}).get((arm, ci), n_max)
            for s in range(count):
                acc = 0.9 + shared[ci, s] + rng.normal(0, 0.01)
                ece = 0.05 + 0.5 * shared[ci, s] + rng.normal(0, 0.004)
                clock = SECONDS[arm]
                timings = {"pack_seconds": 99.0, "pack_size": 3, "seconds_per_run": 7.0}
                if clock is not None:
                    timings = {"train_seconds": clock[0], "eval_seconds": clock[1], "pack_size": clock[2]}
                    timings |= {"pack_seconds": 30.0, "seconds_per_run": 3.0}
                metrics = {"selected": {"test_acc": acc, "test_ece": ece}, "last": {"test_acc": acc}}
                runs.append(
                    RunResult(
                        f"{arm}-{ci}-{s}",
                        arm,
                        cond.label,
                        cond.noise,
                        cond.rate,
                        s,
                        {},
                        metrics,
                        {},
                        timings=timings,
                        condition_id=cond.condition_id,
                    )
                )
    return StudyData(Path("."), spec, conditions, arms, tuple(runs), design=design)


def test_run_seconds_reads_the_pack_clock_then_the_wall_time():
    def run(timings):
        return RunResult("r", "a", "clean", "none", 0.0, 0, {}, {}, {}, timings=timings)

    assert run_seconds(run({"train_seconds": 8.0, "eval_seconds": 2.0, "pack_size": 10})) == 1.0
    assert run_seconds(run({"seconds_per_run": 7.0, "pack_size": 3})) == 7.0
    assert math.isnan(run_seconds(run({})))
    assert math.isnan(run_seconds(run({"train_seconds": "x", "pack_size": 2})))


def test_target_mde_in_the_study_file():
    default = make_spec(5).analysis
    assert dict(default.target_mde) == {}
    number = make_spec(5, "[analysis]\ntarget_mde = 1.5\n").analysis
    assert dict(number.target_mde) == {"test_acc": 1.5}
    table = make_spec(5, "[analysis.target_mde]\nece = 0.02\naccuracy = 2\n").analysis
    assert dict(table.target_mde) == {"test_ece": 0.02, "test_acc": 2.0}
    primary_nll = make_spec(5, '[analysis]\nprimary = "nll"\ntarget_mde = 0.05\n').analysis
    assert dict(primary_nll.target_mde) == {"test_nll": 0.05}
    for bad, match in [
        ("target_mde = 0", "analysis.target_mde = 0: must be > 0"),
        ("target_mde = -1.0", "must be > 0"),
        ('target_mde = "big"', 'analysis.target_mde = "big": must be a number'),
        ("target_mde = nan", "must be finite"),
        ("[analysis.target_mde]\nspeed = 1.0", "analysis.target_mde.speed"),
        ("[analysis.target_mde]\nece = 0.0", "analysis.target_mde.ece = 0: must be > 0"),
    ]:
        section = bad if bad.startswith("[") else f"[analysis]\n{bad}"
        with pytest.raises(SpecError, match=match):
            make_spec(5, section + "\n")
    # the written study file keeps it (every metric's, defaults filled in) and reads back the same
    spec = make_spec(5, "[analysis]\ntarget_mde = 1.5\n")
    again = loads_study(dumps_study(spec))
    assert again.analysis.target_mde["test_acc"] == 1.5
    assert again.analysis.target_mde["test_ece"] == pytest.approx(0.01)  # 2 x the ECE margin
    # never part of a study's identity: a study grows with a new target_mde
    assert growth_problem(make_spec(5).to_dict(), spec.to_dict()) is None


def test_inconclusive_cells_are_priced_at_the_family_level():
    data = make_data(make_spec(5))
    result = study_verdict(data)
    assert result.targets["test_acc"] == pytest.approx(1.0)  # 2 x the 0.5-point margin
    assert result.targets["test_ece"] == pytest.approx(0.01)
    cells = [(c, arm) for c in data.conditions for arm in ("a", "b")]
    for metric, primary in ((ACC, True), (ECE, False)):
        _, v = metric_family(data, cells, metric, primary=primary, design="fixed")
        plan = plan_cells(v, target=result.targets[metric.key] / metric.scale)
        priced = 0
        for i, (cond, arm) in enumerate(cells):
            price = result.prices.get((cond.label, arm, metric.key))
            assert (price is not None) == (v.verdict[i] == "inconclusive")
            if price is None:
                continue
            priced += 1
            assert price.role == ("primary" if primary else "secondary")
            assert price.seeds_detect == plan.seeds_detect[i]
            assert price.seeds_equivalence == plan.seeds_equivalence[i]
            assert price.level == pytest.approx(0.05 / 4 if primary else 0.05 / 8)
            assert price.sd == pytest.approx(v.sd[i] * metric.scale)
        assert priced >= 2
    # a comparison's row carries its price
    rows = verdict_rows(result)
    for row in rows["primary"]:
        assert bool(row["needs"]) == (row["verdict"] == "inconclusive")


def test_minutes_count_the_arm_and_the_baseline_runs():
    # condition 0: the baseline has 7 runs, a and b 5 each; 1 s per run of a, 2 s of ce, b: 7 s (wall time)
    spec = make_spec(7)
    data = make_data(spec, seeds={("a", 0): 5, ("b", 0): 5, ("a", 1): 5, ("b", 1): 5, ("ce", 1): 5})
    result = study_verdict(data)
    clean = [p for p in result.prices.values() if p.condition == "clean" and p.metric == "test_acc"]
    assert clean, "expected inconclusive clean cells"
    for p in clean:
        assert p.seeds == 5
        assert p.baseline_stored == 7
        assert p.arm_seconds == (1.0 if p.arm == "a" else 7.0)
        assert p.baseline_seconds == 2.0
        n = p.seeds_detect
        assert p.runs(n) == (n - 5, max(0.0, n - 7))
        assert p.minutes(n) == pytest.approx(((n - 5) * p.arm_seconds + max(0.0, n - 7) * 2.0) / 60)
        assert p.minutes(5) == 0.0
    # together: each arm's runs, and the baseline's once, for the neediest cell of the condition
    cost = total_cost(clean)
    assert cost.arm_runs == sum(p.seeds_detect - 5 for p in clean)
    assert cost.baseline_runs == max(0.0, max(p.seeds_detect for p in clean) - 7)
    expected = sum((p.seeds_detect - 5) * p.arm_seconds for p in clean) + cost.baseline_runs * 2.0
    assert cost.minutes == pytest.approx(expected / 60)
    # a run serves every metric: adding the ECE cells of the same arm x condition charges the max only
    both = [p for p in result.prices.values() if p.condition == "clean"]
    every = total_cost(both)
    per_arm = {}
    for p in both:
        per_arm[p.arm] = max(per_arm.get(p.arm, 0.0), p.seeds_detect)
    assert every.arm_runs == sum(n - 5 for n in per_arm.values())
    # growing the study file: every arm (the baseline too) under every condition up to K stored runs
    grown = grow_cost(data, 9)
    assert (grown.arm_runs, grown.baseline_runs) == (4 * 2 + 4 * 2, 2 + 4)
    assert grown.minutes == pytest.approx((4 * 1 + 4 * 7) * 2 / 60 + (2 + 4) * 2 / 60)


def test_no_timings_give_time_unknown():
    spec = make_spec(5)
    data = make_data(spec)
    bare = StudyData(
        data.directory,
        spec,
        data.conditions,
        data.arms,
        tuple(RunResult(**{**r.__dict__, "timings": {}}) for r in data.results),
    )
    result = study_verdict(bare)
    assert result.prices
    price = next(iter(result.prices.values()))
    assert math.isnan(price.arm_seconds)
    assert math.isnan(price.minutes(price.seeds_detect)) or price.seeds_detect == price.seeds
    row = next(r for r in verdict_rows(result)["primary"] if r["needs"])
    assert "time unknown" in row["needs"]


def test_target_override_and_designs():
    data = make_data(make_spec(5), seed=3)
    base = study_verdict(data)
    loose = study_verdict(data, target_mde=4.0)
    assert loose.targets["test_acc"] == 4.0
    assert loose.targets["test_ece"] == base.targets["test_ece"]  # the override is the primary's
    for key, price in base.prices.items():
        if price.role == "primary":
            assert loose.prices[key].seeds_detect <= price.seeds_detect
            assert loose.prices[key].seeds_equivalence == price.seeds_equivalence
    with pytest.raises(Exception, match="target_mde must be a finite number > 0"):
        study_verdict(data, target_mde=0.0)
    # a fixed study also prices the until-settled design (its anytime-valid tests), a sequential one not
    assert base.settle_prices
    assert all(p.role == "primary" for p in base.settle_prices.values())
    for key, price in base.settle_prices.items():
        if key in base.prices:
            assert price.seeds_detect >= base.prices[key].seeds_detect
    sequential = study_verdict(make_data(make_spec(5), seed=3, design={"method": "until settled"}))
    assert sequential.design == "sequential"
    assert not sequential.settle_prices
    assert any("until-settled" in s for s in cost_sentences(base))


def test_csv_rows_are_the_verdict_rows():
    result = study_verdict(make_data(make_spec(5), seed=1))
    rows = verdict_rows(result)
    records = csv_records(result)
    assert len(records) == len(rows["primary"]) + len(rows["secondary"]) == 2 * 2 * 2
    assert [r["values"] for r in rows["primary"]] == records[: len(rows["primary"])]
    by_key = {(c.condition, c.arm, c.metric.short): c for c in result.comparisons}
    for record in records:
        assert tuple(record) == CSV_COLUMNS
        c = by_key[(record["condition"], record["technique"], record["metric"])]
        assert record["role"] == ("primary" if record["metric"] == "accuracy" else "secondary")
        assert record["estimate"] == pytest.approx(c.mean_diff * c.metric.scale, rel=1e-5)
        assert record["low"] == pytest.approx(c.ci_low * c.metric.scale, rel=1e-5)
        assert record["mde"] == pytest.approx(c.mde * c.metric.scale, rel=1e-5)
        assert record["p_adjusted"] == pytest.approx(c.p_adjusted, rel=1e-5)
        assert record["verdict"] == c.verdict
        assert (record["seeds_needed"] != "") == (c.verdict == "inconclusive")
        if c.verdict == "inconclusive":
            price = result.prices[(c.condition, c.arm, c.metric.key)]
            assert record["seeds_needed"] == int(price.seeds_detect) >= record["seeds"]
    buffer = io.StringIO()
    assert write_csv(result, buffer) == len(records)
    parsed = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert tuple(parsed[0]) == CSV_COLUMNS
    assert [r["verdict"] for r in parsed] == [r["verdict"] for r in records]


def test_csv_floats_read_back_to_the_exact_stored_numbers():
    result = study_verdict(make_data(make_spec(5), seed=1))
    buffer = io.StringIO()
    write_csv(result, buffer)
    parsed = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    by_key = {(c.condition, c.arm, c.metric.short): c for c in result.comparisons}
    long = 0
    for row in parsed:
        c = by_key[(row["condition"], row["technique"], row["metric"])]
        scale = c.metric.scale
        assert float(row["estimate"]) == c.mean_diff * scale  # exactly: repr round-trips
        assert (float(row["low"]), float(row["high"])) == (c.ci_low * scale, c.ci_high * scale)
        assert float(row["mde"]) == c.mde * scale
        assert float(row["p_adjusted"]) == c.p_adjusted
        long += len(row["estimate"].lstrip("-").replace(".", "").lstrip("0")) > 6
    assert long > len(parsed) // 2  # more than the 6 significant digits the CSV used to keep
    # the terminal and the report keep their rounding
    row = verdict_rows(result)["primary"][0]
    assert row["diff"].count(".") == 1
    assert len(row["diff"].split(".")[1].split()[0]) <= 2


def test_arm_runs_are_counted_from_the_arms_stored_runs():
    # under clean labels the baseline has 3 stored seeds, each arm 5: 3 pairs, and the arms' seeds 3
    # and 4 need only a baseline run each to pair
    result = study_verdict(make_data(make_spec(5), seeds={("ce", 0): 3}, seed=0))
    clean = {k: p for k, p in result.prices.items() if k[0] == "clean"}
    assert clean
    for price in clean.values():
        assert (price.seeds, price.arm_stored, price.baseline_stored) == (3, 5, 3)
        need = price.seeds_detect
        assert price.runs(need) == (max(0.0, need - 5), need - 3)  # was (need - 3, need - 3)
        assert price.runs(4.0) == (0.0, 1.0)  # seed 3 of the arm: one baseline run
    a = clean[("clean", "a", "test_acc")]
    cost = total_cost([a])
    assert cost.arm_runs == a.seeds_detect - 5
    assert cost.baseline_runs == a.seeds_detect - 3


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 8),
    arm_only=st.integers(0, 6),
    base_only=st.integers(0, 6),
    target=st.integers(0, 30),
)
def test_new_runs_pair_up_to_the_target_with_the_fewest_runs(n, arm_only, base_only, target):
    a, b = n + arm_only, n + base_only
    price = CellPrice("c", "x", "ce", "acc", "primary", n, 1.0, 0.01, 1.0, 5.0, 0.8, 5.0, 0.8, a, b, 1.0, 1.0)
    arm, base = price.runs(float(target))
    need = max(0, target - n)
    # each stored unpaired seed pairs with one run of the other arm; a fresh seed needs one of each
    assert arm + base == need + max(0, need - arm_only - base_only)  # the fewest runs that make them
    assert arm >= max(0, target - a)
    assert base >= max(0, target - b)
    pairs = n + min(arm_only, base) + min(base_only, arm) + max(0, min(arm - base_only, base - arm_only))
    assert pairs >= target
    if need >= arm_only + base_only:  # enough new pairs to use every unpaired seed
        assert (arm, base) == (max(0, target - a), max(0, target - b))
