"""Array plumbing shared by the statistics modules: NaN as "missing", exact constants, 0-d to float."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_values(values: Any, *, name: str = "diffs", min_ndim: int = 1) -> np.ndarray:
    """``values`` as a float array in which NaN marks a missing value; an infinite value raises.

    Raises:
        TypeError: ``values`` is not numeric.
        ValueError: ``values`` has fewer than ``min_ndim`` dimensions or holds ``±inf``.
    """
    try:
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array of numbers, got {type(values).__name__}") from error
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {x.shape}")
    if np.isinf(x).any():
        raise ValueError(f"{name} must not hold ±inf (NaN marks a missing value and is dropped)")
    return x


def moments(x: np.ndarray, *, axis: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count of finite values, their mean and sample sd (``ddof=1``) along ``axis``; NaN is dropped.

    The values are shifted by the first finite value of each slice before the moments are taken, so
    a slice whose values are all equal gets an sd of exactly 0 and its value as the mean. The mean
    is NaN for no values, the sd NaN for fewer than two.
    """
    x = np.moveaxis(x, axis, -1)
    if x.shape[-1] == 0:
        x = np.full((*x.shape[:-1], 1), np.nan)
    finite = np.isfinite(x)
    n = finite.sum(axis=-1)
    first = np.take_along_axis(x, np.argmax(finite, axis=-1)[..., None], axis=-1)
    first = np.where(np.isfinite(first), first, 0.0)
    y = np.where(finite, x - first, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_y = y.sum(axis=-1) / n
        ss = np.where(finite, (y - mean_y[..., None]) ** 2, 0.0).sum(axis=-1)
        sd = np.sqrt(ss / (n - 1))
    mean = np.where(n > 0, mean_y + first[..., 0], np.nan)
    sd = np.where(n > 1, sd, np.nan)
    return n, mean, sd


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with ``0 / 0 = 0`` and ``x / 0 = ±inf`` (a t statistic of constant values)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=float), np.asarray(den, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
        zero = den == 0
        infinite = np.where(num > 0, np.inf, -np.inf)
        return np.where(zero & (num == 0), 0.0, np.where(zero & np.isfinite(num), infinite, out))


def out(x: Any) -> Any:
    """A 0-d array as a Python scalar (float, int or bool), anything else unchanged."""
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return x.item()
    if isinstance(x, np.generic):
        return x.item()
    return x
