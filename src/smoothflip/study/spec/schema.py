"""The validated study: frozen dataclasses, one per table of the study file.

A :class:`StudySpec` is what :func:`~smoothflip.study.spec.load_study` returns. Its tables are
read-only (:class:`FrozenDict`), so a spec can be hashed, pickled to Ray workers and compared.
``to_dict()`` is the plain JSON form that study identities and run ids are computed from.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smoothflip.study.ids import plain


class FrozenDict(dict):
    """A read-only dict (the parsed study's tables): picklable, deep-copyable, hashable."""

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("study settings are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]
    __ior__ = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(plain(self), sort_keys=True))


def frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of ``mapping``."""
    return FrozenDict(mapping)


@dataclass(frozen=True)
class DataSpec:
    """``[data]``: where the examples come from and how they are split."""

    source: str
    label_column: str | None = None
    test_source: str | None = None
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    split_seed: int = 0
    standardize: bool = True
    options: Mapping[str, Any] = field(default_factory=lambda: frozen({}))


def as_dict(value: Any) -> Any:
    """The plain JSON-able form of a spec dataclass (recursively), as study identities and run ids
    hash it. Fields a class lists in ``_NEW_FIELDS`` (added after smoothflip 0.1) are left out while
    they hold their default, so adding an option never changes the ids of existing studies."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        new = getattr(type(value), "_NEW_FIELDS", ())
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.name in new and item == _default(f):
                continue
            out[f.name] = as_dict(item)
        return out
    if isinstance(value, Mapping):
        return {str(k): as_dict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_dict(v) for v in value]
    return value


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: a built-in model name and its options, a user factory ``"module:function"``, or
    (``kind = "trainer"``) the user's training function ``trainer = "file.py:function"``."""

    name: str
    factory: str | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: frozen({}))
    trainer: str | None = None

    _NEW_FIELDS = ("trainer",)


@dataclass(frozen=True)
class TrainSpec:
    """``[train]``: the schedule every run of the study shares.

    The defaults (Adam, lr 0.02 annealed by a cosine over 75 epochs, batch 100) take the MNIST-1D
    CNN to about 93% test accuracy on clean labels (``benchmarks/model_budget.py``).
    """

    epochs: int | None = 75
    steps: int | None = None
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 2e-2
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    selection: str = "val_accuracy"
    augment: str = "none"
    augment_padding: int = 2
    eval_every: int = 1

    _NEW_FIELDS = ("augment", "augment_padding", "eval_every")


@dataclass(frozen=True)
class ArmSpec:
    """One ``[[arms]]`` entry: a technique = a loss with parameters, plus training-time flipping."""

    name: str
    loss: str
    params: Mapping[str, Any] = field(default_factory=lambda: frozen({}))
    disturb_alpha: float = 0.0
    flip_rate: float = 0.0
    warmup_epochs: int = 0
    role: str = "standard"
    teacher: str | None = None
    model: ModelSpec | None = None
    defense: str | None = None
    defense_options: Mapping[str, Any] = field(default_factory=lambda: frozen({}))

    @property
    def stage(self) -> int:
        """Distilled students train after their teachers (stage 2); every other arm in stage 1."""
        return 2 if self.role == "student" else 1


@dataclass(frozen=True)
class ConditionSpec:
    """One ``[[conditions]]`` entry: a label-noise model and the rates to try."""

    noise: str
    rates: tuple[float, ...]
    options: Mapping[str, Any] = field(default_factory=lambda: frozen({}))


@dataclass(frozen=True)
class ProbeSpec:
    """``[probes]``: representation probes (Müller et al. 2019) recorded for the first ``seeds`` seeds.

    For every arm and condition at those seeds the engine records, each epoch, the mutual-information
    estimate between an example and its ``mi_classes`` logit difference under ``augmentations``
    random augmentations of ``examples_per_class`` training examples per class, and at the end the
    penultimate-layer features of ``examples_per_class`` test examples of each of ``classes``.
    Probes only observe: they never change training.
    """

    seeds: int = 1
    examples_per_class: int = 100
    classes: tuple[int, ...] = (0, 1, 2)
    mi_classes: tuple[int, ...] = (0, 1)
    augmentations: int = 5


