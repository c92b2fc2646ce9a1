"""Built-in findings checked against a study's verdicts: "label smoothing hurts selective
classification" (Xia et al., ICLR 2025) and "label smoothing is accuracy-neutral with clean labels"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smoothflip.report.findings import FINDINGS, check_findings, label_smoothing_arms
from smoothflip.study.conditions import study_conditions
from smoothflip.study.results import StudyData
from smoothflip.study.spec import loads_study
from smoothflip.study.store import RunResult
from smoothflip.study.verdict import study_verdict

STUDY = """
name = "findings"
seeds = 8
[data]
source = "digits"
[model]
name = "mlp"
[[arms]]
name = "ce"
loss = "ce"
[[arms]]
name = "ls-0.1"
loss = "smoothed_ce"
eps = 0.1
[[arms]]
name = "nls"
loss = "smoothed_ce"
eps = -0.2
[[arms]]
name = "gce"
loss = "gce"
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.3]
"""


def study_data(eaurc_shift: float, acc_shift: float = 0.0, *, seed: int = 0) -> StudyData:
    spec = loads_study(STUDY)
    conditions = tuple(study_conditions(spec))
    rng = np.random.default_rng(seed)
    runs = []
    for c in conditions:
        shared_acc = rng.normal(0.9, 0.02, 8)
        shared_eaurc = rng.normal(0.02, 0.004, 8)
        for arm in spec.arms:
            ls = arm.name == "ls-0.1"
            for s in range(8):
                metrics = {
                    "selected": {
                        "test_acc": shared_acc[s] + (acc_shift if ls else 0.0) + rng.normal(0, 0.0005),
                        "test_eaurc": shared_eaurc[s] + (eaurc_shift if ls else 0.0) + rng.normal(0, 0.0005),
                    }
                }
                runs.append(
                    RunResult(
                        f"{arm.name}{c.label}{s}",
                        arm.name,
                        c.label,
                        c.noise,
                        c.rate,
                        s,
                        {},
                        metrics,
                        {},
                        condition_id=c.condition_id,
                    )
                )
    arms = tuple(a.name for a in spec.arms)
    return StudyData(Path("."), spec, conditions, arms, tuple(runs))


def statuses(data: StudyData) -> dict[str, str]:
    return {r.finding.key: r.status for r in check_findings(data, study_verdict(data))}


def test_only_positive_label_smoothing_arms_are_checked():
    assert label_smoothing_arms(study_data(0.0)) == ["ls-0.1"]
    assert {f.key for f in FINDINGS} == {"ls-hurts-selective", "ls-clean-accuracy"}


@pytest.mark.parametrize(
    ("eaurc_shift", "acc_shift", "selective", "accuracy"),
    [
        (0.01, 0.0, "reproduced", "reproduced"),  # E-AURC clearly up; accuracy equal (equivalent)
        (-0.01, 0.0, "contradicted", "reproduced"),  # LS ranks errors better here
        (0.0, -0.05, "contradicted", "contradicted"),  # E-AURC equal; LS costs 5 points of accuracy
    ],
)
def test_the_findings_follow_the_verdicts(eaurc_shift, acc_shift, selective, accuracy):
    found = statuses(study_data(eaurc_shift, acc_shift))
    assert found == {"ls-hurts-selective": selective, "ls-clean-accuracy": accuracy}


def test_evidence_names_the_cells_and_a_study_without_the_metric_is_not_measured():
    data = study_data(0.01)
    results = {r.finding.key: r for r in check_findings(data, study_verdict(data))}
    evidence = results["ls-hurts-selective"].evidence
    assert len(evidence) == 2  # two conditions, one LS arm
    assert evidence[0].startswith("ls-0.1, clean: E-AURC +0.010 [")
    assert "hurts (secondary, 8 seeds)" in evidence[0]
    assert results["ls-clean-accuracy"].evidence[0].endswith("equivalent (primary, 8 seeds)")
    for r in data.results:
        r.metrics["selected"].pop("test_eaurc")
    assert statuses(data)["ls-hurts-selective"] == "not measured"
