"""The techniques a study can compare: a loss with its parameters, plus training-time label flipping.

This registry is the single place that knows which loss names a study file may use, which
parameters each takes (with defaults), and how to build the per-example loss the engine trains
with. The spec validates arms against it; the engines build losses from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from smoothflip import losses

REQUIRED = object()
"""Marks a loss parameter without a default."""

LossFn = Callable[..., Tensor]
"""``loss_fn(logits [B, C], target [B]) -> [B]`` per-example losses (``teacher=[B, C]`` logits for
losses that need a teacher)."""


@dataclass(frozen=True)
class LossDef:
    """A loss a study arm may name.

    Attributes:
        name: the name used in study files (``loss = "smoothed_ce"``).
        params: allowed parameters and their defaults (``REQUIRED`` when there is none).
        summary: one line for docs and ``--help``.
    """

    name: str
    params: Mapping[str, Any]
    summary: str
    needs_teacher: bool = False


LOSSES: Mapping[str, LossDef] = MappingProxyType(
    {
        d.name: d
        for d in (
            LossDef("ce", {"z_loss": 0.0}, "plain cross-entropy (the usual baseline)"),
            LossDef(
                "smoothed_ce",
                {"eps": 0.1, "convention": "uniform", "prior": "uniform", "z_loss": 0.0},
                "label smoothing; eps < 0 is negative smoothing; prior='train' smooths toward the label "
                "frequencies of the (noisy) training labels",
            ),
            LossDef(
                "confidence_penalty",
                {"beta": REQUIRED, "hinge": None, "z_loss": 0.0},
                "cross-entropy minus beta times the prediction's entropy (Pereyra et al. 2017)",
            ),
            LossDef("gce", {"q": 0.7}, "generalized cross-entropy (Zhang and Sabuncu 2018)"),
            LossDef(
                "sce",
                {"alpha": 0.1, "beta": 1.0, "clamp": 1e-4},
                "symmetric cross-entropy (Wang et al. 2019)",
            ),
            LossDef("bootstrap", {"mode": "soft", "beta": None}, "bootstrapping (Reed et al. 2014)"),
            LossDef(
                "distill",
                {"temperature": 1.0, "alpha": 1.0},
                "distillation from a teacher's soft targets (Hinton et al. 2015); distillation studies only",
                needs_teacher=True,
            ),
            LossDef(
                "forward",
                {},
                "forward-corrected cross-entropy (Patrini et al. 2017) with the run's realized (oracle) "
                "transition matrix",
            ),
        )
    }
)

ARM_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {"disturb_alpha": 0.0, "flip_rate": 0.0, "warmup_epochs": 0}
)
"""Options every arm takes besides its loss parameters (training-time flipping and CE warm-up)."""


@dataclass(frozen=True)
class LossContext:
    """What a member-specific loss may need to know about its run.

    Attributes:
        num_classes: ``K``.
        train_labels: the (noisy) training labels ``[N]`` the member trains on.
        transition_matrix: ``[K, K]`` realized row-stochastic noise matrix of those labels.
    """

    num_classes: int
    train_labels: Tensor | None = None
    transition_matrix: Tensor | None = None


def is_member_specific(loss: str, params: Mapping[str, Any]) -> bool:
    """True when the loss depends on the member's own labels (so it cannot be shared by an arm)."""
    return loss == "forward" or (loss == "smoothed_ce" and params.get("prior") == "train")


def build_loss(loss: str, params: Mapping[str, Any], context: LossContext) -> LossFn:
    """Build the per-example loss ``fn(logits [B, C], target [B]) -> [B]`` for an arm.

    Raises:
        ValueError: unknown loss or bad parameter value (the message names the parameter).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
    p = {**{k: v for k, v in LOSSES[loss].params.items() if v is not REQUIRED}, **params}
    unknown = sorted(set(p) - set(LOSSES[loss].params))
    if unknown:
        allowed = ", ".join(LOSSES[loss].params) or "none"
        raise ValueError(f"unknown parameter {unknown[0]!r} for loss {loss!r}; allowed: {allowed}")
    missing = [k for k, v in LOSSES[loss].params.items() if v is REQUIRED and k not in params]
    if missing:
        raise ValueError(f"loss {loss!r} needs parameter {missing[0]!r}")
    if loss == "ce":
        module: torch.nn.Module = losses.SmoothedCrossEntropy(0.0, z_loss=p["z_loss"], reduction="none")
    elif loss == "smoothed_ce":
        prior = _prior(p["prior"], context)
        module = losses.SmoothedCrossEntropy(
            p["eps"], convention=p["convention"], prior=prior, z_loss=p["z_loss"], reduction="none"
        )
    elif loss == "confidence_penalty":
        module = losses.ConfidencePenaltyLoss(
            p["beta"], hinge=p["hinge"], z_loss=p["z_loss"], reduction="none"
        )
    elif loss == "gce":
        module = losses.GeneralizedCrossEntropy(p["q"], reduction="none")
    elif loss == "sce":
        module = losses.SymmetricCrossEntropy(p["alpha"], p["beta"], clamp=p["clamp"], reduction="none")
    elif loss == "bootstrap":
        module = losses.BootstrappingLoss(p["mode"], p["beta"], reduction="none")
    elif loss == "distill":
        module = _Distill(p["temperature"], p["alpha"])
    else:  # forward
        matrix = context.transition_matrix
        if matrix is None:
            matrix = torch.eye(context.num_classes)
        module = losses.ForwardCorrectedCrossEntropy(matrix, reduction="none")
    return module


class _Distill(torch.nn.Module):
    """Per-example :func:`~smoothflip.losses.distillation_loss` against the teacher's logits."""

    def __init__(self, temperature: float, alpha: float) -> None:
        super().__init__()
        self.loss = losses.DistillationLoss(temperature=temperature, alpha=alpha, reduction="none")

    def forward(self, logits: Tensor, target: Tensor, teacher: Tensor | None = None) -> Tensor:
        if teacher is None:
            raise ValueError("the distill loss needs the teacher's logits")
        return self.loss(logits, teacher, target)


def _prior(prior: Any, context: LossContext) -> Tensor | None:
    if prior == "uniform":
        return None
    if prior == "train":
        if context.train_labels is None:
            return torch.full((context.num_classes,), 1.0 / context.num_classes)
        counts = torch.bincount(context.train_labels.long().cpu(), minlength=context.num_classes).double()
        return counts / counts.sum()
    if isinstance(prior, list | tuple):
        return torch.as_tensor(prior, dtype=torch.float64)
    raise ValueError(f"prior must be 'uniform', 'train' or a list of class probabilities, got {prior!r}")


def check_arm(loss: str, params: Mapping[str, Any], num_classes: int = 10) -> None:
    """Validate an arm's loss and parameters by building it once on a dummy context."""
    fn = build_loss(loss, params, LossContext(num_classes=num_classes))
    extra = {"teacher": torch.zeros(2, num_classes)} if LOSSES[loss].needs_teacher else {}
    with torch.no_grad():
        fn(torch.zeros(2, num_classes), torch.zeros(2, dtype=torch.long), **extra)
