"""Selective classification: how well confidence ranks a classifier's errors.

A selective classifier answers only when its confidence is high and abstains otherwise. Accepting
the examples in order of decreasing confidence traces the *risk-coverage curve* (Geifman &
El-Yaniv 2017): at coverage ``k/N`` (the ``k`` most confident examples accepted) the *selective
risk* is the error rate among the accepted ones. Its area, AURC, is small when errors get low
confidence. Xia et al. (ICLR 2025) report that label smoothing consistently degrades it.

- :func:`risk_coverage_curve`: the curve, one point per distinct confidence level;
- :func:`aurc`: the mean selective risk over the ``N`` coverage levels ``k/N`` (Geifman, Uziel &
  El-Yaniv 2018, "Bias-reduced uncertainty estimation for deep neural classifiers");
- :func:`excess_aurc`: E-AURC, AURC minus that of an oracle ranking with the same accuracy;
- :func:`selective_risk`: the selective risk at one coverage.

The loss is the 0-1 loss of the top-label prediction ``argmax_k p_k`` (ties go to the first index,
as in :func:`~smoothflip.metrics.accuracy`). The confidence is ``max_k p_k`` unless a ``[N]``
``confidence`` score is given (any real score where larger means more confident; only its order
matters).

Ties in confidence. Tied examples are accepted together: the curve has one point per distinct
confidence value, never one inside a tie group. Where a coverage level ``k/N`` falls inside a tie
group (for :func:`aurc` and :func:`selective_risk`), the number of errors among the ``k`` accepted
examples is the one *expected when the tie group is ordered uniformly at random*: the errors so far
plus ``(k − k_before)`` times the group's error rate, i.e. the cumulative error count interpolated
linearly between the group's ends. So AURC with ties is exactly the average AURC over all
tie-breaking orders, and it never depends on the order of the rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from smoothflip._validation import check_range
from smoothflip.metrics._common import _as_float_array, _check_probs_labels, _top_label

__all__ = ["RiskCoverageCurve", "aurc", "excess_aurc", "risk_coverage_curve", "selective_risk"]


@dataclass(frozen=True, eq=False)
class RiskCoverageCurve:
    """Selective risk at each distinct confidence level, from the most confident down; read-only arrays.

    Point ``g`` accepts every example whose confidence is ``>= threshold[g]``.

    Attributes:
        coverage: ``[G]`` fraction of examples accepted, strictly increasing, ``coverage[-1] == 1``.
        risk: ``[G]`` error rate among the accepted examples (0-1 loss of the top-label prediction).
        threshold: ``[G]`` the confidence levels, strictly decreasing.
    """

    coverage: np.ndarray
    risk: np.ndarray
    threshold: np.ndarray


def _confidence_and_errors(probs: Any, labels: Any, confidence: Any) -> tuple[np.ndarray, np.ndarray]:
    """``[N]`` confidence (max prob or the given score) and ``[N]`` 0-1 loss as float64."""
    p, y = _check_probs_labels(probs, labels)
    top, correct = _top_label(p, y)
    if confidence is None:
        score = top
    else:
        score = _as_float_array("confidence", confidence, ndim=1)
        if score.shape != (p.shape[0],):
            raise ValueError(
                f"confidence must have shape ({p.shape[0]},) to match the {p.shape[0]} rows of probs, "
                f"got {tuple(score.shape)}"
            )
    return score, (~correct).astype(np.float64)


def _tie_groups(score: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by decreasing score; per tie group: its score, the accepted count and the errors so far."""
    order = np.argsort(-score, kind="stable")
    s = score[order]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # last index of each tie group
    cum_errors = np.cumsum(errors[order])[ends]
    return s[ends], ends + 1.0, cum_errors


