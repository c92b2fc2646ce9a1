"""What every label-noise model shares: the :class:`NoisyLabels` result and the shared machinery.

:class:`NoisyLabels` (noisy labels, flip mask, realized row-stochastic transition matrix, realized
rate) and :func:`realized_transition_matrix`, the input checks every model uses (labels, rate,
stochastic matrices), and the largest-remainder apportioning behind the ``"exact"`` modes
(per-class flip counts that are the floor or ceil of their quota and add up exactly). Public names
are re-exported by :mod:`smoothflip.noise`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from smoothflip._validation import check_int, check_range

#: Tolerance for "rows (or columns) sum to 1".
STOCHASTIC_ATOL = 1e-6


# --------------------------------------------------------------------------------------------------
# result type
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NoisyLabels:
    """The outcome of a label-noise model.

    Attributes:
        labels: ``[N]`` int64 noisy labels.
        true_labels: ``[N]`` int64 labels the noise was applied to (a copy of the input).
        flipped: ``[N]`` bool mask, ``labels != true_labels``.
        transition_matrix: ``[K, K]`` float64 *realized* row-stochastic matrix,
            ``T[i, j] = #(true = i, noisy = j) / #(true = i)``. A class with no examples has the
            identity row ``e_i`` (nothing was observed; the identity keeps the matrix
            row-stochastic and reads as "no noise"). Use :attr:`counts` to tell such rows apart.
        rate: realized fraction of flipped labels, ``flipped.mean()``.
        num_classes: ``K``.

    The dataclass is frozen (fields cannot be reassigned); the arrays themselves are ordinary
    writable arrays owned by this object. Equality is identity.
    """

    labels: np.ndarray
    true_labels: np.ndarray
    flipped: np.ndarray
    transition_matrix: np.ndarray
    rate: float
    num_classes: int

    @property
    def counts(self) -> np.ndarray:
        """``[K, K]`` int64 joint counts ``C[i, j] = #(true = i, noisy = j)``."""
        return _joint_counts(self.true_labels, self.labels, self.num_classes)

    @property
    def per_class_rate(self) -> np.ndarray:
        """``[K]`` realized flip rate per true class, ``1 - diag(T)`` (0 for absent classes)."""
        return 1.0 - np.diag(self.transition_matrix)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (
            f"NoisyLabels(n={len(self)}, num_classes={self.num_classes}, rate={self.rate:.6g}, "
            f"flipped={int(self.flipped.sum())})"
        )


