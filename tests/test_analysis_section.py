"""The study file's ``[analysis]`` section: validation, defaults, the resolved file, and that it never
enters a study's identity or a run id."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from smoothflip.errors import SpecError
from smoothflip.study.grid import build_grid
from smoothflip.study.kinds import get_kind
from smoothflip.study.spec import dumps_study, loads_study
from smoothflip.study.spec.analysis import display_margin, primary_metric, raw_margin

BASE = textwrap.dedent(
    """
    name = "a"
    seeds = 2
    [data]
    source = "digits"
    [[arms]]
    name = "ce"
    loss = "ce"
    [[arms]]
    name = "ls"
    loss = "smoothed_ce"
    """
)


def test_defaults_are_accuracy_with_documented_margins():
    spec = loads_study(BASE)
    metrics = get_kind(spec.kind).metrics
    assert primary_metric(spec.analysis, metrics).key == "test_acc"
    assert (spec.analysis.alpha, spec.analysis.power) == (0.05, 0.8)
    margins = {m.short: display_margin(spec.analysis, m) for m in metrics}
    assert margins["accuracy"] == 0.5
    assert margins["ece"] == 0.005
    assert margins["classwise_ece"] == 0.002
    assert raw_margin(spec.analysis, metrics[0]) == pytest.approx(0.005)  # 0.5 points


def test_given_values_and_the_resolved_file():
    spec = loads_study(
        BASE + '[analysis]\nprimary = "eaurc"\nalpha = 0.1\n[analysis.margin]\naccuracy = 1.0\n'
    )
    metrics = get_kind(spec.kind).metrics
    assert primary_metric(spec.analysis, metrics).key == "test_eaurc"
    assert spec.analysis.alpha == 0.1
    assert display_margin(spec.analysis, metrics[0]) == 1.0
    again = loads_study(dumps_study(spec))  # every default written out: the same effective values
    assert (again.analysis.primary, again.analysis.alpha, again.analysis.power) == ("test_eaurc", 0.1, 0.8)
    assert [display_margin(again.analysis, m) for m in metrics] == [
        display_margin(spec.analysis, m) for m in metrics
    ]
    assert again.to_dict() == spec.to_dict()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('primary = "f1"', 'analysis.primary = "f1": must name one of this study\'s metrics: "accuracy"'),
        ("alpha = 0.7", "analysis.alpha = 0.7: must be < 0.5"),
        ("power = 1", "analysis.power = 1: must be < 1"),
        ("design = 1", "analysis.design: unknown key"),
        ("[analysis.margin]\nf1 = 1", 'analysis.margin.f1 = "f1": must name one of this study\'s metrics'),
        ("[analysis.margin]\naccuracy = -1", "analysis.margin.accuracy = -1: must be > 0"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(section, message):
    with pytest.raises(SpecError) as err:
        loads_study(BASE + "[analysis]\n" + section + "\n")
    assert message.replace('"accuracy"', "'accuracy'") in str(err.value) or message in str(err.value)


def test_analysis_never_changes_identities_or_run_ids():
    plain = loads_study(BASE)
    tuned = loads_study(BASE + '[analysis]\nprimary = "ece"\nalpha = 0.01\n[analysis.margin]\nece = 0.01\n')
    assert plain.to_dict() == tuned.to_dict()
    assert "analysis" not in plain.to_dict()
    assert [r.run_id for r in build_grid(plain, "x")] == [r.run_id for r in build_grid(tuned, "x")]


DEMO_STUDY_HASH = "66b5c17296a6f41e"  # sha256 of the demo's to_json() before [analysis] existed

# The demo study as it was then (wave 2; the demo has since grown to settle its clean-label cells).
WAVE2_DEMO = (Path(__file__).parent / "fixtures" / "demo_wave2.toml").read_text(encoding="utf-8")


def test_the_demo_run_ids_are_those_of_before():
    """The demo's run ids as the code before [analysis] computed them (dataset fingerprint fixed here;
    the first three ids and a hash of all 90 were computed with that code)."""
    text = WAVE2_DEMO
    spec = loads_study(text)
    with_analysis = loads_study(text + '\n[analysis]\nprimary = "accuracy"\n')
    ids = [r.run_id for r in build_grid(spec, "fingerprint")]
    assert ids == [r.run_id for r in build_grid(with_analysis, "fingerprint")]
    assert len(set(ids)) == 90
    assert ids[:3] == ["831e3aed99884afe", "c21408071a850d77", "7edc4c44ae50aae1"]
    assert hashlib.sha256("".join(ids).encode()).hexdigest()[:16] == "c41e764bae509c03"
    assert hashlib.sha256(spec.to_json().encode()).hexdigest()[:16] == DEMO_STUDY_HASH


def test_language_model_studies_may_choose_kl():
    text = textwrap.dedent(
        """
        kind = "lm"
        seeds = 2
        [data]
        source = "synthetic_language"
        [[arms]]
        name = "ce"
        loss = "ce"
        [analysis]
        primary = "kl"
        """
    )
    spec = loads_study(text)
    assert primary_metric(spec.analysis, get_kind("lm").metrics).key == "test_kl"
