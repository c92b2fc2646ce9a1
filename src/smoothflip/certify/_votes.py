"""Vote certificates (DPA, Finite Aggregation), certified accuracy and the median certified radius.
Re-exported by :mod:`smoothflip.certify`."""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np

from smoothflip.certify._partition import _check_count, fa_shifts

ABSTAIN = -1
"""A learner's prediction when it casts no vote (e.g. it diverged while training)."""


class Certificate(NamedTuple):
    """Each test point's prediction and certified radius.

    Attributes:
        prediction: ``[N]`` int64 class with the most votes (ties to the smaller index).
        radius: ``[N]`` int64 number of label flips (see :mod:`smoothflip.certify`) that provably
            cannot change the prediction; ``-1`` where labels were given and the prediction is wrong.
    """

    prediction: np.ndarray
    radius: np.ndarray


def _int_array(name: str, value: Any, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an integer array: {err}") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise ValueError(f"{name} must hold whole numbers, got dtype {arr.dtype} with fractions")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu" and arr.dtype.kind != "b":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_labels(labels: Any, n: int, num_classes: int) -> np.ndarray:
    y = _int_array("labels", labels, 1)
    if y.shape[0] != n:
        raise ValueError(f"labels must have one entry per test point ({n}), got {y.shape[0]}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"labels must be class indices in [0, {num_classes}), got {int(y.min())}..{int(y.max())}"
        )
    return y


def _mark_wrong(cert: Certificate, labels: Any, num_classes: int) -> Certificate:
    if labels is None:
        return cert
    y = _check_labels(labels, cert.prediction.shape[0], num_classes)
    radius = np.where(cert.prediction == y, cert.radius, -1)
    return Certificate(cert.prediction, radius)


def votes_from_predictions(predictions: Any, num_classes: int) -> np.ndarray:
    """Count the learners' votes: ``[N, L]`` predicted classes -> ``[N, C]`` int64 counts.

    A prediction of :data:`ABSTAIN` (-1) casts no vote.

    Example:
        >>> votes_from_predictions([[0, 2, 2, -1]], 3).tolist()
        [[1, 0, 2]]
    """
    preds = _int_array("predictions", predictions, 2)
    num_classes = _check_count("num_classes", num_classes, low=2)
    if preds.size and (preds.min() < ABSTAIN or preds.max() >= num_classes):
        raise ValueError(f"predictions must be classes in [0, {num_classes}) or -1 (abstain)")
    votes = np.zeros((preds.shape[0], num_classes), dtype=np.int64)
    for c in range(num_classes):
        votes[:, c] = (preds == c).sum(axis=1)
    return votes


def certify_votes(votes: Any, *, labels: Any = None) -> Certificate:
    """DPA's certificate from vote counts (Levine & Feizi, ICLR 2021).

    The prediction is the class ``c`` with the most votes, ties to the smaller index; its radius is
    ``floor((n_c - max_{c' != c} (n_{c'} + 1[c' < c])) / 2)``: each flip moves at most one vote, so
    fewer flips than that leave ``c`` ahead of every other class under the tie rule.

    Args:
        votes: ``[N, C]`` non-negative vote counts (``C >= 2``).
        labels: ``[N]`` true classes; wrong predictions then get radius ``-1``.

    Returns:
        A :class:`Certificate` (prediction and radius, ``[N]`` int64 each).

    Example:
        >>> cert = certify_votes([[5, 2, 3], [3, 3, 0], [1, 4, 0]], labels=[0, 0, 2])
        >>> cert.prediction.tolist(), cert.radius.tolist()
        ([0, 0, 1], [1, 0, -1])
    """
    v = _int_array("votes", votes, 2)
    if v.shape[1] < 2:
        raise ValueError(f"votes must have at least 2 classes (columns), got shape {v.shape}")
    if v.size and v.min() < 0:
        raise ValueError(f"votes must be non-negative counts, got {int(v.min())}")
    n, num_classes = v.shape
    prediction = np.argmax(v, axis=1).astype(np.int64) if n else np.zeros(0, np.int64)
    rows = np.arange(n)
    top = v[rows, prediction]
    rival = v + (np.arange(num_classes)[None, :] < prediction[:, None])
    rival[rows, prediction] = np.iinfo(np.int64).min
    radius = (top - rival.max(axis=1)) // 2 if n else np.zeros(0, np.int64)
    return _mark_wrong(Certificate(prediction, radius.astype(np.int64)), labels, num_classes)


def certify_finite_aggregation(
    predictions: Any,
    *,
    num_classes: int,
    k: int,
    d: int,
    salt: int = 0,
    shifts: Any = None,
    labels: Any = None,
) -> Certificate:
    """Finite Aggregation's certificate (Wang, Levine & Feizi, ICML 2022) from each learner's prediction.

    ``d*k`` learners; bucket ``h`` feeds learners ``(h + s_j) mod d*k`` (the layout of
    :func:`~smoothflip.certify.partition` with the same ``k``, ``d`` and ``salt``), so one flipped
    label in bucket ``h`` can change those ``d`` predictions. For the prediction ``y`` (most votes,
    ties to the smaller index) and each ``c != y``: the margin ``m_c = n_y - n_c - 1[c < y]``; a
    bucket's worth ``Δ_h(c) = Σ_{learners l of h} (1 + 1[f_l = y] - 1[f_l = c])`` (how far turning
    all its learners to ``c`` closes the margin); ``r_c`` is the largest ``t`` whose ``t`` largest
    worths sum to at most ``m_c``; the radius is ``min_c r_c``. With ``d = 1`` it is
    :func:`certify_votes`' radius.

    Args:
        predictions: ``[N, d*k]`` each learner's predicted class (``-1``: abstains).
        num_classes: ``C >= 2``.
        k, d: as given to :func:`~smoothflip.certify.partition`.
        salt: the salt the partition used (it seeds the shifts).
        shifts: ``[d]`` the shifts themselves (default :func:`~smoothflip.certify.fa_shifts`).
        labels: ``[N]`` true classes; wrong predictions get radius ``-1``.

    Example:
        >>> import numpy as np
        >>> preds = np.array([[0, 0, 0, 1], [1, 1, 0, 0]])
        >>> cert = certify_finite_aggregation(preds, num_classes=2, k=2, d=2, shifts=[0, 1])
        >>> cert.prediction.tolist(), cert.radius.tolist()
        ([0, 0], [0, 0])
    """
    k = _check_count("k", k, low=1)
    d = _check_count("d", d, low=1)
    learners = d * k
    preds = _int_array("predictions", predictions, 2)
    if preds.shape[1] != learners:
        raise ValueError(
            f"predictions must have d*k = {learners} columns (one per learner), got {preds.shape[1]}"
        )
    votes = votes_from_predictions(preds, num_classes)
    s = fa_shifts(k, d, salt=salt) if shifts is None else _int_array("shifts", shifts, 1)
    if s.shape[0] != d or len(set((s % learners).tolist())) != d:
        raise ValueError(f"shifts must be {d} distinct values mod {learners}, got {s.tolist()}")
    n = preds.shape[0]
    y = np.argmax(votes, axis=1).astype(np.int64) if n else np.zeros(0, np.int64)
    fed = (np.arange(learners)[:, None] + s[None, :]) % learners  # [buckets, d] learners of bucket h
    per_bucket = preds[:, fed]  # [N, buckets, d]
    is_y = (per_bucket == y[:, None, None]).sum(axis=2)  # [N, buckets]
    rows = np.arange(n)
    radius = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    for c in range(num_classes):
        other = y != c
        if not other.any():
            continue
        margin = votes[rows, y] - votes[:, c] - (c < y)  # [N]
        worth = d + is_y - (per_bucket == c).sum(axis=2)  # [N, buckets]
        spent = np.cumsum(-np.sort(-worth, axis=1), axis=1)  # top-t sums
        r_c = (spent <= margin[:, None]).sum(axis=1)
        radius = np.where(other, np.minimum(radius, r_c), radius)
    return _mark_wrong(Certificate(y, radius), labels, num_classes)


def _check_radius(radius: Any) -> np.ndarray:
    r = _int_array("radius", radius, 1)
    if r.size == 0:
        raise ValueError("radius must hold at least one test point, got 0")
    if r.min() < -1:
        raise ValueError(f"radius must be >= -1 (-1: a wrong prediction), got {int(r.min())}")
    return r


def _check_r(r: Any) -> np.ndarray:
    arr = np.asarray(r)
    bad = arr.dtype.kind not in "iuf" or arr.ndim > 1
    if not bad and arr.dtype.kind == "f":
        bad = not np.isfinite(arr).all() or bool((arr != np.round(arr)).any())
    if bad or (arr.size and arr.min() < 0):
        raise ValueError(
            f"r must be whole numbers >= 0 (a number of label flips), got {np.asarray(r).tolist()!r}"
        )
    return arr.astype(np.int64)


def certified_accuracy(radius: Any, r: Any) -> float | np.ndarray:
    """The fraction of test points predicted correctly *and* certified at ``r`` flips.

    ``mean(radius >= r)`` for radii from a certificate computed with labels (``-1`` marks a wrong
    prediction, which is never counted); at ``r = 0`` it is the clean accuracy. It never increases
    with ``r``.

    Args:
        radius: ``[N]`` from :func:`certify_votes` / :func:`certify_finite_aggregation` with labels.
        r: a whole number ``>= 0`` or a 1-D array of them.

    Returns:
        A float for a scalar ``r``; a ``[R]`` float64 array for an array.

    Example:
        >>> certified_accuracy([3, 0, -1, 5], [0, 1, 4, 6]).tolist()
        [0.75, 0.5, 0.25, 0.0]
    """
    rad = _check_radius(radius)
    rs = _check_r(r)
    out = (rad[None, :] >= rs.reshape(-1)[:, None]).mean(axis=1)
    return float(out[0]) if rs.ndim == 0 else out


def median_certified_radius(radius: Any) -> int:
    """The largest ``r`` at which certified accuracy is at least 50%; ``-1`` if there is none.

    ``-1`` means fewer than half the test points are predicted correctly (certified accuracy at
    ``r = 0`` is the clean accuracy). DPA's code prints ``sum(certified_acc >= 0.5)`` over ``r = 0,
    1, ...`` as the "median certified robustness": that count is this value **plus one**.

    Example:
        >>> median_certified_radius([4, 2, 2, -1])   # 75% at r <= 2, 25% at r = 3
        2
        >>> median_certified_radius([0, -1, -1])
        -1
    """
    rad = _check_radius(radius)
    n = rad.shape[0]
    # certified accuracy at r >= 1/2  <=>  at least ceil(n/2) radii >= r  <=>  r <= ceil(n/2)-th largest
    value = int(np.sort(rad)[::-1][math.ceil(n / 2) - 1])
    return max(value, -1)


def check_radii(radii: Any) -> list[int]:
    """``radii`` as a list of whole numbers ``>= 0`` (a ValueError naming ``radii`` otherwise)."""
    values = radii if isinstance(radii, list | tuple | np.ndarray) else [radii]
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, Integral | float | np.floating):
            raise ValueError(f"radii must be whole numbers >= 0, got {value!r}")
        if isinstance(value, float | np.floating) and (not math.isfinite(value) or value != round(value)):
            raise ValueError(f"radii must be whole numbers >= 0, got {value!r}")
        if value < 0:
            raise ValueError(f"radii must be whole numbers >= 0, got {value!r}")
        out.append(int(value))
    return out
