"""Input conversion and validation shared by every metric (one converter for NumPy and torch).

Torch is never imported here: if it has not been imported, a value cannot be a tensor. Floating
tensors (fp16 / bf16 included) are detached, copied to the CPU and converted to float64.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

#: Rows of ``probs`` must sum to 1 within this absolute tolerance.
PROB_SUM_ATOL = 1e-4
#: :func:`~smoothflip.metrics.nll` clips the probability of the true class to at least this value, so a
#: hard zero gives ``-log(1e-12) ≈ 27.6`` instead of infinity.
PROB_FLOOR = 1e-12

_NORMS = ("l1", "l2", "max")
_STRATEGIES = ("uniform", "quantile")


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


def _top_label(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence ``max_k p`` and correctness ``argmax_k p == y`` (first index on ties)."""
    pred = np.argmax(p, axis=1)
    return p[np.arange(y.size), pred], (pred == y)
