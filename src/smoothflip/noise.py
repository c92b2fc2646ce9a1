"""Label-noise models: numpy in, numpy out, seeded by a local generator.

Convention (the whole package uses it): a label-noise transition matrix is **row-stochastic**,

    ``T[i, j] = P(noisy label = j | true label = i)``,  every row sums to 1.

cleanlab stores the transpose (its ``noise_matrix[i][j] = P(label=i | true_label=j)``, columns sum
to 1); :func:`to_cleanlab` and :func:`from_cleanlab` convert.

Every generator takes ``seed`` (an int, a :class:`numpy.random.Generator` or ``None``) and never
touches the global NumPy RNG. Each returns a :class:`NoisyLabels`: the noisy labels, the flip mask,
the *realized* transition matrix and the *realized* flip rate, so a study can always report what
was actually applied, not only what was asked for.

Modes: ``"random"`` modes decide every example independently (the realized rate fluctuates around
the request with binomial spread); ``"exact"`` modes fix the number of flipped labels per class by
largest-remainder apportioning (see :func:`symmetric`), so the realized rate is deterministic.

Example:
    >>> import numpy as np
    >>> from smoothflip import noise
    >>> y = np.repeat(np.arange(10), 100)
    >>> out = noise.symmetric(y, 0.2, 10, mode="exact", seed=0)
    >>> out.rate, int(out.flipped.sum())
    (0.2, 200)
    >>> bool((out.labels[out.flipped] != y[out.flipped]).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from scipy import optimize, stats

from smoothflip._validation import SeedLike, as_generator, check_choice, check_int, check_range

__all__ = [
    "ASYMMETRIC_PRESETS",
    "NoisyLabels",
    "asymmetric",
    "from_cleanlab",
    "from_transition_matrix",
    "instance_dependent",
    "pair_flip",
    "random_transition_matrix",
    "realized_transition_matrix",
    "symmetric",
    "to_cleanlab",
]

#: Tolerance for "rows (or columns) sum to 1".
STOCHASTIC_ATOL = 1e-6

#: Class maps of Patrini et al. 2017 (``noisify_mnist_asymmetric`` / ``noisify_cifar10_asymmetric``).
#: CIFAR-10: truck→automobile, bird→airplane, cat↔dog, deer→horse.
ASYMMETRIC_PRESETS: Mapping[str, Mapping[int, int]] = MappingProxyType(
    {
        "mnist": MappingProxyType({2: 7, 3: 8, 5: 6, 6: 5, 7: 1}),
        "cifar10": MappingProxyType({9: 1, 2: 0, 3: 5, 5: 3, 4: 7}),
    }
)
_PRESET_NUM_CLASSES = {"mnist": 10, "cifar10": 10}


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


# --------------------------------------------------------------------------------------------------
# noise models
# --------------------------------------------------------------------------------------------------


def symmetric(
    labels: Any,
    rate: float,
    num_classes: int,
    *,
    mode: Literal["exclude_true", "include_true", "exact"] = "exclude_true",
    seed: SeedLike = None,
) -> NoisyLabels:
    """Symmetric (uniform) label noise, in the three conventions found in the literature.

    Args:
        labels: ``[N]`` integer labels in ``[0, K)`` (list or array-like).
        rate: noise rate in ``[0, 1)``; its meaning depends on ``mode``.
        num_classes: ``K >= 2``.
        mode:
            - ``"exclude_true"`` (default; Patrini 2017, Co-teaching): each label, with probability
              ``rate``, becomes a uniformly chosen *other* class. ``T = (1-rate)·I + rate/(K-1)``
              off the diagonal; the expected wrong fraction is ``rate``.
            - ``"include_true"`` (DivideMix, ELR): with probability ``rate`` the label is *redrawn
              uniformly over all K classes*, so it may land on the true class again. **The realized
              wrong fraction is ``rate·(K-1)/K``, not ``rate``** (e.g. "50%" on CIFAR-10 flips 45%).
            - ``"exact"`` (SCE-style): exactly ``round(rate·N)`` labels (rounded half up) are wrong.
              They are apportioned across classes by largest remainder: class ``k`` flips
              ``floor(rate·n_k)`` or ``ceil(rate·n_k)`` examples, the classes with the largest
              fractional parts (ties at random) taking the extra ones, so the total is exact. The
              flipped examples are chosen uniformly within their class and each goes to a uniformly
              chosen other class.
        seed: int, ``numpy.random.Generator`` or ``None``.

    Returns:
        :class:`NoisyLabels` with ``[N]`` noisy labels, the flip mask, the realized ``[K, K]``
        transition matrix and the realized rate.

    Raises:
        ValueError: bad ``labels``, ``rate``, ``num_classes`` or ``mode``.

    Example:
        >>> y = np.arange(10).repeat(50)
        >>> symmetric(y, 0.3, 10, mode="exact", seed=1).rate
        0.3
        >>> out = symmetric(y, 0.3, 10, seed=1)  # random: about 30% wrong
        >>> 0.2 < out.rate < 0.4
        True
    """
    num_classes = check_int("num_classes", num_classes, low=2)
    mode = check_choice("mode", mode, ("exclude_true", "include_true", "exact"))
    rate = _check_rate(rate)
    y = _check_labels(labels, num_classes)
    rng = as_generator(seed)
    n = y.shape[0]
    if mode == "include_true":
        redraw = rng.random(n) < rate
        new = rng.integers(0, num_classes, size=n)
        z = np.where(redraw, new, y)
    else:
        if mode == "exclude_true":
            flip = rng.random(n) < rate
        else:
            quotas = _exact_flip_counts(y, rate, num_classes, np.ones(num_classes, bool), rng)
            flip = _choose_per_class(y, quotas, num_classes, rng)
        offset = rng.integers(1, num_classes, size=n)  # uniform over the K-1 other classes
        z = np.where(flip, (y + offset) % num_classes, y)
    return _result(y, z, num_classes)


def pair_flip(
    labels: Any,
    rate: float,
    num_classes: int,
    *,
    mode: Mode = "random",
    seed: SeedLike = None,
) -> NoisyLabels:
    """Pair-flip noise (Han et al. 2018, Co-teaching): class ``i`` flips to ``(i + 1) mod K``.

    ``T[i, i] = 1 - rate``, ``T[i, (i+1) mod K] = rate``. The usual benchmark uses ``rate=0.45``.

    Args:
        labels: ``[N]`` integer labels in ``[0, K)``.
        rate: flip probability in ``[0, 1)``.
        num_classes: ``K >= 2``.
        mode: ``"random"`` (each example flips independently with probability ``rate``) or
            ``"exact"`` (``floor``/``ceil`` of ``rate·n_k`` per class, ``round(rate·N)`` in total,
            apportioned as in :func:`symmetric`).
        seed: int, ``numpy.random.Generator`` or ``None``.

    Returns:
        :class:`NoisyLabels` (``[N]`` labels, mask, realized ``[K, K]`` matrix, realized rate).

    Example:
        >>> out = pair_flip([0, 0, 1, 1, 2, 2], 0.5, 3, mode="exact", seed=0)
        >>> out.rate
        0.5
        >>> sorted(set(zip(out.true_labels[out.flipped].tolist(), out.labels[out.flipped].tolist())))
        [(0, 1), (1, 2), (2, 0)]
    """
    num_classes = check_int("num_classes", num_classes, low=2)
    mode = check_choice("mode", mode, ("random", "exact"))
    rate = _check_rate(rate)
    y = _check_labels(labels, num_classes)
    rng = as_generator(seed)
    if mode == "random":
        flip = rng.random(y.shape[0]) < rate
    else:
        quotas = _exact_flip_counts(y, rate, num_classes, np.ones(num_classes, bool), rng)
        flip = _choose_per_class(y, quotas, num_classes, rng)
    z = np.where(flip, (y + 1) % num_classes, y)
    return _result(y, z, num_classes)


def _resolve_mapping(mapping: Any) -> tuple[dict[int, int], int | None]:
    if isinstance(mapping, str):
        name = check_choice("mapping", mapping, tuple(ASYMMETRIC_PRESETS))
        return dict(ASYMMETRIC_PRESETS[name]), _PRESET_NUM_CLASSES[name]
    if not isinstance(mapping, Mapping):
        raise TypeError(
            "mapping must be a dict {source: target} or a preset name "
            f"({', '.join(map(repr, ASYMMETRIC_PRESETS))}), got {type(mapping).__name__}"
        )
    if not mapping:
        raise ValueError("mapping must not be empty")
    out: dict[int, int] = {}
    for src, dst in mapping.items():
        for v in (src, dst):
            if isinstance(v, bool | np.bool_) or not isinstance(v, Integral):
                raise ValueError(f"mapping must map integer classes to integer classes, got {v!r}")
            if v < 0:
                raise ValueError(f"mapping classes must be >= 0, got {int(v)}")
        if src == dst:
            raise ValueError(f"mapping maps class {int(src)} to itself; drop that entry")
        out[int(src)] = int(dst)
    return out, None


def asymmetric(
    labels: Any,
    rate: float,
    mapping: Mapping[int, int] | str,
    *,
    num_classes: int | None = None,
    mode: Mode = "random",
    seed: SeedLike = None,
) -> NoisyLabels:
    """Class-conditional noise along a fixed class map (Patrini et al. 2017).

    Each example whose *true* label is a source class of ``mapping`` flips to that class's target
    with probability ``rate``; all other examples are untouched. The decision is made once per
    example from its true label, so a cat flipped to dog is never flipped back by the dog→cat rule
    (ELR's in-place class-by-class loop has that double-flip bug).

    **The realized overall rate is ``rate × (share of examples in source classes)``**, e.g. about
    ``0.5·rate`` for the CIFAR-10 map on balanced data (5 of 10 classes are sources).

    Args:
        labels: ``[N]`` integer labels in ``[0, K)``.
        rate: flip probability for examples of source classes, in ``[0, 1)``.
        mapping: ``{source: target}`` dict, or a preset name: ``"mnist"`` (2→7, 3→8, 5↔6, 7→1) or
            ``"cifar10"`` (9→1 truck→automobile, 2→0 bird→airplane, 3↔5 cat↔dog, 4→7 deer→horse).
        num_classes: ``K``; defaults to 10 for presets, else ``1 + max`` over labels and mapping.
        mode: ``"random"`` (independent per-example flips) or ``"exact"`` (``floor``/``ceil`` of
            ``rate·n_k`` per source class, ``round(rate·n_sources)`` in total; see :func:`symmetric`).
        seed: int, ``numpy.random.Generator`` or ``None``.

    Returns:
        :class:`NoisyLabels` (``[N]`` labels, mask, realized ``[K, K]`` matrix, realized rate).

    Example:
        >>> y = np.arange(10).repeat(10)
        >>> out = asymmetric(y, 0.4, "cifar10", mode="exact", seed=0)
        >>> out.rate  # 0.4 of the 50 source-class examples
        0.2
        >>> round(float(out.transition_matrix[3, 5]), 2), round(float(out.transition_matrix[0, 0]), 2)
        (0.4, 1.0)
    """
    pairs, preset_k = _resolve_mapping(mapping)
    mode = check_choice("mode", mode, ("random", "exact"))
    rate = _check_rate(rate)
    if num_classes is None:
        y = _check_labels(labels, None)
        num_classes = preset_k or max(int(y.max()), *pairs.keys(), *pairs.values()) + 1
        num_classes = max(num_classes, 2)
    num_classes = check_int("num_classes", num_classes, low=2)
    y = _check_labels(labels, num_classes)
    bad = [c for pair in pairs.items() for c in pair if c >= num_classes]
    if bad:
        raise ValueError(f"mapping uses class {bad[0]}, outside [0, num_classes={num_classes})")
    rng = as_generator(seed)
    target = np.arange(num_classes)
    target[list(pairs)] = list(pairs.values())
    source = target != np.arange(num_classes)
    if mode == "random":
        flip = source[y] & (rng.random(y.shape[0]) < rate)
    else:
        quotas = _exact_flip_counts(y, rate, num_classes, source, rng)
        flip = _choose_per_class(y, quotas, num_classes, rng)
    z = np.where(flip, target[y], y)
    return _result(y, z, num_classes)


def from_transition_matrix(
    labels: Any,
    transition_matrix: Any,
    *,
    mode: Mode = "random",
    seed: SeedLike = None,
) -> NoisyLabels:
    """Noise drawn from a user-supplied row-stochastic matrix.

    Args:
        labels: ``[N]`` integer labels in ``[0, K)``.
        transition_matrix: ``[K, K]`` row-stochastic ``T[i, j] = P(noisy = j | true = i)``
            (non-negative, rows sum to 1 within 1e-6; rows are renormalized before use).
        mode: ``"random"``: each example of class ``i`` draws its noisy label from row ``i``.
            ``"exact"``: class ``i`` sends exactly ``c[i, j]`` examples to class ``j``, where
            ``c[i, :]`` is ``n_i·T[i, :]`` rounded by largest remainder (each cell the floor or the
            ceil, row totals exactly ``n_i``, zero-probability cells always 0); which examples go
            where is uniformly random within the class.
        seed: int, ``numpy.random.Generator`` or ``None``.

    Returns:
        :class:`NoisyLabels` (``[N]`` labels, mask, realized ``[K, K]`` matrix, realized rate).

    Example:
        >>> t = [[0.75, 0.25], [0.0, 1.0]]
        >>> out = from_transition_matrix([0] * 8 + [1] * 4, t, mode="exact", seed=0)
        >>> out.transition_matrix.tolist()
        [[0.75, 0.25], [0.0, 1.0]]
    """
    t = _check_stochastic(transition_matrix, name="transition_matrix", axis=1)
    mode = check_choice("mode", mode, ("random", "exact"))
    k = t.shape[0]
    y = _check_labels(labels, None)
    if int(y.max()) >= k:
        raise ValueError(
            f"transition_matrix is {k}x{k} but labels hold class {int(y.max())}: "
            f"it needs a row for every class (at least {int(y.max()) + 1}x{int(y.max()) + 1})"
        )
    t = t / t.sum(axis=1, keepdims=True)
    rng = as_generator(seed)
    n = np.bincount(y, minlength=k)
    if mode == "random":
        u = rng.random(y.shape[0])
        cdf = np.cumsum(t, axis=1)
        cdf /= cdf[:, -1:]  # last entry exactly 1.0; equal neighbours stay equal (zero cells)
        order = np.argsort(y, kind="stable")
        ends = np.cumsum(n)
        z = np.empty_like(y)
        for c in np.flatnonzero(n):
            idx = order[ends[c] - n[c] : ends[c]]
            z[idx] = np.searchsorted(cdf[c], u[idx], side="right")
    else:
        cells = _largest_remainder(n[:, None] * t, n, rng)
        order = _class_order(y, rng)
        z = np.empty_like(y)
        z[order] = np.repeat(np.tile(np.arange(k), k), cells.ravel())
    return _result(y, z, k)


def random_transition_matrix(
    num_classes: int,
    *,
    rate: float,
    sparsity: float = 0.0,
    row_spread: float = 1.0,
    seed: SeedLike = None,
) -> np.ndarray:
    """A random row-stochastic matrix whose average off-diagonal row mass is exactly ``rate``.

    Unlike cleanlab's ``generate_noise_matrix_from_trace`` + ``generate_noisy_labels`` (which floors
    per-cell counts and under-flips, cleanlab issue #977), the mean noise rate
    ``mean_i(1 - T[i, i])`` equals ``rate`` to float precision, and :func:`from_transition_matrix`
    realizes it without systematic loss.

    Construction:

    1. Row rates ``r_i = rate + s·(u_i - mean(u))`` with ``u_i ~ U(-1/2, 1/2)`` and
       ``s = row_spread·min(rate, 1 - rate)``, then shifted by the float residue so that
       ``mean(r) == rate``. Since ``|u_i - mean(u)| <= (K-1)/K < 1``, every ``r_i`` lies strictly
       inside ``(rate - s, rate + s)``, a subset of ``(max(0, 2·rate - 1), min(1, 2·rate))``: for
       ``rate > 0`` each row rate is in ``(0, 1)``, so every row is valid and keeps a positive
       diagonal. ``row_spread=0`` gives every row the same rate.
    2. Sparsity: ``Z = round(sparsity·K(K-1))`` off-diagonal cells are forced to zero, spread over
       the rows as evenly as possible (each row ``floor(Z/K)`` or ``ceil(Z/K)``, random rows take
       the extras) at random columns. Each row keeps at least one non-zero off-diagonal cell, so
       ``Z`` is capped at ``K(K-2)`` (``sparsity=1`` means "one off-diagonal target per row").
    3. Each row's mass ``r_i`` is split over its remaining off-diagonal cells with flat Dirichlet
       weights; ``T[i, i] = 1 - r_i``.

    With ``rate == 0`` the result is the identity (``sparsity`` is then moot).

    Args:
        num_classes: ``K >= 2``.
        rate: mean off-diagonal row mass in ``[0, 1)``.
        sparsity: fraction of off-diagonal cells forced to zero, in ``[0, 1]`` (capped as above).
        row_spread: how far row rates may spread around ``rate``, in ``[0, 1]`` (fraction of the
            largest spread that keeps all rows valid).
        seed: int, ``numpy.random.Generator`` or ``None``.

    Returns:
        ``[K, K]`` float64 row-stochastic matrix.

    Example:
        >>> t = random_transition_matrix(5, rate=0.3, sparsity=0.5, seed=0)
        >>> round(float(np.mean(1 - np.diag(t))), 12), int((t == 0).sum())
        (0.3, 10)
    """
    k = check_int("num_classes", num_classes, low=2)
    rate = _check_rate(rate)
    sparsity = check_range("sparsity", sparsity, low=0.0, high=1.0)
    row_spread = check_range("row_spread", row_spread, low=0.0, high=1.0)
    rng = as_generator(seed)
    if rate == 0.0:
        return np.eye(k)
    s = row_spread * min(rate, 1.0 - rate)
    u = rng.uniform(-0.5, 0.5, size=k)
    r = rate + s * (u - u.mean())
    r += rate - r.mean()

    diag = np.eye(k, dtype=bool)
    zeros_total = min(_round_half_up(sparsity * k * (k - 1)), k * (k - 2))
    per_row = np.full(k, zeros_total // k)
    per_row[rng.permutation(k)[: zeros_total % k]] += 1
    keys = rng.random((k, k))
    keys[diag] = 2.0  # diagonal ranks last: never chosen as a forced zero
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    forced_zero = ranks < per_row[:, None]

    w = np.maximum(rng.standard_exponential((k, k)), np.finfo(np.float64).tiny)
    w[diag | forced_zero] = 0.0
    t = r[:, None] * (w / w.sum(axis=1, keepdims=True))
    t[diag] = 1.0 - r
    return t


def _truncnorm_loc_for_mean(rate: float, sd: float) -> float:
    """The location of a normal(loc, sd) truncated to ``[0, 1]`` whose mean is ``rate`` (in (0, 1))."""

    def excess(loc: float) -> float:
        return float(stats.truncnorm.mean((0.0 - loc) / sd, (1.0 - loc) / sd, loc=loc, scale=sd)) - rate

    lo, hi = rate - 1.0, rate + 1.0  # the truncated mean increases with loc, from 0 to 1
    while excess(lo) > 0 and lo > -1e6:
        lo = rate - 2.0 * (rate - lo)
    while excess(hi) < 0 and hi < 1e6:
        hi = rate + 2.0 * (hi - rate)
    if not excess(lo) <= 0 <= excess(hi):
        raise ValueError(
            f"cannot match rate={rate!r} with rate_std={sd!r}; pass match_rate=False or a larger rate_std"
        )
    return float(optimize.brentq(excess, lo, hi, xtol=1e-12))


def instance_dependent(
    features: Any,
    labels: Any,
    *,
    rate: float,
    num_classes: int | None = None,
    rate_std: float = 0.1,
    normalize: bool = True,
    match_rate: bool = True,
    seed: SeedLike = None,
) -> NoisyLabels:
    """Instance-dependent ("part-dependent") noise of Xia et al. 2020 (NeurIPS), IDN.

    For each example ``i`` with true label ``y``:

    1. a flip rate ``q_i ~ TruncNormal(loc, sd=rate_std)`` truncated to ``[0, 1]``, with ``loc``
       chosen so that the *truncated* distribution's mean is ``rate`` (``match_rate=True``), or
       ``loc = rate`` as in Xia et al.'s code (``match_rate=False``);
    2. a random projection ``W ~ N(0, 1)`` of shape ``[K, d, K]`` (drawn once per call, one
       ``[d, K]`` slice at a time, so memory stays ``O(d·K)``);
    3. ``logits = x_i · W[y]`` with ``x_i`` the flattened features, **L2-normalized per example**
       (``normalize=True``); ``logits[y] = -inf``;
    4. ``p = q_i·softmax(logits)``, ``p[y] = 1 - q_i``; the noisy label is drawn from ``p``.

    So example ``i`` is flipped with probability ``q_i`` to a feature-dependent wrong class.
    Most public copies of Xia's ``get_instance_noisy_label`` skip the normalization; with raw
    pixel-scale features the logits are huge and the softmax is nearly one-hot (every example of a
    class flips to one feature-determined class). ``normalize=False`` reproduces that behaviour.

    **The realized rate.** With ``match_rate=False`` the expected rate is the truncated normal's
    mean, far above ``rate`` for small rates (``rate_std=0.1``: 0.02 gives about 0.09, 0.05 about
    0.10, 0.2 about 0.2055), because truncation at 0 cuts off the lower tail. The default solves
    for the location instead (``rate=0.02``: ``loc`` about -0.46), so the expected rate is
    ``rate`` at every rate and only the spread of ``q_i`` follows ``rate_std``. ``rate == 0`` means
    no noise at all; ``rate_std=0`` gives every example ``q_i = rate``.

    Args:
        features: ``[N, ...]`` finite numeric features, flattened to ``[N, d]``.
        labels: ``[N]`` integer labels in ``[0, K)``.
        rate: mean flip rate in ``[0, 1)``.
        num_classes: ``K``; default ``max(labels) + 1`` (at least 2).
        rate_std: standard deviation of the per-example flip rate before truncation (``>= 0``).
        normalize: L2-normalize each example's feature vector (zero vectors are left as zeros).
        match_rate: make the mean per-example flip rate equal ``rate`` (see above).
        seed: int, ``numpy.random.Generator`` or ``None``.

    Returns:
        :class:`NoisyLabels` (``[N]`` labels, mask, realized ``[K, K]`` matrix, realized rate).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(2000, 8)), rng.integers(0, 4, 2000)
        >>> out = instance_dependent(x, y, rate=0.3, seed=0)
        >>> 0.25 < out.rate < 0.35, bool((out.labels[out.flipped] != y[out.flipped]).all())
        (True, True)
    """
    rate = _check_rate(rate)
    rate_std = check_range("rate_std", rate_std, low=0.0)
    if num_classes is None:
        num_classes = max(int(_check_labels(labels, None).max()) + 1, 2)
    k = check_int("num_classes", num_classes, low=2)
    y = _check_labels(labels, k)
    n = y.shape[0]
    try:
        x = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"features must be a numeric array: {exc}") from None
    if x.ndim == 0 or x.shape[0] != n:
        raise ValueError(f"features must have N={n} rows like labels, got shape {x.shape}")
    x = x.reshape(n, -1)
    if x.shape[1] == 0:
        raise ValueError("features must have at least one value per example")
    if not np.isfinite(x).all():
        raise ValueError("features must be finite (found NaN or inf)")
    rng = as_generator(seed)

    if rate == 0.0:
        q = np.zeros(n)
    elif rate_std == 0.0:
        q = np.full(n, rate)
    else:
        loc = _truncnorm_loc_for_mean(rate, rate_std) if match_rate else rate
        a, b = (0.0 - loc) / rate_std, (1.0 - loc) / rate_std
        q = stats.truncnorm.rvs(a, b, loc=loc, scale=rate_std, size=n, random_state=rng)
    flip = rng.random(n) < q
    pick = rng.random(n)

    z = y.copy()
    flipped_idx = np.flatnonzero(flip)
    flipped_idx = flipped_idx[np.argsort(y[flipped_idx], kind="stable")]
    bounds = np.searchsorted(y[flipped_idx], np.arange(k + 1))
    for c in range(k):
        w_c = rng.standard_normal((x.shape[1], k))  # W[c], drawn for every class in order
        idx = flipped_idx[bounds[c] : bounds[c + 1]]
        if idx.size == 0:
            continue
        xc = x[idx]
        if normalize:  # only the flipped rows are ever projected
            norm = np.sqrt(np.einsum("ij,ij->i", xc, xc))[:, None]
            xc = xc / np.where(norm > 0, norm, 1.0)
        logits = xc @ w_c
        logits[:, c] = -np.inf
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        cdf = np.cumsum(p, axis=1)
        cdf /= cdf[:, -1:]
        z[idx] = (cdf <= pick[idx, None]).sum(axis=1)
    return _result(y, z, k)


# --------------------------------------------------------------------------------------------------
# cleanlab interop
# --------------------------------------------------------------------------------------------------


def to_cleanlab(transition_matrix: Any) -> np.ndarray:
    """Convert a row-stochastic ``T[true, noisy]`` into cleanlab's column-stochastic noise matrix.

    Args:
        transition_matrix: ``[K, K]`` with ``T[i, j] = P(noisy = j | true = i)``, rows summing to 1.

    Returns:
        ``[K, K]`` ``M = T.T``: ``M[i, j] = P(label = i | true_label = j)``, columns summing to 1
        (what ``cleanlab.benchmarking.noise_generation.generate_noisy_labels`` expects).

    Example:
        >>> to_cleanlab([[0.8, 0.2], [0.0, 1.0]]).tolist()
        [[0.8, 0.0], [0.2, 1.0]]
    """
    t = _check_stochastic(transition_matrix, name="transition_matrix", axis=1)
    return np.ascontiguousarray(t.T)


def from_cleanlab(noise_matrix: Any) -> np.ndarray:
    """Convert cleanlab's column-stochastic ``noise_matrix`` into a row-stochastic ``T[true, noisy]``.

    Args:
        noise_matrix: ``[K, K]`` with ``M[i, j] = P(label = i | true_label = j)``, columns summing
            to 1 (e.g. from ``generate_noise_matrix_from_trace``).

    Returns:
        ``[K, K]`` ``T = M.T``, rows summing to 1.

    Example:
        >>> from_cleanlab([[0.8, 0.0], [0.2, 1.0]]).tolist()
        [[0.8, 0.2], [0.0, 1.0]]
    """
    m = _check_stochastic(noise_matrix, name="noise_matrix", axis=0)
    return np.ascontiguousarray(m.T)
