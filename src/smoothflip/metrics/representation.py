"""What label smoothing does to representations (Müller, Kornblith & Hinton 2019).

- :func:`mutual_information`: the estimator of appendix A.2 (example index vs a logit difference);
- :func:`penultimate_plane` / :func:`penultimate_projection`: the penultimate-layer visualization
  of §2;
- :func:`cluster_geometry`: the visual claim (tight, equidistant clusters) as numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
from scipy.special import logsumexp

from smoothflip._validation import check_int
from smoothflip.metrics._common import _as_float_array, _to_numpy

__all__ = [
    "ClusterGeometry",
    "PenultimatePlane",
    "cluster_geometry",
    "mutual_information",
    "penultimate_plane",
    "penultimate_projection",
]

# Default budget of float64 elements for the [samples, N] block in mutual_information (≈ 16 MB).
_MI_BLOCK_ELEMENTS = 1 << 21


# ----------------------------------------------------------------------------------------------
# Mutual information between example index and a logit difference (Müller et al. 2019, A.2)
# ----------------------------------------------------------------------------------------------


def _mi_estimate(y: np.ndarray, block: int) -> float:
    """Raw estimate (no clipping) for a validated ``[N, L]`` array; ``block`` samples per block."""
    n = y.shape[0]
    # The estimate is invariant to y -> a*y + b, so standardize first (guards against overflow).
    spread = float(np.std(y))
    if spread == 0.0:
        return 0.0
    y = (y - float(np.mean(y))) / spread
    mu = y.mean(axis=1)
    resid = y - mu[:, None]
    var = float(np.mean(resid * resid))
    if var == 0.0:
        # σ² → 0 limit: each term tends to log(N / m_x), m_x = examples whose mean equals μ_x.
        _, inverse, counts = np.unique(mu, return_inverse=True, return_counts=True)
        return float(np.mean(np.log(n / counts[inverse])))
    scale = 1.0 / (2.0 * var)
    own = -(resid * resid).ravel() * scale  # [N*L] in (x, l) order
    samples = y.ravel()
    total = 0.0
    for start in range(0, samples.size, block):
        chunk = samples[start : start + block]
        d = chunk[:, None] - mu[None, :]
        log_mix = logsumexp(-(d * d) * scale, axis=1) - math.log(n)
        total += float(np.sum(own[start : start + block] - log_mix))
    return total / samples.size


def mutual_information(logit_diffs: Any, *, clip: bool = True, chunk_size: int | None = None) -> float:
    """Müller et al. (2019, appendix A.2) estimate of I(X; Y) in nats.

    ``X`` is the index of an example and ``Y`` a logit difference measured under random
    augmentations, modelled as ``Y | X = x ~ N(μ_x, σ²)`` with a shared variance. With
    ``y[x, l]`` the value for example ``x`` under augmentation ``l``:

    - ``μ_x = mean_l y[x, l]`` and ``σ² = Σ_{x,l} (y[x, l] − μ_x)² / (N L)`` (pooled);
    - ``Î = mean_{x,l} [ −(y[x,l] − μ_x)² / (2σ²) − log( (1/N) Σ_{x'} exp(−(y[x,l] − μ_{x'})² / (2σ²)) ) ]``.

    Range. Each term is at most ``log N`` (the ``x' = x`` summand alone gives the bound), so
    ``Î ≤ log N``. Contrary to the paper's "[0, log N]", ``Î`` *can* be negative: averaging the
    own-term gives exactly ``−1/2``, and nothing bounds the average log-mixture by it. For
    example, N − 1 examples constant at 1 and one example with values ``(1, −1/(L−1), ...)``
    (one augmentation lands exactly on the other examples' mean) gives ``Î ≈ −0.15`` for
    N = L = 10, and it worsens as N grows. Since the true mutual information is non-negative, the
    default ``clip=True`` returns ``min(max(Î, 0), log N)`` (this also absorbs round-off around 0
    and ``log N``); ``clip=False`` returns the raw estimate.

    Degenerate case ``σ² = 0`` (every example constant across augmentations): the ``σ² → 0`` limit is
    used, ``mean_x log(N / m_x)`` with ``m_x`` the number of examples sharing ``μ_x`` — 0 when all
    examples share one value, ``log N`` when all differ. The estimate is invariant to any affine map
    ``y → a y + b`` with ``a ≠ 0``.

    Memory: the ``[N L, N]`` block of squared distances is processed ``chunk_size`` rows at a time
    (default: enough rows for about 2M float64 elements, ≈ 16 MB).

    Args:
        logit_diffs: ``[N, L]`` finite values, ``N >= 2`` examples × ``L >= 2`` augmentations.
        clip: clip the estimate into ``[0, log N]`` (default) or return it raw.
        chunk_size: number of ``(x, l)`` samples scored per block; ``None`` picks it from N.

    Returns:
        The estimate in nats (in ``[0, log N]`` when ``clip=True``).

    Example:
        >>> y = np.array([[0.0, 0.0], [5.0, 5.0], [10.0, 10.0]])
        >>> round(mutual_information(y), 6) == round(math.log(3), 6)
        True
    """
    y = _as_float_array("logit_diffs", logit_diffs, ndim=2)
    n, n_aug = y.shape
    if n < 2:
        raise ValueError(f"logit_diffs must have N >= 2 examples (rows), got shape {y.shape}")
    if n_aug < 2:
        raise ValueError(f"logit_diffs must have L >= 2 augmentations (columns), got shape {y.shape}")
    if chunk_size is None:
        block = max(1, _MI_BLOCK_ELEMENTS // n)
    else:
        block = check_int("chunk_size", chunk_size, low=1)
    estimate = _mi_estimate(y, block)
    if clip:
        estimate = min(max(estimate, 0.0), math.log(n))
    return float(estimate)


# ----------------------------------------------------------------------------------------------
# Penultimate-layer projection (Müller et al. 2019, §2)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PenultimatePlane:
    """The affine plane through three class templates, with an orthonormal in-plane basis.

    ``D'`` is the feature width ``D``, plus one when a bias was folded into the templates.

    Attributes:
        classes: the three class indices ``(a, b, c)``.
        origin: ``[D']`` the templates' centroid, the plane's origin.
        basis: ``[2, D']`` orthonormal rows; the first points from ``w_a`` to ``w_b``.
        templates: ``[3, 2]`` coordinates of ``w_a, w_b, w_c`` in the plane (their sum is 0).
        has_bias: whether the bias was appended to the templates (and 1 is appended to features).
    """

    classes: tuple[int, int, int]
    origin: np.ndarray
    basis: np.ndarray
    templates: np.ndarray
    has_bias: bool

    def project(self, features: Any) -> np.ndarray:
        """Coordinates ``[N, 2]`` of ``features`` ``[N, D]`` projected orthogonally onto the plane."""
        x = _as_float_array("features", features, ndim=2)
        width = self.origin.size - int(self.has_bias)
        if x.shape[1] != width:
            raise ValueError(
                f"features must have shape [N, {width}] to match class_weights, got {tuple(x.shape)}"
            )
        if self.has_bias:
            x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
        return (x - self.origin) @ self.basis.T


def penultimate_plane(
    class_weights: Any, classes: Sequence[int], *, bias: Any | None = None
) -> PenultimatePlane:
    """Build the plane through the templates of three classes (Müller et al. 2019, §2).

    The template of class ``k`` is its final-layer weight row ``w_k`` (logit ``x·w_k + b_k``).
    With ``bias`` given, ``b_k`` is appended to ``w_k`` and 1 to every feature, so the bias is part
    of the template as in the paper. The paper does not say whether it projects onto the *affine*
    plane through the three templates or onto their *linear* span; here it is the affine plane:
    Gram–Schmidt on ``(w_b − w_a, w_c − w_a)`` gives the orthonormal basis and the templates'
    centroid is the origin, so the three templates form a triangle around 0 and distances within
    the plane are preserved.

    Args:
        class_weights: ``[K, D]`` final-layer weights.
        classes: three distinct class indices in ``[0, K)``.
        bias: optional ``[K]`` final-layer bias.

    Returns:
        A :class:`PenultimatePlane`; call ``.project(features)`` to get coordinates.

    Raises:
        ValueError: bad shapes, repeated or out-of-range classes, or collinear templates.

    Example:
        >>> plane = penultimate_plane(np.eye(3), [0, 1, 2])
        >>> np.allclose(plane.templates.sum(axis=0), 0.0)
        True
    """
    w = _as_float_array("class_weights", class_weights, ndim=2)
    k = w.shape[0]
    items = None if isinstance(classes, str) else _to_numpy("classes", classes)
    if items is None or items.shape != (3,):
        raise ValueError(f"classes must be a sequence of 3 class indices, got {classes!r}")
    if items.dtype.kind not in "iu":
        raise TypeError(f"classes must hold integer class indices, got {classes!r}")
    picked = tuple(check_int(f"classes[{i}]", c, low=0, high=k - 1) for i, c in enumerate(items.tolist()))
    if len(set(picked)) != 3:
        raise ValueError(f"classes must be 3 distinct class indices, got {picked}")
    if bias is not None:
        b = _as_float_array("bias", bias, ndim=1)
        if b.shape != (k,):
            raise ValueError(f"bias must have shape ({k},) to match class_weights, got {tuple(b.shape)}")
        w = np.concatenate([w, b[:, None]], axis=1)
    t = w[list(picked)]
    e1 = t[1] - t[0]
    e2 = t[2] - t[0]
    size = max(float(np.linalg.norm(e1)), float(np.linalg.norm(e2)))
    norm1 = float(np.linalg.norm(e1))
    if size == 0.0 or norm1 <= 1e-12 * size:
        raise ValueError(f"class_weights templates of classes {picked} are collinear (coincident)")
    u1 = e1 / norm1
    v = e2 - (e2 @ u1) * u1
    norm2 = float(np.linalg.norm(v))
    if norm2 <= 1e-9 * size:
        raise ValueError(f"class_weights templates of classes {picked} are collinear; pick other classes")
    basis = np.stack([u1, v / norm2])
    origin = t.mean(axis=0)
    templates = (t - origin) @ basis.T
    for array in (origin, basis, templates):
        array.setflags(write=False)
    return PenultimatePlane(
        classes=picked, origin=origin, basis=basis, templates=templates, has_bias=bias is not None
    )


@overload
def penultimate_projection(
    features: Any,
    class_weights: Any,
    classes: Sequence[int],
    *,
    bias: Any | None = ...,
    return_templates: Literal[False] = ...,
) -> np.ndarray: ...


@overload
def penultimate_projection(
    features: Any,
    class_weights: Any,
    classes: Sequence[int],
    *,
    bias: Any | None = ...,
    return_templates: Literal[True],
) -> tuple[np.ndarray, np.ndarray]: ...


def penultimate_projection(
    features: Any,
    class_weights: Any,
    classes: Sequence[int],
    *,
    bias: Any | None = None,
    return_templates: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Project penultimate-layer features onto the plane of three class templates.

    See :func:`penultimate_plane` for the construction (affine plane, centroid origin, bias folded
    into the templates). The paper plots about 100 examples of each of the three classes.

    Args:
        features: ``[N, D]`` penultimate activations.
        class_weights: ``[K, D]`` final-layer weights.
        classes: three distinct class indices in ``[0, K)``.
        bias: optional ``[K]`` final-layer bias.
        return_templates: also return the templates' ``[3, 2]`` coordinates.

    Returns:
        ``[N, 2]`` coordinates, or ``(coordinates, templates)`` when ``return_templates`` is true.

    Example:
        >>> w = np.eye(3)
        >>> penultimate_projection(w, w, [0, 1, 2]).shape
        (3, 2)
    """
    plane = penultimate_plane(class_weights, classes, bias=bias)
    points = plane.project(features)
    if return_templates:
        return points, plane.templates.copy()
    return points


@dataclass(frozen=True)
class ClusterGeometry:
    """How tight and how regular three classes' clusters are in a 2-D projection.

    Attributes:
        tightness: mean distance of a point to its class centroid, divided by the mean distance
            between the three class centroids (smaller = tighter clusters relative to their spacing).
        spacing_cv: coefficient of variation (sd / mean) of the three centroid-to-centroid distances
            (0 = an equilateral triangle: equidistant clusters).
        centroid_distance: mean distance between the class centroids.
    """

    tightness: float
    spacing_cv: float
    centroid_distance: float


def cluster_geometry(coords: Any, labels: Any) -> ClusterGeometry:
    """Müller et al. 2019's visual claim, as numbers: are the clusters tight and equidistant?

    Label smoothing is reported to pull each class into a tight cluster at an equal distance from
    the others (a regular triangle in the projection of :func:`penultimate_projection`).

    Args:
        coords: ``[N, 2]`` projected points.
        labels: ``[N]`` their classes; exactly three distinct classes, each with at least 2 points.

    Returns:
        :class:`ClusterGeometry`.

    Example:
        >>> pts = np.array([[0, 0], [0.1, 0], [1, 0], [1.1, 0], [0.5, 0.87], [0.6, 0.87]])
        >>> g = cluster_geometry(pts, [0, 0, 1, 1, 2, 2])
        >>> round(g.tightness, 3), round(g.spacing_cv, 2)
        (0.05, 0.0)
    """
    x = _as_float_array("coords", coords, ndim=2)
    if x.shape[1] != 2:
        raise ValueError(f"coords must have shape [N, 2], got {x.shape}")
    y = np.asarray(labels)
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape [{x.shape[0]}], got {y.shape}")
    classes = np.unique(y)
    if classes.size != 3:
        raise ValueError(f"labels must hold exactly three classes, got {classes.size}")
    centroids = np.stack([x[y == c].mean(axis=0) for c in classes])
    if min(int((y == c).sum()) for c in classes) < 2:
        raise ValueError("labels must have at least 2 points per class")
    spread = float(
        np.mean([np.linalg.norm(x[y == c] - centroids[i], axis=1).mean() for i, c in enumerate(classes)])
    )
    pairs = np.array([np.linalg.norm(centroids[i] - centroids[j]) for i, j in ((0, 1), (0, 2), (1, 2))])
    mean_pair = float(pairs.mean())
    if mean_pair == 0:
        return ClusterGeometry(math.inf, math.nan, 0.0)
    return ClusterGeometry(spread / mean_pair, float(pairs.std() / mean_pair), mean_pair)
