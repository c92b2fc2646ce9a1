"""Online label smoothing (Zhang, Wang et al., IEEE TIP 2021, "Delving Deep into Label Smoothing").

Uniform label smoothing gives every wrong class the same share. Online label smoothing (OLS)
learns the shares from the model itself: it keeps a ``K x K`` soft-label matrix ``S`` whose row
``S[c]`` is the target of class ``c``, and

- during epoch ``t`` it accumulates, for every training example the model classifies correctly
  (``argmax p = y``), the predicted distribution ``p`` into row ``y`` of a buffer;
- at the end of the epoch each row of the buffer is divided by its count and becomes ``S`` for
  epoch ``t + 1`` (a class with no correctly classified example keeps its previous row — the
  authors' code would give it an all-zero target);
- the loss is ``alpha * CE(p, y) + (1 - alpha) * CE(p, S[y])`` with ``alpha = 0.5`` in the paper.

Before the first epoch ends ``S`` is the identity (hard labels), or uniformly smoothed with
``init_eps`` (``S = (1 - init_eps) I + init_eps / K``).

:func:`online_label_smoothing_loss` is the loss for a given ``S``; :class:`OnlineLabelSmoothing`
holds ``S`` and the accumulators as buffers (so ``state_dict()`` checkpoints them), accumulates
in ``forward`` while the module is in training mode, and :meth:`OnlineLabelSmoothing.end_epoch`
advances ``S``. Call ``end_epoch()`` once after every training epoch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smoothflip._validation import check_int, check_range
from smoothflip.losses._common import (
    AllIgnored,
    Reduction,
    check_class_vector,
    check_common,
    flatten,
    weighted_reduce,
)

__all__ = ["OnlineLabelSmoothing", "online_label_smoothing_loss"]


def _check_alpha(alpha: float) -> float:
    return check_range("alpha", alpha, low=0.0, high=1.0)


def online_label_smoothing_loss(
    logits: Tensor,
    target: Tensor,
    soft_labels: Tensor,
    *,
    alpha: float = 0.5,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    all_ignored: AllIgnored = "nan",
) -> Tensor:
    r"""``alpha * CE(p, y) + (1 - alpha) * CE(p, S[y])`` for a given soft-label matrix ``S``.

    Args:
        logits: ``[N, C]``, ``[N, C, d1, ...]`` or ``[C]``.
        target: class indices with the logits' shape minus the class dimension.
        soft_labels: ``[C, C]`` row-stochastic ``S``; row ``c`` is the target of class ``c``.
        alpha: weight of the hard-label cross-entropy, in ``[0, 1]`` (0.5 in the paper).
        weight: ``[C]`` class weights (position ``n`` scaled by ``weight[y_n]``), or None.
        ignore_index, reduction, all_ignored: as in :func:`~smoothflip.losses.smoothed_cross_entropy`.

    Returns:
        A scalar, or ``[N, d1, ...]`` for ``reduction="none"``.

    Example:
        >>> import torch
        >>> logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
        >>> identity = online_label_smoothing_loss(logits, y, torch.eye(3))
        >>> torch.allclose(identity, torch.nn.functional.cross_entropy(logits, y))
        True
    """
    alpha = _check_alpha(alpha)
    check_common(reduction, all_ignored)
    if isinstance(target, Tensor) and target.is_floating_point():
        raise TypeError("online label smoothing takes class indices as targets, not probabilities")
    flat = flatten(logits, target, ignore_index=ignore_index)
    k = flat.num_classes
    if not isinstance(soft_labels, Tensor) or tuple(soft_labels.shape) != (k, k):
        shape = tuple(soft_labels.shape) if isinstance(soft_labels, Tensor) else type(soft_labels).__name__
        raise ValueError(f"soft_labels must be a [{k}, {k}] tensor (one row per class), got {shape}")
    weight = check_class_vector("weight", weight, k, flat.logits)
    soft = soft_labels.to(device=flat.logits.device, dtype=flat.logits.dtype)[flat.hard]  # [M, K]
    hard_ce = -flat.gather(flat.log_probs)
    # 0 * log 0 = 0: classes a row gives no mass add nothing, even where log p is -inf.
    soft_ce = -(soft * flat.log_probs.masked_fill(soft == 0, 0.0)).sum(dim=1)
    loss = alpha * hard_ce + (1.0 - alpha) * soft_ce
    return weighted_reduce(loss, flat, weight, reduction=reduction, all_ignored=all_ignored)


class OnlineLabelSmoothing(nn.Module):
    """Online label smoothing with its state: ``S``, the epoch's accumulators, and an epoch hook.

    Args:
        num_classes: ``K``.
        alpha: weight of the hard-label cross-entropy (0.5 in the paper).
        init_eps: ``S`` before the first epoch ends: ``(1 - init_eps) I + init_eps / K`` (0 = hard
            labels).
        weight, ignore_index, reduction, all_ignored: as in :func:`online_label_smoothing_loss`.

    Buffers (in ``state_dict()``): ``soft_labels`` ``[K, K]`` (the current ``S``), ``accumulated``
    ``[K, K]`` and ``counts`` ``[K]`` (this epoch's sums of correct predictions per true class),
    float64.

    Example:
        >>> import torch
        >>> ols = OnlineLabelSmoothing(3)
        >>> logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
        >>> loss = ols(logits, torch.tensor([0, 1]))   # accumulates the two correct predictions
        >>> ols.end_epoch()                             # rows 0 and 1 become those predictions
        >>> ols.soft_labels[0].round(decimals=3)
        tensor([0.6650, 0.2450, 0.0900], dtype=torch.float64)
    """

    def __init__(
        self,
        num_classes: int,
        alpha: float = 0.5,
        *,
        init_eps: float = 0.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        all_ignored: AllIgnored = "nan",
    ) -> None:
        super().__init__()
        k = check_int("num_classes", num_classes, low=1)
        self.alpha = _check_alpha(alpha)
        init_eps = check_range("init_eps", init_eps, low=0.0, high=1.0)
        check_common(reduction, all_ignored)
        self.num_classes = k
        self.init_eps = init_eps
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.all_ignored = all_ignored
        start = (1.0 - init_eps) * torch.eye(k, dtype=torch.float64) + init_eps / k
        self.register_buffer("soft_labels", start)
        self.register_buffer("accumulated", torch.zeros(k, k, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        loss = online_label_smoothing_loss(
            logits,
            target,
            self.soft_labels,
            alpha=self.alpha,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            all_ignored=self.all_ignored,
        )
        if self.training:
            self.observe(logits, target)
        return loss

    @torch.no_grad()
    def observe(self, logits: Tensor, target: Tensor) -> None:
        """Add the correctly classified examples of a batch to this epoch's accumulators."""
        flat = flatten(logits.detach(), target, ignore_index=self.ignore_index)
        correct = flat.valid & (flat.log_probs.argmax(dim=1) == flat.hard)
        labels = flat.hard[correct]
        probs = flat.log_probs[correct].exp().to(self.accumulated.dtype)
        self.accumulated.index_add_(0, labels.to(self.accumulated.device), probs.to(self.accumulated.device))
        ones = torch.ones(labels.shape[0], dtype=self.counts.dtype, device=self.counts.device)
        self.counts.index_add_(0, labels.to(self.counts.device), ones)

    @torch.no_grad()
    def end_epoch(self) -> None:
        """Advance ``S``: each class seen correctly this epoch gets the mean of those predictions."""
        seen = self.counts > 0
        means = self.accumulated / self.counts.clamp(min=1.0).unsqueeze(1)
        self.soft_labels.copy_(torch.where(seen.unsqueeze(1), means, self.soft_labels))
        self.accumulated.zero_()
        self.counts.zero_()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, alpha={self.alpha}, init_eps={self.init_eps}"
