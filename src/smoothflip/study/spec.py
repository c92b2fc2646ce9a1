"""The study file: TOML validated into frozen dataclasses.

Every problem is a :class:`SpecError` (a ``ValueError``) whose one-line message names the key,
the bad value and what is allowed, e.g. ``train.lr = -0.1: must be > 0``.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from smoothflip.techniques import ARM_OPTIONS, LOSSES, REQUIRED, check_arm

STUDY_KINDS = ("standard", "distillation", "lm")
LM_LOSSES = ("ce", "smoothed_ce", "confidence_penalty")
LM_SOURCES = ("language",)
NOISE_MODELS = ("none", "symmetric", "pair", "asymmetric", "matrix", "random_matrix", "instance")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
SELECTION_METRICS = ("val_accuracy", "val_nll")


class SpecError(ValueError):
    """A study file that cannot be run; the message is one line naming the key and the problem."""


class FrozenDict(dict):
    """A read-only dict (the parsed study's tables): picklable, deep-copyable, hashable."""

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("study settings are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]
    __ior__ = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(_plain(self), sort_keys=True))


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
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
    options: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: a built-in model name and its options, or a user factory ``"module:function"``."""

    name: str
    factory: str | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))


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


@dataclass(frozen=True)
class ArmSpec:
    """One ``[[arms]]`` entry: a technique = a loss with parameters, plus training-time flipping."""

    name: str
    loss: str
    params: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    disturb_alpha: float = 0.0
    flip_rate: float = 0.0
    warmup_epochs: int = 0
    role: str = "standard"
    teacher: str | None = None
    model: ModelSpec | None = None
    defense: str | None = None
    defense_options: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))

    @property
    def stage(self) -> int:
        """Distilled students train after their teachers (stage 2); every other arm in stage 1."""
        return 2 if self.role == "student" else 1


@dataclass(frozen=True)
class ConditionSpec:
    """One ``[[conditions]]`` entry: a label-noise model and the rates to try."""

    noise: str
    rates: tuple[float, ...]
    options: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))


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

    def baselines(self) -> dict[str, str]:
        """Each compared arm's baseline: ``baseline`` for a standard study; in a distillation study a
        teacher's is the hard-label teacher, a directly smoothed student's the student trained with
        ``eps = 0`` (when there is one), and a distilled student's the student of the hard-label
        teacher at the same temperature."""
        if self.kind != "distillation":
            return {a.name: self.baseline for a in self.arms if a.name != self.baseline}
        names = {a.name for a in self.arms}
        out = {}
        for arm in self.arms:
            if arm.role == "teacher":
                base = "teacher-ls-0"
            elif arm.role == "direct":
                base = "student-ls-0"
            else:
                base = f"student-T{arm.params['temperature']:g}-from-ls-0"
            if base in names and base != arm.name:
                out[arm.name] = base
        return out

    def arm(self, name: str) -> ArmSpec:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (mappings as dicts, tuples as lists); ``base_dir`` left out."""
        return _plain({k: v for k, v in asdict(self).items() if k != "base_dir"})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- reading tables

_MISSING = object()


class _Table:
    """A TOML table being read: typed access by key, with the key path in every error."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"{path} must be a table, got {_show(data)}")
        self.data = dict(data)
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is _MISSING:
                raise SpecError(f"{self.key(name)} is required")
            return default
        return self.data[name]

    def str(self, name: str, default: Any = _MISSING, *, choices: Sequence[str] | None = None) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise SpecError(f"{self.key(name)} = {_show(value)}: must be a string")
        if choices is not None and value not in choices:
            raise SpecError(
                f"{self.key(name)} = {_show(value)}: must be one of {', '.join(map(repr, choices))}"
            )
        return value

    def bool(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise SpecError(f"{self.key(name)} = {_show(value)}: must be true or false")
        return value

    def int(self, name: str, default: Any = _MISSING, *, low: int | None = None) -> Any:
        value = self.raw(name, default)
        if value is default and default is None:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{self.key(name)} = {_show(value)}: must be an integer")
        if low is not None and value < low:
            raise SpecError(f"{self.key(name)} = {value}: must be >= {low}")
        return value

    def float(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ) -> Any:
        value = self.raw(name, default)
        if value is default and default is None:
            return value
        return _number(self.key(name), value, low=low, high=high, low_open=low_open, high_open=high_open)

    def finish(self, allowed: Sequence[str] | None = None, *, what: str = "key") -> None:
        allowed = list(allowed) if allowed is not None else sorted(self.used)
        unknown = [k for k in self.data if k not in allowed]
        if unknown:
            raise SpecError(f"{self.key(unknown[0])}: unknown {what}; allowed: {', '.join(allowed)}")


def _number(
    key: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{key} = {_show(value)}: must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise SpecError(f"{key} = {_show(value)}: must be finite")
    if low is not None and (value <= low if low_open else value < low):
        raise SpecError(f"{key} = {value:g}: must be {'>' if low_open else '>='} {low:g}")
    if high is not None and (value >= high if high_open else value > high):
        raise SpecError(f"{key} = {value:g}: must be {'<' if high_open else '<='} {high:g}")
    return value


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    return repr(value)


# --------------------------------------------------------------------------- sections


def _read_data(raw: Any) -> DataSpec:
    t = _Table(raw, "data")
    source = t.str("source")
    if not source:
        raise SpecError("data.source must not be empty")
    options = t.raw("options", {})
    if not isinstance(options, Mapping):
        raise SpecError(f"data.options = {_show(options)}: must be a table")
    spec = DataSpec(
        source=source,
        label_column=t.str("label_column", None),
        test_source=t.str("test_source", None),
        test_fraction=t.float("test_fraction", 0.2, low=0.0, high=1.0, low_open=True, high_open=True),
        validation_fraction=t.float("validation_fraction", 0.1, low=0.0, high=1.0, high_open=True),
        split_seed=t.int("split_seed", 0, low=0),
        standardize=t.bool("standardize", True),
        options=_frozen(options),
    )
    t.finish()
    return spec


def _read_lm_model(raw: Any, path: str = "model") -> ModelSpec:
    from smoothflip.lm.models import LM_MODEL_ALIASES, LM_MODELS, lm_options

    t = _Table(raw, path)
    if t.has("factory"):
        raise SpecError(
            f"{path}.factory: a language-model study uses a built-in model ({', '.join(LM_MODELS)})"
        )
    name = t.str("name", LM_MODELS[0])
    name = LM_MODEL_ALIASES.get(name, name)
    if name not in LM_MODELS:
        raise SpecError(
            f'{path}.name = {_show(name)}: must be one of {", ".join(map(repr, LM_MODELS))} for kind = "lm"'
        )
    # A window of 8 tokens for the MLP and the Transformer; the GRU carries its state along the
    # whole sequence unless a shorter context is asked for.
    defaults = {"context": 1024 if name == "gru" else 8, **lm_options(name)}
    options = {k: v for k, v in t.data.items() if k != "name"}
    for key in options:
        if key not in defaults:
            raise SpecError(
                f"{path}.{key}: unknown option for {name!r}; allowed: {', '.join(['name', *defaults])}"
            )
    if isinstance(options.get("context", 8), bool) or not isinstance(options.get("context", 8), int):
        raise SpecError(
            f"{path}.context = {_show(options['context'])}: must be an integer (tokens of context)"
        )
    if options.get("context", 8) < 1:
        raise SpecError(f"{path}.context = {options['context']}: must be >= 1")
    return ModelSpec(name=name, options=_frozen({**defaults, **options}))


def _read_model(raw: Any, path: str = "model") -> ModelSpec:
    from smoothflip.models import MODELS, model_options

    t = _Table(raw, path)
    factory = t.str("factory", None)
    if factory is not None:
        name = t.str("name", "custom")
        if name != "custom":
            raise SpecError(
                f'{path}.name = {_show(name)}: leave it out (or write "custom") when {path}.factory is given'
            )
        options = {k: v for k, v in t.data.items() if k not in ("name", "factory")}
        return ModelSpec(name="custom", factory=factory, options=_frozen(options))
    name = t.str("name", "mlp")
    if name not in MODELS:
        raise SpecError(
            f"{path}.name = {_show(name)}: must be one of {', '.join(map(repr, MODELS))}, "
            'or give model.factory = "module:function" for your own nn.Module'
        )
    defaults = model_options(name)
    options = {k: v for k, v in t.data.items() if k != "name"}
    for key in options:
        if key not in defaults:
            allowed = ", ".join(["name", "factory", *defaults])
            raise SpecError(f"{path}.{key}: unknown option for {name!r}; allowed: {allowed}")
    return ModelSpec(name=name, options=_frozen({**defaults, **options}))


def _read_train(raw: Any, *, default_selection: str = "val_accuracy") -> TrainSpec:
    t = _Table(raw, "train")
    epochs = t.int("epochs", None, low=1)
    steps = t.int("steps", None, low=1)
    if epochs is not None and steps is not None:
        raise SpecError("train: give either epochs or steps, not both")
    if epochs is None and steps is None:
        epochs = TrainSpec.epochs
    spec = TrainSpec(
        epochs=epochs,
        steps=steps,
        batch_size=t.int("batch_size", 100, low=1),
        optimizer=t.str("optimizer", "adam", choices=OPTIMIZERS),
        lr=t.float("lr", TrainSpec.lr, low=0.0, low_open=True),
        momentum=t.float("momentum", 0.9, low=0.0, high=1.0, high_open=True),
        nesterov=t.bool("nesterov", False),
        weight_decay=t.float("weight_decay", 0.0, low=0.0),
        lr_schedule=t.str("lr_schedule", TrainSpec.lr_schedule, choices=LR_SCHEDULES),
        selection=t.str("selection", default_selection, choices=SELECTION_METRICS),
    )
    t.finish()
    return spec


def _read_arm(raw: Any, index: int) -> ArmSpec:
    path = f"arms[{index}]"
    t = _Table(raw, path)
    name = t.str("name")
    if not name.strip():
        raise SpecError(f"{path}.name must not be empty")
    loss = t.str("loss", "ce", choices=tuple(name for name, d in LOSSES.items() if not d.needs_teacher))
    definition = LOSSES[loss]
    defense, defense_options = _read_defense(t, path)
    disturb_alpha = t.float("disturb_alpha", 0.0, low=0.0, high=1.0)
    flip_rate = t.float("flip_rate", 0.0, low=0.0, high=1.0, high_open=True)
    warmup_epochs = t.int("warmup_epochs", 0, low=0)
    params: dict[str, Any] = {}
    for key, default in definition.params.items():
        if t.has(key):
            value = t.raw(key)
            if isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # every numeric loss parameter is a float: 0 and 0.0 are one run
            params[key] = value
        elif default is REQUIRED:
            raise SpecError(f"{path}.{key} is required for loss {loss!r}")
        else:
            params[key] = default
    t.finish(
        [*("name", "loss"), *ARM_OPTIONS, "defense", "defense_options", *definition.params],
        what=f"key for loss {loss!r}",
    )
    if disturb_alpha > 0 and flip_rate > 0:
        raise SpecError(f"{path}: use disturb_alpha or flip_rate, not both")
    prior = params.get("prior")
    try:
        check_arm(loss, params, num_classes=len(prior) if isinstance(prior, list) else 10)
    except (ValueError, TypeError) as err:
        raise SpecError(f"{path} ({name}): {err}") from None
    return ArmSpec(
        name=name,
        loss=loss,
        params=_frozen(params),
        disturb_alpha=disturb_alpha,
        flip_rate=flip_rate,
        warmup_epochs=warmup_epochs,
        defense=defense,
        defense_options=_frozen(defense_options),
    )


_CONDITION_OPTIONS = {
    "none": (),
    "symmetric": ("mode",),
    "pair": ("mode",),
    "asymmetric": ("mapping", "mode"),
    "matrix": ("matrix", "mode"),
    "random_matrix": ("sparsity", "mode"),
    "instance": (),
}
MODES = {
    "symmetric": ("exclude_true", "include_true", "exact"),
    "pair": ("random", "exact"),
    "asymmetric": ("random", "exact"),
    "matrix": ("random", "exact"),
    "random_matrix": ("random", "exact"),
}


def _read_defense(t: _Table, path: str) -> tuple[str | None, dict[str, Any]]:
    """An arm's ``defense`` (applied to its training labels before training) and its options."""
    from smoothflip.defenses import DEFENSE_OPTIONS, DEFENSES, check_defense_options

    if not t.has("defense"):
        if t.has("defense_options"):
            raise SpecError(f"{path}.defense_options: give defense too")
        return None, {}
    name = t.str("defense", choices=DEFENSES)
    options = t.raw("defense_options", {})
    if not isinstance(options, Mapping):
        raise SpecError(f"{path}.defense_options = {_show(options)}: must be a table")
    for key in options:
        if key not in DEFENSE_OPTIONS[name]:
            allowed = ", ".join(DEFENSE_OPTIONS[name]) or "none"
            raise SpecError(
                f"{path}.defense_options.{key}: unknown option for defense {name!r}; allowed: {allowed}"
            )
    try:
        check_defense_options(name, options)
    except (ValueError, TypeError) as err:
        raise SpecError(f"{path}.defense_options: {err}") from None
    return name, dict(options)


def _read_attack(t: _Table, path: str) -> ConditionSpec:
    """``{attack = "greedy", budgets = [0.05, 0.1], ...options}``: a label-flip attack as a condition."""
    from smoothflip.attacks import STRATEGIES, STRATEGY_OPTIONS

    if t.has("noise") or t.has("rates"):
        raise SpecError(f"{path}: an attack takes attack and budgets, not noise or rates")
    strategy = t.str("attack", choices=STRATEGIES)
    raw_budgets = t.raw("budgets")
    if not isinstance(raw_budgets, list) or not raw_budgets:
        raise SpecError(
            f"{path}.budgets = {_show(raw_budgets)}: must be a non-empty list of fractions in [0, 1)"
        )
    budgets = tuple(
        _number(f"{path}.budgets[{i}]", b, low=0.0, high=1.0, high_open=True)
        for i, b in enumerate(raw_budgets)
    )
    if len(set(budgets)) != len(budgets):
        raise SpecError(f"{path}.budgets = {list(budgets)}: budgets must not repeat")
    allowed = STRATEGY_OPTIONS[strategy]
    options: dict[str, Any] = {"strategy": strategy}
    for key, default in allowed.items():
        if t.has(key):
            options[key] = t.raw(key)
        elif default is None:
            raise SpecError(f"{path}.{key} is required for attack {strategy!r}")
        else:
            options[key] = default
    t.finish(["attack", "budgets", *allowed], what=f"key for attack {strategy!r}")
    return ConditionSpec(noise="attack", rates=budgets, options=_frozen(options))


def _read_condition(raw: Any, index: int) -> ConditionSpec:
    path = f"conditions[{index}]"
    t = _Table(raw, path)
    if t.has("attack"):
        return _read_attack(t, path)
    noise = t.str("noise", "symmetric", choices=NOISE_MODELS)
    if noise in ("none", "matrix"):
        if t.has("rates"):
            raise SpecError(f"{path}.rates: not used with noise = {noise!r}")
        rates: tuple[float, ...] = (0.0,) if noise == "none" else (math.nan,)
    else:
        raw_rates = t.raw("rates")
        if not isinstance(raw_rates, list) or not raw_rates:
            raise SpecError(f"{path}.rates = {_show(raw_rates)}: must be a non-empty list of rates in [0, 1)")
        rates = tuple(
            _number(f"{path}.rates[{i}]", r, low=0.0, high=1.0, high_open=True)
            for i, r in enumerate(raw_rates)
        )
        if len(set(rates)) != len(rates):
            raise SpecError(f"{path}.rates = {list(rates)}: rates must not repeat")
    options: dict[str, Any] = {}
    if noise in MODES:
        options["mode"] = t.str("mode", MODES[noise][0], choices=MODES[noise])
    if noise == "asymmetric":
        options["mapping"] = _read_mapping(t.raw("mapping"), f"{path}.mapping")
    if noise == "matrix":
        options["matrix"] = _read_matrix(t.raw("matrix"), f"{path}.matrix")
    if noise == "random_matrix":
        options["sparsity"] = t.float("sparsity", 0.0, low=0.0, high=1.0, high_open=True)
    t.finish(["noise", "rates", *_CONDITION_OPTIONS[noise]], what=f"key for noise {noise!r}")
    return ConditionSpec(noise=noise, rates=rates, options=_frozen(options))


def _read_mapping(value: Any, key: str) -> Any:
    if isinstance(value, str):
        if value not in ("mnist", "cifar10"):
            raise SpecError(
                f"{key} = {_show(value)}: must be 'mnist', 'cifar10' or a table {{source = target}}"
            )
        return value
    if not isinstance(value, Mapping) or not value:
        raise SpecError(f"{key} = {_show(value)}: must be 'mnist', 'cifar10' or a table like {{\"2\" = 7}}")
    mapping = {}
    for source, target in value.items():
        try:
            s = int(source)
        except ValueError:
            raise SpecError(f"{key}: key {_show(source)} must be a class index") from None
        if isinstance(target, bool) or not isinstance(target, int):
            raise SpecError(f"{key}.{source} = {_show(target)}: must be a class index")
        mapping[str(s)] = target
    return mapping


def _read_matrix(value: Any, key: str) -> list[list[float]]:
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise SpecError(f"{key}: must be a list of rows (a K x K row-stochastic matrix)")
    rows = [
        [_number(f"{key}[{i}][{j}]", v, low=0.0) for j, v in enumerate(row)] for i, row in enumerate(value)
    ]
    k = len(rows)
    for i, row in enumerate(rows):
        if len(row) != k:
            raise SpecError(f"{key}[{i}] has {len(row)} entries; the matrix must be {k} x {k}")
        if abs(sum(row) - 1.0) > 1e-6:
            raise SpecError(f"{key}[{i}] sums to {sum(row):.6g}; each row T[true, :] must sum to 1")
    return rows


def _read_class_list(t: _Table, name: str, default: tuple[int, ...], size: int) -> tuple[int, ...]:
    value = t.raw(name, list(default))
    if (
        not isinstance(value, list)
        or len(value) != size
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        or len(set(value)) != size
    ):
        raise SpecError(f"probes.{name} = {_show(value)}: must be a list of {size} distinct class indices")
    return tuple(value)


def _read_probes(raw: Any) -> ProbeSpec:
    t = _Table(raw, "probes")
    spec = ProbeSpec(
        seeds=t.int("seeds", ProbeSpec.seeds, low=0),
        examples_per_class=t.int("examples_per_class", ProbeSpec.examples_per_class, low=2),
        classes=_read_class_list(t, "classes", ProbeSpec.classes, 3),
        mi_classes=_read_class_list(t, "mi_classes", ProbeSpec.mi_classes, 2),
        augmentations=t.int("augmentations", ProbeSpec.augmentations, low=2),
    )
    t.finish()
    return spec


def _float_list(
    t: _Table, name: str, default: tuple[float, ...], *, low: float, high: float, low_open: bool = False
):
    value = t.raw(name, list(default))
    if not isinstance(value, list) or not value:
        raise SpecError(f"{t.key(name)} = {_show(value)}: must be a non-empty list of numbers")
    out = tuple(
        _number(f"{t.key(name)}[{i}]", v, low=low, high=high, low_open=low_open) for i, v in enumerate(value)
    )
    if len(set(out)) != len(out):
        raise SpecError(f"{t.key(name)} = {list(out)}: values must not repeat")
    return out


def _read_distillation(raw: Any) -> DistillationSpec:
    t = _Table(raw, "distillation")
    teacher_eps = _float_list(t, "teacher_eps", DistillationSpec.teacher_eps, low=-1.0, high=1.0)
    if 0.0 not in teacher_eps:
        raise SpecError(
            f"distillation.teacher_eps = {list(teacher_eps)}: must include 0 (the hard-label teacher "
            "every smoothed teacher is compared with)"
        )
    spec = DistillationSpec(
        teacher_eps=teacher_eps,
        temperatures=_float_list(
            t, "temperatures", DistillationSpec.temperatures, low=0.0, high=1e3, low_open=True
        ),
        alpha=t.float("alpha", DistillationSpec.alpha, low=0.0, high=1.0),
        student_eps=_float_list(t, "student_eps", tuple(e for e in teacher_eps), low=-1.0, high=1.0),
        teacher_model=_read_model(t.raw("teacher_model"), path="distillation.teacher_model")
        if t.has("teacher_model")
        else None,
    )
    t.finish()
    return spec


def _check_lm_study(arms: Sequence[ArmSpec], top: _Table) -> None:
    """A language-model study smooths next-token targets; it has no label-noise conditions."""
    for i, arm in enumerate(arms):
        if arm.loss not in LM_LOSSES:
            raise SpecError(
                f"arms[{i}].loss = {_show(arm.loss)}: must be one of "
                f'{", ".join(map(repr, LM_LOSSES))} for kind = "lm"'
            )
        if arm.disturb_alpha or arm.flip_rate:
            raise SpecError(
                f'arms[{i}] ({arm.name}): disturb_alpha / flip_rate are not available for kind = "lm"'
            )
        if arm.defense is not None:
            raise SpecError(f'arms[{i}] ({arm.name}): defense is not available for kind = "lm"')
        if arm.loss == "smoothed_ce":
            if arm.params.get("convention") != "uniform":
                raise SpecError(f"arms[{i}] ({arm.name}): convention must be 'uniform' for kind = \"lm\"")
            if arm.params.get("prior") not in ("uniform", "train"):
                raise SpecError(
                    f"arms[{i}] ({arm.name}): prior must be 'uniform' or 'train' for kind = \"lm\""
                )
    raw = top.data.get("conditions")
    if raw is not None and raw != [{"noise": "none"}]:
        raise SpecError(
            'conditions: a language-model study (kind = "lm") trains on the corpus as it is; '
            "remove [[conditions]]"
        )


def distillation_arms(spec: DistillationSpec) -> tuple[ArmSpec, ...]:
    """The arms of a distillation study: teachers, directly smoothed students, distilled students."""
    arms = []
    for eps in spec.teacher_eps:
        arms.append(
            ArmSpec(
                name=f"teacher-ls-{eps:g}",
                loss="smoothed_ce",
                params=_frozen(
                    {"eps": float(eps), "convention": "uniform", "prior": "uniform", "z_loss": 0.0}
                ),
                role="teacher",
                model=spec.teacher_model,
            )
        )
    for eps in spec.student_eps:
        arms.append(
            ArmSpec(
                name=f"student-ls-{eps:g}",
                loss="smoothed_ce",
                params=_frozen(
                    {"eps": float(eps), "convention": "uniform", "prior": "uniform", "z_loss": 0.0}
                ),
                role="direct",
            )
        )
    for eps in spec.teacher_eps:
        for temperature in spec.temperatures:
            arms.append(
                ArmSpec(
                    name=f"student-T{temperature:g}-from-ls-{eps:g}",
                    loss="distill",
                    params=_frozen({"temperature": float(temperature), "alpha": float(spec.alpha)}),
                    role="student",
                    teacher=f"teacher-ls-{eps:g}",
                )
            )
    return tuple(arms)


def _read_seeds(value: Any) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise SpecError(f"seeds = {_show(value)}: must be a count (int >= 1) or a list of distinct ints >= 0")
    if isinstance(value, int):
        if value < 1:
            raise SpecError(f"seeds = {value}: a count must be >= 1")
        return tuple(range(value))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) for s in value)
    ):
        if len(set(value)) != len(value) or min(value) < 0:
            raise SpecError(f"seeds = {value}: seeds must be distinct ints >= 0")
        return tuple(value)
    raise SpecError(f"seeds = {_show(value)}: must be a count (int >= 1) or a list of distinct ints >= 0")