def realized_transition_matrix(true_labels: Any, noisy_labels: Any, num_classes: int) -> np.ndarray:
    """Row-stochastic matrix of observed transitions between two label vectors.

    Args:
        true_labels: ``[N]`` integer labels in ``[0, K)``.
        noisy_labels: ``[N]`` integer labels in ``[0, K)``.
        num_classes: ``K``.

    Returns:
        ``[K, K]`` float64 ``T[i, j] = #(true = i, noisy = j) / #(true = i)``; a class with no
        examples gets the identity row.

    Example:
        >>> realized_transition_matrix([0, 0, 1, 1], [0, 1, 1, 1], 3).tolist()
        [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    num_classes = check_int("num_classes", num_classes, low=1)
    y = _check_labels(true_labels, num_classes, name="true_labels")
    z = _check_labels(noisy_labels, num_classes, name="noisy_labels")
    if y.shape != z.shape:
        raise ValueError(f"noisy_labels must have the same shape as true_labels {y.shape}, got {z.shape}")
    return _transition_from_counts(_joint_counts(y, z, num_classes))


# --------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------


def _check_labels(labels: Any, num_classes: int | None, *, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a fresh 1-D int64 array in ``[0, num_classes)`` or raise naming ``name``."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    low, high = arr.min(), arr.max()
    if low < 0:
        raise ValueError(f"{name} must be >= 0, found {int(low)}")
    if num_classes is not None and high >= num_classes:
        raise ValueError(f"{name} must be < num_classes={num_classes}, found {int(high)}")
    return arr.astype(np.int64, copy=True)


def _check_rate(rate: Any) -> float:
    return check_range("rate", rate, low=0.0, high=1.0, high_open=True)


def _check_stochastic(matrix: Any, *, name: str, axis: int) -> np.ndarray:
    """Validate a square non-negative matrix whose rows (axis=1) or columns (axis=0) sum to 1."""
    try:
        m = np.array(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a square numeric matrix: {exc}") from None
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"{name} must be a square K x K matrix with K >= 1, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{name} must be finite")
    if (m < 0).any():
        raise ValueError(f"{name} must have no negative entries, found {m.min()!r}")
    sums = m.sum(axis=axis)
    worst = float(np.abs(sums - 1.0).max())
    if worst > STOCHASTIC_ATOL:
        what = "rows" if axis == 1 else "columns"
        idx = int(np.abs(sums - 1.0).argmax())
        raise ValueError(
            f"{name} {what} must each sum to 1 (tolerance {STOCHASTIC_ATOL:g}); "
            f"{what[:-1]} {idx} sums to {sums[idx]!r}"
        )
    return m


def _joint_counts(y: np.ndarray, z: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + z, minlength=k * k).reshape(k, k)


def _transition_from_counts(counts: np.ndarray) -> np.ndarray:
    n = counts.sum(axis=1)
    t = np.eye(counts.shape[0], dtype=np.float64)
    present = n > 0
    t[present] = counts[present] / n[present, None]
    return t


def _result(y: np.ndarray, z: np.ndarray, k: int) -> NoisyLabels:
    flipped = z != y
    return NoisyLabels(
        labels=z,
        true_labels=y,
        flipped=flipped,
        transition_matrix=_transition_from_counts(_joint_counts(y, z, k)),
        rate=float(flipped.mean()),
        num_classes=k,
    )


def _snap(q: np.ndarray) -> np.ndarray:
    """Snap values within float noise of an integer onto it (0.7 * 10 -> 7, not 7.000000000000001)."""
    nearest = np.rint(q)
    close = np.abs(q - nearest) <= 1e-9 * np.maximum(1.0, np.abs(q))
    return np.where(close, nearest, q)


def _round_half_up(x: float) -> int:
    return math.floor(float(_snap(np.asarray(x))) + 0.5)


def _largest_remainder(quotas: np.ndarray, totals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Round each row of non-negative ``quotas`` ``[R, C]`` to integers summing to ``totals`` ``[R]``.

    Every cell gets ``floor(q)`` or ``ceil(q)``: the ``totals - sum(floor)`` extra units go to the
    cells with the largest fractional parts, ties broken uniformly at random. A cell with an integer
    quota (in particular 0) never gets an extra unit. Requires ``sum(floor) <= total <= sum(ceil)``.
    """
    q = _snap(quotas)
    base = np.floor(q).astype(np.int64)
    rem = q - base
    extras = np.asarray(totals, dtype=np.int64) - base.sum(axis=1)
    if (extras < 0).any() or (extras > (rem > 0).sum(axis=1)).any():  # pragma: no cover - invariant
        raise RuntimeError("largest-remainder apportioning got infeasible totals")
    tiebreak = rng.random(q.shape)
    order = np.lexsort((tiebreak, -rem), axis=-1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(q.shape[1]), q.shape), axis=1)
    return base + (ranks < extras[:, None])


def _class_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices that sort ``y`` by class, in uniformly random order within each class."""
    perm = rng.permutation(y.shape[0])
    return perm[np.argsort(y[perm], kind="stable")]


def _exact_flip_counts(
    y: np.ndarray, rate: float, k: int, eligible: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Per-class flip counts: floor or ceil of ``rate * n_k`` for eligible classes, total exact.

    The total is ``round(rate * n_eligible)`` (half up).
    """
    n = np.bincount(y, minlength=k)
    n = np.where(eligible, n, 0)
    total = _round_half_up(rate * n.sum())
    return _largest_remainder((rate * n)[None, :].astype(np.float64), np.array([total]), rng)[0]


def _choose_per_class(y: np.ndarray, quotas: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Bool mask selecting exactly ``quotas[c]`` examples of each class ``c``, uniformly at random."""
    order = _class_order(y, rng)
    n = np.bincount(y, minlength=k)
    starts = np.cumsum(n) - n
    ys = y[order]
    rank = np.arange(y.shape[0]) - starts[ys]
    mask = np.empty(y.shape[0], dtype=bool)
    mask[order] = rank < quotas[ys]
    return mask


Mode = Literal["random", "exact"]
