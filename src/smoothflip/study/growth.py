"""Growing a study: which changes to a study file a study directory accepts.

A study directory is bound to the study that first ran in it. A later study file is accepted when
it only **grows** the study or changes what is **descriptive**, so that every stored run stays
what it was:

- ``seeds``: more seeds (a study file that lists fewer keeps the stored ones: the directory's
  study records the union, and only the file's own seeds are trained);
- ``arms``: new arms; an arm already there must be unchanged (loss, parameters, flipping, warm-up);
- ``conditions``: new label conditions, or new rates of a noise model already there;
- ``description`` and ``[analysis]`` (never part of a run): anything.

Every other key — ``name``, ``kind``, ``data`` (its content too), ``model``, ``train``,
``probes``, ``baseline``, ``distillation`` — decides what the stored runs computed, so a change is
refused with one line naming the key (:func:`growth_problem`), and nothing is written.
Stored runs are found again by their run ids (a hash of each run's own configuration), which no
accepted change touches, so only the new runs train.

Example:
    >>> old = {"name": "s", "seeds": [0, 1, 2], "arms": [{"name": "ce", "loss": "ce"}],
    ...        "conditions": [{"noise": "symmetric", "rates": [0.0], "options": {}}],
    ...        "model": {"name": "mlp"}}
    >>> growth_problem(old, {**old, "seeds": [0, 1, 2, 3, 4]}) is None
    True
    >>> growth_problem(old, {**old, "model": {"name": "cnn1d"}})
    'model.name changed from "mlp" to "cnn1d"'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smoothflip.study.tables import show

__all__ = ["DESCRIPTIVE_KEYS", "GROWING_KEYS", "growth_problem", "merged_seeds"]

DESCRIPTIVE_KEYS = ("description",)
"""Keys a study file may change freely (``[analysis]`` is not part of the study's identity at all)."""
GROWING_KEYS = ("seeds", "arms", "conditions")
"""Keys a study file may extend."""


def _first_difference(path: str, old: Any, new: Any) -> str | None:
    """``"model.options.hidden changed from [16] to [8]"`` for the first differing leaf, or None."""
    if old == new:
        return None
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            if key not in new:
                return f"{path}.{key} was removed (it was {_show(old[key])})"
            if key not in old:
                return f"{path}.{key} was added ({_show(new[key])})"
            found = _first_difference(f"{path}.{key}", old[key], new[key])
            if found:
                return found
        return None
    return f"{path} changed from {_show(old)} to {_show(new)}"


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_show(v)}" for k, v in value.items()) + "}"
    return "none" if value is None else show(value)


def _arms_problem(old: list[Any], new: list[Any]) -> str | None:
    by_name = {a.get("name"): a for a in new if isinstance(a, Mapping)}
    for arm in old:
        name = arm.get("name")
        if name not in by_name:
            return f"arms: the study file drops arm {show(name)}, which has stored runs here"
        found = _first_difference(f"arms[{show(name)}]", arm, by_name[name])
        if found:
            return found
    return None


def _conditions_problem(old: list[Any], new: list[Any]) -> str | None:
    for index, condition in enumerate(old):
        rates = condition.get("rates") or []
        rest = {k: v for k, v in condition.items() if k != "rates"}
        same = [c for c in new if {k: v for k, v in c.items() if k != "rates"} == rest]
        if not same:
            near = next((c for c in new if c.get("noise") == condition.get("noise")), None)
            if near is not None:
                found = _first_difference(
                    f"conditions[{index}]",
                    rest,
                    {k: v for k, v in near.items() if k != "rates"},
                )
                return found or f"conditions[{index}] changed"
            return f"conditions: the study file drops the {show(condition.get('noise'))} condition"
        offered = {float(r) for c in same for r in (c.get("rates") or [])}
        missing = [r for r in rates if float(r) not in offered]
        if missing:
            return (
                f"conditions[{index}].rates: the study file drops rate(s) {_show(missing)} of "
                f"{show(condition.get('noise'))}, which have stored runs here"
            )
    return None


def growth_problem(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """Why ``new`` (a study's ``to_dict()``) cannot continue the study ``old``; None when it can.

    Seeds are not checked here: a study file with fewer seeds is accepted (see
    :func:`merged_seeds`). The message names the key, the old and the new value.
    """
    for key in sorted(set(old) | set(new)):
        if key in DESCRIPTIVE_KEYS or key == "seeds":
            continue
        if key == "arms":
            found = _arms_problem(list(old.get(key) or []), list(new.get(key) or []))
        elif key == "conditions":
            found = _conditions_problem(list(old.get(key) or []), list(new.get(key) or []))
        elif key not in new:
            found = f"{key} was removed (it was {_show(old[key])})"
        elif key not in old:
            found = f"{key} was added ({_show(new[key])})"
        else:
            found = _first_difference(key, old[key], new[key])
        if found:
            return found
    return None


def merged_seeds(old: Any, new: Any) -> tuple[int, ...]:
    """The seeds a grown study records: the stored ones in their order, then the new file's others.

    Example:
        >>> merged_seeds([0, 1, 2], [0, 1, 2, 3, 4]), merged_seeds([0, 1, 2, 3], [0, 1])
        ((0, 1, 2, 3, 4), (0, 1, 2, 3))
    """
    return tuple(dict.fromkeys([*(int(s) for s in old or []), *(int(s) for s in new or [])]))
