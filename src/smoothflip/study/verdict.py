"""The verdict of a stored study: each arm against its baseline, per label condition, paired by seed.

One function, :func:`study_verdict`, computes what both ``smoothflip verdict`` and the report show.

**Families.** A *cell* is one arm against its baseline under one condition, on one metric; its
evidence is the per-seed differences ``arm - baseline`` (seeds in the study's seed order). The
cells of one metric over every arm x condition form a family, read with
:func:`smoothflip.analysis.family_verdicts`:

- the **primary** metric (``[analysis] primary``, accuracy by default): Holm's step-down on the
  paired t-tests (and TOST for equivalence, in the same family with Shaffer's bound), so the
  probability of *any* false helps / hurts / equivalent among all arms x conditions is at most
  ``alpha`` (5%) under any dependence between cells. Holm rather than a max-statistic bootstrap:
  it needs only valid per-cell p-values, allows different seeds per cell (the until-settled loop
  makes them differ), and at 3-10 seeds a bootstrap over seeds cannot resolve tail probabilities of
  ``0.05 / 20`` (at 5 seeds it has at most 126 distinct resampled means). The interval shown is the
  simultaneous one (level ``1 - alpha / m``, Bonferroni): it excludes 0 only when Holm rejects.
- every other metric is **secondary**: Benjamini-Hochberg over the same hypotheses (false
  discovery rate ``alpha`` per metric), with per-cell ``1 - alpha`` intervals. Secondary words are
  labelled so: they are not covered by the primary family-wise guarantee.

Words: *helps* / *hurts* (the corrected test rejects no difference), *equivalent* (the corrected
equivalence test puts the difference inside ``±margin``; TOST), *inconclusive* (neither: the cell's
minimum detectable effect ``mde`` says how large an effect could still hide there), *no verdict*
(fewer than 3 paired seeds).

**Designs.** ``fixed`` (the seeds were planned): t-tests and t intervals. ``sequential`` (the
store records an until-settled design, :mod:`smoothflip.engine.settle`): the safe t-test
e-process and its confidence sequences, valid although seeds were added after looking
(:mod:`smoothflip.analysis.sequential`).

**Prices.** Every inconclusive cell, primary and secondary, is priced in paired seeds and training
minutes (:mod:`smoothflip.study.pricing`): ``StudyVerdict.prices``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smoothflip import analysis
from smoothflip.errors import SmoothflipError
from smoothflip.study.compare import compare
from smoothflip.study.pricing import CellPrice, price_family, seconds_per_run
from smoothflip.study.results import StudyData
from smoothflip.study.spec.analysis import display_target, primary_metric, raw_margin
from smoothflip.study.store import RunResult

__all__ = ["Family", "StudyVerdict", "cell_differences", "metric_family", "study_verdict"]


@dataclass(frozen=True)
class Family:
    """How one metric's cells were read.

    Attributes:
        metric: the metric.
        role: ``"primary"`` (Holm, family-wise error) or ``"secondary"`` (BH, false discovery rate).
        correction: ``"holm"`` or ``"bh"``.
        design: ``"fixed"`` or ``"sequential"``.
        tested: cells with at least 3 paired seeds (the family's size ``m``).
        margin: the equivalence margin in display units (NaN: none).
        interval: what the intervals shown are.
    """

    metric: Any
    role: str
    correction: str
    design: str
    tested: int
    margin: float
    interval: str


@dataclass(frozen=True)
class StudyVerdict:
    """What a study's verdict says.

    Attributes:
        comparisons: one :class:`~smoothflip.analysis.Comparison` per condition, arm and metric,
            with the family verdict word, its interval, MDE and corrected p-value.
        headlines: per compared arm, one sentence per condition (in condition order).
        note: why nothing can be compared (no runs, no baseline runs, no other arm), else None.
        arms: the compared arms, in file order.
        conditions: display labels of the conditions with stored runs, in file order.
        baselines: each compared arm's baseline.
        metrics: the metrics compared (the primary first).
        at: ``"selected"`` or ``"last"``.
        families: per metric key, how its cells were read.
        primary: the primary metric.
        alpha: the error rate controlled.
        power: the power of the MDEs.
        design: ``"fixed"`` or ``"sequential"``.
        settle: the recorded until-settled design (rounds, seeds per cell, why it stopped), or None.
        prices: ``(condition label, arm, metric key) -> CellPrice`` for every inconclusive cell.
        settle_prices: for a fixed-design study, the primary cells that would be inconclusive when read
            with the until-settled design's anytime-valid tests (``--until-settled``: valid although
            seeds are added after looking), priced for those tests; empty for a sequential study.
        targets: per metric key, the MDE target its cells were priced for (display units).
    """

    comparisons: list[Any] = field(default_factory=list)
    headlines: dict[str, list[str]] = field(default_factory=dict)
    note: str | None = None
    arms: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    baselines: dict[str, str] = field(default_factory=dict)
    metrics: tuple[Any, ...] = ()
    at: str = "selected"
    families: dict[str, Family] = field(default_factory=dict)
    primary: Any = None
    alpha: float = 0.05
    power: float = 0.8
    design: str = "fixed"
    settle: Mapping[str, Any] | None = None
    prices: dict[tuple[str, str, str], CellPrice] = field(default_factory=dict)
    settle_prices: dict[tuple[str, str, str], CellPrice] = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)

    @property
    def single_baseline(self) -> bool:
        return len(set(self.baselines.values())) <= 1


def _value(run: RunResult, key: str, at: str) -> float:
    block = run.metrics.get(at)
    value = block.get(key) if isinstance(block, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _seed_order(data: StudyData) -> dict[int, int]:
    order = {int(s): i for i, s in enumerate(data.spec.seeds)}
    for s in sorted({r.seed for r in data.results}):
        order.setdefault(int(s), len(order))
    return order


def cell_differences(
    data: StudyData, arm: str, baseline: str, condition: Any, key: str, *, at: str = "selected"
) -> np.ndarray:
    """Per-seed differences ``arm - baseline`` of one cell, in the study's seed order (finite only)."""
    order = _seed_order(data)
    base = {r.seed: _value(r, key, at) for r in data.runs(baseline, condition)}
    mine = {r.seed: _value(r, key, at) for r in data.runs(arm, condition)}
    seeds = sorted(set(base) & set(mine), key=lambda s: order.get(int(s), math.inf))
    d = np.array([mine[s] - base[s] for s in seeds], dtype=float)
    return d[np.isfinite(d)]


