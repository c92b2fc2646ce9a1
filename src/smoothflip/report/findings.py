"""Built-in findings: claims from the literature, checked against a study's own verdicts.

Each :class:`Finding` names a claim, its reference, the metric and the verdict word that would
reproduce it, and which arms and conditions it is about. :func:`check_findings` reads the study's
verdict (:func:`smoothflip.study.verdict.study_verdict`: the primary metric with family-wise error
control, the others secondary with false-discovery control) and says, per finding, *reproduced*,
*contradicted*, *mixed*, *not settled* (every cell inconclusive: more seeds needed) or *not
measured* (the study has no such arm, or no run stored the metric), with the evidence of every cell.

Example:
    >>> [f.key for f in FINDINGS]
    ['ls-hurts-selective', 'ls-clean-accuracy']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smoothflip.analysis import format_diff

__all__ = ["FINDINGS", "Finding", "FindingResult", "check_findings", "label_smoothing_arms"]


def label_smoothing_arms(data: Any) -> list[str]:
    """Arms that smooth labels with a positive ``eps`` (uniform or prior label smoothing), baselines
    and distilled students left out."""
    out = []
    for arm in data.spec.arms:
        eps = arm.params.get("eps")
        positive = isinstance(eps, int | float) and not isinstance(eps, bool) and eps > 0
        if positive and arm.name in data.others and arm.role not in ("student",):
            out.append(arm.name)
    return out


@dataclass(frozen=True)
class Finding:
    """A claim to check.

    Attributes:
        key: a stable name.
        claim: the claim in one sentence.
        reference: where it comes from.
        metric: the metric key whose verdict decides.
        expect: the verdict words that reproduce it.
        against: the verdict words that contradict it.
        arms: the arms it is about (from the study).
        clean_only: only the correct-labels condition.
    """

    key: str
    claim: str
    reference: str
    metric: str
    expect: tuple[str, ...]
    against: tuple[str, ...]
    arms: Callable[[Any], list[str]]
    clean_only: bool = False


FINDINGS: tuple[Finding, ...] = (
    Finding(
        "ls-hurts-selective",
        "Label smoothing hurts selective classification: ranking test examples by confidence separates "
        "the errors worse (higher E-AURC, the area under the risk-coverage curve above the oracle's).",
        "Xia et al., ICLR 2025",
        "test_eaurc",
        expect=("hurts",),
        against=("helps", "equivalent"),
        arms=label_smoothing_arms,
    ),
    Finding(
        "ls-clean-accuracy",
        "With correct labels label smoothing is accuracy-neutral to slightly positive.",
        "Szegedy et al. 2016; Müller, Kornblith & Hinton 2019",
        "test_acc",
        expect=("helps", "equivalent"),
        against=("hurts",),
        arms=label_smoothing_arms,
        clean_only=True,
    ),
)


@dataclass(frozen=True)
class FindingResult:
    """What a study says about one finding.

    Attributes:
        finding: the finding.
        status: ``reproduced``, ``contradicted``, ``mixed``, ``not settled`` or ``not measured``.
        evidence: one line per arm and condition (difference, interval, verdict, role).
    """

    finding: Finding
    status: str
    evidence: tuple[str, ...]


def _status(words: list[str], finding: Finding) -> str:
    if not words or all(w == "no verdict" for w in words):
        return "not measured"
    hits = any(w in finding.expect for w in words)
    misses = any(w in finding.against for w in words)
    if hits and misses:
        return "mixed"
    if hits:
        return "reproduced"
    if misses:
        return "contradicted"
    return "not settled"


def check_findings(data: Any, verdict: Any) -> list[FindingResult]:
    """Every built-in finding against the study's verdict (see the module docstring)."""
    by_key = {(c.condition, c.arm, c.metric.key): c for c in verdict.comparisons}
    clean = data.clean.label if data.clean is not None else None
    out = []
    for finding in FINDINGS:
        arms = [a for a in finding.arms(data) if a in verdict.arms]
        conditions = [clean] if finding.clean_only else list(verdict.conditions)
        words, evidence = [], []
        for condition in conditions:
            for arm in arms:
                c = by_key.get((condition, arm, finding.metric))
                if c is None:
                    continue
                words.append(c.verdict)
                if c.n == 0:
                    continue
                unit = f" {c.metric.unit}" if c.metric.unit else ""
                low, high = (format_diff(v, c.metric).removesuffix(unit) for v in (c.ci_low, c.ci_high))
                evidence.append(
                    f"{arm}, {condition}: {c.metric.label} {format_diff(c.mean_diff, c.metric)} "
                    f"[{low}, {high}], {c.verdict} ({c.role}, {c.n} seeds)"
                )
        out.append(FindingResult(finding, _status(words, finding), tuple(evidence)))
    return out