@dataclass(frozen=True)
class DistillationSpec:
    """``[distillation]``: teachers over a smoothing grid, students distilled from each at each temperature.

    The study's arms are generated from it (see :func:`distillation_arms`): a teacher per
    ``teacher_eps`` (label-smoothed cross-entropy; the teacher model is ``teacher_model`` or the
    study's model), a student per teacher and temperature trained with
    :func:`~smoothflip.losses.distillation_loss` (``alpha`` weights the teacher's soft targets; 1 =
    the teacher alone, as in Müller et al. 2019), and students trained directly with label smoothing
    for every ``student_eps`` (the comparison).
    """

    teacher_eps: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4)
    temperatures: tuple[float, ...] = (1.0, 2.0, 4.0)
    alpha: float = 1.0
    student_eps: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4)
    teacher_model: ModelSpec | None = None


@dataclass(frozen=True)
class CertifySpec:
    """``[certify]``: partition-ensemble certificates against label flips (``kind = "certified"``).

    Every run trains, for each ``k`` of ``partitions``, an ensemble of ``d*k`` base learners (the
    arm's technique) on label-independent parts of its training labels (:func:`smoothflip.certify.
    partition` with ``scheme``, ``d`` and a salt drawn from the run's seed), and certifies each test
    prediction (DPA for ``d = 1``, Finite Aggregation for ``d > 1``). ``radii`` are the numbers of
    label flips certified accuracy is reported at. ``selection``: ``"last"`` (every learner keeps its
    last epoch) or ``"partition"`` (each learner holds out ``holdout`` of its own part, by a
    label-independent draw, and keeps its epoch of best accuracy on those labels).
    ``attack_checks`` runs at the study's first seed also retrain every ensemble that many times on
    labels flipped by the ``attack`` strategy of :func:`smoothflip.attacks.label_flip` (with
    ``attack_options``), a budget of one of the radii each, and count the certified predictions the
    attack changed (a certificate never breaks: a broken one is a bug).
    """

    partitions: tuple[int, ...] = (50,)
    scheme: str = "hash"
    d: int = 1
    radii: tuple[int, ...] = ()
    selection: str = "last"
    holdout: float = 0.0
    attack_checks: int = 1
    attack: str = "margin"
    attack_options: Mapping[str, Any] = field(default_factory=lambda: frozen({}))


@dataclass(frozen=True)
class AnalysisSpec:
    """``[analysis]``: how the verdicts are read. Never part of a run's or a study's identity:
    changing it re-reads the stored runs, it never invalidates them.

    Attributes:
        primary: key of the primary metric (``"test_acc"``); ``""``: the kind's first metric
            (accuracy). Its verdicts control the family-wise error rate over every arm x condition
            (Holm); every other metric is secondary (Benjamini-Hochberg).
        alpha: the family-wise error rate of the primary verdicts and the false discovery rate of
            the secondary ones.
        power: the power the minimum detectable effect of every cell is computed for.
        margin: equivalence margins given in the study file, metric key -> margin in display units
            (accuracy in points); metrics not named use their documented default.
        target_mde: the effects inconclusive cells are priced to detect, metric key -> display units;
            metrics not named use twice their margin.
    """

    primary: str = ""
    alpha: float = 0.05
    power: float = 0.8
    margin: Mapping[str, float] = field(default_factory=lambda: frozen({}))
    target_mde: Mapping[str, float] = field(default_factory=lambda: frozen({}))


@dataclass(frozen=True)
class StudySpec:
    """A whole study: techniques (arms) x label conditions x seeds on one dataset, model and schedule."""

    name: str
    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    arms: tuple[ArmSpec, ...]
    conditions: tuple[ConditionSpec, ...]
    seeds: tuple[int, ...]
    baseline: str
    description: str = ""
    probes: ProbeSpec = field(default_factory=ProbeSpec)
    kind: str = "standard"
    distillation: DistillationSpec | None = None
    base_dir: str = "."
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)
    certify: CertifySpec | None = None

    _NEW_FIELDS = ("certify",)

    def baselines(self) -> dict[str, str]:
        """Each compared arm's baseline arm, as the study's kind defines it (see
        :func:`smoothflip.study.kinds.baselines`)."""
        from smoothflip.study.kinds import baselines

        return baselines(self)

    def arm(self, name: str) -> ArmSpec:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (mappings as dicts, tuples as lists), what study identities are hashed
        from; ``base_dir`` and ``analysis`` (how verdicts are read, never what runs compute) left out."""
        return {k: v for k, v in as_dict(self).items() if k not in ("base_dir", "analysis")}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
