"""Materializing references: what the fused kernels must equal, written with :mod:`smoothflip.losses`.

These build the full ``[N, V]`` logits (in ``dtype``, float64 by default) and let autograd do the
rest. They are the ground truth of the tests and the "PyTorch eager" row of the benchmark; do not
use them where memory matters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothflip.losses import smoothed_cross_entropy

__all__ = ["reference_cross_entropy", "reference_linear_cross_entropy"]


def reference_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    eps: float = 0.0,
    beta: float = 0.0,
    z_loss: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    all_ignored: str = "nan",
    prior: Tensor | None = None,
    dtype: torch.dtype | None = torch.float64,
) -> Tensor:
    """``smoothed_cross_entropy(logits, eps=, z_loss=, prior=)`` minus ``beta * H(softmax(logits))`` per row.

    Args:
        logits: ``[N, V]``.
        target: ``[N]`` class indices (``ignore_index`` allowed).
        eps, beta, z_loss, ignore_index, reduction, all_ignored, prior: as in
            :func:`smoothflip.kernels.cross_entropy`.
        dtype: the dtype to compute in (the logits are cast first), or None for the logits' own.

    Returns:
        A scalar, or ``[N]`` for ``reduction="none"``.

    Example:
        >>> import torch.nn.functional as F
        >>> z, y = torch.randn(5, 7), torch.randint(0, 7, (5,))
        >>> ref = reference_cross_entropy(z, y, eps=0.1)
        >>> torch.allclose(ref.float(), F.cross_entropy(z, y, label_smoothing=0.1))
        True
    """
    if dtype is not None:
        logits = logits.to(dtype)
    if prior is not None:
        prior = prior.to(logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32)
    kwargs = {"ignore_index": ignore_index, "reduction": reduction, "all_ignored": all_ignored}
    loss = smoothed_cross_entropy(logits, target, eps=eps, z_loss=z_loss, prior=prior, **kwargs)
    if beta == 0.0:
        return loss
    log_p = torch.log_softmax(
        logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, 1
    )
    p = log_p.exp()
    entropy = -(p * log_p.masked_fill(p == 0, 0.0)).sum(dim=1)  # 0 log 0 = 0 at -inf logits
    valid = target != ignore_index
    penalty = torch.where(valid, -beta * entropy, torch.zeros_like(entropy))
    if reduction == "none":
        return loss + penalty
    if reduction == "sum":
        return loss + penalty.sum()
    count = int(valid.sum())
    if count == 0:
        return loss  # NaN or 0 already (all_ignored), with a zero gradient
    return loss + penalty.sum() / count


def reference_linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    eps: float = 0.0,
    beta: float = 0.0,
    z_loss: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    all_ignored: str = "nan",
    prior: Tensor | None = None,
    dtype: torch.dtype | None = torch.float64,
) -> Tensor:
    """:func:`reference_cross_entropy` on ``hidden @ weight.T + bias`` (computed in ``dtype``).

    Example:
        >>> h, w, y = torch.randn(4, 3), torch.randn(6, 3), torch.tensor([0, 5, 2, -100])
        >>> reference_linear_cross_entropy(h, w, y, eps=0.1, beta=0.5).dtype
        torch.float64
    """
    if dtype is not None:
        hidden, weight = hidden.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    logits = hidden @ weight.t()
    if bias is not None:
        logits = logits + bias
    return reference_cross_entropy(
        logits,
        target,
        eps=eps,
        beta=beta,
        z_loss=z_loss,
        ignore_index=ignore_index,
        reduction=reduction,
        all_ignored=all_ignored,
        prior=prior,
        dtype=None,
    )
