"""What a report reads from a study directory, and the small aggregations its figures share.

:func:`load_study_data` opens ``DIR/study.toml`` (the resolved study file) and the store, and keeps
the runs of the study's arms and conditions in the study's order. The helpers below aggregate runs
over seeds (means with Student-t intervals, pooled reliability bins, mean curves); they skip
non-finite values, so a diverged run contributes only what it recorded before diverging.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smoothflip.study.conditions import LabelCondition, study_conditions
from smoothflip.study.spec import StudySpec, load_study
from smoothflip.study.store import RunResult, Store

SMOOTHING_LOSSES = ("smoothed_ce", "confidence_penalty")
"""Losses whose arms count as "smoothing-type" (with any arm that flips labels while it trains)."""


@dataclass(frozen=True)
class StudyData:
    """A study as the report sees it.

    Attributes:
        directory: the study directory.
        spec: the resolved study (``DIR/study.toml``).
        conditions: the study's label conditions, in file order (clean first when present).
        arms: arm names in file order, the baseline included.
        results: stored runs of those arms and conditions, in store order.
    """

    directory: Path
    spec: StudySpec
    conditions: tuple[LabelCondition, ...]
    arms: tuple[str, ...]
    results: tuple[RunResult, ...]
    _groups: dict[tuple[str, str], list[RunResult]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for r in self.results:
            self._groups.setdefault((r.arm, r.condition), []).append(r)

    @property
    def baseline(self) -> str:
        return self.spec.baseline

    @property
    def baselines(self) -> dict[str, str]:
        """Each compared arm's baseline (one arm for a standard study; per role in a distillation study)."""
        return self.spec.baselines()

    @property
    def single_baseline(self) -> bool:
        return len(set(self.baselines.values())) <= 1

    @property
    def others(self) -> tuple[str, ...]:
        """Every arm that is compared with a baseline, in file order."""
        baselines = self.baselines
        return tuple(a for a in self.arms if a in baselines)

    @property
    def plot_arms(self) -> tuple[str, ...]:
        """Arms drawn in the per-arm figures: all, except a distillation study's distilled students
        (they have their own figure)."""
        roles = {a.name: a.role for a in self.spec.arms}
        return tuple(a for a in self.arms if roles.get(a) != "student")

    @property
    def clean(self) -> LabelCondition | None:
        """The correct-labels condition, if the study has one."""
        return next((c for c in self.conditions if c.is_clean), None)

    @property
    def noisy(self) -> tuple[LabelCondition, ...]:
        return tuple(c for c in self.conditions if not c.is_clean)

    @property
    def noise_models(self) -> tuple[str, ...]:
        """Noise models of the noisy conditions, in first-appearance order."""
        return tuple(dict.fromkeys(c.noise for c in self.noisy))

    @property
    def smoothing_arms(self) -> tuple[str, ...]:
        """Non-baseline arms that smooth or flip labels; all non-baseline arms when none does.

        An arm counts when its loss is in :data:`SMOOTHING_LOSSES` or it sets ``disturb_alpha`` or
        ``flip_rate`` (DisturbLabel is label smoothing in expectation).
        """
        picked = []
        for arm in self.spec.arms:
            if arm.name == self.baseline:
                continue
            if self.spec.kind == "distillation" and arm.role != "teacher":
                continue  # representation is compared across teachers
            if arm.loss in SMOOTHING_LOSSES or arm.disturb_alpha > 0 or arm.flip_rate > 0:
                picked.append(arm.name)
        return tuple(picked) if picked else self.others

    def runs(self, arm: str, condition: LabelCondition | str) -> list[RunResult]:
        """Runs of one arm under one condition, ordered by seed."""
        label = condition if isinstance(condition, str) else condition.label
        return sorted(self._groups.get((arm, label), []), key=lambda r: r.seed)

    @property
    def diverged(self) -> int:
        return sum(bool(r.metrics.get("diverged")) for r in self.results)

    @property
    def expected_runs(self) -> int:
        return len(self.arms) * len(self.conditions) * len(self.spec.seeds)