# --------------------------------------------------------------------------- entry points

TOP_LEVEL_KEYS = (
    "name",
    "description",
    "kind",
    "seeds",
    "baseline",
    "data",
    "model",
    "train",
    "arms",
    "distillation",
    "conditions",
    "probes",
)


def parse_study(
    document: Mapping[str, Any], *, base_dir: str | Path = ".", default_name: str = "study"
) -> StudySpec:
    """Validate a parsed TOML document into a :class:`StudySpec`.

    Args:
        document: the parsed study file.
        base_dir: folder that relative paths (data files, model factories) resolve against.
        default_name: the study's name when the file gives none.

    Raises:
        SpecError: one line naming the key, the value and what is allowed.
    """
    top = _Table(document, "")
    name = top.str("name", default_name)
    if not name.strip():
        raise SpecError("name must not be empty")
    description = top.str("description", "")
    seeds = _read_seeds(top.raw("seeds", 3))
    data = _read_data(top.raw("data"))
    kind = top.str("kind", "standard", choices=STUDY_KINDS)
    model = _read_lm_model(top.raw("model", {})) if kind == "lm" else _read_model(top.raw("model", {}))
    train = _read_train(top.raw("train", {}), default_selection="val_nll" if kind == "lm" else "val_accuracy")
    distillation = None
    if kind == "distillation":
        if top.has("arms"):
            raise SpecError(
                "arms: a distillation study generates its arms from [distillation]; remove [[arms]]"
            )
        distillation = _read_distillation(top.raw("distillation", {}))
        arms = distillation_arms(distillation)
    else:
        if top.has("distillation"):
            raise SpecError('distillation: only for kind = "distillation"')
        raw_arms = top.raw("arms")
        if not isinstance(raw_arms, list) or not raw_arms:
            raise SpecError("arms: give at least one [[arms]] table (name, loss, parameters)")
        arms = tuple(_read_arm(a, i) for i, a in enumerate(raw_arms))
    names = [a.name for a in arms]
    for i, arm_name in enumerate(names):
        if arm_name in names[:i]:
            raise SpecError(f"arms[{i}].name = {_show(arm_name)}: arm names must be unique")
    if kind == "lm":
        _check_lm_study(arms, top)
    raw_conditions = top.raw("conditions", [{"noise": "none"}])
    if not isinstance(raw_conditions, list) or not raw_conditions:
        raise SpecError("conditions: give at least one [[conditions]] table (noise, rates)")
    conditions = tuple(_read_condition(c, i) for i, c in enumerate(raw_conditions))
    probes = _read_probes(top.raw("probes", {}))
    if kind == "distillation" and top.has("baseline"):
        raise SpecError(
            "baseline: a distillation study compares each arm with its hard-label counterpart; remove it"
        )
    baseline = top.str("baseline", "teacher-ls-0" if kind == "distillation" else arms[0].name)
    if baseline not in names:
        raise SpecError(
            f"baseline = {_show(baseline)}: must name one of the arms: {', '.join(map(repr, names))}"
        )
    top.finish(TOP_LEVEL_KEYS)
    return StudySpec(
        name=name,
        data=data,
        model=model,
        train=train,
        arms=arms,
        conditions=conditions,
        seeds=seeds,
        baseline=baseline,
        description=description,
        probes=probes,
        kind=kind,
        distillation=distillation,
        base_dir=str(base_dir),
    )


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file.

    Raises:
        FileNotFoundError: no such file.
        SpecError: the file is not TOML, or a key or value is wrong.
    """
    path = Path(path)
    if path.is_dir():
        hint = (
            " (a study directory? its resolved study is study.toml inside)"
            if (path / "study.toml").is_file()
            else ""
        )
        raise FileNotFoundError(f"{path} is a directory, not a study file{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"study file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path} is not a text (UTF-8) TOML file") from None
    return loads_study(text, base_dir=path.resolve().parent, default_name=path.stem, origin=str(path))


def loads_study(
    text: str, *, base_dir: str | Path = ".", default_name: str = "study", origin: str = "study file"
) -> StudySpec:
    """Parse TOML text and validate it (see :func:`parse_study`)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{origin} is not valid TOML: {err}") from None
    return parse_study(document, base_dir=base_dir, default_name=default_name)


