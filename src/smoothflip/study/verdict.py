"""The verdict of a stored study: each arm against its baseline, per label condition, paired by seed.

One function, :func:`study_verdict`, computes what both ``smoothflip verdict`` and the report show:
the comparisons (:func:`smoothflip.analysis.compare` on the study's kept runs), the headline
sentences per arm and condition, and a note when nothing can be compared yet. The metrics and the
headline's metrics come from the study's kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smoothflip import analysis
from smoothflip.study.results import StudyData


@dataclass(frozen=True)
class StudyVerdict:
    """What a study's verdict says.

    Attributes:
        comparisons: one :class:`~smoothflip.analysis.Comparison` per condition, arm and metric.
        headlines: per compared arm, one sentence per condition (in condition order).
        note: why nothing can be compared (no runs, no baseline runs, no other arm), else None.
        arms: the compared arms, in file order.
        conditions: display labels of the conditions with stored runs, in file order.
        baselines: each compared arm's baseline.
        metrics: the metrics compared.
        at: ``"selected"`` or ``"last"``.
    """

    comparisons: list[Any] = field(default_factory=list)
    headlines: dict[str, list[str]] = field(default_factory=dict)
    note: str | None = None
    arms: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    baselines: dict[str, str] = field(default_factory=dict)
    metrics: tuple[Any, ...] = ()
    at: str = "selected"

    @property
    def single_baseline(self) -> bool:
        return len(set(self.baselines.values())) <= 1


def study_verdict(data: StudyData, *, at: str = "selected") -> StudyVerdict:
    """Compare every arm with its baseline under every condition with stored runs.

    Args:
        data: the study as read back (:func:`~smoothflip.study.results.load_study_data`).
        at: compare the metrics of the validation-selected epoch (``"selected"``) or the last one.
    """
    metrics = data.kind.metrics
    if not data.results:
        return StudyVerdict(note="No runs are stored yet: run the study first.", metrics=metrics, at=at)
    present_arms = {r.arm for r in data.results}
    if data.baseline not in present_arms:
        return StudyVerdict(
            note=f"The baseline arm ({data.baseline}) has no stored runs, so nothing can be compared.",
            metrics=metrics,
            at=at,
        )
    baselines = {a: b for a, b in data.baselines.items() if a in present_arms and b in present_arms}
    arms = [a for a in data.others if a in baselines]
    if not arms:
        return StudyVerdict(
            note="The study has no arm besides the baseline, so there is nothing to compare.",
            metrics=metrics,
            at=at,
        )
    present = {r.condition_id for r in data.results}
    conditions = [c.label for c in data.conditions if c.condition_id in present]
    comparisons = analysis.compare(
        list(data.results), baseline=baselines, arms=arms, conditions=conditions, at=at, metrics=metrics
    )
    # headlines() gives one sentence per condition; asking per condition keeps them apart for display.
    sentences: dict[str, list[str]] = {arm: [] for arm in arms}
    for label in conditions:
        subset = [c for c in comparisons if c.condition == label]
        for arm, text in analysis.headlines(subset, arms=arms, metrics=data.kind.headline).items():
            if text:
                sentences[arm].append(text)
    return StudyVerdict(comparisons, sentences, None, arms, conditions, baselines, metrics, at)
