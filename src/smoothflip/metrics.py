"""Metrics that show what label smoothing and label flipping do to a classifier.

Everything here takes NumPy arrays or torch tensors (any device or dtype; they are detached and
copied to the CPU) and returns Python floats or NumPy arrays. All arithmetic is done in float64.

Shapes used throughout:

- ``probs``: ``[N, K]`` class probabilities; every entry in ``[0, 1]`` and every row summing to 1
  within ``1e-4``.
- ``logits``: ``[N, K]`` unnormalized scores (finite).
- ``labels``: ``[N]`` integer class indices in ``[0, K)``.

Contents:

- :func:`accuracy`, :func:`nll`, :func:`nll_from_logits`, :func:`brier_score`;
- :func:`expected_calibration_error` (ECE, RMS calibration error, MCE; equal-width or equal-count
  bins) and :func:`reliability_diagram`, both built on one binning helper;
- :func:`fit_temperature` / :func:`apply_temperature` (temperature scaling, Guo et al. 2017);
- :func:`mutual_information` (the estimator of Müller, Kornblith & Hinton 2019, appendix A.2);
- :func:`penultimate_plane` / :func:`penultimate_projection` (the penultimate-layer
  visualization of Müller et al. 2019, §2).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp, softmax

from smoothflip._validation import check_choice, check_int, check_number, check_range

__all__ = [
    "ClusterGeometry",
    "PenultimatePlane",
    "ReliabilityDiagram",
    "accuracy",
    "apply_temperature",
    "brier_score",
    "cluster_geometry",
    "expected_calibration_error",
    "fit_temperature",
    "mutual_information",
    "nll",
    "nll_from_logits",
    "penultimate_plane",
    "penultimate_projection",
    "reliability_diagram",
]

#: Rows of ``probs`` must sum to 1 within this absolute tolerance.
PROB_SUM_ATOL = 1e-4
#: :func:`nll` clips the probability of the true class to at least this value, so a hard zero gives
#: ``-log(1e-12) ≈ 27.6`` instead of infinity.
PROB_FLOOR = 1e-12

_NORMS = ("l1", "l2", "max")
_STRATEGIES = ("uniform", "quantile")
# Default budget of float64 elements for the [samples, N] block in mutual_information (≈ 16 MB).
_MI_BLOCK_ELEMENTS = 1 << 21


# ----------------------------------------------------------------------------------------------
# Conversion and validation (one converter shared by every public function)
# ----------------------------------------------------------------------------------------------


def _to_numpy(name: str, value: Any) -> np.ndarray:
    """Turn a NumPy array, a torch tensor or a nested sequence into a NumPy array.

    Torch is never imported here: if it has not been imported, ``value`` cannot be a tensor.
    Floating tensors (fp16 / bf16 included) are converted to float64 on the way out.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.is_complex():
            raise TypeError(f"{name} must be real, got a complex tensor ({tensor.dtype})")
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float64)
        return tensor.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array or a tensor, got {type(value).__name__}") from err


def _as_float_array(name: str, value: Any, *, ndim: int) -> np.ndarray:
    """Return ``value`` as a finite float64 array with ``ndim`` dimensions, or raise naming ``name``."""
    array = _to_numpy(name, value)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(array.shape)}")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got NaN or infinite values")
    return array


def _as_labels(value: Any, *, n: int, n_classes: int, name: str = "labels") -> np.ndarray:
    """Return ``value`` as an int64 array of shape ``[n]`` with entries in ``[0, n_classes)``."""
    array = _to_numpy(name, value)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the {n} rows, got {tuple(array.shape)}")
    array = array.astype(np.int64, copy=False)
    if n and (array.min() < 0 or array.max() >= n_classes):
        bad = array[(array < 0) | (array >= n_classes)][0]
        raise ValueError(f"{name} must be in [0, {n_classes}), got {int(bad)}")
    return array


def _check_scores(name: str, value: Any) -> np.ndarray:
    """Return a ``[N, K]`` float64 array with ``N >= 1`` and ``K >= 1``, or raise naming ``name``."""
    array = _as_float_array(name, value, ndim=2)
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got shape {array.shape}")
    return array


