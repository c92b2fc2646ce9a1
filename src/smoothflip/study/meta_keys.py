"""What a pooled key is: arms, conditions and metrics matched across studies by what was run.

A study directory records its resolved study file, so every arm and condition can be identified by
its *definition*, never by its display name:

- an **arm** by its technique and resolved parameters (:func:`arm_identity`: the loss and its
  parameters, training-time flipping, warm-up, defence, role, its own model, and — for a distilled
  student — its teacher's identity, recursively); ``ls-0.1`` in one study and ``smooth`` with the same
  loss and ``eps`` in another are one arm; the same name with other parameters is not;
- a **condition** by its resolved definition (noise model, rate, mode, mapping or matrix): the id
  :attr:`~smoothflip.study.conditions.LabelCondition.condition_id` the store groups runs by is a hash
  of exactly that, so it is equal across studies for the same definition (every study's clean
  condition has the same id);
- a **metric** by its key (``test_acc``).

A pooled key is ``(arm, baseline, condition, metric)``: the effect is ``arm - baseline``, so the
baseline's identity is part of it. :func:`study_effects` reads one study into per-key effects: the
mean paired difference over the seeds both arms have and its variance ``s² / n`` (``n >= 2``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from smoothflip.study.grid import arm_dict
from smoothflip.study.ids import canonical_json, short_hash
from smoothflip.study.results import StudyData
from smoothflip.study.spec.schema import as_dict
from smoothflip.study.verdict import cell_differences

__all__ = ["StudyEffect", "arm_identity", "arm_words", "key_id", "stored_metrics", "study_effects"]


def arm_identity(data: StudyData, name: str) -> dict[str, Any]:
    """What an arm of a study *is*, without its name: technique, parameters, flipping, warm-up, defence,
    role, own model, and its teacher's identity (for distilled students).

    Example:
        >>> from smoothflip.study.spec import loads_study
        >>> from smoothflip.study.results import StudyData
        >>> text = '''name = "s"
        ... seeds = 3
        ... [data]
        ... source = "synthetic"
        ... [[arms]]
        ... name = "ce"
        ... [[arms]]
        ... name = "ls-0.1"
        ... loss = "smoothed_ce"
        ... eps = 0.1
        ... [[conditions]]
        ... rates = [0.0]'''
        >>> data = StudyData(".", loads_study(text), (), ("ce", "ls-0.1"), ())
        >>> identity = arm_identity(data, "ls-0.1")
        >>> identity["loss"], identity["params"]["eps"], "name" in identity
        ('smoothed_ce', 0.1, False)
    """
    arm = data.spec.arm(name)
    out = arm_dict(arm)
    out.pop("name")
    if arm.teacher is not None:
        out["teacher"] = arm_identity(data, arm.teacher)
    if arm.model is not None:
        out["model"] = as_dict(arm.model)
    return out


def arm_words(identity: Mapping[str, Any]) -> str:
    """A short description of an arm from its identity: its loss, its main parameter and every parameter
    not at its default, then flipping, warm-up and defence (``smoothed_ce eps=0.2, disturb 0.1``)."""
    from smoothflip.techniques import get_technique

    params = identity.get("params") or {}
    loss = str(identity.get("loss", "?"))
    try:
        defaults = dict(get_technique(loss).params)
    except (KeyError, ValueError):
        defaults = {}
    first = next(iter(defaults), None)  # the technique's main parameter (eps, beta, q ...) is always shown
    words = [loss]
    words += [f"{k}={v}" for k, v in params.items() if k == first or defaults.get(k, object()) != v]
    extra = []
    for key, label in (("disturb_alpha", "disturb"), ("flip_rate", "flip"), ("warmup_epochs", "warm-up")):
        if identity.get(key):
            extra.append(f"{label} {identity[key]:g}")
    if identity.get("defense"):
        extra.append(f"defense {identity['defense'].get('name')}")
    return " ".join(words) + (", " + ", ".join(extra) if extra else "")


def key_id(
    arm: Mapping[str, Any], baseline: Mapping[str, Any], condition: Mapping[str, Any], metric: str
) -> str:
    """The id of a pooled key: a hash of the arm's and the baseline's identities, the condition's
    definition and the metric key."""
    return short_hash(
        canonical_json({"arm": arm, "baseline": baseline, "condition": condition, "metric": metric}), 12
    )


@dataclass(frozen=True)
class StudyEffect:
    """One study's contribution to one key.

    Attributes:
        key: the key's id (:func:`key_id`).
        study: the study's position among the pooled studies.
        arm: the arm's name in this study.
        baseline: the baseline's name in this study.
        condition: the condition's display label in this study.
        n: seeds both arms have (with a finite metric).
        estimate: mean of the paired differences ``arm - baseline`` (raw units).
        variance: ``s² / n`` (after flooring, see ``floored``).
        floored: the seeds' differences had zero variance, so ``variance`` is a floor (set when the
            key is pooled), not a measurement.
        diffs: the paired differences, in the study's seed order.
    """

    key: str
    study: int
    arm: str
    baseline: str
    condition: str
    n: int
    estimate: float
    variance: float
    floored: bool
    diffs: tuple[float, ...]

    @property
    def se(self) -> float:
        return math.sqrt(self.variance)


@dataclass(frozen=True)
class KeyParts:
    """What a key is made of, for display: identities, names and the condition's coordinates."""

    arm: dict[str, Any]
    baseline: dict[str, Any]
    condition: dict[str, Any]
    condition_label: str
    noise: str
    rate: float
    metric: Any
    arm_name: str
    baseline_name: str


