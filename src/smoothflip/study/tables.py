"""Reading TOML tables with typed access: every error names the key path, the value and the rule.

:class:`Table` wraps one table of a parsed study file; its typed getters (``str``, ``int``,
``float``, ``bool``) raise :class:`~smoothflip.errors.SpecError` with a one-line message such as
``train.lr = -0.1: must be > 0``, and :meth:`Table.finish` refuses keys nobody read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from smoothflip.errors import SpecError

MISSING: Any = object()
"""Default of a required key."""


def show(value: Any) -> str:
    """A value as a study file would write it, for error messages."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    return repr(value)


def number(
    key: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within the bounds, or a :class:`SpecError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{key} = {show(value)}: must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise SpecError(f"{key} = {show(value)}: must be finite")
    if low is not None and (value <= low if low_open else value < low):
        raise SpecError(f"{key} = {value:g}: must be {'>' if low_open else '>='} {low:g}")
    if high is not None and (value >= high if high_open else value > high):
        raise SpecError(f"{key} = {value:g}: must be {'<' if high_open else '<='} {high:g}")
    return value


class Table:
    """A TOML table being read: typed access by key, with the key path in every error."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"{path} must be a table, got {show(data)}")
        self.data = dict(data)
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = MISSING) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is MISSING:
                raise SpecError(f"{self.key(name)} is required")
            return default
        return self.data[name]

    def str(self, name: str, default: Any = MISSING, *, choices: Sequence[str] | None = None) -> Any:
        value = self.raw(name, default)
        if value is default and default is not MISSING:
            return value
        if not isinstance(value, str):
            raise SpecError(f"{self.key(name)} = {show(value)}: must be a string")
        if choices is not None and value not in choices:
            raise SpecError(
                f"{self.key(name)} = {show(value)}: must be one of {', '.join(map(repr, choices))}"
            )
        return value

    def bool(self, name: str, default: Any = MISSING) -> Any:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise SpecError(f"{self.key(name)} = {show(value)}: must be true or false")
        return value

    def int(
        self, name: str, default: Any = MISSING, *, low: int | None = None, high: int | None = None
    ) -> Any:
        value = self.raw(name, default)
        if value is default and default is None:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{self.key(name)} = {show(value)}: must be an integer")
        if low is not None and value < low:
            raise SpecError(f"{self.key(name)} = {value}: must be >= {low}")
        if high is not None and value > high:
            raise SpecError(f"{self.key(name)} = {value}: must be <= {high}")
        return value

    def float(
        self,
        name: str,
        default: Any = MISSING,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ) -> Any:
        value = self.raw(name, default)
        if value is default and default is None:
            return value
        return number(self.key(name), value, low=low, high=high, low_open=low_open, high_open=high_open)

    def finish(self, allowed: Sequence[str] | None = None, *, what: str = "key") -> None:
        """Refuse keys outside ``allowed`` (default: the keys read so far)."""
        allowed = list(allowed) if allowed is not None else sorted(self.used)
        unknown = [k for k in self.data if k not in allowed]
        if unknown:
            raise SpecError(f"{self.key(unknown[0])}: unknown {what}; allowed: {', '.join(allowed)}")
