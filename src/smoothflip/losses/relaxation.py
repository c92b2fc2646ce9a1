"""Label relaxation (Lienen & Hüllermeier, AAAI 2021, "From Label Smoothing to Label Relaxation").

Label smoothing replaces the one-hot target by one fixed distribution; label relaxation replaces it
by a *set* of distributions, the credal set ``Q = {q : q_y >= 1 - alpha}``, and measures the
prediction against the member of ``Q`` closest to it:

- if the predicted probability of the labelled class ``p_y >= 1 - alpha``, the prediction lies in
  ``Q`` and the loss is 0 (a confident correct prediction is *not* penalized, unlike smoothing);
- otherwise the loss is ``KL(q* || p)`` where ``q*`` projects ``p`` onto ``Q``: ``q*_y = 1 - alpha``
  and ``q*_k = alpha * p_k / (1 - p_y)`` for ``k != y``. ``q*`` is a constant target (no gradient
  through it), which gives the closed form
  ``(1 - alpha) * (log(1 - alpha) - log p_y) + alpha * (log alpha - log(1 - p_y))``
  and the gradient ``p - q*`` with respect to the logits.

``alpha -> 0`` recovers cross-entropy. Hard (class-index) targets only: the credal set is defined
around one labelled class.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from smoothflip._validation import check_range
from smoothflip.losses._common import (
    AllIgnored,
    Reduction,
    check_class_vector,
    check_common,
    flatten,
    weighted_reduce,
)

__all__ = ["LabelRelaxationLoss", "label_relaxation_loss"]


def _check_alpha(alpha: float) -> float:
    return check_range("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)


def label_relaxation_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    all_ignored: AllIgnored = "nan",
) -> Tensor:
    r"""Label relaxation loss: 0 inside the credal set ``{q : q_y >= 1 - alpha}``, else KL to it.

    Per position, with ``p = softmax(logits)``:
    ``0`` if ``p_y >= 1 - alpha``, else
    ``(1 - alpha) (log(1 - alpha) - log p_y) + alpha (log alpha - log(1 - p_y))``, which is
    ``KL(q* || p)`` for the projection ``q*`` of ``p`` onto the credal set (see the module
    docstring). Class weights and reductions follow the robust losses: position ``n`` is scaled by
    ``weight[y_n]`` and ``"mean"`` divides by the summed weights of the non-ignored positions.

    Args:
        logits: ``[N, C]``, ``[N, C, d1, ...]`` or ``[C]``.
        target: ``[N]`` / ``[N, d1, ...]`` / ``[]`` class indices (int).
        alpha: imprecision in ``(0, 1)``; the paper tunes it in ``[0.01, 0.4]`` (0.1 is common).
        weight: ``[C]`` class weights, or None.
        ignore_index: target value of positions without a label.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        all_ignored: what ``"mean"`` gives when every position is ignored (``"nan"`` or ``"zero"``).

    Returns:
        A scalar, or the per-position loss ``[N, d1, ...]`` for ``reduction="none"``; float32 for
        fp16/bf16 logits.

    Raises:
        TypeError: probability (soft) targets.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> label_relaxation_loss(logits, torch.tensor([0, 0]), alpha=0.1, reduction="none")
        tensor([0.0000, 0.7042])
    """
    alpha = _check_alpha(alpha)
    check_common(reduction, all_ignored)
    if isinstance(target, Tensor) and target.is_floating_point():
        raise TypeError("label_relaxation_loss takes class indices as targets, not probabilities")
    flat = flatten(logits, target, ignore_index=ignore_index)
    weight = check_class_vector("weight", weight, flat.num_classes, flat.logits)
    log_p_y = flat.gather(flat.log_probs)
    # log(1 - p_y); p_y is capped at 1 - alpha, where the loss is 0 anyway, so the log stays finite
    # (and its gradient zero) for confident rows and for rows whose other classes have -inf logits.
    log_rest = torch.log1p(-log_p_y.exp().clamp(max=1.0 - alpha))
    divergence = (1.0 - alpha) * (math.log(1.0 - alpha) - log_p_y) + alpha * (math.log(alpha) - log_rest)
    inside = log_p_y >= math.log(1.0 - alpha)
    loss = torch.where(inside, torch.zeros_like(divergence), divergence)
    return weighted_reduce(loss, flat, weight, reduction=reduction, all_ignored=all_ignored)


class LabelRelaxationLoss(nn.Module):
    """Module twin of :func:`label_relaxation_loss`.

    Example:
        >>> LabelRelaxationLoss(alpha=0.1)(torch.randn(3, 4), torch.tensor([0, 1, 2])).dim()
        0
    """

    def __init__(
        self,
        alpha: float = 0.1,
        *,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        all_ignored: AllIgnored = "nan",
    ) -> None:
        super().__init__()
        self.alpha = _check_alpha(alpha)
        check_common(reduction, all_ignored)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.all_ignored = all_ignored
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return label_relaxation_loss(
            logits,
            target,
            alpha=self.alpha,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            all_ignored=self.all_ignored,
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, reduction={self.reduction!r}"
