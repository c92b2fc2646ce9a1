"""Label-smoothed cross-entropy (uniform, off-target, prior, negative) and soft-target cross-entropy."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from smoothflip._validation import check_choice
from smoothflip.losses._common import (
    AllIgnored,
    Reduction,
    add_z_loss,
    check_class_vector,
    check_common,
    check_eps,
    check_z_loss,
    flatten,
    reduce,
)

Convention = Literal["uniform", "off_target"]
CONVENTIONS = ("uniform", "off_target")

__all__ = [
    "SmoothedCrossEntropy",
    "SoftTargetCrossEntropy",
    "smooth_targets",
    "smoothed_cross_entropy",
    "soft_target_cross_entropy",
]


def _check_prior(prior: Tensor | None, num_classes: int, like: Tensor) -> Tensor | None:
    prior = check_class_vector("prior", prior, num_classes, like)
    if prior is None:
        return None
    if bool((prior < 0).any()) or not bool(torch.isfinite(prior).all()):
        raise ValueError("prior must hold finite, non-negative class probabilities")
    if abs(float(prior.sum()) - 1.0) > 1e-4:
        raise ValueError(f"prior must sum to 1 over the classes, sums to {float(prior.sum()):.6g}")
    return prior


def _dot_skipping_zeros(neg_logp: Tensor, class_w: Tensor) -> Tensor:
    """``[M]`` ``sum_c w_c (-log p_c)`` in which a class with ``w_c == 0`` adds exactly 0."""
    if bool((class_w == 0).any()):
        neg_logp = neg_logp.masked_fill(class_w == 0, 0.0)
    return neg_logp @ class_w


def _mixing(
    num_classes: int, eps: float, convention: str, prior: Tensor | None, like: Tensor
) -> tuple[float, Tensor]:
    """Return ``(e, u)`` such that the smoothed target is ``(1 - e) * t + e * u``.

    ``uniform``: e = eps, u = 1/K. ``off_target``: the true class keeps 1 - eps and each other
    class gets eps/(K-1), which is the uniform mixture with e = eps*K/(K-1). ``prior``: u = prior.
    """
    k = num_classes
    prior = _check_prior(prior, k, like)
    if convention == "off_target":
        if prior is not None:
            raise ValueError(
                "prior cannot be combined with convention='off_target' (prior smoothing mixes in the prior)"
            )
        if k < 2:
            raise ValueError("convention='off_target' needs at least 2 classes")
        eps = eps * k / (k - 1)
    if prior is None:
        prior = like.new_full((k,), 1.0 / k)
    return eps, prior


def smoothed_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    eps: float = 0.1,
    convention: Convention = "uniform",
    prior: Tensor | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    z_loss: float = 0.0,
    all_ignored: AllIgnored = "nan",
) -> Tensor:
    r"""Cross-entropy against a label-smoothed target.

    The target distribution is ``q = (1 - eps) * t + eps * u`` where ``t`` is the one-hot (or given
    soft) target and ``u`` the smoothing distribution:

    - ``convention="uniform"`` (default): ``u = 1/K``, so **every** class gets ``eps/K``, the true
      one included — the convention of ``F.cross_entropy(label_smoothing=eps)``, timm, Keras,
      Hugging Face and Liger. For ``eps`` in ``[0, 1]`` this function equals
      ``F.cross_entropy(logits, target, weight=..., ignore_index=..., reduction=...,
      label_smoothing=eps)`` in value and gradient, including its class-weight semantics:
      ``loss_n = sum_c w_c q_nc (-log p_nc)``, and ``"mean"`` divides by ``sum_n w[y_n]`` over
      non-ignored positions (by the number of positions for soft targets).
    - ``convention="off_target"``: the true class keeps ``1 - eps`` and each wrong class gets
      ``eps/(K-1)`` (the reading of Szegedy et al. many users expect).
    - ``prior``: a class distribution ``[K]`` used as ``u`` (unigram / prior smoothing,
      Pereyra et al. 2017). Only with ``convention="uniform"``.

    Negative ``eps`` gives *negative label smoothing* (Wei et al. 2022): the target puts
    ``1 - eps + eps/K > 1`` on the true class and negative mass on the others. That loss is
    **unbounded below** (it rewards pushing wrong-class logits to minus infinity) and can diverge at
    ordinary learning rates; Wei et al. warm up with plain cross-entropy first.
    ``F.cross_entropy`` silently treats ``label_smoothing < 0`` as 0; this function does not.

    Args:
        logits: ``[N, C]``, ``[N, C, d1, ...]`` or ``[C]`` unnormalized scores.
        target: class indices ``[N]`` / ``[N, d1, ...]`` / ``[]`` (int), or class probabilities with
            the logits' shape (float).
        eps: smoothing strength, ``<= 1`` and finite; negative allowed (see above).
        convention: ``"uniform"`` or ``"off_target"``.
        prior: ``[C]`` smoothing distribution (non-negative, sums to 1), or None for uniform.
        weight: ``[C]`` class weights, as in ``F.cross_entropy``.
        ignore_index: hard-target value whose positions contribute nothing (and are not counted).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per position, shape ``[N, d1, ...]``).
        z_loss: coefficient of the PaLM z-loss ``log(Z)^2`` (0 = off). It is added as its own mean
            (or sum) over non-ignored positions, independent of class weights.
        all_ignored: what ``"mean"`` returns when every position is ignored: ``"nan"`` (0/0, what
            ``F.cross_entropy`` returns) or ``"zero"``. The gradient is zero either way; ``"sum"``
            gives 0 and ``"none"`` gives zeros.

    Returns:
        A scalar, or ``[N, d1, ...]`` for ``reduction="none"``. float32 for fp16/bf16 logits
        (accumulated in float32), otherwise the logits' dtype.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> logits, target = torch.randn(8, 5), torch.randint(0, 5, (8,))
        >>> ours = smoothed_cross_entropy(logits, target, eps=0.1)
        >>> torch.allclose(ours, F.cross_entropy(logits, target, label_smoothing=0.1))
        True
    """
    eps = check_eps(eps)
    check_choice("convention", convention, CONVENTIONS)
    check_common(reduction, all_ignored)
    z_loss = check_z_loss(z_loss)
    flat = flatten(logits, target, ignore_index=ignore_index)
    weight = check_class_vector("weight", weight, flat.num_classes, flat.logits)
    e, u = _mixing(flat.num_classes, eps, convention, prior, flat.logits)
    neg_logp = -flat.log_probs
    class_w = u if weight is None else weight * u
    # Classes with -inf logits (masked vocabularies) have -log p = inf: a term whose coefficient is
    # exactly 0 (eps = 0, a zero prior or target entry) is 0, not 0 * inf = NaN.
    smooth = _dot_skipping_zeros(neg_logp, class_w) if e != 0.0 else neg_logp.new_zeros(())
    if flat.soft is not None:
        target_w = flat.soft if weight is None else flat.soft * weight
        hit = torch.where(target_w != 0, neg_logp * target_w, 0.0).sum(dim=1)
        loss = (1.0 - e) * hit + e * smooth
        denominator: Tensor | float = float(loss.shape[0])
    else:
        pos_w = flat.valid.to(neg_logp.dtype) if weight is None else weight[flat.hard] * flat.valid
        loss = torch.where(flat.valid, (1.0 - e) * flat.gather(neg_logp) * pos_w + e * smooth, 0.0)
        denominator = pos_w
    result = reduce(loss, denominator, flat, reduction=reduction, all_ignored=all_ignored)
    return add_z_loss(result, flat, z_loss, reduction=reduction, all_ignored=all_ignored)


def soft_target_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
    z_loss: float = 0.0,
) -> Tensor:
    """Cross-entropy ``-sum_c w_c t_c log p_c`` against a target distribution (mixup, distillation).

    Equals ``F.cross_entropy(logits, target)`` for probability targets (``"mean"`` divides by the
    number of positions, not by a weight sum — PyTorch's semantics).

    Args:
        logits: ``[N, C]``, ``[N, C, d1, ...]`` or ``[C]``.
        target: class probabilities with the logits' shape.
        weight: ``[C]`` class weights.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        z_loss: PaLM z-loss coefficient (see :func:`smoothed_cross_entropy`).

    Returns:
        A scalar, or ``[N, d1, ...]`` for ``reduction="none"``.

    Example:
        >>> import torch
        >>> target = torch.softmax(torch.randn(4, 3), dim=1)
        >>> soft_target_cross_entropy(torch.randn(4, 3), target).shape
        torch.Size([])
    """
    if isinstance(target, Tensor) and not target.is_floating_point():
        raise TypeError(f"target must hold class probabilities (a floating tensor), got dtype {target.dtype}")
    return smoothed_cross_entropy(logits, target, eps=0.0, weight=weight, reduction=reduction, z_loss=z_loss)


def smooth_targets(
    target: Tensor,
    num_classes: int | None = None,
    *,
    eps: float = 0.1,
    convention: Convention = "uniform",
    prior: Tensor | None = None,
    ignore_index: int = -100,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """The smoothed target distribution that :func:`smoothed_cross_entropy` trains against.

    Args:
        target: class indices ``[N, d1, ...]`` (needs ``num_classes``) or probabilities
            ``[N, C, d1, ...]``.
        num_classes: ``C`` for index targets.
        eps, convention, prior: as in :func:`smoothed_cross_entropy`.
        ignore_index: index-target value whose rows come back as all zeros.
        dtype: floating dtype of the result for index targets (default: torch's default dtype).

    Returns:
        ``[N, C, d1, ...]`` class probabilities (class dimension 1) in ``dtype`` (the soft
        target's dtype for soft targets), usable as a probability target of ``F.cross_entropy``.

    Example:
        >>> smooth_targets(torch.tensor([0, 2]), 3, eps=0.3)
        tensor([[0.8000, 0.1000, 0.1000],
                [0.1000, 0.1000, 0.8000]])
    """
    eps = check_eps(eps)
    check_choice("convention", convention, CONVENTIONS)
    if target.is_floating_point():
        if target.dim() < 2:
            raise ValueError("probability targets must have shape [N, C, d1, ...]")
        probs = target.movedim(1, -1)
        k = probs.shape[-1]
        if num_classes is not None and num_classes != k:
            raise ValueError(f"num_classes={num_classes} does not match the target's class dimension {k}")
        valid = torch.ones(probs.shape[:-1], dtype=torch.bool, device=target.device)
    else:
        if num_classes is None:
            raise ValueError("num_classes is required for class-index targets")
        k = int(num_classes)
        if k < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        valid = target != ignore_index
        idx = torch.where(valid, target, torch.zeros_like(target)).long()
        if bool(((idx < 0) | (idx >= k)).any()):
            raise ValueError(
                f"target holds class indices outside [0, {k}) (and not ignore_index={ignore_index})"
            )
        probs = torch.nn.functional.one_hot(idx, k).to(dtype or torch.get_default_dtype())
    e, u = _mixing(k, eps, convention, prior, probs)
    smoothed = (1.0 - e) * probs + e * u
    smoothed = smoothed * valid.unsqueeze(-1)
    return smoothed.movedim(-1, 1)


class SmoothedCrossEntropy(nn.Module):
    """Module twin of :func:`smoothed_cross_entropy` (``weight`` and ``prior`` are buffers).

    Example:
        >>> loss_fn = SmoothedCrossEntropy(eps=0.1, ignore_index=0)
        >>> loss_fn(torch.randn(4, 5, requires_grad=True), torch.tensor([1, 0, 3, 4])).backward()
    """

    def __init__(
        self,
        eps: float = 0.1,
        *,
        convention: Convention = "uniform",
        prior: Tensor | None = None,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        z_loss: float = 0.0,
        all_ignored: AllIgnored = "nan",
    ) -> None:
        super().__init__()
        self.eps = check_eps(eps)
        self.convention = check_choice("convention", convention, CONVENTIONS)
        check_common(reduction, all_ignored)
        self.z_loss = check_z_loss(z_loss)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.all_ignored = all_ignored
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))
        self.register_buffer("prior", None if prior is None else torch.as_tensor(prior))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return smoothed_cross_entropy(
            logits,
            target,
            eps=self.eps,
            convention=self.convention,
            prior=self.prior,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            z_loss=self.z_loss,
            all_ignored=self.all_ignored,
        )

    def extra_repr(self) -> str:
        return f"eps={self.eps}, convention={self.convention!r}, reduction={self.reduction!r}"


class SoftTargetCrossEntropy(nn.Module):
    """Module twin of :func:`soft_target_cross_entropy`.

    Example:
        >>> SoftTargetCrossEntropy()(torch.randn(2, 3), torch.full((2, 3), 1 / 3)).dim()
        0
    """

    def __init__(
        self, *, weight: Tensor | None = None, reduction: Reduction = "mean", z_loss: float = 0.0
    ) -> None:
        super().__init__()
        check_common(reduction, "nan")
        self.reduction = reduction
        self.z_loss = check_z_loss(z_loss)
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return soft_target_cross_entropy(
            logits, target, weight=self.weight, reduction=self.reduction, z_loss=self.z_loss
        )
