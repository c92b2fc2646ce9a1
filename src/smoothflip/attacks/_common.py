"""The attack registry and what every label-flip strategy shares.

:data:`STRATEGIES`, :data:`STRATEGY_OPTIONS` (each strategy's options and defaults) and
:data:`BINARY_ONLY`; the input checks (features and labels, the budget, options, ``C``); and the
small shared helpers: the one-BLAS-thread context for small problems, the
:class:`~smoothflip.noise.NoisyLabels` result, random tie-breaking top-k and z-scoring.
Re-exported by :mod:`smoothflip.attacks`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any

import numpy as np

from smoothflip._validation import check_features, check_int, check_range
from smoothflip.noise import NoisyLabels, realized_transition_matrix

#: The attack strategies :func:`label_flip` knows.
STRATEGIES: tuple[str, ...] = ("random", "targeted", "margin", "greedy", "alfa")

#: Options each strategy takes (``**options`` of :func:`label_flip`), with their defaults
#: (``None``: required).
STRATEGY_OPTIONS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "random": MappingProxyType({}),
        "targeted": MappingProxyType({"source": None, "target": None}),
        "margin": MappingProxyType({"side": "nearest", "one_way": True, "C": 1.0}),
        "greedy": MappingProxyType(
            {
                "rounds": 10,
                "candidates": 0,
                "validation_fraction": 0.0,
                "objective": "error",
                "C": 1.0,
            }
        ),
        "alfa": MappingProxyType({"max_iter": 10, "C": 1.0}),
    }
)

#: Strategies that only attack binary classifiers.
BINARY_ONLY: tuple[str, ...] = ("alfa",)

_SMALL_PROBLEM = 4_000_000  # N * d up to which the attacks run on one BLAS thread


def _resolve_options(strategy: str, options: Mapping[str, Any]) -> dict[str, Any]:
    allowed = STRATEGY_OPTIONS[strategy]
    unknown = [key for key in options if key not in allowed]
    if unknown:
        listed = ", ".join(allowed) if allowed else "none"
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for strategy {strategy!r}; allowed: {listed}"
        )
    merged = {**allowed, **options}
    missing = [key for key, value in merged.items() if value is None]
    if missing:
        raise ValueError(f"strategy {strategy!r} needs option(s) {', '.join(missing)}")
    return merged


def _check_data(X: Any, y: Any, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(x [N, d] float64, y [N] int64, K)`` or raise naming the argument."""
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be a 1-D array of class indices [N], got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError("y must not be empty")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"y must hold integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0:
        raise ValueError(f"y must be >= 0, found {int(labels.min())}")
    labels = labels.astype(np.int64)
    if num_classes is None:
        num_classes = int(labels.max()) + 1
        if num_classes < 2:
            raise ValueError("y has only 1 class (0); label-flip attacks need at least 2 classes")
    k = check_int("num_classes", num_classes, low=2)
    if labels.max() >= k:
        raise ValueError(f"y must be < num_classes={k}, found {int(labels.max())}")
    return check_features(X, labels.size), labels, k


def _resolve_budget(budget: Any, n_eligible: int, *, what: str) -> int:
    """The number of flips: ``round(fraction * n_eligible)`` (half up) or the count itself."""
    if isinstance(budget, bool | np.bool_) or not isinstance(budget, Real):
        raise TypeError(
            f"budget must be a fraction in (0, 1) (float) or a count (int), got {budget!r} "
            f"({type(budget).__name__})"
        )
    if isinstance(budget, Integral):
        count = int(budget)
        if count < 0:
            raise ValueError(f"budget must be >= 0 as a count, got {count}")
        if count > n_eligible:
            raise ValueError(f"budget={count} flips exceeds the {n_eligible} {what} that can be flipped")
        return count
    fraction = float(budget)
    if not math.isfinite(fraction) or not 0.0 < fraction < 1.0:
        raise ValueError(
            f"budget must be in (0, 1) as a fraction, got {fraction!r} (pass an int for a number of flips)"
        )
    return math.floor(fraction * n_eligible + 0.5 + 1e-9)


@contextlib.contextmanager
def _small_problem_threads(x: np.ndarray) -> Iterator[None]:
    """One BLAS thread while attacking a small problem.

    The surrogate strategies make many small matrix products (``[N, d] @ [d, K]``); on small
    problems a multi-threaded BLAS spends more time synchronizing than computing, and on a busy
    machine it can be ten times slower than one thread.
    """
    if x.size > _SMALL_PROBLEM:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _check_c(value: Any) -> float:
    return check_range("C", value, low=0.0, low_open=True)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def _noisy_labels(y: np.ndarray, z: np.ndarray, k: int) -> NoisyLabels:
    flipped = z != y
    return NoisyLabels(
        labels=z,
        true_labels=y.copy(),
        flipped=flipped,
        transition_matrix=realized_transition_matrix(y, z, k),
        rate=float(flipped.mean()),
        num_classes=k,
    )


def _list_values(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f" and {values.size - limit} more" if values.size > limit else "")


def _top(scores: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``count`` largest ``scores``, ties broken uniformly at random."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((rng.random(scores.size), -scores))
    return order[:count]


def _zscore(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