# --------------------------------------------------------------------------- writing (resolved TOML)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write the non-finite number {value!r} to TOML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key, ensure_ascii=False)


def _toml_lines(pairs: Mapping[str, Any]) -> list[str]:
    return [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in pairs.items() if v is not None]


def dumps_study(spec: StudySpec) -> str:
    """The resolved study as TOML: every default written out, so the file reruns the same study."""
    out = [
        "# Resolved by smoothflip: every default is written out. Rerun with `smoothflip run` on this file.",
        *_toml_lines(
            {
                "name": spec.name,
                "description": spec.description or None,
                "seeds": list(spec.seeds),
                "baseline": spec.baseline if spec.kind != "distillation" else None,
            }
        ),
        "",
        "[data]",
    ]
    data = asdict(spec.data)
    options = data.pop("options")
    out += _toml_lines(data)
    if options:
        out += ["", "[data.options]", *_toml_lines(dict(options))]
    out += ["", "[model]"]
    model = {"name": spec.model.name, "factory": spec.model.factory, **dict(spec.model.options)}
    out += _toml_lines(model)
    out += ["", "[train]", *_toml_lines(asdict(spec.train))]
    if spec.kind == "lm":
        out[1:1] = ['kind = "lm"']
    if spec.kind == "distillation" and spec.distillation is not None:
        d = spec.distillation
        out[1:1] = ['kind = "distillation"']
        out += ["", "[distillation]"]
        out += _toml_lines(
            {
                "teacher_eps": list(d.teacher_eps),
                "temperatures": list(d.temperatures),
                "alpha": d.alpha,
                "student_eps": list(d.student_eps),
            }
        )
        if d.teacher_model is not None:
            teacher = {
                "name": d.teacher_model.name,
                "factory": d.teacher_model.factory,
                **dict(d.teacher_model.options),
            }
            out += ["", "[distillation.teacher_model]", *_toml_lines(teacher)]
    for arm in spec.arms if spec.kind != "distillation" else ():
        out += ["", "[[arms]]"]
        out += _toml_lines({"name": arm.name, "loss": arm.loss, **dict(arm.params)})
        out += _toml_lines(
            {
                "disturb_alpha": arm.disturb_alpha,
                "flip_rate": arm.flip_rate,
                "warmup_epochs": arm.warmup_epochs,
            }
        )
        if arm.defense is not None:
            out += _toml_lines({"defense": arm.defense, "defense_options": dict(arm.defense_options)})
    for condition in spec.conditions if spec.kind != "lm" else ():
        if condition.noise == "attack":
            options = dict(condition.options)
            out += ["", "[[conditions]]", *_toml_lines({"attack": options.pop("strategy")})]
            out += _toml_lines({"budgets": list(condition.rates), **options})
            continue
        out += ["", "[[conditions]]", *_toml_lines({"noise": condition.noise})]
        if condition.noise not in ("none", "matrix"):
            out += _toml_lines({"rates": list(condition.rates)})
        out += _toml_lines(dict(condition.options))
    out += ["", "[probes]", *_toml_lines(_plain(asdict(spec.probes)))]
    return "\n".join(out) + "\n"
