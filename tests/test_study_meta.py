"""Pooling study directories (smoothflip.study.meta, `smoothflip meta`): keys by what was run, the
tables, the report, and bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from smoothflip.analysis.meta import random_effects
from smoothflip.cli import app
from smoothflip.errors import SmoothflipError
from smoothflip.study.conditions import study_conditions
from smoothflip.study.grid import arm_dict
from smoothflip.study.meta import meta
from smoothflip.study.results import load_study_data
from smoothflip.study.spec import loads_study
from smoothflip.study.spec.toml import dumps_study
from smoothflip.study.store import RunResult, Store

runner = CliRunner()
METRIC_KEYS = ("test_acc", "test_nll", "test_ece", "test_ece_ts", "test_brier")


def study_text(name: str, arms: list[tuple[str, str, dict[str, Any]]], conditions: str, seeds: int) -> str:
    lines = [f"name = {json.dumps(name)}", f"seeds = {seeds}", "[data]", 'source = "digits"', "[model]"]
    lines += ['name = "logistic"', "[train]", "epochs = 3"]
    for arm, loss, params in arms:
        lines += ["[[arms]]", f"name = {json.dumps(arm)}", f"loss = {json.dumps(loss)}"]
        lines += [f"{k} = {v!r}" for k, v in params.items()]
    return "\n".join(lines) + "\n" + conditions


SYMMETRIC = '[[conditions]]\nnoise = "symmetric"\nrates = [0.0, 0.2]\n'


def make_study(
    directory: Path,
    *,
    name: str,
    arms: list[tuple[str, str, dict[str, Any]]],
    effects: dict[str, float],
    seed: int,
    seeds: int = 5,
    conditions: str = SYMMETRIC,
    noise: float = 0.01,
    constant: tuple[str, ...] = (),
    examples: int | None = None,
) -> Path:
    """A study directory with synthetic runs (no training): each arm's accuracy is the baseline's on the
    same seed plus ``effects[arm]`` plus noise (``constant`` arms: no noise); ``examples``: every
    metric is a count of that many test examples (a multiple of ``1 / examples``), as accuracy is."""
    spec = loads_study(study_text(name, arms, conditions, seeds))
    rng = np.random.default_rng(seed)
    results = []
    with Store.open(directory) as store:
        store.claim(
            name=spec.name,
            identity=f"synthetic-{name}",
            study_json=spec.to_json(),
            study_toml=dumps_study(spec),
        )
        for condition in study_conditions(spec):
            for s in spec.seeds:
                base = {k: 0.5 + rng.normal(0, 0.05) for k in METRIC_KEYS}
                for arm in spec.arms:
                    shift = effects.get(arm.name, 0.0)
                    jitter = 0.0 if arm.name in constant or arm.name == spec.baseline else noise
                    values = {k: base[k] + shift + rng.normal(0, jitter) for k in METRIC_KEYS}
                    if examples:
                        values = {k: round(v * examples) / examples for k, v in values.items()}
                    config = {"arm": arm_dict(arm), "condition": condition.to_dict(), "seed": s}
                    metrics = {"selected": values, "last": values, "diverged": False}
                    run_id = f"{name}-{arm.name}-{condition.condition_id}-{s}"
                    results.append(
                        RunResult(
                            run_id,
                            arm.name,
                            condition.label,
                            condition.noise,
                            condition.rate,
                            s,
                            config,
                            metrics,
                            {},
                        )
                    )
        store.write_pack(results)
    return directory


CE = ("ce", "ce", {})
CP = ("cp-0.5", "confidence_penalty", {"beta": 0.5})


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> list[Path]:
    """Three studies: label smoothing 0.1 under three names, one of them also with eps 0.2 (same name)."""
    root = tmp_path_factory.mktemp("meta")
    a = make_study(
        root / "a",
        name="alpha",
        seed=1,
        effects={"ls-0.1": 0.02, "cp-0.5": 0.0, "ls-0.2": -0.01},
        arms=[CE, ("ls-0.1", "smoothed_ce", {"eps": 0.1}), CP, ("ls-0.2", "smoothed_ce", {"eps": 0.2})],
    )
    b = make_study(
        root / "b",
        name="beta",
        seed=2,
        effects={"smooth": 0.03, "cp": 0.0},
        arms=[CE, ("smooth", "smoothed_ce", {"eps": 0.1}), ("cp", "confidence_penalty", {"beta": 0.5})],
    )
    # here "ls-0.1" smooths with eps 0.2: the name matches, the arm does not
    c = make_study(
        root / "c",
        name="gamma",
        seed=3,
        effects={"uniform": 0.025, "ls-0.1": -0.01},
        seeds=6,
        arms=[
            ("base", "ce", {}),
            ("uniform", "smoothed_ce", {"eps": 0.1}),
            ("ls-0.1", "smoothed_ce", {"eps": 0.2}),
        ],
    )
    return [a, b, c]


def keys_of(result, metric="test_acc", condition="clean"):
    return {k.arm_definition: k for k in result.keys if k.metric.key == metric and k.condition == condition}


def test_arms_match_by_definition_not_by_name(three):
    result = meta(three)
    clean = keys_of(result)
    ls = clean["smoothed_ce eps=0.1"]
    assert ls.k == 3
    assert set(ls.arm_names) == {"ls-0.1", "smooth", "uniform"}
    assert ls.arm == "ls-0.1"  # the first study's name
    # eps 0.2 under two names (ls-0.2 in alpha, ls-0.1 in gamma) is one key of k = 2, apart from eps 0.1
    big = clean["smoothed_ce eps=0.2"]
    assert big.k == 2
    assert set(big.arm_names) == {"ls-0.2", "ls-0.1"}
    assert clean["confidence_penalty beta=0.5"].k == 2  # gamma has no confidence penalty: not imputed
    # the baseline is named "base" in gamma and "ce" elsewhere: the same arm
    assert {e.baseline for e in ls.effects} == {"ce", "base"}
    # the pooled estimate is near the planted +2.5 points
    assert ls.result.estimate == pytest.approx(0.025, abs=0.01)


def test_condition_ids_are_equal_across_studies_for_the_same_definition(three):
    ids = [{c.label: c.condition_id for c in load_study_data(d).conditions} for d in three]
    assert ids[0] == ids[1] == ids[2]
    result = meta(three)
    assert {k.condition for k in result.keys} == {"clean", "symmetric 20%"}


def test_pooled_csv_equals_reml_hksj_from_its_own_studies_csv(three, tmp_path):
    out = tmp_path / "pooled"
    result = runner.invoke(app, ["meta", *map(str, three), "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    assert "smoothed_ce" in result.stdout or "ls-0.1" in result.stdout
    pooled = pd.read_csv(out / "pooled.csv")
    studies = pd.read_csv(out / "studies.csv")
    for column in (
        "arm",
        "condition",
        "metric",
        "k",
        "estimate",
        "ci_low",
        "ci_high",
        "pi_low",
        "pi_high",
        "tau2",
        "i2",
        "verdict",
    ):
        assert column in pooled.columns
    for column in ("study", "arm", "condition", "metric", "n_seeds", "estimate", "se", "weight"):
        assert column in studies.columns
    checked = 0
    for key, rows in studies.groupby("key", sort=False):
        row = pooled.loc[pooled.key == key].iloc[0]
        again = random_effects(
            rows.estimate.to_numpy(), rows.variance.to_numpy(), method="reml", interval="hksj"
        )
        assert row.k == len(rows) == again.k
        assert row.estimate == pytest.approx(again.estimate, rel=1e-12, abs=1e-15)
        assert (row.ci_low, row.ci_high) == pytest.approx(again.ci, rel=1e-12, abs=1e-15)
        assert row.tau2 == pytest.approx(again.tau2, rel=1e-9, abs=1e-15)
        assert rows.weight.to_numpy() == pytest.approx(np.array(again.weights), rel=1e-9)
        if again.pi is not None:
            assert (row.pi_low, row.pi_high) == pytest.approx(again.pi, rel=1e-12)
        else:
            assert math.isnan(row.pi_low)
        assert rows.se.to_numpy() ** 2 == pytest.approx(rows.variance.to_numpy(), rel=1e-12)
        checked += 1
    assert checked == len(pooled) > 10
    assert set(pooled.verdict) <= {"helps", "hurts", "equivalent", "inconclusive", "no verdict"}
    assert (pooled.loc[pooled.k == 1, "verdict"] == "no verdict").all()
    assert not (out / "report").exists()


def test_level_alpha_and_power_options(three, tmp_path):
    args = ["meta", *map(str, three), "--no-report", "--level", "0.9", "--alpha", "0.1", "--power", "0.9"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "90%)" in result.stdout
    # the terminal says how the verdicts are read (not from the interval it shows)
    assert "verdicts: a claim (error rate 0.1) needs the modified-HKSJ" in " ".join(result.stdout.split())
    pooled = pd.read_csv(tmp_path / "o" / "pooled.csv")
    studies = pd.read_csv(tmp_path / "o" / "studies.csv")
    assert (pooled.level == 0.9).all()
    row = pooled.loc[pooled.k == 3].iloc[0]
    rows = studies[studies.key == row.key]
    again = random_effects(rows.estimate.to_numpy(), rows.variance.to_numpy(), level=0.9)
    assert (row.ci_low, row.ci_high) == pytest.approx(again.ci, rel=1e-12)
    default = meta(three, alpha=0.1).pooled_frame().set_index("key")
    tested = pooled[pooled.k >= 2].set_index("key")
    assert (tested.mde > default.loc[tested.index, "mde"]).all()  # power 0.9 needs larger effects


def test_primary_family_is_holm_and_secondary_bh(tmp_path):
    # label smoothing +3 points in every study, the confidence penalty exactly as good as CE (seed noise
    # 0.2 points): with 4 studies the first helps and the second is equivalent within the 0.5-point margin
    dirs = [
        make_study(
            tmp_path / f"s{i}",
            name=f"s{i}",
            seed=20 + i,
            noise=0.002,
            effects={"ls": 0.03 + 0.002 * i, "cp": 0.0},
            arms=[CE, ("ls", "smoothed_ce", {"eps": 0.1}), ("cp", "confidence_penalty", {"beta": 0.5})],
        )
        for i in range(4)
    ]
    result = meta(dirs)
    primary = [k for k in result.keys if k.role == "primary"]
    assert {k.metric.key for k in primary} == {"test_acc"}
    assert len(primary) == 4
    clean = keys_of(result)
    ls, cp = clean["smoothed_ce eps=0.1"], clean["confidence_penalty beta=0.5"]
    assert (ls.verdict, cp.verdict) == ("helps", "equivalent")
    assert ls.verdict_low > 0
    assert cp.verdict_low > -0.005
    assert cp.verdict_high < 0.005
    # the verdict interval is simultaneous over the 4 keys of the family, so it is wider than the 95% one
    assert ls.verdict_low < ls.result.ci[0]
    assert all(k.mde < math.inf for k in primary)
    assert all(k.role == "secondary" for k in result.keys if k.metric.key != "test_acc")
    # NLL is lower-is-better: the same planted shift there "hurts"
    nll = next(k for k in result.keys if k.metric.key == "test_nll" and k.arm == "ls" and k.noise == "none")
    assert nll.verdict == "hurts"


def test_zero_variance_is_floored_and_flagged(tmp_path):
    dirs = [
        make_study(
            tmp_path / name,
            name=name,
            seed=i,
            effects={"ls": 0.01},
            constant=("ls",) if i == 0 else (),
            arms=[CE, ("ls", "smoothed_ce", {"eps": 0.1})],
        )
        for i, name in enumerate(("one", "two", "three"))
    ]
    result = meta(dirs, out=tmp_path / "out", report=False)
    ls = keys_of(result)["smoothed_ce eps=0.1"]
    floored = [e for e in ls.effects if e.floored]
    assert len(floored) == 1
    others = [e.variance for e in ls.effects if not e.floored]
    assert floored[0].variance == pytest.approx(min(others))
    rows = pd.read_csv(tmp_path / "out" / "studies.csv")
    assert rows.variance_floored.sum() >= 1
    assert any("zero variance" in n for n in result.notes)


def test_differences_equal_up_to_round_off_count_as_zero_variance(tmp_path):
    # study "one": ls gains exactly one of 171 test examples on every seed; (k + 1) / 171 - k / 171
    # differs between seeds by ~1e-16, a variance of ~1e-33 that must not weigh 1e30 times the others
    dirs = [
        make_study(
            tmp_path / name,
            name=name,
            seed=i,
            effects={"ls": 1 / 171},
            constant=("ls",) if i == 0 else (),
            examples=171,
            arms=[CE, ("ls", "smoothed_ce", {"eps": 0.1})],
        )
        for i, name in enumerate(("one", "two", "three"))
    ]
    ls = keys_of(meta(dirs))["smoothed_ce eps=0.1"]
    one = ls.effects[0]
    assert np.ptp(one.diffs) > 0  # the round-off is there ...
    assert one.floored  # ... and read as every seed agreeing
    assert one.variance == pytest.approx(min(e.variance for e in ls.effects[1:]))
    assert max(ls.result.weights) < 0.9


def test_keys_that_would_print_alike_are_labelled_by_definition(tmp_path):
    # "ls-0.1" smooths with eps 0.1 in p and 0.2 in q (against baselines named apart: "ce", "plain");
    # in r the baseline is named "ce" but is GCE: its "cp" is another key than p's "cp"
    cp = ("cp", "confidence_penalty", {"beta": 0.5})
    specs = {
        "p": [CE, ("ls-0.1", "smoothed_ce", {"eps": 0.1}), cp],
        "q": [("plain", "ce", {}), ("ls-0.1", "smoothed_ce", {"eps": 0.2}), cp],
        "r": [("ce", "gce", {"q": 0.7}), cp],
    }
    dirs = [
        make_study(tmp_path / name, name=name, seed=i, effects={}, arms=arms)
        for i, (name, arms) in enumerate(specs.items())
    ]
    out = tmp_path / "out"
    result = runner.invoke(app, ["meta", *map(str, dirs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    pooled = pd.read_csv(out / "pooled.csv")
    for _, rows in pooled.groupby(["metric", "condition"]):
        assert rows.arm.is_unique, rows.arm.tolist()
    clean = pooled[(pooled.metric == "test_acc") & (pooled.condition == "clean")]
    assert set(clean.arm) == {
        "ls-0.1 (smoothed_ce eps=0.1)",
        "ls-0.1 (smoothed_ce eps=0.2)",
        "cp vs ce z_loss=0.0",  # arm_words: a technique's main parameter is always shown
        "cp vs gce q=0.7",
    }
    assert set(clean.baseline_definition) == {"ce z_loss=0.0", "gce q=0.7"}
    assert "cp vs gce q=0.7" in result.stdout
    md = (out / "report" / "report.md").read_text()
    assert "(also" not in md  # every arm has one name here: its own is not repeated as another


def test_conditions_that_would_print_alike_are_labelled_apart(tmp_path):
    # "asymmetric 20%" flips 2 -> 7 in two studies and 3 -> 8 in two others: two keys, two labels
    def asymmetric(mapping: str) -> str:
        return f'[[conditions]]\nnoise = "asymmetric"\nrates = [0.0, 0.2]\nmapping = {mapping}\n'

    dirs = [
        make_study(
            tmp_path / f"s{i}",
            name=f"s{i}",
            seed=i,
            effects={"ls": 0.01},
            arms=[CE, ("ls", "smoothed_ce", {"eps": 0.1})],
            conditions=asymmetric("{2 = 7}" if i < 2 else "{3 = 8}"),
        )
        for i in range(4)
    ]
    result = meta(dirs)
    acc = [k for k in result.keys if k.metric.key == "test_acc"]
    labels = [k.condition for k in acc]
    assert len(acc) == 3  # clean (k = 4) and the two asymmetric conditions (k = 2 each)
    assert len(set(labels)) == 3, labels
    assert sorted(k.k for k in acc) == [2, 2, 4]
    assert all(label.startswith("asymmetric 20%") for label in labels if label != "clean")


def test_other_methods_are_named_as_they_were_run(three, tmp_path):
    out = tmp_path / "dl"
    result = runner.invoke(
        app, ["meta", *map(str, three), "--out", str(out), "--method", "dl", "--interval", "wald"]
    )
    assert result.exit_code == 0, result.output
    assert "(DerSimonian-Laird + Wald 95%)" in " ".join(result.stdout.split())
    md = (out / "report" / "report.md").read_text()
    assert "REML" not in md  # no caption, table or sentence claims the default reading
    assert "interval: DerSimonian-Laird + Wald." in md
    assert "| estimate [Wald] |" in md
    assert "random-effects estimate (DerSimonian-Laird) with its 95% Wald interval" in md


def test_report_is_self_contained_and_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    dirs = [
        make_study(
            tmp_path / f"s{i}",
            name=f"{evil} {i}",
            seed=i,
            effects={"ls": 0.01},
            arms=[CE, ("ls<b>", "smoothed_ce", {"eps": 0.1})],
        )
        for i in range(3)
    ]
    meta(dirs, out=tmp_path / "out")
    html = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "Content-Security-Policy" in html
    assert "default-src 'none'" in html
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert 'src="http' not in html
    assert "data:image/png;base64," in html
    assert "conditional on these 3 tasks" in html
    md = (tmp_path / "out" / "report" / "report.md").read_text()
    assert "<script>" not in md
    assert "&lt;b&gt;" in md
    figures = {p.name for p in (tmp_path / "out" / "report" / "figures").glob("*.png")}
    assert {"pooled.png", "clean.png", "forest_01.png"} <= figures


def assert_one_line_error(result, match: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert match in lines[0], lines[0]


def test_bad_input_is_one_line_and_writes_nothing(three, tmp_path):
    out = tmp_path / "never"
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([*three[:2], empty], "not a study directory"),
        ([three[0], three[1], three[0]], "given twice"),
        ([three[0], Path(str(three[0]) + "/."), three[1]], "given twice"),
        ([three[0]], "it needs at least two, got only"),
    ]
    damaged = tmp_path / "damaged"
    shutil.copytree(three[2], damaged)
    (damaged / "smoothflip.sqlite").write_bytes(b"this is not sqlite at all" * 100)
    for suffix in ("-wal", "-shm"):
        (damaged / f"smoothflip.sqlite{suffix}").unlink(missing_ok=True)
    cases.append(([three[0], damaged], "smoothflip.sqlite"))
    lonely = make_study(
        tmp_path / "lonely", name="lonely", seed=9, effects={}, arms=[CE, ("gce", "gce", {"q": 0.7})]
    )
    cases.append(([three[0], lonely], "shared by two"))
    for dirs, match in cases:
        result = runner.invoke(app, ["meta", *map(str, dirs), "--out", str(out)])
        assert_one_line_error(result, match)
        assert not out.exists()
    before = sorted(p.name for p in three[1].iterdir())
    result = runner.invoke(app, ["meta", *map(str, three), "--out", str(three[1])])
    assert_one_line_error(result, "is a study directory")
    assert sorted(p.name for p in three[1].iterdir()) == before


def test_bad_options_are_one_line_and_write_nothing(three, tmp_path):
    out = tmp_path / "never"
    for option, value in (("--method", "ml"), ("--interval", "z"), ("--at", "best")):
        result = runner.invoke(app, ["meta", *map(str, three), "--out", str(out), option, value])
        assert_one_line_error(result, f"got {value!r}")
        assert not out.exists()
    with pytest.raises(SmoothflipError, match=r"meta: alpha must be in \(0, 0.5\), got 0.7"):
        meta(three, alpha=0.7)


def test_different_primary_metrics_need_a_choice(tmp_path, three):
    other = make_study(
        tmp_path / "ece",
        name="ece-first",
        seed=5,
        effects={"ls": 0.01},
        arms=[CE, ("ls", "smoothed_ce", {"eps": 0.1})],
        conditions=SYMMETRIC + '[analysis]\nprimary = "ece"\n',
    )
    result = runner.invoke(app, ["meta", str(three[0]), str(other), "--out", str(tmp_path / "o")])
    assert_one_line_error(result, "different primary metrics")
    chosen = meta([three[0], other], primary="accuracy")
    assert chosen.primary.key == "test_acc"


def test_the_facade_sf_meta_is_the_study_layer_meta(three):
    import smoothflip as sf

    assert sf.meta is meta
    result = sf.meta(three)
    assert isinstance(result, sf.MetaAnalysis)
    assert keys_of(result)["smoothed_ce eps=0.1"].k == 3
