"""Reading a study directory back: the study with its stored runs, flat tables, summaries, export.

:func:`load_study_data` opens ``DIR/study.toml`` (the resolved study file) and the store read-only,
and keeps the runs of the study's arms and conditions, matched by condition *id*; each kept run
carries its condition's display label (unique within the study), so tables and figures can group
by label safely.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smoothflip.errors import SmoothflipError, StoreError
from smoothflip.study.conditions import LabelCondition, study_conditions
from smoothflip.study.kinds import StudyKind, SummaryColumn, get_kind
from smoothflip.study.spec import StudySpec, load_study
from smoothflip.study.store import RunFailure, RunResult, Store
from smoothflip.techniques import get_technique

EXPORT_FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class StudyData:
    """A study as the report sees it.

    Attributes:
        directory: the study directory.
        spec: the resolved study (``DIR/study.toml``).
        conditions: the study's label conditions, in file order (clean first when present).
        arms: arm names in file order, the baseline included.
        results: stored runs of those arms and conditions, in store order.
        failures: runs of those arms and conditions whose last attempt failed (a user's training
            function raised); a rerun retries them.
        incomplete: stored runs of those arms and conditions without final metrics (a damaged or
            hand-edited row: ``metrics`` lacks its ``selected`` epoch); kept out of ``results``, shown
            as incomplete.
        design: the until-settled design the store records (``smoothflip run --until-settled``:
            rounds, seeds per cell, why it stopped), or None for a study whose seeds were planned.
    """

    directory: Path
    spec: StudySpec
    conditions: tuple[LabelCondition, ...]
    arms: tuple[str, ...]
    results: tuple[RunResult, ...]
    failures: tuple[RunFailure, ...] = ()
    incomplete: tuple[RunResult, ...] = ()
    design: Mapping[str, Any] | None = None
    _groups: dict[tuple[str, str], list[RunResult]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for r in self.results:
            self._groups.setdefault((r.arm, r.condition_id), []).append(r)

    @property
    def kind(self) -> StudyKind:
        """The study's kind (its metrics, headline and report parts)."""
        return get_kind(self.spec.kind)

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

        An arm counts when its technique's family is ``"smoothing"`` or it sets ``disturb_alpha`` or
        ``flip_rate`` (DisturbLabel is label smoothing in expectation). Distilled and direct students
        are left out (representation is compared across teachers).
        """
        picked = []
        for arm in self.spec.arms:
            if arm.name == self.baseline or arm.role in ("student", "direct"):
                continue
            smoothing = get_technique(arm.loss).family == "smoothing"
            if smoothing or arm.disturb_alpha > 0 or arm.flip_rate > 0:
                picked.append(arm.name)
        return tuple(picked) if picked else self.others

    def runs(self, arm: str, condition: LabelCondition | str) -> list[RunResult]:
        """Runs of one arm under one condition (or its display label), ordered by seed."""
        if isinstance(condition, str):
            found = next((c for c in self.conditions if c.label == condition), None)
            if found is None:
                return []
            condition = found
        return sorted(self._groups.get((arm, condition.condition_id), []), key=lambda r: r.seed)

    @property
    def diverged(self) -> int:
        return sum(bool(r.metrics.get("diverged")) for r in self.results)

    @property
    def expected_runs(self) -> int:
        return len(self.arms) * len(self.conditions) * len(self.spec.seeds)


def load_study_data(directory: str | Path) -> StudyData:
    """Read a study directory written by ``smoothflip run`` (the store opened read-only).

    Raises:
        FileNotFoundError: no store or no ``study.toml`` in ``directory``.
        StoreError: the store is not a smoothflip store or is damaged.
    """
    directory = Path(directory)
    with Store.open(directory, readonly=True) as store:
        results = store.results()
        failures = store.failures()
        design = _design(store.get_meta(DESIGN_KEY))
    toml = directory / "study.toml"
    if not toml.is_file():
        raise FileNotFoundError(f"no study.toml in {directory}; was the study written by `smoothflip run`?")
    spec = load_study(toml, stored=True)
    conditions = tuple(study_conditions(spec))
    arms = tuple(a.name for a in spec.arms)
    labels = {c.condition_id: c.label for c in conditions}
    kept = tuple(
        dataclasses.replace(r, condition=labels[r.condition_id])
        for r in results
        if r.arm in arms and r.condition_id in labels
    )
    done = {r.run_id for r in results}
    failed = tuple(
        f for f, _ in failures if f.arm in arms and f.condition_id in labels and f.run_id not in done
    )
    complete = tuple(r for r in kept if is_complete(r))
    return StudyData(
        directory=directory,
        spec=spec,
        conditions=conditions,
        arms=arms,
        results=complete,
        failures=failed,
        incomplete=tuple(r for r in kept if not is_complete(r)),
        design=design,
    )


def is_complete(run: RunResult) -> bool:
    """Whether a stored run holds its final metrics (the ``selected`` and ``last`` epochs)."""
    return all(isinstance(run.metrics.get(at), dict) for at in ("selected", "last"))


DESIGN_KEY = "design"
"""The store's meta key of the recorded until-settled design (JSON)."""


