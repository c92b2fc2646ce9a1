"""Shared plumbing for every loss: input checks, flattening, float32 accumulation, reduction.

All losses follow ``F.cross_entropy``'s conventions:

- ``logits`` is ``[N, C]``, ``[N, C, d1, ...]`` (class dimension 1) or unbatched ``[C]``;
- ``target`` is either *hard* (an integer tensor of shape ``[N]`` / ``[N, d1, ...]`` / ``[]``) or
  *soft* (a floating tensor of class probabilities with the same shape as ``logits``);
- ``ignore_index`` masks hard-target positions (soft targets accept only the default ``-100``,
  as in PyTorch);
- ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"``.

Internally the class dimension is moved last and the positions are flattened to ``[M, C]``.
Half-precision logits (fp16/bf16) are up-cast to float32 before any exponent or sum, and the loss
comes back in float32; float32 and float64 logits keep their dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from smoothflip._validation import check_choice, check_number

Reduction = Literal["mean", "sum", "none"]
AllIgnored = Literal["nan", "zero"]

REDUCTIONS = ("mean", "sum", "none")
ALL_IGNORED = ("nan", "zero")


@dataclass(frozen=True)
class Flat:
    """Logits and targets with the class dimension last and positions flattened.

    Attributes:
        logits: ``[M, C]`` logits in the compute dtype (float32 for half inputs).
        log_probs: ``[M, C]`` log-softmax of ``logits``.
        hard: ``[M]`` int64 class indices with ignored positions replaced by 0, or ``None``.
        valid: ``[M]`` bool, False at ignored positions (all True for soft targets).
        soft: ``[M, C]`` target probabilities in the compute dtype, or ``None``.
        shape: shape of a per-position result (what ``reduction="none"`` returns).
        num_classes: ``C``.
    """

    logits: Tensor
    log_probs: Tensor
    hard: Tensor | None
    valid: Tensor
    soft: Tensor | None
    shape: tuple[int, ...]
    num_classes: int

    @property
    def is_soft(self) -> bool:
        return self.soft is not None

    def target_probs(self) -> Tensor:
        """``[M, C]`` target distribution (one-hot rows for hard targets; zero rows where ignored)."""
        if self.soft is not None:
            return self.soft
        onehot = torch.nn.functional.one_hot(self.hard, self.num_classes).to(self.logits.dtype)
        return onehot * self.valid.unsqueeze(1)

    def gather(self, values: Tensor) -> Tensor:
        """``values[m, hard[m]]`` for ``[M, C]`` values (hard targets only)."""
        return values.gather(1, self.hard.unsqueeze(1)).squeeze(1)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_eps(eps: float, *, name: str = "eps") -> float:
    """Smoothing strength: finite and at most 1 (negative values are allowed)."""
    eps = check_number(name, eps)
    if eps > 1.0:
        raise ValueError(f"{name} must be <= 1 (negative values give negative label smoothing), got {eps!r}")
    return eps


def check_common(reduction: str, all_ignored: str) -> None:
    check_choice("reduction", reduction, REDUCTIONS)
    check_choice("all_ignored", all_ignored, ALL_IGNORED)


def flatten(logits: Tensor, target: Tensor, *, ignore_index: int = -100) -> Flat:
    """Validate ``logits`` / ``target`` and flatten them to ``[M, C]`` (see the module docstring)."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got dtype {logits.dtype}")
    if logits.dim() == 0:
        raise ValueError(
            "logits must have a class dimension: shape [C], [N, C] or [N, C, d1, ...], got a scalar"
        )
    unbatched = logits.dim() == 1
    if unbatched:
        logits = logits.unsqueeze(0)
        target = target.unsqueeze(0)
    num_classes = logits.shape[1]
    if num_classes < 1:
        raise ValueError("logits must have at least one class (dimension 1 is empty)")
    cdtype = compute_dtype(logits.dtype)
    flat_logits = logits.movedim(1, -1).reshape(-1, num_classes).to(cdtype)
    log_probs = torch.log_softmax(flat_logits, dim=1)
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(
                f"target with class probabilities must have the logits' shape {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}"
            )
        if ignore_index != -100:
            raise ValueError("ignore_index is not supported with probability (soft) targets")
        soft = target.movedim(1, -1).reshape(-1, num_classes).to(cdtype)
        valid = torch.ones(soft.shape[0], dtype=torch.bool, device=soft.device)
        shape = tuple(logits.shape[:1] + logits.shape[2:])
        hard = None
    else:
        if target.dtype == torch.bool or target.is_complex():
            raise TypeError(
                f"target must be class indices (integer) or probabilities (float), got {target.dtype}"
            )
        expected = tuple(logits.shape[:1] + logits.shape[2:])
        if tuple(target.shape) != expected:
            raise ValueError(
                f"target with class indices must have shape {expected} for logits of shape "
                f"{tuple(logits.shape)}, got {tuple(target.shape)}"
            )
        flat_target = target.reshape(-1).long()
        valid = flat_target != ignore_index
        bad = valid & ((flat_target < 0) | (flat_target >= num_classes))
        if bool(bad.any()):
            value = int(flat_target[bad][0])
            raise ValueError(
                f"target holds class index {value}, outside [0, {num_classes}) "
                f"(and not ignore_index={ignore_index})"
            )
        hard = torch.where(valid, flat_target, torch.zeros_like(flat_target))
        soft = None
        shape = expected
    if unbatched:
        shape = shape[1:]
    return Flat(flat_logits, log_probs, hard, valid, soft, shape, num_classes)