def _expected_errors(score: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """``[N]`` expected number of errors among the ``k`` most confident, ``k = 1..N`` (ties: random order)."""
    _, counts, cum_errors = _tie_groups(score, errors)
    k = np.arange(1, score.size + 1, dtype=np.float64)
    return np.interp(k, np.append(0.0, counts), np.append(0.0, cum_errors))


def risk_coverage_curve(probs: Any, labels: Any, *, confidence: Any | None = None) -> RiskCoverageCurve:
    """Risk-coverage curve of selective classification (Geifman & El-Yaniv 2017).

    Examples are accepted in order of decreasing confidence. With ``c_1 > c_2 > ... > c_G`` the
    distinct confidence values, point ``g`` accepts ``A_g = {i : conf_i >= c_g}`` (tied examples
    enter together) and gives

    ``coverage_g = |A_g| / N``,  ``risk_g = (1 / |A_g|) Σ_{i ∈ A_g} 1[argmax_k p_ik ≠ y_i]``.

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``[0, K)``.
        confidence: optional ``[N]`` real confidence score (larger = more confident); default
            ``max_k p_k``.

    Returns:
        A :class:`RiskCoverageCurve` with ``coverage``, ``risk`` and ``threshold`` of shape ``[G]``.

    Example:
        >>> curve = risk_coverage_curve([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]], [0, 1, 0])
        >>> curve.coverage.round(3).tolist(), curve.risk.round(3).tolist()
        ([0.333, 0.667, 1.0], [0.0, 0.5, 0.333])
    """
    score, errors = _confidence_and_errors(probs, labels, confidence)
    thresholds, counts, cum_errors = _tie_groups(score, errors)
    coverage = counts / score.size
    risk = cum_errors / counts
    for array in (coverage, risk, thresholds):
        array.setflags(write=False)
    return RiskCoverageCurve(coverage=coverage, risk=risk, threshold=thresholds)


def aurc(probs: Any, labels: Any, *, confidence: Any | None = None) -> float:
    """Area under the risk-coverage curve: the mean selective risk over the coverages ``k/N``.

    ``AURC = (1/N) Σ_{k=1}^{N} E_k / k``, with ``E_k`` the number of errors among the ``k`` most
    confident examples (Geifman, Uziel & El-Yaniv 2018). Inside a tie group ``E_k`` is its expected
    value under a uniformly random order of the group (see the module docstring), so the result is the
    average AURC over all tie-breaking orders. Lower is better; it mixes the error rate with how well
    confidence ranks the errors (:func:`excess_aurc` takes the error rate out).

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``[0, K)``.
        confidence: optional ``[N]`` real confidence score; default ``max_k p_k``.

    Returns:
        AURC in ``[0, 1]``.

    Example:
        >>> round(aurc([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]], [0, 1, 0]), 4)
        0.2778
    """
    score, errors = _confidence_and_errors(probs, labels, confidence)
    k = np.arange(1, score.size + 1, dtype=np.float64)
    return float(np.mean(_expected_errors(score, errors) / k))


def _oracle_aurc(n: int, n_errors: float) -> float:
    """AURC of the ranking that accepts every correct example first: ``E_k = max(0, k − n_correct)``."""
    k = np.arange(1, n + 1, dtype=np.float64)
    return float(np.mean(np.maximum(k - (n - n_errors), 0.0) / k))


def excess_aurc(probs: Any, labels: Any, *, confidence: Any | None = None) -> float:
    """E-AURC: :func:`aurc` minus the AURC of an oracle ranking with the same accuracy.

    The oracle accepts all correct examples before any error, so its error count among the top ``k``
    is ``max(0, k − n_correct)`` and ``AURC* = (1/N) Σ_k max(0, k − n_correct) / k`` (computed
    exactly; Geifman et al. 2018 give its continuous approximation ``r + (1 − r) ln(1 − r)`` at error
    rate ``r``). Since no ranking has fewer errors among its top ``k`` than the oracle, E-AURC ``>= 0``
    (rounding below zero is clipped to 0), and it is 0 exactly when every error is ranked below every
    correct prediction.

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``[0, K)``.
        confidence: optional ``[N]`` real confidence score; default ``max_k p_k``.

    Returns:
        E-AURC in ``[0, 1]``.

    Example:
        >>> round(excess_aurc([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]], [0, 1, 0]), 4)
        0.1667
    """
    score, errors = _confidence_and_errors(probs, labels, confidence)
    k = np.arange(1, score.size + 1, dtype=np.float64)
    value = float(np.mean(_expected_errors(score, errors) / k))
    return max(value - _oracle_aurc(score.size, float(errors.sum())), 0.0)


def selective_risk(probs: Any, labels: Any, *, coverage: float, confidence: Any | None = None) -> float:
    """Error rate among the ``k`` most confident examples, ``k`` the smallest with ``k/N >= coverage``.

    ``k = max(1, ceil(coverage · N))`` (computed with a ``1e-9`` allowance for rounding, so coverage
    0.3 of 10 examples is 3 of them). When the ``k``-th example is inside a tie group, the error
    count is its expected value under a random order of the group (see the module docstring).

    Args:
        probs: ``[N, K]`` class probabilities.
        labels: ``[N]`` integer labels in ``[0, K)``.
        coverage: the fraction of examples accepted, in ``(0, 1]``.
        confidence: optional ``[N]`` real confidence score; default ``max_k p_k``.

    Returns:
        The selective risk in ``[0, 1]``.

    Example:
        >>> selective_risk([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]], [0, 1, 0], coverage=0.5)
        0.5
    """
    coverage = check_range("coverage", coverage, low=0.0, high=1.0, low_open=True)
    score, errors = _confidence_and_errors(probs, labels, confidence)
    k = min(max(1, math.ceil(coverage * score.size - 1e-9)), score.size)
    return float(_expected_errors(score, errors)[k - 1] / k)