def metric_family(
    data: StudyData,
    cells: Sequence[tuple[Any, str]],
    metric: Any,
    *,
    primary: bool,
    design: str,
    at: str = "selected",
) -> tuple[list[np.ndarray], analysis.FamilyVerdicts | None]:
    """The differences of ``cells`` (``(condition, arm)`` pairs) on ``metric`` and their family verdicts
    (None when no cell has two paired seeds)."""
    spec = data.spec.analysis
    baselines = data.baselines
    diffs = [cell_differences(data, arm, baselines[arm], cond, metric.key, at=at) for cond, arm in cells]
    if not diffs or max(d.size for d in diffs) < 2:
        return diffs, None
    verdicts = analysis.family_verdicts(
        diffs,
        higher_is_better=metric.higher_is_better,
        margin=raw_margin(spec, metric),
        alpha=spec.alpha,
        correction="holm" if primary else "bh",
        design=design,
        power=spec.power,
    )
    return diffs, verdicts


def _interval_name(primary: bool, design: str, alpha: float) -> str:
    level = f"{100 * (1 - alpha):g}%"
    kind = "confidence sequence" if design == "sequential" else "t interval"
    return f"simultaneous {level} {kind} (Bonferroni)" if primary else f"{level} {kind}"


def study_verdict(data: StudyData, *, at: str = "selected", target_mde: float | None = None) -> StudyVerdict:
    """Compare every arm with its baseline under every condition with stored runs, as families.

    Args:
        data: the study as read back (:func:`~smoothflip.study.results.load_study_data`).
        at: compare the metrics of the validation-selected epoch (``"selected"``) or the last one.
        target_mde: the primary metric's MDE target in display units, instead of the study's
            ``[analysis] target_mde`` (``smoothflip plan --target-mde``).
    """
    spec = data.spec.analysis
    if target_mde is not None and not (isinstance(target_mde, int | float) and 0 < target_mde < math.inf):
        raise SmoothflipError(f"target_mde must be a finite number > 0 (display units), got {target_mde!r}")
    kind_metrics = data.kind.study_metrics(data.spec)
    primary = primary_metric(spec, kind_metrics)
    stored = {key for r in data.results for key in (r.metrics.get(at) or {})}
    # metrics no stored run has (runs stored before a metric existed) are left out, the primary never
    metrics = (primary, *(m for m in kind_metrics if m.key != primary.key and m.key in stored))
    settle = data.design
    design = "sequential" if settle else "fixed"
    common = {"metrics": metrics, "at": at, "primary": primary, "alpha": spec.alpha, "power": spec.power}
    common.update(design=design, settle=settle)
    if not data.results:
        return StudyVerdict(note="No runs are stored yet: run the study first.", **common)
    present_arms = {r.arm for r in data.results}
    if data.baseline not in present_arms:
        return StudyVerdict(
            note=f"The baseline arm ({data.baseline}) has no stored runs, so nothing can be compared.",
            **common,
        )
    baselines = {a: b for a, b in data.baselines.items() if a in present_arms and b in present_arms}
    arms = [a for a in data.others if a in baselines]
    if not arms:
        return StudyVerdict(
            note="The study has no arm besides the baseline, so there is nothing to compare.", **common
        )
    present = {r.condition_id for r in data.results}
    conditions = [c for c in data.conditions if c.condition_id in present]
    labels = [c.label for c in conditions]
    raw = compare(
        list(data.results), baseline=baselines, arms=arms, conditions=labels, at=at, metrics=metrics
    )
    cells = [(c, arm) for c in conditions for arm in arms]
    families: dict[str, Family] = {}
    prices: dict[tuple[str, str, str], CellPrice] = {}
    settle_prices: dict[tuple[str, str, str], CellPrice] = {}
    targets: dict[str, float] = {}
    seconds = seconds_per_run(data)
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for metric in metrics:
        is_primary = metric.key == primary.key
        _, verdicts = metric_family(data, cells, metric, primary=is_primary, design=design, at=at)
        interval = _interval_name(is_primary, design, spec.alpha)
        tested = 0 if verdicts is None else int(np.sum(verdicts.verdict != "no verdict"))
        margin = raw_margin(spec, metric)
        families[metric.key] = Family(
            metric,
            "primary" if is_primary else "secondary",
            "holm" if is_primary else "bh",
            design,
            tested,
            math.nan if margin is None else margin * metric.scale,
            interval,
        )
        target = display_target(spec, metric)
        targets[metric.key] = target = target_mde if is_primary and target_mde is not None else target
        if verdicts is not None:
            role = families[metric.key].role
            price = functools.partial(price_family, data, cells, metric=metric, role=role, target=target)
            prices.update(price(verdicts=verdicts, seconds=seconds))
            if is_primary and design == "fixed":
                # rerun with --until-settled, every cell is read with the anytime-valid tests
                _, anytime = metric_family(data, cells, metric, primary=True, design="sequential", at=at)
                if anytime is not None:
                    settle_prices.update(price(verdicts=anytime, seconds=seconds))
        for i, (condition, arm) in enumerate(cells):
            if verdicts is None:
                found[(condition.label, arm, metric.key)] = {
                    "verdict": "no verdict",
                    "role": families[metric.key].role,
                }
                continue
            cell = verdicts.cell(i)
            low, high = (
                (cell.simultaneous_low, cell.simultaneous_high) if is_primary else (cell.ci_low, cell.ci_high)
            )
            found[(condition.label, arm, metric.key)] = {
                "verdict": cell.verdict,
                "ci_low": float(low),
                "ci_high": float(high),
                "mde": float(cell.mde),
                "p_adjusted": float(cell.p_adjusted),
                "role": families[metric.key].role,
                "interval": interval,
            }
    comparisons = [dataclasses.replace(c, **found[(c.condition, c.arm, c.metric.key)]) for c in raw]
    sentences: dict[str, list[str]] = {arm: [] for arm in arms}
    compared = {m.key for m in metrics}
    headline = [primary.key, *(k for k in data.kind.headline if k != primary.key and k in compared)]
    for label in labels:
        subset = [c for c in comparisons if c.condition == label]
        for arm, text in analysis.headlines(subset, arms=arms, metrics=headline).items():
            if text:
                sentences[arm].append(text)
    return StudyVerdict(
        comparisons,
        sentences,
        None,
        arms,
        labels,
        baselines,
        families=families,
        prices=prices,
        settle_prices=settle_prices,
        targets=targets,
        **common,
    )
