"""How long and how a study trains: the step schedule, the optimizer, the learning-rate schedule,
and what counts as divergence. Every trainer (packs and per-run references, every track) uses these,
so a pack and its reference take exactly the same steps."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

DIVERGENCE_LIMIT = 1e4
"""A member whose batch loss is non-finite, or whose |loss| or largest |logit| exceeds this, diverged."""

ProgressFn = Callable[[float], None]
"""Called with the fraction of a pack's (or run's) training done so far."""


@dataclass(frozen=True)
class Schedule:
    """``epochs`` epochs of ``batches`` batches, stopping at ``total_steps`` (``[train] steps``)."""

    epochs: int
    batches: int
    total_steps: int


def training_schedule(train: dict[str, Any], n_train: int) -> Schedule:
    """The schedule of ``[train]`` for ``n_train`` training examples (sequences for language models)."""
    batches = max(1, math.ceil(n_train / int(train["batch_size"])))
    if train.get("steps"):
        total = int(train["steps"])
        return Schedule(epochs=math.ceil(total / batches), batches=batches, total_steps=total)
    epochs = int(train["epochs"])
    return Schedule(epochs=epochs, batches=batches, total_steps=epochs * batches)


def make_optimizer(params: list[Tensor], train: dict[str, Any]) -> torch.optim.Optimizer:
    """The ``[train]`` optimizer over ``params`` (stacked pack parameters or one model's).

    Every optimizer uses PyTorch's multi-tensor (``foreach``) implementation: about 3x faster than
    the per-tensor loop for a pack's stacked parameters on the CPU, and still bitwise independent of
    the pack's other members (a member's numbers do not depend on which runs share its pack, so a
    grown study equals one run whole). The fused Adam kernel is faster again (``benchmarks/
    study_engine.py`` measures it) but rounds the last elements of a stacked tensor differently
    with the pack's size, which would tie a member's last bits to its pack mates. All act
    elementwise, so a member follows the trajectory it would follow alone (``tests/test_engine.py``
    holds pack and reference together).
    """
    name, lr, wd = train["optimizer"], float(train["lr"]), float(train["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, foreach=True)
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=float(train["momentum"]),
        nesterov=bool(train["nesterov"]),
        weight_decay=wd,
        foreach=True,
    )


def make_lr_schedule(optimizer: torch.optim.Optimizer, train: dict[str, Any], total_steps: int) -> Any:
    """``cosine``: the learning rate falls from ``lr`` to 0 over ``total_steps``; ``constant``: it stays."""
    if train["lr_schedule"] == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def diverged(loss: Tensor, max_abs_logit: Tensor) -> Tensor:
    """Elementwise: which losses mark a divergence (see :data:`DIVERGENCE_LIMIT`)."""
    return ~torch.isfinite(loss) | (loss.abs() > DIVERGENCE_LIMIT) | ~(max_abs_logit <= DIVERGENCE_LIMIT)