def stored_metrics(data: StudyData, at: str) -> list[Any]:
    """The study kind's metrics that its stored runs hold at epoch ``at``, in the kind's order."""
    stored = {key for r in data.results for key in (r.metrics.get(at) or {})}
    return [m for m in data.kind.metrics if m.key in stored]


ROUND_OFF = 1e-12
"""Paired differences whose spread is at most this (relative to ``max(1, |d|)``) count as equal."""


def _variance_of_mean(d: np.ndarray) -> float:
    """``s² / n`` of the paired differences ``d`` ``[n]``; exactly 0 when they agree up to round-off.

    Two seeds that each gain one test example over the baseline give differences like
    ``165/171 - 164/171`` and ``167/171 - 166/171``, equal up to 1e-16; their variance (~1e-33) is
    round-off, not a measurement, and would weigh its study ~1e30 times the others. It is 0, and
    :func:`smoothflip.study.meta.meta` floors and flags it.

    Example:
        >>> _variance_of_mean(np.array([165 / 171 - 164 / 171, 167 / 171 - 166 / 171, 1 / 171]))
        0.0
        >>> round(_variance_of_mean(np.array([0.01, 0.03])), 6)
        0.0001
    """
    if float(np.ptp(d)) <= ROUND_OFF * max(1.0, float(np.max(np.abs(d)))):
        return 0.0
    return float(np.var(d - d[0], ddof=1)) / d.size


def study_effects(
    data: StudyData, index: int, *, at: str = "selected"
) -> Iterator[tuple[KeyParts, StudyEffect]]:
    """Every key a study can contribute to, with its effect (keys with fewer than 2 paired seeds are
    left out: nothing is imputed). Within a study, a second arm with the definition of an earlier
    one is left out (the first in file order counts)."""
    baselines = data.baselines
    present = {r.arm for r in data.results}
    seen: set[str] = set()
    identities = {name: arm_identity(data, name) for name in data.arms}
    metrics = stored_metrics(data, at)
    for condition in data.conditions:
        definition = condition.to_dict()
        for arm in data.others:
            base = baselines[arm]
            if arm not in present or base not in present:
                continue
            for metric in metrics:
                key = key_id(identities[arm], identities[base], definition, metric.key)
                if key in seen:
                    continue
                d = cell_differences(data, arm, base, condition, metric.key, at=at)
                if d.size < 2:
                    continue
                seen.add(key)
                variance = _variance_of_mean(d)
                parts = KeyParts(
                    arm=identities[arm],
                    baseline=identities[base],
                    condition=definition,
                    condition_label=condition.base_label,
                    noise=condition.noise,
                    rate=float(condition.rate),
                    metric=metric,
                    arm_name=arm,
                    baseline_name=base,
                )
                yield (
                    parts,
                    StudyEffect(
                        key=key,
                        study=index,
                        arm=arm,
                        baseline=base,
                        condition=condition.label,
                        n=int(d.size),
                        estimate=float(d.mean()),
                        variance=variance,
                        floored=variance == 0.0,
                        diffs=tuple(float(x) for x in d),
                    ),
                )
