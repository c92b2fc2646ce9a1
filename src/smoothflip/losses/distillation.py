"""Knowledge distillation with soft targets (Hinton, Vinyals and Dean 2015)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smoothflip._validation import check_number, check_range
from smoothflip.losses._common import (
    AllIgnored,
    Reduction,
    check_common,
    compute_dtype,
    flatten,
    reduce,
)
from smoothflip.losses.smoothing import smoothed_cross_entropy

__all__ = ["DistillationLoss", "distillation_loss"]


def _check_temperature_alpha(temperature: float, alpha: float) -> tuple[float, float]:
    temperature = check_number("temperature", temperature)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    return temperature, check_range("alpha", alpha, low=0.0, high=1.0)


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float = 1.0,
    target: Tensor | None = None,
    alpha: float = 1.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    all_ignored: AllIgnored = "nan",
) -> Tensor:
    r"""Distillation loss ``alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE``.

    ``CE`` is the student's cross-entropy on ``target``.
    ``p^T = softmax(logits / T)``. The ``T^2`` factor keeps the soft term's gradient magnitude
    comparable across temperatures, since its gradient scales as ``1/T^2`` (Hinton et al. 2015,
    section 2). KL differs from the soft-target cross-entropy only by the teacher's entropy, a
    constant for the student, so the gradients are the same; KL is 0 when the student matches.
    The teacher's logits are detached: no gradient reaches the teacher.

    With ``alpha=1`` (default) only the teacher's soft targets are used, as in Müller et al.'s
    distillation experiments; ``alpha < 1`` needs ``target``. The hard term is
    ``F.cross_entropy(student_logits, target, weight=weight, ignore_index=ignore_index)`` at
    temperature 1. Positions whose hard target is ``ignore_index`` are skipped in both terms; each
    term is its own mean over the remaining positions (the hard one weighted as in PyTorch).

    Args:
        student_logits: ``[N, C]``, ``[N, C, d1, ...]`` or ``[C]``.
        teacher_logits: same shape as ``student_logits``.
        temperature: ``T > 0``.
        target: optional class indices (or probabilities) for the hard term and for masking.
        alpha: weight of the soft (distillation) term in ``[0, 1]``.
        weight: ``[C]`` class weights of the hard term.
        ignore_index: hard-target value whose positions are skipped.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        all_ignored: ``"nan"`` or ``"zero"``: the ``"mean"`` of a batch with every position ignored.

    Returns:
        A scalar, or ``[N, d1, ...]`` for ``reduction="none"``.

    Example:
        >>> import torch
        >>> teacher = torch.randn(4, 10)
        >>> float(distillation_loss(teacher.clone(), teacher, temperature=4.0)) < 1e-6
        True
    """
    temperature, alpha = _check_temperature_alpha(temperature, alpha)
    check_common(reduction, all_ignored)
    if not isinstance(teacher_logits, Tensor) or not isinstance(student_logits, Tensor):
        raise TypeError("student_logits and teacher_logits must be torch.Tensors")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher_logits must have the student's shape {tuple(student_logits.shape)}, "
            f"got {tuple(teacher_logits.shape)}"
        )
    if alpha < 1.0 and target is None:
        raise ValueError(f"alpha={alpha} < 1 weights a hard-label term, so target is required")
    class_dim = 0 if student_logits.dim() == 1 else 1
    cdtype = compute_dtype(student_logits.dtype)
    teacher = teacher_logits.detach().to(cdtype) / temperature
    soft = flatten(student_logits.to(cdtype) / temperature, torch.softmax(teacher, dim=class_dim))
    teacher_log_probs = torch.log_softmax(teacher.movedim(class_dim, -1).reshape(-1, soft.num_classes), dim=1)
    kl = (soft.soft * (teacher_log_probs - soft.log_probs)).sum(dim=1) * temperature**2
    valid = soft.valid if target is None else flatten(student_logits, target, ignore_index=ignore_index).valid
    kl = torch.where(valid, kl, 0.0)
    soft_part = reduce(kl, valid.to(kl.dtype), soft, reduction=reduction, all_ignored=all_ignored)
    if alpha == 1.0:
        return soft_part
    hard_part = smoothed_cross_entropy(
        student_logits,
        target,
        eps=0.0,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        all_ignored=all_ignored,
    )
    return alpha * soft_part + (1.0 - alpha) * hard_part


class DistillationLoss(nn.Module):
    """Module twin of :func:`distillation_loss`; ``forward(student_logits, teacher_logits, target=None)``.

    Example:
        >>> loss_fn = DistillationLoss(temperature=2.0, alpha=0.9)
        >>> loss_fn(torch.randn(3, 5), torch.randn(3, 5), torch.tensor([0, 1, 2])).dim()
        0
    """

    def __init__(
        self,
        *,
        temperature: float = 1.0,
        alpha: float = 1.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        all_ignored: AllIgnored = "nan",
    ) -> None:
        super().__init__()
        self.temperature, self.alpha = _check_temperature_alpha(temperature, alpha)
        check_common(reduction, all_ignored)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.all_ignored = all_ignored
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, target: Tensor | None = None) -> Tensor:
        return distillation_loss(
            student_logits,
            teacher_logits,
            temperature=self.temperature,
            target=target,
            alpha=self.alpha,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            all_ignored=self.all_ignored,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}, reduction={self.reduction!r}"