def _check_probs_labels(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``probs`` ``[N, K]`` and ``labels`` ``[N]`` (the shared entry point)."""
    p = _check_scores("probs", probs)
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"probs must lie in [0, 1], got values in [{p.min():g}, {p.max():g}]")
    row_error = np.abs(p.sum(axis=1) - 1.0)
    worst = int(np.argmax(row_error))
    if row_error[worst] > PROB_SUM_ATOL:
        raise ValueError(
            f"probs rows must sum to 1 (tolerance {PROB_SUM_ATOL:g}), "
            f"row {worst} sums to {p[worst].sum():.6g}"
        )
    y = _as_labels(labels, n=p.shape[0], n_classes=p.shape[1])
    return p, y


def _check_logits_labels(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    z = _check_scores("logits", logits)
    y = _as_labels(labels, n=z.shape[0], n_classes=z.shape[1])
    return z, y


# ----------------------------------------------------------------------------------------------
# Proper scores
# ----------------------------------------------------------------------------------------------


def accuracy(probs: Any, labels: Any) -> float:
    """Fraction of rows whose argmax equals the label (ties go to the first index, like argmax).

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``[0, K)``.

    Returns:
        Accuracy in ``[0, 1]``.

    Example:
        >>> accuracy([[0.9, 0.1], [0.2, 0.8]], [0, 0])
        0.5
    """
    p, y = _check_probs_labels(probs, labels)
    return float(np.mean(np.argmax(p, axis=1) == y))


def nll(probs: Any, labels: Any) -> float:
    """Mean negative log-likelihood ``mean(-log p[n, labels[n]])`` in nats.

    The probability of the true class is clipped to at least :data:`PROB_FLOOR` (``1e-12``), so a
    hard zero costs ``-log(1e-12) ≈ 27.6`` instead of infinity. Prefer :func:`nll_from_logits`
    when logits are at hand.

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``[0, K)``.

    Returns:
        The mean NLL, ``>= 0``.

    Example:
        >>> round(nll([[0.5, 0.5], [0.25, 0.75]], [0, 1]), 6)
        0.490415
    """
    p, y = _check_probs_labels(probs, labels)
    p_true = np.maximum(p[np.arange(y.size), y], PROB_FLOOR)
    return float(-np.mean(np.log(p_true)))


def nll_from_logits(logits: Any, labels: Any) -> float:
    """Mean negative log-likelihood of ``softmax(logits)``, computed stably with log-softmax.

    Args:
        logits: ``[N, K]`` finite logits.
        labels: ``[N]`` integer labels in ``[0, K)``.

    Returns:
        The mean NLL in nats (no clipping is needed: log-softmax never overflows).

    Example:
        >>> round(nll_from_logits([[0.0, 0.0], [1000.0, 0.0]], [0, 1]), 3)
        500.347
    """
    z, y = _check_logits_labels(logits, labels)
    return float(-np.mean(log_softmax(z, axis=1)[np.arange(y.size), y]))


def brier_score(probs: Any, labels: Any) -> float:
    """Multi-class Brier score: mean over rows of ``Σ_k (p_k − onehot(label)_k)²``.

    This is the original (Brier 1950) definition, in ``[0, 2]``; for two classes it is twice the
    usual binary Brier score ``mean((p₁ − y)²)``.

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``[0, K)``.

    Returns:
        The Brier score in ``[0, 2]``.

    Example:
        >>> round(brier_score([[1.0, 0.0], [0.5, 0.5]], [0, 1]), 6)
        0.25
    """
    p, y = _check_probs_labels(probs, labels)
    diff = p.copy()
    diff[np.arange(y.size), y] -= 1.0
    return float(np.mean(np.sum(diff * diff, axis=1)))


# ----------------------------------------------------------------------------------------------
# Calibration: binning (one source of truth), reliability diagram, ECE
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ReliabilityDiagram:
    """Per-bin statistics of top-label confidence; arrays are read-only.

    Bin ``b`` holds the confidences in ``(edges[b], edges[b + 1]]``, except that the first bin is
    closed on the left (it holds a confidence of exactly ``edges[0]``).

    Attributes:
        edges: ``[B + 1]`` bin edges, ``edges[0] == 0`` and ``edges[-1] == 1``.
        confidence: ``[B]`` mean confidence per bin, NaN for an empty bin.
        accuracy: ``[B]`` fraction of correct top-label predictions per bin, NaN for an empty bin.
        count: ``[B]`` number of examples per bin (int64); sums to ``N``.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def n_bins(self) -> int:
        """Number of bins ``B``."""
        return int(self.count.size)

    @property
    def n_samples(self) -> int:
        """Number of examples ``N`` that were binned."""
        return int(self.count.sum())


def _top_label(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence ``max_k p`` and correctness ``argmax_k p == y`` (first index on ties)."""
    pred = np.argmax(p, axis=1)
    return p[np.arange(y.size), pred], (pred == y)


def _uniform_edges(n_bins: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, n_bins + 1)


def _quantile_edges(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Edges of equal-count bins for :func:`_assign_bins`.

    The sorted confidences are cut into ``n_bins`` runs whose sizes differ by at most one (the first
    ``N mod n_bins`` runs get the extra example, like ``numpy.array_split``). A cut that would split a
    group of equal confidences is moved up to the end of that group, so equal confidences always
    share a bin (the binning depends only on the values, never on the order of the rows); the bins
    after it are then smaller or empty. Interior edges are the largest confidence of each run;
    the outer edges are 0 and 1.
    """
    s = np.sort(confidence)
    base, extra = divmod(s.size, n_bins)
    b = np.arange(1, n_bins)
    cuts = b * base + np.minimum(b, extra)  # first index of run b (b = 1 .. n_bins - 1); >= 1 as N >= 1
    # Bins are then assigned by value with the (lo, hi] rule, so every confidence equal to an edge
    # s[cut - 1] joins the lower bin: a tie group straddling a cut moves to that bin as a whole.
    return np.concatenate([[0.0], s[cuts - 1], [1.0]])


def _assign_bins(confidence: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each confidence for bins ``(edges[b], edges[b+1]]``; values ``<= edges[0]`` go to
    the first bin and values ``> edges[-1]`` to the last (so 0.0 and 1.0 land in the end bins)."""
    n_bins = edges.size - 1
    index = np.searchsorted(edges, confidence, side="left") - 1
    return np.clip(index, 0, n_bins - 1)


def _reliability(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int, strategy: str
) -> ReliabilityDiagram:
    """Bin top-label confidences and collect per-bin statistics (shared by ECE and the diagram)."""
    if strategy == "uniform":
        edges = _uniform_edges(n_bins)
    else:
        edges = _quantile_edges(confidence, n_bins)
    index = _assign_bins(confidence, edges)
    count = np.bincount(index, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        mean_acc = np.where(count > 0, acc_sum / count, np.nan)
    for array in (edges, mean_conf, mean_acc, count):
        array.setflags(write=False)
    return ReliabilityDiagram(edges=edges, confidence=mean_conf, accuracy=mean_acc, count=count)


def _calibration_error(diagram: ReliabilityDiagram, norm: str) -> float:
    filled = diagram.count > 0
    weight = diagram.count[filled] / diagram.count.sum()
    gap = np.abs(diagram.accuracy[filled] - diagram.confidence[filled])
    if norm == "l1":
        return float(np.sum(weight * gap))
    if norm == "l2":
        return float(np.sqrt(np.sum(weight * gap * gap)))
    return float(np.max(gap))


def reliability_diagram(
    probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> ReliabilityDiagram:
    """Per-bin mean confidence, accuracy and count of the top-label prediction.

    Confidence is ``max_k p_k``; a prediction is correct when ``argmax_k p_k == label`` (ties go to
    the first index). Binning:

    - ``"uniform"``: edges ``linspace(0, 1, n_bins + 1)``; bin ``b`` is ``(edges[b], edges[b+1]]``
      with the first bin also holding exactly 0.0, so 1.0 falls in the last bin (not in an extra
      bin, as in torchmetrics issue #3510).
    - ``"quantile"``: equal-count bins over the sorted confidences (the "adaptive" binning); sizes
      differ by at most one, the first ``N mod n_bins`` bins holding the extra example. Equal
      confidences are never split across bins: a cut that would fall inside a tie group moves to its
      end, which can leave later bins smaller or empty. Edges are ``[0, c_1, ..., c_{B-1}, 1]`` with
      ``c_b`` the largest confidence of bin ``b - 1``, with the same ``(lo, hi]`` rule.

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``[0, K)``.
        n_bins: number of bins ``B >= 1``.
        strategy: ``"uniform"`` or ``"quantile"``.

    Returns:
        A :class:`ReliabilityDiagram` with ``edges`` ``[B + 1]`` and ``confidence``, ``accuracy``,
        ``count`` ``[B]`` (NaN confidence and accuracy in empty bins).

    Example:
        >>> d = reliability_diagram([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]], [0, 1, 1], n_bins=2)
        >>> d.count.tolist(), d.accuracy.tolist()
        ([0, 3], [nan, 0.6666666666666666])
    """
    n_bins = check_int("n_bins", n_bins, low=1)
    strategy = check_choice("strategy", strategy, _STRATEGIES)
    p, y = _check_probs_labels(probs, labels)
    confidence, correct = _top_label(p, y)
    return _reliability(confidence, correct, n_bins, strategy)


def expected_calibration_error(
    probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    norm: Literal["l1", "l2", "max"] = "l1",
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> float:
    """Top-label calibration error over confidence bins (Guo et al. 2017).

    With ``n_b`` examples, accuracy ``acc_b`` and mean confidence ``conf_b`` in bin ``b`` (binning as
    in :func:`reliability_diagram`, which this function shares):

    - ``"l1"`` (ECE): ``Σ_b (n_b / N) |acc_b − conf_b|``;
    - ``"l2"`` (RMS calibration error, torchmetrics' definition): ``sqrt(Σ_b (n_b / N)(acc_b − conf_b)²)``;
    - ``"max"`` (MCE): ``max_b |acc_b − conf_b|`` over non-empty bins.

    ``strategy="quantile"`` gives the adaptive ECE (equal-count bins).

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``[0, K)``.
        n_bins: number of bins ``>= 1`` (15 as in Guo et al. and torchmetrics).
        norm: ``"l1"``, ``"l2"`` or ``"max"``.
        strategy: ``"uniform"`` (equal-width) or ``"quantile"`` (equal-count) bins.

    Returns:
        The calibration error in ``[0, 1]``.

    Example:
        >>> round(expected_calibration_error([[0.9, 0.1], [0.6, 0.4]], [0, 1], n_bins=10), 6)
        0.35
    """
    n_bins = check_int("n_bins", n_bins, low=1)
    norm = check_choice("norm", norm, _NORMS)
    strategy = check_choice("strategy", strategy, _STRATEGIES)
    p, y = _check_probs_labels(probs, labels)
    confidence, correct = _top_label(p, y)
    return _calibration_error(_reliability(confidence, correct, n_bins, strategy), norm)


# ----------------------------------------------------------------------------------------------
# Temperature scaling
# ----------------------------------------------------------------------------------------------


def _check_temperature(temperature: Any) -> float:
    return check_range("temperature", temperature, low=0.0, low_open=True)


def apply_temperature(logits: Any, temperature: float) -> np.ndarray:
    """Probabilities ``softmax(logits / temperature)`` along the class axis.

    Args:
        logits: ``[N, K]`` finite logits.
        temperature: ``T > 0``, finite; ``T > 1`` softens, ``T < 1`` sharpens. The argmax never
            changes.

    Returns:
        ``[N, K]`` float64 probabilities.

    Example:
        >>> apply_temperature([[2.0, 0.0]], 2.0).round(4).tolist()
        [[0.7311, 0.2689]]
    """
    t = _check_temperature(temperature)
    z = _check_scores("logits", logits)
    return softmax(z / t, axis=1)


def fit_temperature(logits: Any, labels: Any, *, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature ``T`` minimizing the NLL of ``softmax(logits / T)`` (Guo et al. 2017).

    Fit it on held-out (validation) data, then use :func:`apply_temperature` on test logits.
    With ``β = 1/T`` the NLL ``mean(logsumexp(β z) − β z_y)`` is convex in ``β``, hence unimodal in
    ``log T``; a bounded Brent search over ``log T`` (``scipy.optimize.minimize_scalar``) therefore
    finds the global minimum within ``bounds`` deterministically. It is not always convex in ``T``
    itself. If the minimum lies at a bound (for example, on data the model separates perfectly the
    NLL keeps falling as ``T → 0``), that bound is returned with a ``UserWarning``.

    Args:
        logits: ``[N, K]`` finite logits, ``K >= 2``.
        labels: ``[N]`` integer labels in ``[0, K)``.
        bounds: ``(low, high)`` search interval for ``T``, ``0 < low < high``.

    Returns:
        The fitted temperature as a float.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> z = rng.normal(size=(2000, 4))
        >>> y = np.array([rng.choice(4, p=row) for row in softmax(z, axis=1)])
        >>> 2.5 < fit_temperature(3.0 * z, y) < 3.5
        True
    """
    if not isinstance(bounds, Sequence) or len(bounds) != 2:
        raise ValueError(f"bounds must be a (low, high) pair, got {bounds!r}")
    low = check_range("bounds[0]", bounds[0], low=0.0, low_open=True)
    high = check_number("bounds[1]", bounds[1])
    if not high > low:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {tuple(bounds)!r}")
    z, y = _check_logits_labels(logits, labels)
    if z.shape[1] < 2:
        raise ValueError(f"logits must have at least 2 classes to fit a temperature, got shape {z.shape}")
    z_max = z.max(axis=1)
    z_centered = z - z_max[:, None]  # <= 0, so exp(beta * z_centered) never overflows for beta > 0
    margin = z[np.arange(y.size), y] - z_max

    def objective(log_t: float) -> float:
        beta = math.exp(-log_t)
        # logsumexp(beta z) - beta z_y, with the row maximum taken out (it is beta * z_max for beta > 0)
        return float(np.mean(np.log(np.exp(beta * z_centered).sum(axis=1)) - beta * margin))

    lo, hi = math.log(low), math.log(high)
    result = minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    log_t = float(result.x)
    # Brent never evaluates the end points themselves; compare with them explicitly.
    candidates = [(objective(log_t), log_t), (objective(lo), lo), (objective(hi), hi)]
    best = min(candidates)[1]
    if min(best - lo, hi - best) < 1e-6:
        warnings.warn(
            f"fit_temperature: the NLL minimum lies at the bound T={math.exp(best):g} of bounds="
            f"{tuple(bounds)!r}; widen bounds if that is not intended",
            UserWarning,
            stacklevel=2,
        )
    return math.exp(best)


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