def load_study_data(directory: str | Path) -> StudyData:
    """Read a study directory written by ``smoothflip run``.

    Raises:
        FileNotFoundError: no store or no ``study.toml`` in ``directory``.
    """
    directory = Path(directory)
    with Store.open(directory, create=False) as store:
        results = store.results()
    toml = directory / "study.toml"
    if not toml.is_file():
        raise FileNotFoundError(f"no study.toml in {directory}; was the study written by `smoothflip run`?")
    spec = load_study(toml)
    conditions = tuple(study_conditions(spec))
    arms = tuple(a.name for a in spec.arms)
    labels = {c.label for c in conditions}
    kept = tuple(r for r in results if r.arm in arms and r.condition in labels)
    return StudyData(directory=directory, spec=spec, conditions=conditions, arms=arms, results=kept)


# --------------------------------------------------------------------------- aggregation


def metric_values(runs: Iterable[RunResult], key: str, *, at: str = "selected") -> np.ndarray:
    """Finite values of ``metrics[at][key]`` over ``runs`` (``[n]`` float64)."""
    values = np.array([float(r.metrics.get(at, {}).get(key, math.nan)) for r in runs], dtype=float)
    return values[np.isfinite(values)]


def t_interval(values: np.ndarray, *, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of the mean: ``(mean, low, high)``.

    With one value the interval collapses to the value; with none everything is NaN.
    """
    n = values.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if n == 1:
        return mean, mean, mean
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, n - 1)) * float(values.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class PooledReliability:
    """Reliability bins pooled over runs: ``[B]`` arrays; empty bins hold NaN (count 0)."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error of the pooled bins."""
        total = float(self.count.sum())
        if total == 0:
            return math.nan
        gap = np.abs(np.nan_to_num(self.accuracy) - np.nan_to_num(self.confidence))
        return float(np.sum(gap * self.count) / total)


def pooled_reliability(runs: Sequence[RunResult]) -> PooledReliability | None:
    """Sum bin counts over runs; count-weighted mean confidence and accuracy per bin.

    Runs without ``extras["reliability"]`` (or with other bin edges than the first run's) are left
    out; ``None`` when no run has usable bins.
    """
    edges = None
    conf_sum = acc_sum = count = None
    for r in runs:
        rel = r.extras.get("reliability")
        if not isinstance(rel, dict) or not all(
            k in rel for k in ("edges", "confidence", "accuracy", "count")
        ):
            continue
        e = np.asarray(rel["edges"], dtype=float)
        c = np.nan_to_num(np.asarray(rel["count"], dtype=float))
        conf = np.asarray(rel["confidence"], dtype=float)
        acc = np.asarray(rel["accuracy"], dtype=float)
        if not (e.ndim == 1 and e.size >= 2 and c.shape == conf.shape == acc.shape == (e.size - 1,)):
            continue
        if edges is None:
            edges = e
            conf_sum, acc_sum, count = np.zeros_like(c), np.zeros_like(c), np.zeros_like(c)
        elif e.shape != edges.shape or not np.allclose(e, edges):
            continue
        used = c > 0
        conf_sum[used] += np.nan_to_num(conf[used]) * c[used]
        acc_sum[used] += np.nan_to_num(acc[used]) * c[used]
        count += c
    if edges is None or count is None or not count.any():
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(count > 0, conf_sum / count, np.nan)
        accuracy = np.where(count > 0, acc_sum / count, np.nan)
    return PooledReliability(edges=edges, confidence=confidence, accuracy=accuracy, count=count)


def mean_curve(runs: Sequence[RunResult], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-epoch mean over runs of ``curves[key]``, ignoring NaN: ``(epochs [E], mean [E])``.

    Runs of different lengths are aligned by epoch number; epochs where no run has a finite value
    are dropped. ``None`` when no run has a finite value.
    """
    table: dict[float, list[float]] = {}
    for r in runs:
        values = r.curves.get(key)
        if not isinstance(values, list):
            continue
        epochs = r.curves.get("epoch") or list(range(1, len(values) + 1))
        for epoch, value in zip(epochs, values, strict=False):
            if value is not None and math.isfinite(float(value)) and math.isfinite(float(epoch)):
                table.setdefault(float(epoch), []).append(float(value))
    if not table:
        return None
    epochs = np.array(sorted(table), dtype=float)
    mean = np.array([np.mean(table[e]) for e in epochs], dtype=float)
    return epochs, mean
