"""Label conditions: the noise-model registry and the resolved conditions of a study.

A study's ``[[conditions]]`` name noise models (``noise = "symmetric"``) or attacks
(``attack = "greedy"``). Each is one :class:`NoiseModel` entry in :data:`NOISE_MODELS`: its options
(with defaults and how a study file's value is read), whether it takes rates, how it corrupts the
training labels and how it is labelled for display. The spec reads the entry to validate a study
file, and :meth:`LabelCondition.apply` calls it; nothing else knows a noise model by name.

A :class:`LabelCondition` is one resolved point of ``[[conditions]]``: a model with one rate (rate
0 of any model is the single ``clean`` condition). Results are keyed by its
:attr:`~LabelCondition.condition_id`, a hash of its resolved definition; its label is for display
only (two conditions that would print alike get distinguishing labels). Test labels are never
touched.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from smoothflip import noise
from smoothflip.errors import SpecError
from smoothflip.study.ids import condition_id
from smoothflip.study.tables import Table, number, show

if TYPE_CHECKING:
    from smoothflip.study.spec.schema import ConditionSpec

ApplyFn = Callable[..., noise.NoisyLabels]


@dataclass(frozen=True)
class Option:
    """One option of a noise model: its default and how a study file's value is read.

    ``read(value, key)`` returns the value to store (JSON-able) or raises :class:`SpecError`
    naming ``key``. ``default`` of ``None`` with ``required=True`` means the file must give it.
    """

    default: Any
    read: Callable[[Any, str], Any]
    required: bool = False


@dataclass(frozen=True)
class NoiseModel:
    """A noise model (or the attack family) a ``[[conditions]]`` table may name.

    Attributes:
        name: ``noise = "<name>"`` (``"attack"`` for ``attack = "<strategy>"`` tables).
        summary: one line for the docs and ``--help``.
        apply: ``apply(options, rate, features, labels, num_classes, rng, class_names) -> NoisyLabels``.
        options: the model's own keys, in file order.
        fixed_rates: for models whose table gives no ``rates`` (``none``, ``matrix``): the rates
            recorded in the spec (``(0.0,)``; ``(nan,)`` where :attr:`rate_of` decides).
        rate_of: for models without rates, the rate implied by the options (``matrix``: its mean
            off-diagonal row mass).
        describe: extra words for the label (``["exact"]`` -> ``"symmetric 20% (exact)"``).
        detail: a longer description used only when two conditions would otherwise print alike.
        read: a custom reader of the whole table (the attack family), else the generic one.
        check_examples: a study checks the condition on this many training examples before it
            trains (None: all; attacks are costly, so they are tried on a sample).
    """

    name: str
    summary: str
    apply: ApplyFn
    options: Mapping[str, Option] = field(default_factory=dict)
    fixed_rates: tuple[float, ...] | None = None
    rate_of: Callable[[Mapping[str, Any]], float] | None = None
    describe: Callable[[Mapping[str, Any]], list[str]] = field(default=lambda opts: [], repr=False)
    detail: Callable[[Mapping[str, Any]], str] | None = field(default=None, repr=False)
    read: Callable[[Table, str], tuple[str, tuple[float, ...], dict[str, Any]]] | None = field(
        default=None, repr=False
    )
    check_examples: int | None = None

    @property
    def takes_rates(self) -> bool:
        return self.fixed_rates is None

    def table(self, rates: Sequence[float], options: Mapping[str, Any]) -> dict[str, Any]:
        """The ``[[conditions]]`` table that reads back as this model with ``rates`` and ``options``."""
        if self.name == "attack":
            opts = dict(options)
            return {"attack": opts.pop("strategy"), "budgets": list(rates), **opts}
        rates_part = {"rates": list(rates)} if self.takes_rates else {}
        return {"noise": self.name, **rates_part, **dict(options)}


# --------------------------------------------------------------------------- option readers


def _mode(choices: tuple[str, ...]) -> Option:
    def read(value: Any, key: str) -> str:
        if not isinstance(value, str) or value not in choices:
            raise SpecError(f"{key} = {show(value)}: must be one of {', '.join(map(repr, choices))}")
        return value

    return Option(choices[0], read)


def _read_mapping(value: Any, key: str) -> Any:
    presets = tuple(noise.ASYMMETRIC_PRESETS)
    names = ", ".join(map(repr, presets))
    if isinstance(value, str):
        if value not in presets:
            raise SpecError(f"{key} = {show(value)}: must be {names} or a table {{source = target}}")
        return value
    if not isinstance(value, Mapping) or not value:
        raise SpecError(f'{key} = {show(value)}: must be {names} or a table like {{"2" = 7}}')
    mapping = {}
    for source, target in value.items():
        try:
            s = int(source)
        except ValueError:
            raise SpecError(f"{key}: key {show(source)} must be a class index") from None
        if isinstance(target, bool) or not isinstance(target, int):
            raise SpecError(f"{key}.{source} = {show(target)}: must be a class index")
        mapping[str(s)] = target
    return mapping


def _read_matrix(value: Any, key: str) -> list[list[float]]:
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise SpecError(f"{key}: must be a list of rows (a K x K row-stochastic matrix)")
    rows = [
        [number(f"{key}[{i}][{j}]", v, low=0.0) for j, v in enumerate(row)] for i, row in enumerate(value)
    ]
    k = len(rows)
    for i, row in enumerate(rows):
        if len(row) != k:
            raise SpecError(f"{key}[{i}] has {len(row)} entries; the matrix must be {k} x {k}")
        if abs(sum(row) - 1.0) > 1e-6:
            raise SpecError(f"{key}[{i}] sums to {sum(row):.6g}; each row T[true, :] must sum to 1")
    return rows


def _read_sparsity(value: Any, key: str) -> float:
    return number(key, value, low=0.0, high=1.0, high_open=True)


# --------------------------------------------------------------------------- the registry


def _apply_clean(opts, rate, features, labels, k, rng, class_names):
    return noise.from_transition_matrix(labels, np.eye(k), seed=rng)


def _apply_asymmetric(opts, rate, features, labels, k, rng, class_names):
    mapping = opts["mapping"]
    if isinstance(mapping, Mapping):
        mapping = {int(s): int(t) for s, t in mapping.items()}
    return noise.asymmetric(labels, rate, mapping, num_classes=k, mode=opts["mode"], seed=rng)


def _apply_random_matrix(opts, rate, features, labels, k, rng, class_names):
    matrix = noise.random_transition_matrix(k, rate=rate, sparsity=opts["sparsity"], seed=rng)
    return noise.from_transition_matrix(labels, matrix, mode=opts["mode"], seed=rng)


def _mode_words(default: str) -> Callable[[Mapping[str, Any]], list[str]]:
    return lambda opts: [str(opts["mode"])] if opts.get("mode") not in (None, default) else []


def _mapping_detail(opts: Mapping[str, Any]) -> str:
    mapping = opts.get("mapping")
    if isinstance(mapping, Mapping):
        return ", ".join(f"{s}→{t}" for s, t in mapping.items())
    return str(mapping)


PAIR_MODES = ("random", "exact")
SYMMETRIC_MODES = ("exclude_true", "include_true", "exact")

_MODELS: dict[str, NoiseModel] = {}


def register_noise_model(model: NoiseModel) -> NoiseModel:
    """Add a noise model to :data:`NOISE_MODELS` (its name must be new)."""
    if model.name in _MODELS:
        raise ValueError(f"a noise model named {model.name!r} is registered already")
    _MODELS[model.name] = model
    return model


for _model in (
    NoiseModel("none", "correct labels", _apply_clean, fixed_rates=(0.0,), rate_of=lambda opts: 0.0),
    NoiseModel(
        "symmetric",
        "each label moves to another class uniformly at random with probability rate",
        lambda o, r, f, y, k, rng, c: noise.symmetric(y, r, k, mode=o["mode"], seed=rng),
        {"mode": _mode(SYMMETRIC_MODES)},
        describe=_mode_words(SYMMETRIC_MODES[0]),
    ),
    NoiseModel(
        "pair",
        "each label of class i moves to class i+1 with probability rate (Han et al. 2018)",
        lambda o, r, f, y, k, rng, c: noise.pair_flip(y, r, k, mode=o["mode"], seed=rng),
        {"mode": _mode(PAIR_MODES)},
        describe=_mode_words(PAIR_MODES[0]),
    ),
    NoiseModel(
        "asymmetric",
        "class-dependent flips along a map (Patrini et al. 2017 presets, or your own)",
        _apply_asymmetric,
        {"mode": _mode(PAIR_MODES), "mapping": Option(None, _read_mapping, required=True)},
        describe=lambda opts: (
            _mode_words(PAIR_MODES[0])(opts)
            + ([opts["mapping"]] if isinstance(opts.get("mapping"), str) else [])
        ),
        detail=_mapping_detail,
    ),
    NoiseModel(
        "matrix",
        "labels drawn from a given row-stochastic transition matrix T[true, noisy]",
        lambda o, r, f, y, k, rng, c: noise.from_transition_matrix(
            y, np.asarray(o["matrix"]), mode=o["mode"], seed=rng
        ),
        {"mode": _mode(PAIR_MODES), "matrix": Option(None, _read_matrix, required=True)},
        fixed_rates=(math.nan,),
        rate_of=lambda opts: float(np.mean(1.0 - np.diag(np.asarray(opts["matrix"], dtype=float)))),
        describe=_mode_words(PAIR_MODES[0]),
    ),
    NoiseModel(
        "random_matrix",
        "labels drawn from a random transition matrix with exactly the given mean flip rate",
        _apply_random_matrix,
        {"mode": _mode(PAIR_MODES), "sparsity": Option(0.0, _read_sparsity)},
        describe=lambda opts: (
            _mode_words(PAIR_MODES[0])(opts)
            + ([f"sparsity {opts['sparsity']:g}"] if opts.get("sparsity") else [])
        ),
    ),
    NoiseModel(
        "instance",
        "instance-dependent noise: harder examples flip more (Xia et al. 2020); mean rate = rate",
        lambda o, r, f, y, k, rng, c: noise.instance_dependent(f, y, rate=r, num_classes=k, seed=rng),
    ),
):
    register_noise_model(_model)

NOISE_MODELS: Mapping[str, NoiseModel] = _MODELS
"""Every noise model by name (the attack family included, under ``"attack"``)."""


def get_noise_model(name: str) -> NoiseModel:
    if name not in _MODELS:
        raise ValueError(f"noise must be one of {', '.join(map(repr, noise_names()))}, got {name!r}")
    return _MODELS[name]


def noise_names() -> tuple[str, ...]:
    """Names a ``noise = "..."`` key may give (the attack family is named by ``attack = "..."``)."""
    return tuple(name for name in _MODELS if name != "attack")


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class LabelCondition:
    """One label condition of a study.

    Attributes:
        noise: noise model (``"none"`` for correct labels, ``"attack"`` for an attack).
        rate: requested rate (``matrix``: the matrix's mean off-diagonal row mass; attack: budget).
        options: model options (``mode``, ``mapping``, ``matrix``, ``sparsity``, an attack's
            ``strategy`` and options), JSON-able.
        name: the display label when it differs from the computed one (see :func:`study_conditions`);
            not part of the condition's identity.
    """

    noise: str
    rate: float
    options: tuple[tuple[str, Any], ...] = ()
    name: str = field(default="", compare=False)

    @property
    def is_clean(self) -> bool:
        return self.noise == "none"

    @functools.cached_property
    def condition_id(self) -> str:
        """Stable id: a hash of :meth:`to_dict` (what results are stored and grouped under); computed
        once per condition (grouping runs asks for it often)."""
        return condition_id(self.to_dict())

    @property
    def base_label(self) -> str:
        """Short display name computed from the definition: ``clean``, ``symmetric 20%`` ..."""
        if self.is_clean:
            return "clean"
        opts = dict(self.options)
        model = get_noise_model(self.noise)
        words = model.describe(opts)
        suffix = f" ({', '.join(words)})" if words else ""
        if self.noise == "attack":
            return f"{opts['strategy']} attack {self.rate * 100:.4g}%{suffix}"
        return f"{self.noise.replace('_', ' ')} {self.rate * 100:.4g}%{suffix}"

    @property
    def label(self) -> str:
        """The display label (unique within a study; :attr:`base_label` unless disambiguated)."""
        return self.name or self.base_label

    def to_dict(self) -> dict[str, Any]:
        return {"noise": self.noise, "rate": self.rate, **dict(self.options)}

    def apply(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        seed: int,
        class_names: tuple[str, ...] | None = None,
    ) -> noise.NoisyLabels:
        """Corrupt ``labels`` ``[N]`` (with ``features`` ``[N, ...]`` for instance-dependent noise and
        attacks), drawing from ``numpy.random.default_rng(seed)``.

        A targeted attack's ``source`` and ``target`` name classes by their original label
        (``class_names``; for the built-in datasets the digits ``0``-``9``), as the file commands do.
        """
        rng = np.random.default_rng(seed)
        model = get_noise_model(self.noise)
        return model.apply(dict(self.options), self.rate, features, labels, num_classes, rng, class_names)


def condition_points(spec: ConditionSpec) -> list[LabelCondition]:
    """The conditions one ``[[conditions]]`` table resolves to (one per rate; rate 0 is clean)."""
    model = get_noise_model(spec.noise)
    options = tuple(sorted((k, v) for k, v in spec.options.items()))
    if not model.takes_rates:
        rate = model.rate_of(dict(spec.options)) if model.rate_of is not None else 0.0
        return [LabelCondition("none", 0.0) if rate == 0.0 else LabelCondition(spec.noise, rate, options)]
    points = []
    for rate in spec.rates:
        if rate == 0.0 or math.isnan(rate):
            points.append(LabelCondition("none", 0.0))
        else:
            points.append(LabelCondition(spec.noise, float(rate), options))
    return points


def study_conditions(spec: Any) -> list[LabelCondition]:
    """The study's distinct label conditions in file order; the clean one (rate 0) appears once.

    ``spec`` is a :class:`~smoothflip.study.spec.StudySpec` or a sequence of ``ConditionSpec``.
    Conditions that would print alike get distinguishing labels (their maps, else a number).
    """
    tables: Sequence[ConditionSpec] = getattr(spec, "conditions", spec)
    seen: list[LabelCondition] = []
    for table in tables:
        for point in condition_points(table):
            if point not in seen:
                seen.append(point)
    return _disambiguate(seen)


def distinct_labels(conditions: Iterable[LabelCondition]) -> dict[str, str]:
    """``condition_id -> label`` for the distinct conditions among ``conditions`` (several studies'),
    in order of first appearance; conditions that would print alike get distinguishing labels, as
    within a study (:func:`study_conditions`). Conditions are matched by id: their options may hold
    maps, so they are never hashed."""
    seen: dict[str, LabelCondition] = {}
    for c in conditions:
        seen.setdefault(c.condition_id, LabelCondition(c.noise, c.rate, c.options))
    return {c.condition_id: c.label for c in _disambiguate(list(seen.values()))}


def _disambiguate(conditions: list[LabelCondition]) -> list[LabelCondition]:
    by_label: dict[str, list[int]] = {}
    for i, c in enumerate(conditions):
        by_label.setdefault(c.base_label, []).append(i)
    out = list(conditions)
    for label, members in by_label.items():
        if len(members) < 2:
            continue
        for number_, i in enumerate(members, start=1):
            c = conditions[i]
            model = get_noise_model(c.noise)
            detail = model.detail(dict(c.options)) if model.detail is not None else ""
            details = [
                get_noise_model(conditions[j].noise).detail(dict(conditions[j].options))
                if get_noise_model(conditions[j].noise).detail is not None
                else ""
                for j in members
            ]
            unique = detail and details.count(detail) == 1
            name = f"{label} [{detail}]" if unique else f"{label} #{number_}"
            out[i] = LabelCondition(c.noise, c.rate, c.options, name=name)
    return out


# --------------------------------------------------------------------------- attacks as conditions


def _class_position(key: str, value: Any, class_names: tuple[str, ...]) -> int:
    names = [str(name) for name in class_names]
    if str(value) in names:
        return names.index(str(value))
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    raise ValueError(f"{key}={value!r} is not a class of the data (its classes: {shown})")


def _apply_attack(opts, rate, features, labels, k, rng, class_names):
    from smoothflip.attacks import label_flip

    attack = {key: v for key, v in opts.items() if key != "strategy"}
    if class_names is not None:
        for key in ("source", "target"):
            if key in attack:
                attack[key] = _class_position(key, attack[key], class_names)
    return label_flip(
        features, labels, budget=rate, strategy=opts["strategy"], seed=rng, num_classes=k, **attack
    )


def _attack_words(opts: Mapping[str, Any]) -> list[str]:
    from smoothflip.attacks import STRATEGY_OPTIONS

    defaults = STRATEGY_OPTIONS[opts["strategy"]]
    return [f"{k}={v}" for k, v in opts.items() if k != "strategy" and v != defaults.get(k)]


def read_attack(t: Table, path: str) -> tuple[str, tuple[float, ...], dict[str, Any]]:
    """``{attack = "greedy", budgets = [0.05, 0.1], ...options}`` -> ``("attack", budgets, options)``."""
    from smoothflip.attacks import STRATEGIES, STRATEGY_OPTIONS

    if t.has("noise") or t.has("rates"):
        raise SpecError(f"{path}: an attack takes attack and budgets, not noise or rates")
    strategy = t.str("attack", choices=STRATEGIES)
    raw = t.raw("budgets")
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{path}.budgets = {show(raw)}: must be a non-empty list of fractions in [0, 1)")
    budgets = tuple(
        number(f"{path}.budgets[{i}]", b, low=0.0, high=1.0, high_open=True) for i, b in enumerate(raw)
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
    return "attack", budgets, options


register_noise_model(
    NoiseModel(
        "attack",
        "a budgeted label-flip attack (random, targeted, margin, greedy, alfa); budgets are rates",
        _apply_attack,
        describe=_attack_words,
        read=read_attack,
        check_examples=200,
    )
)


def read_condition(t: Table, path: str) -> tuple[str, tuple[float, ...], dict[str, Any]]:
    """One ``[[conditions]]`` table -> ``(noise model, rates, options)``, validated against the registry."""
    if t.has("attack"):
        return NOISE_MODELS["attack"].read(t, path)
    name = t.str("noise", "symmetric", choices=noise_names())
    model = get_noise_model(name)
    if not model.takes_rates:
        if t.has("rates"):
            raise SpecError(f"{path}.rates: not used with noise = {name!r}")
        rates: tuple[float, ...] = model.fixed_rates
    else:
        raw = t.raw("rates")
        if not isinstance(raw, list) or not raw:
            raise SpecError(f"{path}.rates = {show(raw)}: must be a non-empty list of rates in [0, 1)")
        rates = tuple(
            number(f"{path}.rates[{i}]", r, low=0.0, high=1.0, high_open=True) for i, r in enumerate(raw)
        )
        if len(set(rates)) != len(rates):
            raise SpecError(f"{path}.rates = {list(rates)}: rates must not repeat")
    options: dict[str, Any] = {}
    for key, option in model.options.items():
        if t.has(key):
            options[key] = option.read(t.raw(key), f"{path}.{key}")
        elif option.required:
            raise SpecError(f"{path}.{key} is required")
        else:
            options[key] = option.default
    t.finish(["noise", "rates", *model.options], what=f"key for noise {name!r}")
    return name, rates, options
