"""Reading ``[[arms]]``: a technique with its parameters, training-time flipping, warm-up, defence.

An arm's ``loss`` names a technique of the registry (:mod:`smoothflip.techniques`); its parameters,
their defaults and the tasks it applies to come from that entry, so this reader knows no
technique by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smoothflip.errors import SpecError
from smoothflip.study.spec.schema import ArmSpec, frozen
from smoothflip.study.tables import Table, show
from smoothflip.techniques import ARM_OPTIONS, REQUIRED, check_arm, get_technique, techniques


def read_arm(
    raw: Any, index: int, *, kind: str = "standard", task: str = "classification", label_flipping: bool = True
) -> ArmSpec:
    """One ``[[arms]]`` table of a study of ``kind``.

    Args:
        raw: the table.
        index: its position (for error messages: ``arms[2]``).
        kind: the study kind (for messages).
        task: the kind's task; the technique must apply to it.
        label_flipping: whether the kind's arms may flip labels while training (``disturb_alpha``,
            ``flip_rate``) and clean them first (``defense``).
    """
    path = f"arms[{index}]"
    t = Table(raw, path)
    name = t.str("name")
    if not name.strip():
        raise SpecError(f"{path}.name must not be empty")
    allowed = tuple(n for n, tech in techniques().items() if tech.in_arms and task in tech.tasks)
    loss = t.raw("loss", "ce")
    if not isinstance(loss, str) or loss not in allowed:
        choices = ", ".join(map(repr, allowed))
        raise SpecError(f'{path}.loss = {show(loss)}: must be one of {choices} for kind = "{kind}"')
    definition = get_technique(loss)
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
    if not label_flipping and (disturb_alpha or flip_rate):
        raise SpecError(f'{path} ({name}): disturb_alpha / flip_rate are not available for kind = "{kind}"')
    if not label_flipping and defense is not None:
        raise SpecError(f'{path} ({name}): defense is not available for kind = "{kind}"')
    prior = params.get("prior")
    try:
        check_arm(loss, params, num_classes=len(prior) if isinstance(prior, list) else 10)
    except (ValueError, TypeError) as err:
        raise SpecError(f"{path} ({name}): {err}") from None
    return ArmSpec(
        name=name,
        loss=loss,
        params=frozen(params),
        disturb_alpha=disturb_alpha,
        flip_rate=flip_rate,
        warmup_epochs=warmup_epochs,
        defense=defense,
        defense_options=frozen(defense_options),
    )


def _read_defense(t: Table, path: str) -> tuple[str | None, dict[str, Any]]:
    """An arm's ``defense`` (applied to its training labels before training) and its options."""
    from smoothflip.defenses import DEFENSE_OPTIONS, DEFENSES, check_defense_options

    if not t.has("defense"):
        if t.has("defense_options"):
            raise SpecError(f"{path}.defense_options: give defense too")
        return None, {}
    name = t.str("defense", choices=DEFENSES)
    options = t.raw("defense_options", {})
    if not isinstance(options, Mapping):
        raise SpecError(f"{path}.defense_options = {show(options)}: must be a table")
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


def read_arms(top: Table, *, kind: str, task: str, label_flipping: bool) -> tuple[ArmSpec, ...]:
    """The ``[[arms]]`` list of a study whose arms the user writes."""
    if top.has("distillation"):
        raise SpecError('distillation: only for kind = "distillation"')
    raw = top.raw("arms")
    if not isinstance(raw, list) or not raw:
        raise SpecError("arms: give at least one [[arms]] table (name, loss, parameters)")
    return tuple(
        read_arm(a, i, kind=kind, task=task, label_flipping=label_flipping) for i, a in enumerate(raw)
    )