def _design(text: str | None) -> Mapping[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise StoreError(
            f"the store's recorded design (meta {DESIGN_KEY!r}) is not valid JSON; it is damaged"
        ) from None
    return value if isinstance(value, dict) else None


def run_rows(results: Iterable[RunResult]) -> list[dict[str, Any]]:
    """One flat row per run: grid coordinates, then ``selected_*`` / ``last_*`` metrics and the rest."""
    rows = []
    for r in results:
        row: dict[str, Any] = {
            "run_id": r.run_id,
            "arm": r.arm,
            "condition": r.condition,
            "noise": r.noise,
            "rate": r.rate,
            "seed": r.seed,
            "loss": r.config["arm"]["loss"],
        }
        for which in ("selected", "last"):
            for key, value in r.metrics.get(which, {}).items():
                row[f"{which}_{key}"] = value
        for key, value in r.metrics.items():
            if not isinstance(value, dict):
                row[key] = value
        for key, value in r.timings.items():
            row[f"time_{key}"] = value
        rows.append(row)
    return rows


def curve_rows(results: Iterable[RunResult]) -> list[dict[str, Any]]:
    """Long table of per-epoch curves: one row per run and epoch."""
    rows = []
    for r in results:
        keys = list(r.curves)
        for i in range(len(r.curves.get("epoch", []))):
            rows.append(
                {
                    "run_id": r.run_id,
                    "arm": r.arm,
                    "condition": r.condition,
                    "seed": r.seed,
                    **{k: r.curves[k][i] for k in keys},
                }
            )
    return rows


SUMMARY_KEYS = ("test_acc", "test_nll", "test_ece", "test_ece_ts")
"""What :func:`summarize` summarizes unless told (a classifier's summary)."""


def summarize(
    results: Iterable[RunResult],
    *,
    arms: list[str],
    conditions: list[str],
    keys: Sequence[str] = SUMMARY_KEYS,
) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds (``<key>``, ``<key>_sd``) of each of ``keys`` per arm
    and condition (the stored ``selected`` metrics), with the runs ``n`` and how many ``diverged``."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.arm, r.condition), []).append(r)
    rows = []
    for condition in conditions:
        for arm in arms:
            runs = groups.get((arm, condition), [])
            if not runs:
                continue
            row: dict[str, Any] = {"arm": arm, "condition": condition, "n": len(runs)}
            for key in keys:
                values = np.array(
                    [r.metrics.get("selected", {}).get(key, math.nan) for r in runs], dtype=float
                )
                finite = values[np.isfinite(values)]
                row[key] = float(finite.mean()) if finite.size else math.nan
                row[f"{key}_sd"] = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
            row["diverged"] = sum(bool(r.metrics.get("diverged")) for r in runs)
            rows.append(row)
    return rows


def study_summary(data: StudyData) -> tuple[tuple[SummaryColumn, ...], list[dict[str, Any]]]:
    """The summary table of a study: its kind's summary columns and :func:`summarize`'s rows of them."""
    columns = data.kind.summary_columns(data.spec)
    rows = summarize(
        data.results,
        arms=list(data.arms),
        conditions=[c.label for c in data.conditions],
        keys=[c.key for c in columns],
    )
    return columns, rows


def export(directory: str | Path, *, format: str = "csv", out: str | Path | None = None) -> list[Path]:
    """Write ``runs.<fmt>`` and ``curves.<fmt>`` for a study directory; returns the paths written.

    Raises:
        FileNotFoundError: no study in ``directory``.
        SmoothflipError: unknown format, or no finished runs.
    """
    import pandas as pd

    if format not in EXPORT_FORMATS:
        raise SmoothflipError(f"format must be one of {', '.join(map(repr, EXPORT_FORMATS))}, got {format!r}")
    directory = Path(directory)
    with Store.open(directory, readonly=True) as store:
        results = store.results()
    if not results:
        raise SmoothflipError(f"{directory} holds no finished runs to export yet")
    target = Path(out) if out is not None else directory
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in (("runs", run_rows(results)), ("curves", curve_rows(results))):
        frame = pd.DataFrame(rows)
        path = target / f"{name}.{format}"
        if format == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        written.append(path)
    return written
