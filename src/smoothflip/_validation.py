"""Argument checks shared by every module.

Each check raises ``ValueError`` (or ``TypeError`` for a wrong kind of object) with a one-line
message that names the argument, the bad value and what is allowed, so the CLI can print it as is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any

import numpy as np

SeedLike = int | np.random.Generator | None


def check_number(name: str, value: Any) -> float:
    """Return ``value`` as a finite float, or raise naming ``name``.

    A one-element floating tensor or array (e.g. a scheduled ``eps`` kept as a 0-d tensor) counts
    as its value.
    """
    if _is_scalar_array(value):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _is_scalar_array(value: Any) -> bool:
    """A one-element, real floating numpy array or torch tensor (torch is not imported here)."""
    dtype = getattr(value, "dtype", None)
    size = getattr(value, "size", None)
    if dtype is None or not hasattr(value, "item"):
        return False
    count = value.numel() if hasattr(value, "numel") else size
    floating = getattr(dtype, "is_floating_point", None)
    if floating is None:  # numpy
        floating = np.dtype(dtype).kind == "f" if isinstance(dtype, np.dtype) else False
    return bool(floating) and count == 1


def check_range(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float inside the interval, or raise naming ``name``.

    The interval is ``[low, high]``; ``low_open`` / ``high_open`` exclude an end.
    """
    value = check_number(name, value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        if math.isinf(high):  # values are finite already: say ">" / ">=" rather than "(0, inf]"
            raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
        if math.isinf(low):
            raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value!r}")
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low:g}, {high:g}{right}, got {value!r}")
    return value


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int within ``[low, high]`` (either end optional), or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, or raise listing them."""
    choices = tuple(choices)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def as_generator(seed: SeedLike, *, name: str = "seed") -> np.random.Generator:
    """Turn ``seed`` (an int, a ``numpy.random.Generator`` or ``None``) into a Generator.

    ``None`` gives fresh OS entropy; the global NumPy RNG is never touched.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"{name} must be an int, a numpy.random.Generator or None, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed}")
    return np.random.default_rng(int(seed))


def check_features(X: Any, n_labels: int) -> np.ndarray:
    """``X`` as a finite float64 ``[N, d]`` array (``d >= 1``) with one row per label, or raise.

    The messages name ``X`` and ``y`` (the scikit-learn-style arguments of the attacks and defences).
    """
    try:
        x = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"X must be a numeric array [N, ...]: {exc}") from None
    if x.ndim == 0 or x.shape[0] != n_labels:
        got = "a scalar" if x.ndim == 0 else f"{x.shape[0]} rows (shape {x.shape})"
        raise ValueError(f"X and y must have the same length: y has {n_labels} labels, X has {got}")
    x = x.reshape(n_labels, -1)
    if x.shape[1] == 0:
        raise ValueError(f"X must have at least one feature per example, got shape {np.shape(X)}")
    if not np.isfinite(x).all():
        raise ValueError(f"X must be finite; found {int((~np.isfinite(x)).sum())} NaN or inf value(s)")
    return x
