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
    certified_summary_metrics,
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


def _certified_summary(spec: StudySpec) -> tuple[SummaryColumn, ...]:
    per_k = certified_summary_metrics(spec)
    return tuple(
        SummaryColumn.of(m, group=f"k = {k}" if len(per_k) > 1 else "") for k, ms in per_k.items() for m in ms
    )


def _one_baseline(spec: StudySpec) -> dict[str, str]:
    return {a.name: spec.baseline for a in spec.arms if a.name != spec.baseline}


@dataclass(frozen=True)
class SummaryColumn:
    """One metric column of a study's summary table (mean ± sd over seeds per arm and condition:
    ``smoothflip run``'s table, the report's "Summary per technique", ``Results.summary()``).

    Attributes:
        key: the metric's key in ``metrics["selected"]``.
        label: the column's header.
        scale: display factor (100: a fraction shown in percent).
        digits: decimals shown.
        terminal: the terminal's header where it differs from ``label`` (the report explains TS).
        group: the columns of one group share it (a certified study's ``"k = 20"``): the terminal
            prints a table per group, the report adds it to the header (:attr:`title`).
    """

    key: str
    label: str
    scale: float = 1.0
    digits: int = 1
    terminal: str = ""
    group: str = ""

    @property
    def title(self) -> str:
        """The header with its group: ``"median certified radius (k = 20)"``."""
        return f"{self.label} ({self.group})" if self.group else self.label

    @classmethod
    def of(cls, metric: MetricSpec, *, group: str = "") -> SummaryColumn:
        """The column of a compared metric: its label (less a trailing ``" (<group>)"``), in percent
        when it is in points.

        Example:
            >>> mcr = SummaryColumn.of(MetricSpec("test_mcr", "median certified radius", True, 1.0, "flips"))
            >>> mcr.label, mcr.scale, mcr.digits
            ('median certified radius', 1.0, 1)
            >>> clean = MetricSpec("test_acc_k20", "clean accuracy (k = 20)", True, 100.0, "pts")
            >>> SummaryColumn.of(clean, group="k = 20").title
            'clean accuracy % (k = 20)'
        """
        label = metric.label.removesuffix(f" ({group})") if group else metric.label
        if metric.unit == "pts" and metric.scale == 100.0:
            label += " %"
        return cls(metric.key, label, metric.scale, group=group)


CLASSIFIER_SUMMARY: tuple[SummaryColumn, ...] = (
    SummaryColumn("test_acc", "accuracy %", 100.0),
    SummaryColumn("test_nll", "NLL", 1.0, 3),
    SummaryColumn("test_ece", "ECE %", 100.0),
    SummaryColumn("test_ece_ts", "ECE % after TS", 100.0, terminal="ECE % (temp. scaled)"),
)
"""The summary of a study whose kind names no summary metrics: accuracy, NLL, ECE, ECE after TS."""


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
        summary_of: the metric columns of its summary table, for one study (a certified study's
            clean accuracy, certified accuracy at each radius and median certified radius, per k);
            None: :data:`CLASSIFIER_SUMMARY`.
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
    summary_of: Callable[[StudySpec], tuple[SummaryColumn, ...]] | None = None

    def summary_columns(self, spec: StudySpec) -> tuple[SummaryColumn, ...]:
        """The metric columns of the summary table of ``spec`` (a study of this kind)."""
        return CLASSIFIER_SUMMARY if self.summary_of is None else self.summary_of(spec)

    def measured(self, spec: StudySpec) -> str:
        """Where the metrics of ``spec`` come from, short: the kind's words or the validation-selected
        epoch (the report says which validation metric: :func:`smoothflip.report.data.measured_at`)."""
        return self.measured_at(spec) if self.measured_at is not None else "the validation-selected epoch"

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
        summary_of=_certified_summary,
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
