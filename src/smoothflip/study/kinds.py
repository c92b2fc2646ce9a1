"""The study-kind registry: what ``kind = "..."`` means, in one entry per kind.

A :class:`StudyKind` says how a study file of that kind is read (its model table, its arms, its
baseline, whether it has label conditions and whether arms may flip labels), which metrics its
verdicts compare and which of them make the headline, which extra parts its report has, and which
engine *track* trains it (``"module:attribute"``, imported only when a study of the kind runs, so
reading a study file never imports the engine). The spec, the CLI, the report and the executors
read the entry; no ``kind ==`` branch lives outside it.

Example:
    >>> from smoothflip.study.kinds import get_kind, kind_names
    >>> kind_names()
    ('standard', 'distillation', 'lm', 'trainer', 'certified')
    >>> get_kind("lm").default_selection, get_kind("lm").label_conditions
    ('val_nll', False)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smoothflip.analysis import LM_METRICS, METRICS, SELECTIVE_METRICS, MetricSpec
from smoothflip.errors import SpecError
from smoothflip.study.spec.arms import read_arms
from smoothflip.study.spec.certify import (
    CERTIFIED_METRICS,
    certified_measured_at,
    certified_metrics,
    read_certify,
)
from smoothflip.study.spec.distillation import distillation_baselines, read_distillation_study
from smoothflip.study.spec.schema import ArmSpec, ModelSpec, StudySpec
from smoothflip.study.spec.sections import read_lm_model, read_model, read_trainer_model
from smoothflip.study.tables import Table, show

if TYPE_CHECKING:
    from smoothflip.engine.tracks import Track

ArmsReader = Callable[[Table, "StudyKind"], tuple[tuple[ArmSpec, ...], Any]]


def _user_arms(top: Table, kind: StudyKind) -> tuple[tuple[ArmSpec, ...], Any]:
    return read_arms(top, kind=kind.name, task=kind.task, label_flipping=kind.label_flipping), None


def _generated_arms(top: Table, kind: StudyKind) -> tuple[tuple[ArmSpec, ...], Any]:
    return read_distillation_study(top)


def _chosen_baseline(top: Table, arms: tuple[ArmSpec, ...]) -> str:
    names = [a.name for a in arms]
    baseline = top.str("baseline", arms[0].name)
    if baseline not in names:
        raise SpecError(
            f"baseline = {show(baseline)}: must name one of the arms: {', '.join(map(repr, names))}"
        )
    return baseline


def _hard_label_teacher(top: Table, arms: tuple[ArmSpec, ...]) -> str:
    if top.has("baseline"):
        raise SpecError(
            "baseline: a distillation study compares each arm with its hard-label counterpart; remove it"
        )
    return "teacher-ls-0"


def _one_baseline(spec: StudySpec) -> dict[str, str]:
    return {a.name: spec.baseline for a in spec.arms if a.name != spec.baseline}


@dataclass(frozen=True)
class StudyKind:
    """One study kind.

    Attributes:
        name: ``kind = "<name>"`` in the study file (``"standard"`` when absent).
        summary: one line for the docs.
        track: ``"module:attribute"`` of the engine :class:`~smoothflip.engine.tracks.Track` that
            trains it.
        read_model: reads ``[model]`` (and ``[distillation.teacher_model]``) for this kind.
        read_arms: reads (or generates) the arms; returns them and the kind's own table (the
            :class:`~smoothflip.study.spec.schema.DistillationSpec`, or None).
        user_arms: the study file lists the arms (and may name the baseline); False when the kind
            generates them.
        read_baseline: the baseline arm's name (given or implied).
        baselines: each compared arm's baseline, for a parsed spec.
        default_selection: the ``[train] selection`` default.
        task: what it predicts (``"classification"`` or ``"language"``); its arms may use the
            techniques that apply to it.
        label_conditions: the study has ``[[conditions]]`` (label noise, attacks).
        label_flipping: arms may flip labels while training and use defences.
        metrics: the metrics its verdicts compare, in report order.
        headline: the metric keys of its headline sentences.
        report_parts: extra parts of its report (``"distillation"``, ``"language_model"``).
        model_key: a ``[model]`` key that selects this kind when the file gives no ``kind``
            (``trainer = "train.py:train"`` selects ``"trainer"``).
        probes: the kind records the representation probes (``[probes]``); False: probes are off.
        tables: the kind's own top-level tables: name -> reader of the whole file's top table; the
            result is the :class:`~smoothflip.study.spec.schema.StudySpec` field of that name
            (``[certify]`` -> ``spec.certify``). Another kind's table is refused.
        metrics_of: the metrics of one study of the kind when they follow its tables (a certified
            study's radii); None: :attr:`metrics`.
        measured_at: where a run's metrics come from, as the report says it ("each base learner's
            last epoch"); None: the epoch selected on ``[train] selection``'s validation metric.
    """

    name: str
    summary: str
    track: str
    read_model: Callable[[Any, str], ModelSpec] = read_model
    read_arms: ArmsReader = _user_arms
    user_arms: bool = True
    read_baseline: Callable[[Table, tuple[ArmSpec, ...]], str] = _chosen_baseline
    baselines: Callable[[StudySpec], dict[str, str]] = _one_baseline
    default_selection: str = "val_accuracy"
    task: str = "classification"
    label_conditions: bool = True
    label_flipping: bool = True
    metrics: tuple[MetricSpec, ...] = (*METRICS, *SELECTIVE_METRICS)
    headline: tuple[str, ...] = ("test_acc", "test_ece")
    report_parts: frozenset[str] = field(default_factory=frozenset)
    model_key: str | None = None
    probes: bool = True
    tables: Mapping[str, Callable[[Table], Any]] = field(default_factory=dict)
    metrics_of: Callable[[StudySpec], tuple[MetricSpec, ...]] | None = None
    measured_at: Callable[[StudySpec], str] | None = None

    def study_metrics(self, spec: StudySpec) -> tuple[MetricSpec, ...]:
        """The metrics the verdicts of ``spec`` (a study of this kind) compare, in report order."""
        return self.metrics if self.metrics_of is None else self.metrics_of(spec)

    def load_track(self) -> Track:
        """The engine track of this kind (imported now)."""
        module, _, attribute = self.track.partition(":")
        return getattr(importlib.import_module(module), attribute)


_KINDS: dict[str, StudyKind] = {}


def register_kind(kind: StudyKind) -> StudyKind:
    if kind.name in _KINDS:
        raise ValueError(f"a study kind named {kind.name!r} is registered already")
    _KINDS[kind.name] = kind
    return kind


for _kind in (
    StudyKind(
        "standard",
        "techniques x label conditions x seeds on one classifier",
        track="smoothflip.engine.classifier:TRACK",
    ),
    StudyKind(
        "distillation",
        "Müller et al. 2019: does a label-smoothed teacher make a worse student?",
        track="smoothflip.engine.classifier:TRACK",
        read_arms=_generated_arms,
        user_arms=False,
        read_baseline=_hard_label_teacher,
        baselines=distillation_baselines,
        report_parts=frozenset({"distillation"}),
    ),
    StudyKind(
        "lm",
        "next-token smoothing on a causal language model (synthetic language or your text)",
        track="smoothflip.engine.language:TRACK",
        read_model=read_lm_model,
        default_selection="val_nll",
        task="language",
        label_conditions=False,
        label_flipping=False,
        metrics=LM_METRICS,
        headline=("test_nll", "test_kl", "test_ece"),
        report_parts=frozenset({"language_model"}),
    ),
    StudyKind(
        "trainer",
        "your own training function, run by run, on the study's data, labels and techniques",
        track="smoothflip.engine.trainer:TRACK",
        read_model=read_trainer_model,
        model_key="trainer",
        probes=False,
    ),
    StudyKind(
        "certified",
        "partition-ensemble certificates against label flips (DPA, Finite Aggregation), learners as packs",
        track="smoothflip.engine.certified:TRACK",
        metrics=CERTIFIED_METRICS,
        metrics_of=certified_metrics,
        measured_at=certified_measured_at,
        headline=("test_mcr", "test_acc"),
        report_parts=frozenset({"certified"}),
        probes=False,
        tables={"certify": read_certify},
    ),
):
    register_kind(_kind)

KINDS: Mapping[str, StudyKind] = _KINDS


def kind_names() -> tuple[str, ...]:
    return tuple(_KINDS)


def table_owners() -> dict[str, str]:
    """Every kind's own top-level table -> the kind it belongs to (``{"certify": "certified"}``)."""
    return {table: kind.name for kind in _KINDS.values() for table in kind.tables}


def default_kind(model_table: Any) -> str:
    """The kind of a study file that names none: the kind whose ``model_key`` its ``[model]`` has."""
    if isinstance(model_table, Mapping):
        for kind in _KINDS.values():
            if kind.model_key is not None and kind.model_key in model_table:
                return kind.name
    return "standard"


def get_kind(name: str) -> StudyKind:
    if name not in _KINDS:
        raise SpecError(f"kind = {show(name)}: must be one of {', '.join(map(repr, _KINDS))}")
    return _KINDS[name]


def baselines(spec: StudySpec) -> dict[str, str]:
    """Each compared arm's baseline arm in ``spec``, as its kind defines it."""
    return get_kind(spec.kind).baselines(spec)
