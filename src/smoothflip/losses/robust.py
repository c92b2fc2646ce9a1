"""Noise-robust baselines: generalized CE, symmetric CE, bootstrapping, forward correction.

Every loss here computes an unweighted loss per position and applies class weights per position,
like the NLL of ``F.cross_entropy``: position ``n`` is scaled by ``weight[y_n]`` (by
``sum_c weight[c] t_nc`` for soft targets) and ``"mean"`` divides by the sum of those weights over
non-ignored positions. Without weights, ``"mean"`` is the plain mean over non-ignored positions.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from smoothflip._validation import check_choice, check_range
from smoothflip.losses._common import (
    AllIgnored,
    Flat,
    Reduction,
    add_z_loss,
    check_class_vector,
    check_common,
    check_z_loss,
    entropy,
    flatten,
    weighted_reduce,
)

__all__ = [
    "BootstrappingLoss",
    "ForwardCorrectedCrossEntropy",
    "GeneralizedCrossEntropy",
    "SymmetricCrossEntropy",
    "bootstrapping_loss",
    "forward_corrected_cross_entropy",
    "generalized_cross_entropy",
    "symmetric_cross_entropy",
]


def _cross_entropy(flat: Flat) -> Tensor:
    """``[M]`` unweighted ``-sum_c t_c log p_c``."""
    if flat.soft is None:
        return -flat.gather(flat.log_probs)
    return -(flat.soft * flat.log_probs).sum(dim=1)


class _RobustLoss(nn.Module):
    """Shared state of the module twins: class weights (buffer), ignore_index, reduction."""

    def __init__(
        self,
        *,
        weight: Tensor | None,
        ignore_index: int,
        reduction: Reduction,
        all_ignored: AllIgnored,
        z_loss: float,
    ) -> None:
        super().__init__()
        check_common(reduction, all_ignored)
        self.z_loss = check_z_loss(z_loss)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.all_ignored = all_ignored
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))

    def _common_kwargs(self) -> dict:
        return {
            "weight": self.weight,
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
            "all_ignored": self.all_ignored,
            "z_loss": self.z_loss,
        }


# --------------------------------------------------------------------------- generalized cross-entropy


def _check_q(q: float) -> float:
    return check_range("q", q, low=0.0, high=1.0, low_open=True)


def generalized_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    all_ignored: AllIgnored = "nan",
    z_loss: float = 0.0,
) -> Tensor:
    """Generalized cross-entropy ``(1 - p_y^q) / q`` (Zhang and Sabuncu 2018).

    ``q -> 0`` recovers cross-entropy; ``q = 1`` is the (noise-robust, slow to train) MAE
    ``1 - p_y``. Soft targets use ``sum_c t_c (1 - p_c^q) / q``. Weighting and reduction: see the
    module docstring.

    Args:
        logits: ``[N, C]``, ``[N, C, d1, ...]`` or ``[C]``.
        target: class indices (int) or class probabilities with the logits' shape (float).
        q: in ``(0, 1]``; the paper uses 0.7.
        weight, ignore_index, reduction, all_ignored, z_loss: as in
            :func:`~smoothflip.losses.smoothed_cross_entropy`.

    Returns:
        A scalar, or ``[N, d1, ...]`` for ``reduction="none"``.

    Example:
        >>> import torch
        >>> generalized_cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([0]), q=1.0)
        tensor(0.5000)
    """
    q = _check_q(q)
    check_common(reduction, all_ignored)
    z_loss = check_z_loss(z_loss)
    flat = flatten(logits, target, ignore_index=ignore_index)
    weight = check_class_vector("weight", weight, flat.num_classes, flat.logits)
    powered = torch.expm1(q * flat.log_probs)  # p^q - 1, accurate when p^q is near 1
    if flat.soft is None:
        loss = -flat.gather(powered) / q
    else:
        loss = -(flat.soft * powered).sum(dim=1) / q
    result = weighted_reduce(loss, flat, weight, reduction=reduction, all_ignored=all_ignored)
    return add_z_loss(result, flat, z_loss, reduction=reduction, all_ignored=all_ignored)


class GeneralizedCrossEntropy(_RobustLoss):
    """Module twin of :func:`generalized_cross_entropy`.

    Example:
        >>> GeneralizedCrossEntropy(q=0.7)(torch.randn(3, 4), torch.tensor([0, 1, 2])).dim()
        0
    """

    def __init__(
        self,
        q: float = 0.7,
        *,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        all_ignored: AllIgnored = "nan",
        z_loss: float = 0.0,
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            all_ignored=all_ignored,
            z_loss=z_loss,
        )
        self.q = _check_q(q)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return generalized_cross_entropy(logits, target, q=self.q, **self._common_kwargs())


# --------------------------------------------------------------------------- symmetric cross-entropy


def _check_sce(alpha: float, beta: float, clamp: float) -> tuple[float, float, float]:
    alpha = check_range("alpha", alpha, low=0.0)
    beta = check_range("beta", beta, low=0.0)
    clamp = check_range("clamp", clamp, low=0.0, high=1.0, low_open=True, high_open=True)
    return alpha, beta, clamp


def symmetric_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    clamp: float = 1e-4,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    all_ignored: AllIgnored = "nan",
    z_loss: float = 0.0,
) -> Tensor:
    """Symmetric cross-entropy ``alpha * CE + beta * RCE`` (Wang et al. 2019).

    The reverse cross-entropy swaps prediction and label: ``RCE = -sum_c p_c log(max(t_c, clamp))``,
    which for a hard label is ``-log(clamp) * (1 - p_y)`` (``log 0`` is clamped to ``log 1e-4``
    in the paper). The paper's CIFAR-10 setting is ``alpha=0.1, beta=1``; CIFAR-100 ``alpha=6,
    beta=0.1``. Weighting and reduction: see the module docstring.

    Args:
        logits: ``[N, C]``, ``[N, C, d1, ...]`` or ``[C]``.
        target: class indices (int) or class probabilities with the logits' shape (float).
        alpha: weight of the cross-entropy term, ``>= 0``.
        beta: weight of the reverse cross-entropy term, ``>= 0``.
        clamp: floor for target probabilities inside the log, in ``(0, 1)``.
        weight, ignore_index, reduction, all_ignored, z_loss: as in
            :func:`~smoothflip.losses.smoothed_cross_entropy`.

    Returns:
        A scalar, or ``[N, d1, ...]`` for ``reduction="none"``.

    Example:
        >>> import torch
        >>> symmetric_cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 2])).dim()
        0
    """
    alpha, beta, clamp = _check_sce(alpha, beta, clamp)
    check_common(reduction, all_ignored)
    z_loss = check_z_loss(z_loss)
    flat = flatten(logits, target, ignore_index=ignore_index)
    weight = check_class_vector("weight", weight, flat.num_classes, flat.logits)
    probs = flat.log_probs.exp()
    if flat.soft is None:
        rce = -math.log(clamp) * (1.0 - flat.gather(probs))
    else:
        rce = -(probs * torch.log(flat.soft.clamp(min=clamp))).sum(dim=1)
    loss = alpha * _cross_entropy(flat) + beta * rce
    result = weighted_reduce(loss, flat, weight, reduction=reduction, all_ignored=all_ignored)
    return add_z_loss(result, flat, z_loss, reduction=reduction, all_ignored=all_ignored)


class SymmetricCrossEntropy(_RobustLoss):
    """Module twin of :func:`symmetric_cross_entropy`.

    Example:
        >>> SymmetricCrossEntropy(alpha=0.1, beta=1.0)(torch.randn(3, 4), torch.tensor([0, 1, 2])).dim()
        0
    """

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 1.0,
        *,
        clamp: float = 1e-4,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        all_ignored: AllIgnored = "nan",
        z_loss: float = 0.0,
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            all_ignored=all_ignored,
            z_loss=z_loss,
        )
        self.alpha, self.beta, self.clamp = _check_sce(alpha, beta, clamp)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return symmetric_cross_entropy(
            logits, target, alpha=self.alpha, beta=self.beta, clamp=self.clamp, **self._common_kwargs()
        )


# --------------------------------------------------------------------------- bootstrapping

BootstrapMode = Literal["soft", "hard"]
_BOOTSTRAP_DEFAULT_BETA = {"soft": 0.95, "hard": 0.8}


def _check_bootstrap(mode: str, beta: float | None) -> tuple[str, float]:
    check_choice("mode", mode, tuple(_BOOTSTRAP_DEFAULT_BETA))
    if beta is None:
        return mode, _BOOTSTRAP_DEFAULT_BETA[mode]
    return mode, check_range("beta", beta, low=0.0, high=1.0)


def bootstrapping_loss(
    logits: Tensor,
    target: Tensor,
    *,
    mode: BootstrapMode = "soft",
    beta: float | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    all_ignored: AllIgnored = "nan",
    z_loss: float = 0.0,
) -> Tensor:
    """Bootstrapping (Reed et al. 2014): cross-entropy against ``beta * t + (1 - beta) * z``.

    - ``mode="soft"``: ``z = p``, the current prediction, with gradient flowing through it. The loss
      is then ``beta * CE + (1 - beta) * H(p)``: cross-entropy plus entropy *minimization*, as Reed
      et al. point out. Default ``beta = 0.95``.
    - ``mode="hard"``: ``z = onehot(argmax p)`` (no gradient through the argmax). Default
      ``beta = 0.8``.

    Weighting and reduction: see the module docstring.

    Args:
        logits: ``[N, C]``, ``[N, C, d1, ...]`` or ``[C]``.
        target: class indices (int) or class probabilities with the logits' shape (float).
        mode: ``"soft"`` or ``"hard"``.
        beta: weight of the given label in ``[0, 1]``; None takes the paper's default for the mode.
        weight, ignore_index, reduction, all_ignored, z_loss: as in
            :func:`~smoothflip.losses.smoothed_cross_entropy`.

    Returns:
        A scalar, or ``[N, d1, ...]`` for ``reduction="none"``.

    Example:
        >>> import torch
        >>> bootstrapping_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]), mode="hard").dim()
        0
    """
    mode, beta = _check_bootstrap(mode, beta)
    check_common(reduction, all_ignored)
    z_loss = check_z_loss(z_loss)
    flat = flatten(logits, target, ignore_index=ignore_index)
    weight = check_class_vector("weight", weight, flat.num_classes, flat.logits)
    if mode == "soft":
        second = entropy(flat)
    else:
        second = -flat.log_probs.gather(1, flat.log_probs.argmax(dim=1, keepdim=True)).squeeze(1)
    loss = beta * _cross_entropy(flat) + (1.0 - beta) * second
    result = weighted_reduce(loss, flat, weight, reduction=reduction, all_ignored=all_ignored)
    return add_z_loss(result, flat, z_loss, reduction=reduction, all_ignored=all_ignored)


class BootstrappingLoss(_RobustLoss):
    """Module twin of :func:`bootstrapping_loss`.

    Example:
        >>> BootstrappingLoss(mode="soft")(torch.randn(3, 4), torch.tensor([0, 1, 2])).dim()
        0
    """

    def __init__(
        self,
        mode: BootstrapMode = "soft",
        beta: float | None = None,
        *,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        all_ignored: AllIgnored = "nan",
        z_loss: float = 0.0,
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            all_ignored=all_ignored,
            z_loss=z_loss,
        )
        self.mode, self.beta = _check_bootstrap(mode, beta)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return bootstrapping_loss(logits, target, mode=self.mode, beta=self.beta, **self._common_kwargs())


# --------------------------------------------------------------------------- forward correction


def check_transition_matrix(
    matrix: Tensor, num_classes: int | None = None, *, name: str = "transition_matrix"
) -> Tensor:
    """Validate a row-stochastic ``[K, K]`` matrix ``T[true, noisy]`` and return it as a tensor."""
    if not isinstance(matrix, Tensor):
        matrix = torch.as_tensor(matrix)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be a square [K, K] matrix, got shape {tuple(matrix.shape)}")
    if num_classes is not None and matrix.shape[0] != num_classes:
        raise ValueError(
            f"{name} must be [{num_classes}, {num_classes}] for {num_classes} classes, "
            f"got {tuple(matrix.shape)}"
        )
    m = matrix.detach().to(torch.float64)
    if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
        raise ValueError(f"{name} must hold finite, non-negative probabilities")
    worst = float((m.sum(dim=1) - 1.0).abs().max())
    if worst > 1e-5:
        raise ValueError(
            f"{name} must be row-stochastic (each row T[true, :] sums to 1); a row is off by {worst:.3g}"
        )
    return matrix


def forward_corrected_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    transition_matrix: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    all_ignored: AllIgnored = "nan",
    z_loss: float = 0.0,
) -> Tensor:
    """Forward-corrected cross-entropy (Patrini et al. 2017): ``-log (p T)_y``.

    The model's clean-label prediction ``p`` is pushed through the noise process,
    ``P(noisy = j | x) = sum_i p_i T[i, j]``, and scored against the (noisy) label. ``T`` is
    row-stochastic, ``T[i, j] = P(noisy = j | true = i)`` (smoothflip's convention everywhere;
    :func:`smoothflip.noise.from_cleanlab` converts cleanlab's column-stochastic matrices).
    Probabilities below the dtype's smallest normal number are clamped to it before the log. With
    ``T = I`` it is plain cross-entropy. Weighting and reduction: see
    the module docstring.

    Args:
        logits: ``[N, C]``, ``[N, C, d1, ...]`` or ``[C]``.
        target: noisy class indices (int) or probabilities with the logits' shape (float).
        transition_matrix: ``[C, C]`` row-stochastic.
        weight, ignore_index, reduction, all_ignored, z_loss: as in
            :func:`~smoothflip.losses.smoothed_cross_entropy`.

    Returns:
        A scalar, or ``[N, d1, ...]`` for ``reduction="none"``.

    Example:
        >>> import torch
        >>> T = torch.tensor([[0.8, 0.2], [0.0, 1.0]])
        >>> logits, target = torch.randn(3, 2), torch.tensor([0, 1, 1])
        >>> forward_corrected_cross_entropy(logits, target, transition_matrix=T).dim()
        0
    """
    check_common(reduction, all_ignored)
    z_loss = check_z_loss(z_loss)
    flat = flatten(logits, target, ignore_index=ignore_index)
    matrix = check_transition_matrix(transition_matrix, flat.num_classes)
    weight = check_class_vector("weight", weight, flat.num_classes, flat.logits)
    matrix = matrix.to(device=flat.logits.device, dtype=flat.logits.dtype)
    noisy_probs = flat.log_probs.exp() @ matrix  # [M, C]: P(noisy = j | x)
    noisy_log_probs = torch.log(noisy_probs.clamp(min=torch.finfo(noisy_probs.dtype).tiny))
    if flat.soft is None:
        loss = -flat.gather(noisy_log_probs)
    else:
        loss = -(flat.soft * noisy_log_probs).sum(dim=1)
    result = weighted_reduce(loss, flat, weight, reduction=reduction, all_ignored=all_ignored)
    return add_z_loss(result, flat, z_loss, reduction=reduction, all_ignored=all_ignored)


class ForwardCorrectedCrossEntropy(_RobustLoss):
    """Module twin of :func:`forward_corrected_cross_entropy` (the matrix is a buffer).

    Example:
        >>> loss_fn = ForwardCorrectedCrossEntropy(torch.eye(3))
        >>> loss_fn(torch.randn(2, 3), torch.tensor([0, 2])).dim()
        0
    """

    def __init__(
        self,
        transition_matrix: Tensor,
        *,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        all_ignored: AllIgnored = "nan",
        z_loss: float = 0.0,
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            all_ignored=all_ignored,
            z_loss=z_loss,
        )
        self.register_buffer("transition_matrix", check_transition_matrix(torch.as_tensor(transition_matrix)))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return forward_corrected_cross_entropy(
            logits, target, transition_matrix=self.transition_matrix, **self._common_kwargs()
        )
