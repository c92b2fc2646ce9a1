"""Label-independent partitions of a training set: content hash or lexicographic rank, and Finite
Aggregation's overlapping buckets. Re-exported by :mod:`smoothflip.certify`."""

from __future__ import annotations

import hashlib
from numbers import Integral
from typing import Any

import numpy as np

SCHEMES: tuple[str, ...] = ("hash", "sorted")
"""How :func:`partition` assigns examples: a salted content hash, or the lexicographic rank."""


def _check_count(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    if int(value) < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {int(value)}")
    return int(value)


def _check_salt(salt: Any) -> int:
    if isinstance(salt, bool) or not isinstance(salt, Integral) or not 0 <= int(salt) < 2**64:
        raise ValueError(f"salt must be a whole number in [0, 2**64), got {salt!r}")
    return int(salt)


def _rows(x: Any) -> np.ndarray:
    """``x`` as a C-contiguous ``[N, F]`` array of its own dtype (the bytes that are hashed)."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"x must be a numeric array [N, ...]: {err}") from None
    if arr.ndim == 0:
        raise ValueError("x must be an array of examples [N, ...], got a scalar")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"x must hold numbers (bool, int or float), got dtype {arr.dtype}")
    if arr.shape[0] == 0:
        raise ValueError("x must hold at least one example, got 0")
    arr = np.ascontiguousarray(arr.reshape(arr.shape[0], -1))
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"x must be finite; found {int((~np.isfinite(arr)).sum())} NaN or inf value(s)")
    return arr


def content_hash(x: Any, *, salt: int = 0) -> np.ndarray:
    """A salted 64-bit hash of each example's feature bytes: ``[N]`` uint64.

    BLAKE2b keyed with the salt over the raw bytes of the example (in its dtype: a float32 and a
    float64 copy of one example hash differently). Labels play no part.

    Example:
        >>> import numpy as np
        >>> h = content_hash(np.array([[0.0, 1.0], [2.0, 3.0], [0.0, 1.0]]), salt=7)
        >>> bool(h[0] == h[2]), bool(h[0] == h[1])
        (True, False)
    """
    rows = _rows(x)
    key = _check_salt(salt).to_bytes(8, "little")
    out = np.empty(rows.shape[0], dtype=np.uint64)
    for i, row in enumerate(rows):
        digest = hashlib.blake2b(row.tobytes(), digest_size=8, key=key).digest()
        out[i] = int.from_bytes(digest, "little")
    return out


def lexicographic_rank(x: Any) -> np.ndarray:
    """The rank of each example in the lexicographic order of its features: ``[N]`` int64.

    Raises:
        ValueError: two examples are identical (their order, and so their parts, would be arbitrary).

    Example:
        >>> lexicographic_rank([[1, 0], [0, 5], [1, -1]]).tolist()
        [2, 0, 1]
    """
    rows = _rows(x)
    order = np.lexsort(rows.T[::-1]) if rows.shape[1] else np.arange(rows.shape[0])
    ordered = rows[order]
    same = np.all(ordered[1:] == ordered[:-1], axis=1) if rows.shape[0] > 1 else np.zeros(0, bool)
    if same.any():
        first = int(np.flatnonzero(same)[0])
        a, b = sorted((int(order[first]), int(order[first + 1])))
        raise ValueError(
            f"x: examples {a} and {b} are identical; scheme='sorted' needs distinct examples "
            f"({int(same.sum())} duplicate(s)); remove duplicates or use scheme='hash'"
        )
    rank = np.empty(rows.shape[0], dtype=np.int64)
    rank[order] = np.arange(rows.shape[0])
    return rank


def fa_shifts(k: int, d: int, *, salt: int = 0) -> np.ndarray:
    """Finite Aggregation's ``d`` distinct shifts in ``[0, d*k)`` (the first is 0): ``[d]`` int64.

    Bucket ``b`` feeds the learners ``(b + shifts[j]) mod d*k``. The other shifts are drawn without
    replacement from ``1 .. d*k - 1`` by a generator seeded with ``salt``.

    Example:
        >>> fa_shifts(5, 1).tolist()
        [0]
        >>> s = fa_shifts(5, 3, salt=1)
        >>> int(s[0]), len(set(s.tolist())), bool(((0 <= s) & (s < 15)).all())
        (0, 3, True)
    """
    k = _check_count("k", k, low=1)
    d = _check_count("d", d, low=1)
    salt = _check_salt(salt)
    if d == 1:
        return np.zeros(1, dtype=np.int64)
    rng = np.random.default_rng([salt, k, d])
    others = rng.choice(np.arange(1, d * k), size=d - 1, replace=False)
    return np.concatenate([[0], np.sort(others)]).astype(np.int64)


def partition(
    x: Any, k: int, *, scheme: str = "hash", d: int = 1, salt: int = 0, allow_empty: bool = False
) -> np.ndarray:
    """Assign training examples to base learners without looking at their labels.

    ``scheme="hash"`` (DPA): part ``h(x) mod k`` with ``h`` a salted content hash of the example's
    feature bytes (:func:`content_hash`; identical examples share a part). ``scheme="sorted"``
    (SS-DPA): the lexicographic rank of the example mod ``k``, parts of sizes ``floor(N/k)`` or
    ``ceil(N/k)``; duplicate examples are refused and the salt is not used. ``d > 1`` (Finite
    Aggregation): bucket ``b = h mod d*k`` (or the rank mod ``d*k``) and every example feeds the
    ``d`` learners ``(b + s_j) mod d*k`` for the shifts ``s`` of :func:`fa_shifts`; learner ``l``
    trains on the ``d`` buckets ``(l - s_j) mod d*k``.

    Args:
        x: ``[N, ...]`` training features (numbers; the labels are never passed).
        k: parts (``1 <= k <= N``); with ``d > 1``, ``d*k`` learners.
        scheme: ``"hash"`` or ``"sorted"``.
        d: Finite Aggregation's spread (1: DPA's disjoint parts).
        salt: the hash's key and the shifts' seed (an int in ``[0, 2**64)``).
        allow_empty: return even when a learner receives no example (else a ValueError).

    Returns:
        ``[N]`` int64 part of each example in ``[0, k)`` when ``d == 1``; ``[N, d]`` int64 learners
        of each example in ``[0, d*k)`` when ``d > 1`` (column 0 is the example's bucket).

    Raises:
        ValueError: ``k < 1``, ``k > N``, ``d < 1``, an unknown scheme, duplicates under
            ``"sorted"``, or (unless ``allow_empty``) a learner left without examples.

    Example:
        >>> import numpy as np
        >>> x = np.arange(20.0).reshape(10, 2)
        >>> partition(x, 3, scheme="sorted").tolist()
        [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
        >>> p = partition(x, 2, d=2, scheme="sorted")
        >>> p.shape, sorted(set(p[:, 0].tolist()))
        ((10, 2), [0, 1, 2, 3])
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(map(repr, SCHEMES))}, got {scheme!r}")
    k = _check_count("k", k, low=1)
    d = _check_count("d", d, low=1)
    salt = _check_salt(salt)
    rows = _rows(x)
    n = rows.shape[0]
    if k > n:
        raise ValueError(f"k = {k} parts is more than the {n} training examples (k must be <= N)")
    buckets = d * k
    if scheme == "sorted":
        bucket = lexicographic_rank(rows) % buckets
    else:
        bucket = (content_hash(rows, salt=salt) % np.uint64(buckets)).astype(np.int64)
    if d == 1:
        out = bucket
    else:
        out = (bucket[:, None] + fa_shifts(k, d, salt=salt)[None, :]) % buckets
    if not allow_empty:
        used = np.bincount(out.reshape(-1), minlength=buckets)
        empty = np.flatnonzero(used == 0)
        if empty.size:
            what = "part" if d == 1 else "learner"
            raise ValueError(
                f"k = {k}: {what} {int(empty[0])} of {buckets} is empty ({empty.size} empty, scheme="
                f"{scheme!r}, {n} examples); choose a smaller k"
                + (" or scheme='sorted'" if scheme == "hash" else "")
            )
    return out


def learner_indices(assignment: Any, num_learners: int) -> list[np.ndarray]:
    """The training examples of each learner: ``num_learners`` sorted int64 index arrays.

    Args:
        assignment: ``[N]`` (one learner per example) or ``[N, d]`` (Finite Aggregation) from
            :func:`partition`.
        num_learners: ``k`` (or ``d*k``).

    Example:
        >>> [a.tolist() for a in learner_indices([1, 0, 1, 2], 3)]
        [[1], [0, 2], [3]]
    """
    arr = np.asarray(assignment)
    if arr.ndim not in (1, 2) or arr.dtype.kind not in "iu":
        raise ValueError(f"assignment must be an [N] or [N, d] integer array, got shape {arr.shape}")
    num_learners = _check_count("num_learners", num_learners, low=1)
    if arr.size and (arr.min() < 0 or arr.max() >= num_learners):
        raise ValueError(f"assignment must hold learners in [0, {num_learners}), got {int(arr.max())}")
    flat = arr.reshape(arr.shape[0], -1)
    examples = np.repeat(np.arange(flat.shape[0]), flat.shape[1])
    owners = flat.reshape(-1)
    order = np.lexsort((examples, owners))
    counts = np.bincount(owners, minlength=num_learners)
    return [part.astype(np.int64) for part in np.split(examples[order], np.cumsum(counts)[:-1])]
