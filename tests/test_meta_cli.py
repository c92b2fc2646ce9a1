"""`smoothflip meta` follow-ups: keys without any variance get no verdict, clean conditions are read
from their definition, and `--out` inside a study directory is refused."""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import pytest

from smoothflip.analysis.meta_family import pooled_verdicts
from smoothflip.cli import app
from smoothflip.errors import SmoothflipError
from smoothflip.report.meta import meta_figures
from smoothflip.study.meta import meta
from test_study_meta import CE, assert_one_line_error, keys_of, make_study, runner

LS = ("ls", "smoothed_ce", {"eps": 0.1})
CP = ("cp", "confidence_penalty", {"beta": 0.5})


def test_a_key_whose_studies_all_agree_at_every_seed_gets_no_verdict(tmp_path):
    # "ls" gains exactly one point on every seed of every study: no variance anywhere
    dirs = [
        make_study(
            tmp_path / name,
            name=name,
            seed=i,
            effects={"ls": 0.01, "cp": 0.02},
            constant=("ls",),
            arms=[CE, LS, CP],
        )
        for i, name in enumerate(("one", "two", "three"))
    ]
    out = tmp_path / "out"
    cli = runner.invoke(app, ["meta", *map(str, dirs), "--out", str(out), "--no-report"])
    assert cli.exit_code == 0, cli.output
    result = meta(dirs)
    ls, cp = (keys_of(result)[d] for d in ("smoothed_ce eps=0.1", "confidence_penalty beta=0.5"))
    assert ls.k == 3
    assert ls.seeds_agree
    assert not cp.seeds_agree
    assert ls.verdict == "no verdict"  # not "helps" on a zero-width interval
    assert ls.mde == math.inf
    assert math.isnan(ls.p_adjusted)
    assert math.isnan(ls.verdict_low)
    assert any("identical paired differences at every seed" in n for n in ls.result.notes)
    agree = [k for k in result.keys if k.seeds_agree]
    assert {k.arm for k in agree} == {"ls"}
    assert len(agree) == 2 * 5  # two conditions, five metrics: every metric of "ls" is constant
    assert all(k.verdict == "no verdict" for k in agree)
    assert f"{len(agree)} key(s): every study had identical paired differences" in " ".join(result.notes)
    assert not any("floored at the smallest positive" in n for n in result.notes)
    # such keys are not counted in the family: the others are read as a family without them
    primary = [k for k in result.keys if k.role == "primary"]
    tested = [k for k in primary if not k.seeds_agree]
    again = pooled_verdicts([k.result for k in tested], higher_is_better=True, margin=0.005)
    assert [k.p_adjusted for k in tested] == pytest.approx(again.p_adjusted.tolist(), rel=1e-12)
    assert [k.verdict for k in tested] == again.verdict.tolist()
    pooled = pd.read_csv(out / "pooled.csv")
    rows = pooled[pooled.key == ls.key].iloc[0]
    assert rows.verdict == "no verdict"
    assert "identical paired differences" in rows.notes
    assert "identical paired differences at every seed" in " ".join(cli.stdout.split())


def test_clean_keys_are_read_from_the_condition_definition(tmp_path):
    dirs = [
        make_study(tmp_path / f"s{i}", name=f"s{i}", seed=i, effects={"ls": 0.01}, arms=[CE, LS])
        for i in range(3)
    ]
    result = meta(dirs)
    clean = {k.condition: k.is_clean for k in result.keys}
    assert clean == {"clean": True, "symmetric 20%": False}
    assert all(k.definition["noise"] == ("none" if k.is_clean else "symmetric") for k in result.keys)
    # the report's correct-labels forest follows the definition, not the display fields
    renamed = replace(result, keys=tuple(replace(k, noise="?", condition=f"c-{k.rate}") for k in result.keys))
    figure = next(f for f in meta_figures(renamed) if f.name == "clean")
    assert figure.png is not None, figure.note


def test_out_inside_a_study_directory_is_refused_and_nothing_is_written(tmp_path):
    dirs = [
        make_study(tmp_path / f"s{i}", name=f"s{i}", seed=i, effects={"ls": 0.01}, arms=[CE, LS])
        for i in range(2)
    ]
    (dirs[0] / "report").mkdir()  # a study report written by `smoothflip report`
    (dirs[0] / "report" / "index.html").write_text("the study's report")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for out in (dirs[0] / "report", dirs[0] / "pooled" / "deeper", dirs[1] / "." / "meta"):
        result = runner.invoke(app, ["meta", *map(str, dirs), "--out", str(out)])
        assert_one_line_error(result, "is inside the study directory")
        assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    with pytest.raises(SmoothflipError, match="is inside the study directory"):
        meta(dirs, out=dirs[1] / "meta")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    # beside the studies it is fine
    assert runner.invoke(app, ["meta", *map(str, dirs), "--out", str(tmp_path / "pooled")]).exit_code == 0
