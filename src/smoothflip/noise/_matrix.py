"""Noise from a transition matrix: drawing labels from one, random matrices, cleanlab's convention.

:func:`from_transition_matrix` applies a user's row-stochastic ``T[true, noisy]`` (randomly or
exactly), :func:`random_transition_matrix` makes one whose mean off-diagonal mass is exactly the
requested rate, and :func:`to_cleanlab` / :func:`from_cleanlab` convert to and from cleanlab's
column-stochastic noise matrix. Re-exported by :mod:`smoothflip.noise`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from smoothflip._validation import SeedLike, as_generator, check_choice, check_int, check_range
from smoothflip.noise._common import (
    Mode,
    NoisyLabels,
    _check_labels,
    _check_rate,
    _check_stochastic,
    _class_order,
    _largest_remainder,
    _result,
    _round_half_up,
)


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