def check_class_vector(name: str, value: Tensor | None, num_classes: int, like: Tensor) -> Tensor | None:
    """A per-class tensor of shape ``[C]`` (weight, prior), on ``like``'s device and dtype."""
    if value is None:
        return None
    if not isinstance(value, Tensor):
        value = torch.as_tensor(value)
    if value.dim() != 1 or value.shape[0] != num_classes:
        raise ValueError(
            f"{name} must have shape [{num_classes}] (one entry per class), got {tuple(value.shape)}"
        )
    return value.to(device=like.device, dtype=like.dtype)


def position_weights(flat: Flat, weight: Tensor | None) -> Tensor:
    """``[M]`` weight of each position: ``weight[y]`` (hard), ``sum_c weight[c] t_c`` (soft), 0 if ignored.

    Losses other than the cross-entropy family scale each position's loss by this and, for
    ``reduction="mean"``, divide by its sum: for hard targets this is exactly how
    ``F.cross_entropy`` weights the NLL.
    """
    if weight is None:
        return flat.valid.to(flat.logits.dtype)
    if flat.soft is not None:
        return flat.soft @ weight
    return weight[flat.hard] * flat.valid


def check_z_loss(z_loss: float) -> float:
    z_loss = check_number("z_loss", z_loss)
    if z_loss < 0:
        raise ValueError(f"z_loss must be >= 0, got {z_loss!r}")
    return z_loss


def reduce(
    loss: Tensor,
    denominator: Tensor | float,
    flat: Flat,
    *,
    reduction: str,
    all_ignored: str = "nan",
) -> Tensor:
    """Reduce a ``[M]`` per-position loss (already weighted, zero where ignored).

    ``"mean"`` divides the sum by ``denominator`` (a ``[M]`` tensor that is summed, or a number).
    A zero denominator (every position ignored) gives NaN with ``all_ignored="nan"`` (PyTorch's
    behaviour) or 0 with ``all_ignored="zero"``; either way the gradient is all zeros.
    """
    if reduction == "none":
        return loss.reshape(flat.shape)
    total = loss.sum()
    if reduction == "sum":
        return total
    denom = denominator.sum() if isinstance(denominator, Tensor) else total.new_tensor(float(denominator))
    nonzero = denom != 0
    safe = torch.where(nonzero, denom, torch.ones_like(denom))
    mean = total / safe
    if all_ignored == "zero":
        return mean
    return torch.where(nonzero, mean, torch.full_like(mean, math.nan))


def entropy(flat: Flat) -> Tensor:
    """``[M]`` Shannon entropy (nats) of the predicted distribution at each position.

    Classes with probability exactly 0 (``-inf`` logits) add 0 (``0 log 0 = 0``), not NaN.
    """
    probs = flat.log_probs.exp()
    return -(probs * flat.log_probs.masked_fill(probs == 0, 0.0)).sum(dim=1)


def add_z_loss(result: Tensor, flat: Flat, z_loss: float, *, reduction: str, all_ignored: str) -> Tensor:
    """Add the PaLM z-loss ``z_loss * logsumexp(logits)^2`` to a reduced loss.

    The term is its own mean (or sum, or per-position value) over non-ignored positions, independent
    of class weights. ``z_loss == 0`` returns ``result`` untouched.
    """
    if z_loss == 0.0:
        return result
    valid = flat.valid.to(flat.logits.dtype)
    term = torch.where(flat.valid, z_loss * torch.logsumexp(flat.logits, dim=1).square(), 0.0)
    return result + reduce(term, valid, flat, reduction=reduction, all_ignored=all_ignored)


def weighted_reduce(
    loss: Tensor, flat: Flat, weight: Tensor | None, *, reduction: str, all_ignored: str
) -> Tensor:
    """Reduce an unweighted ``[M]`` per-position loss with :func:`position_weights`.

    ``"mean"`` is ``sum_n w_n loss_n / sum_n w_n`` over non-ignored positions — for hard targets the
    weighting of ``F.cross_entropy``'s NLL. Ignored positions give 0 even if their loss is NaN.
    """
    pos_w = position_weights(flat, weight)
    weighted = torch.where(flat.valid, loss * pos_w, 0.0)
    return reduce(weighted, pos_w, flat, reduction=reduction, all_ignored=all_ignored)
