"""Readers of the study file's shared tables: ``[data]``, ``[model]``, ``[train]``, ``[probes]``, seeds.

Each reader takes the raw TOML value and returns the validated dataclass of
:mod:`~smoothflip.study.spec.schema`, or raises :class:`~smoothflip.errors.SpecError` naming the
key. The model readers read the model registries (:mod:`smoothflip.models`,
:mod:`smoothflip.lm.models`); a study kind picks which one it uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smoothflip.errors import SpecError
from smoothflip.study.spec.schema import DataSpec, ModelSpec, ProbeSpec, TrainSpec, frozen
from smoothflip.study.tables import Table, number, show

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
SELECTION_METRICS = ("val_accuracy", "val_nll")
AUGMENTATIONS = ("none", "crop_flip")
"""``[train] augment``: ``crop_flip`` is the standard image augmentation (random crop of the image
zero-padded by ``augment_padding`` pixels, horizontal flip with probability 1/2), seeded per run."""


def read_data(raw: Any) -> DataSpec:
    t = Table(raw, "data")
    source = t.str("source")
    if not source:
        raise SpecError("data.source must not be empty")
    options = t.raw("options", {})
    if not isinstance(options, Mapping):
        raise SpecError(f"data.options = {show(options)}: must be a table")
    spec = DataSpec(
        source=source,
        label_column=t.str("label_column", None),
        test_source=t.str("test_source", None),
        test_fraction=t.float("test_fraction", 0.2, low=0.0, high=1.0, low_open=True, high_open=True),
        validation_fraction=t.float("validation_fraction", 0.1, low=0.0, high=1.0, high_open=True),
        split_seed=t.int("split_seed", 0, low=0),
        standardize=t.bool("standardize", True),
        options=frozen(options),
    )
    t.finish()
    return spec


def read_lm_model(raw: Any, path: str = "model") -> ModelSpec:
    from smoothflip.lm.models import LM_MODEL_ALIASES, LM_MODELS, lm_options

    t = Table(raw, path)
    if t.has("factory"):
        raise SpecError(
            f"{path}.factory: a language-model study uses a built-in model ({', '.join(LM_MODELS)})"
        )
    name = t.str("name", LM_MODELS[0])
    name = LM_MODEL_ALIASES.get(name, name)
    if name not in LM_MODELS:
        raise SpecError(
            f'{path}.name = {show(name)}: must be one of {", ".join(map(repr, LM_MODELS))} for kind = "lm"'
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
            f"{path}.context = {show(options['context'])}: must be an integer (tokens of context)"
        )
    if options.get("context", 8) < 1:
        raise SpecError(f"{path}.context = {options['context']}: must be >= 1")
    return ModelSpec(name=name, options=frozen({**defaults, **options}))


def read_model(raw: Any, path: str = "model") -> ModelSpec:
    from smoothflip.models import MODELS, model_options

    t = Table(raw, path)
    factory = t.str("factory", None)
    if factory is not None:
        name = t.str("name", "custom")
        if name != "custom":
            raise SpecError(
                f'{path}.name = {show(name)}: leave it out (or write "custom") when {path}.factory is given'
            )
        options = {k: v for k, v in t.data.items() if k not in ("name", "factory")}
        return ModelSpec(name="custom", factory=factory, options=frozen(options))
    name = t.str("name", "mlp")
    if name not in MODELS:
        raise SpecError(
            f"{path}.name = {show(name)}: must be one of {', '.join(map(repr, MODELS))}, "
            'or give model.factory = "module:function" for your own nn.Module'
        )
    defaults = model_options(name)
    options = {k: v for k, v in t.data.items() if k != "name"}
    for key in options:
        if key not in defaults:
            allowed = ", ".join(["name", "factory", *defaults])
            raise SpecError(f"{path}.{key}: unknown option for {name!r}; allowed: {allowed}")
    return ModelSpec(name=name, options=frozen({**defaults, **options}))


def read_trainer_model(raw: Any, path: str = "model") -> ModelSpec:
    """``[model]`` of a ``kind = "trainer"`` study: ``trainer = "file.py:function"`` (or
    ``"package.module:function"``), every other key an option handed to the function as ``run.options``."""
    t = Table(raw, path)
    trainer = t.str("trainer")
    module, sep, attribute = trainer.partition(":")
    if not sep or not module.strip() or not attribute.strip():
        raise SpecError(
            f'{path}.trainer = {show(trainer)}: write "file.py:function" or "package.module:function"'
        )
    name = t.str("name", "trainer")
    options = {k: v for k, v in t.data.items() if k not in ("name", "trainer")}
    return ModelSpec(name=name, trainer=trainer, options=frozen(options))


def read_train(raw: Any, *, default_selection: str = "val_accuracy") -> TrainSpec:
    t = Table(raw, "train")
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
        augment=t.str("augment", TrainSpec.augment, choices=AUGMENTATIONS),
        augment_padding=t.int("augment_padding", TrainSpec.augment_padding, low=0, high=64),
        eval_every=t.int("eval_every", TrainSpec.eval_every, low=1),
    )
    t.finish()
    return spec


def read_class_list(t: Table, name: str, default: tuple[int, ...], size: int) -> tuple[int, ...]:
    value = t.raw(name, list(default))
    if (
        not isinstance(value, list)
        or len(value) != size
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        or len(set(value)) != size
    ):
        raise SpecError(f"probes.{name} = {show(value)}: must be a list of {size} distinct class indices")
    return tuple(value)


def read_probes(raw: Any) -> ProbeSpec:
    t = Table(raw, "probes")
    spec = ProbeSpec(
        seeds=t.int("seeds", ProbeSpec.seeds, low=0),
        examples_per_class=t.int("examples_per_class", ProbeSpec.examples_per_class, low=2),
        classes=read_class_list(t, "classes", ProbeSpec.classes, 3),
        mi_classes=read_class_list(t, "mi_classes", ProbeSpec.mi_classes, 2),
        augmentations=t.int("augmentations", ProbeSpec.augmentations, low=2),
    )
    t.finish()
    return spec


def float_list(
    t: Table, name: str, default: tuple[float, ...], *, low: float, high: float, low_open: bool = False
):
    value = t.raw(name, list(default))
    if not isinstance(value, list) or not value:
        raise SpecError(f"{t.key(name)} = {show(value)}: must be a non-empty list of numbers")
    out = tuple(
        number(f"{t.key(name)}[{i}]", v, low=low, high=high, low_open=low_open) for i, v in enumerate(value)
    )
    if len(set(out)) != len(out):
        raise SpecError(f"{t.key(name)} = {list(out)}: values must not repeat")
    return out


def read_seeds(value: Any) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise SpecError(f"seeds = {show(value)}: must be a count (int >= 1) or a list of distinct ints >= 0")
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
    raise SpecError(f"seeds = {show(value)}: must be a count (int >= 1) or a list of distinct ints >= 0")
