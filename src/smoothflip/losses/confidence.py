"""Confidence penalty (Pereyra et al. 2017): cross-entropy minus the entropy of the prediction."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smoothflip._validation import check_number
from smoothflip.losses._common import (
    AllIgnored,
    Reduction,
    add_z_loss,
    check_class_vector,
    check_common,
    check_z_loss,
    entropy,
    flatten,
    weighted_reduce,
)

__all__ = ["ConfidencePenaltyLoss", "confidence_penalty_loss"]


def _check_beta_hinge(beta: float, hinge: float | None) -> tuple[float, float | None]:
    beta = check_number("beta", beta)
    if beta < 0:
        raise ValueError(f"beta must be >= 0 (the weight of the entropy penalty), got {beta!r}")
    if hinge is not None:
        hinge = check_number("hinge", hinge)
        if hinge < 0:
            raise ValueError(f"hinge must be >= 0 (an entropy threshold in nats), got {hinge!r}")
    return beta, hinge


def confidence_penalty_loss(
    logits: Tensor,
    target: Tensor,
    *,
    beta: float,
    hinge: float | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    z_loss: float = 0.0,
    all_ignored: AllIgnored = "nan",
) -> Tensor:
    r"""Cross-entropy with a penalty on confident (low-entropy) predictions.

    Per position, with ``H(p) = -sum_c p_c log p_c`` in nats:

    - ``hinge=None``: ``CE - beta * H(p)`` (Pereyra et al. 2017, eq. 2). Up to the constant
      ``beta * log K`` this is ``CE + beta * KL(p || u)``: the reverse direction of label smoothing,
      which is ``CE + eps * KL(u || p)`` up to constants.
    - ``hinge=G``: ``CE + beta * max(0, G - H(p))``: the penalty acts only while the entropy is below
      ``G``, where it equals ``CE - beta * H(p) + beta * G`` (same gradient as the plain form).
      The paper prints this term as ``- beta * max(0, G - H)``; with that sign the term would
      *reward* confident predictions, so we use the sign that penalizes them, as the paper intends.

    Class weights and ``ignore_index`` act per position, like the NLL of ``F.cross_entropy``:
    ``loss_n`` is scaled by ``weight[y_n]`` and ``"mean"`` divides by ``sum_n weight[y_n]``; soft
    targets use ``sum_c weight[c] t_nc`` as the position weight. With ``beta=0`` and hard targets
    this is exactly ``F.cross_entropy``.

    Args:
        logits: ``[N, C]``, ``[N, C, d1, ...]`` or ``[C]``.
        target: class indices (int) or class probabilities with the logits' shape (float).
        beta: penalty weight, ``>= 0`` (Pereyra et al. found 0.1 to 2.5 best across tasks).
        hinge: entropy threshold in nats for the hinged form, or None.
        weight: ``[C]`` class weights.
        ignore_index: index-target value whose positions are skipped.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        z_loss: PaLM z-loss coefficient (see :func:`~smoothflip.losses.smoothed_cross_entropy`).
        all_ignored: ``"nan"`` or ``"zero"``: the ``"mean"`` of a batch with every position ignored.

    Returns:
        A scalar, or ``[N, d1, ...]`` for ``reduction="none"``.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[4.0, 0.0, 0.0]])
        >>> plain = confidence_penalty_loss(logits, torch.tensor([0]), beta=0.0)
        >>> bool(confidence_penalty_loss(logits, torch.tensor([0]), beta=0.5) < plain)
        True
    """
    beta, hinge = _check_beta_hinge(beta, hinge)
    check_common(reduction, all_ignored)
    z_loss = check_z_loss(z_loss)
    flat = flatten(logits, target, ignore_index=ignore_index)
    weight = check_class_vector("weight", weight, flat.num_classes, flat.logits)
    if flat.soft is None:
        ce = -flat.gather(flat.log_probs)
    else:
        ce = -(flat.soft * flat.log_probs).sum(dim=1)
    ent = entropy(flat)
    penalty = -ent if hinge is None else torch.clamp(hinge - ent, min=0.0)
    loss = ce + beta * penalty
    result = weighted_reduce(loss, flat, weight, reduction=reduction, all_ignored=all_ignored)
    return add_z_loss(result, flat, z_loss, reduction=reduction, all_ignored=all_ignored)


class ConfidencePenaltyLoss(nn.Module):
    """Module twin of :func:`confidence_penalty_loss`.

    Example:
        >>> ConfidencePenaltyLoss(beta=1.0)(torch.randn(3, 4), torch.tensor([0, 1, 2])).dim()
        0
    """

    def __init__(
        self,
        beta: float,
        *,
        hinge: float | None = None,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        z_loss: float = 0.0,
        all_ignored: AllIgnored = "nan",
    ) -> None:
        super().__init__()
        self.beta, self.hinge = _check_beta_hinge(beta, hinge)
        check_common(reduction, all_ignored)
        self.z_loss = check_z_loss(z_loss)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.all_ignored = all_ignored
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return confidence_penalty_loss(
            logits,
            target,
            beta=self.beta,
            hinge=self.hinge,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            z_loss=self.z_loss,
            all_ignored=self.all_ignored,
        )

    def extra_repr(self) -> str:
        return f"beta={self.beta}, hinge={self.hinge}, reduction={self.reduction!r}"
