"""Binned calibration: ECE / RMS / MCE, class-wise ECE, the reliability diagram, temperature scaling.

One binning helper (:func:`_reliability`) is the single source of truth for
:func:`expected_calibration_error` and :func:`reliability_diagram`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import softmax

from smoothflip._validation import check_choice, check_int, check_number, check_range
from smoothflip.metrics._common import (
    _NORMS,
    _STRATEGIES,
    _check_logits_labels,
    _check_probs_labels,
    _check_scores,
    _top_label,
)

__all__ = [
    "ReliabilityDiagram",
    "apply_temperature",
    "classwise_calibration_error",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_diagram",
]


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


def classwise_calibration_error(
    probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
    norm: Literal["l1", "l2", "max"] = "l1",
) -> float:
    """Class-wise calibration error: the mean over classes of the binned error of ``p_k`` vs ``1[y = k]``.

    For each class ``k`` the scores ``p_ik`` of *all* ``N`` examples are binned (binning as in
    :func:`reliability_diagram`: equal-width, or equal-count over that class's scores) and compared
    with the outcomes ``1[y_i = k]``; with ``n_kb`` examples, mean score ``conf_kb`` and outcome
    frequency ``freq_kb`` in bin ``b`` of class ``k``:

    ``CW-ECE = (1/K) Σ_k Σ_b (n_kb / N) |freq_kb − conf_kb|``  (``norm="l1"``)

    which is Kull et al. (2019)'s class-wise ECE and Nixon et al. (2019)'s static calibration error
    (SCE); ``norm="l2"`` / ``"max"`` average the per-class RMS error / MCE instead. Unlike the
    top-label ECE it also scores the probabilities given to the classes that were not predicted. Most
    ``p_k`` are small when ``K`` is large, so its size depends on ``K``: compare it at equal ``K``.

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``[0, K)``.
        n_bins: number of bins per class ``>= 1``.
        strategy: ``"uniform"`` (equal-width) or ``"quantile"`` (equal-count, per class) bins.
        norm: ``"l1"``, ``"l2"`` or ``"max"``.

    Returns:
        The class-wise calibration error in ``[0, 1]``.

    Example:
        >>> p = [[0.9, 0.1], [0.6, 0.4]]
        >>> round(classwise_calibration_error(p, [0, 1], n_bins=10), 6)  # (0.35 + 0.35) / 2
        0.35
    """
    n_bins = check_int("n_bins", n_bins, low=1)
    strategy = check_choice("strategy", strategy, _STRATEGIES)
    norm = check_choice("norm", norm, _NORMS)
    p, y = _check_probs_labels(probs, labels)
    errors = [
        _calibration_error(_reliability(p[:, k], y == k, n_bins, strategy), norm) for k in range(p.shape[1])
    ]
    return float(np.mean(errors))


def _resampled_binned_errors(
    score: np.ndarray, outcome: np.ndarray, weights: np.ndarray, n_bins: int, strategy: str, norm: str
) -> np.ndarray:
    """``[R]`` binned calibration errors of ``score`` vs ``outcome`` (``[N]``) under resample weights.

    ``weights`` is ``[R, N]``: how often each example is drawn in each of ``R`` resamples of size
    ``N``. Row ``r`` gives what :func:`_reliability` and :func:`_calibration_error` give on the
    resampled data (up to rounding), bins included: equal-count edges are the same order statistics
    of the resample that :func:`_quantile_edges` picks, with the same ``(lo, hi]`` rule.
    """
    n_rows, n = weights.shape
    if strategy == "uniform":  # fixed bins: per-bin sums are one matrix product
        onehot = np.zeros((n, n_bins))
        onehot[np.arange(n), _assign_bins(score, _uniform_edges(n_bins))] = 1.0
        count, conf, acc = (weights @ m for m in (onehot, onehot * score[:, None], onehot * outcome[:, None]))
    else:
        order = np.argsort(score, kind="stable")
        s, o = score[order], outcome[order]
        w = weights[:, order]
        running = np.zeros((3, n_rows, n + 1))  # running sums of counts, scores and outcomes
        scratch = np.empty_like(w)
        np.cumsum(w, axis=1, out=running[0, :, 1:])
        np.cumsum(np.multiply(w, s, out=scratch), axis=1, out=running[1, :, 1:])
        np.cumsum(np.multiply(w, o, out=scratch), axis=1, out=running[2, :, 1:])
        base, extra = divmod(n, n_bins)
        b = np.arange(1, n_bins)
        cuts = b * base + np.minimum(b, extra)  # 1-based ranks of the interior edges, as in _quantile_edges
        # The cut-th smallest value of resample r is s[j] at the first j whose running count reaches the
        # cut; the counts are whole numbers <= N, so shifting row r by r (N + 1) searches every row at once.
        shift = (n + 1) * np.arange(n_rows)[:, None]
        first = np.searchsorted((running[0][:, 1:] + shift).ravel(), (cuts[None, :] + shift).ravel())
        edges = s[first.reshape(n_rows, n_bins - 1) - n * np.arange(n_rows)[:, None]]
        # Bin b holds the values in (edge_{b-1}, edge_b], a run of sorted positions ending where s first
        # exceeds edge_b; its sums are differences of the running sums.
        ends = np.searchsorted(s, edges.ravel(), side="right").reshape(n_rows, n_bins - 1)
        bounds = np.concatenate([np.zeros((n_rows, 1), np.int64), ends, np.full((n_rows, 1), n)], axis=1)
        rows = np.arange(n_rows)[:, None]
        count, conf, acc = (c[rows, bounds[:, 1:]] - c[rows, bounds[:, :-1]] for c in running)  # [R, B]
    gap = np.abs(acc - conf)  # n_b |acc_b − conf_b|
    if norm == "l1":
        return gap.sum(axis=1) / n
    filled = count > 0.5  # whole numbers
    safe = np.where(filled, count, 1.0)
    if norm == "l2":
        return np.sqrt(np.sum(np.where(filled, gap * gap / safe, 0.0), axis=1) / n)
    return np.max(np.where(filled, gap / safe, -np.inf), axis=1)


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
