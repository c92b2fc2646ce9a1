"""Proper scores and accuracy: :func:`accuracy`, :func:`nll`, :func:`nll_from_logits`, :func:`brier_score`."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax

from smoothflip.metrics._common import PROB_FLOOR, _check_logits_labels, _check_probs_labels

__all__ = ["accuracy", "brier_score", "nll", "nll_from_logits"]


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
