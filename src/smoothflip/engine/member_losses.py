"""The losses of a pack's members: built once from the technique registry, chosen per epoch, grouped.

Every member of a pack trains with its arm's technique (after ``warmup_epochs`` of plain
cross-entropy). :class:`MemberLosses` builds each distinct loss once — members whose technique,
parameters and context agree share one module and one call per step; a technique that depends on
the member's own labels gets the member's context; a stateful technique (online label smoothing)
gets one module per member — and calls the stateful modules' ``end_epoch()`` after every epoch.
:func:`grouped_member_losses` evaluates the groups on a pack's batch and returns each member's mean
loss. The per-run reference trainers use the same class with one member, so both build the very
same modules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from smoothflip.study.grid import RunConfig
from smoothflip.study.ids import canonical_json
from smoothflip.techniques import LossContext, build_loss, get_technique

WARMUP = ("ce", {"z_loss": 0.0})
"""What an arm trains with during its ``warmup_epochs``: plain cross-entropy."""


@dataclass(frozen=True)
class LossGroup:
    """Members that train with one loss module this epoch.

    Attributes:
        members: ``[G]`` member indices (a long tensor on the pack's device).
        module: ``module(logits [M, K], target [M], **extra) -> [M]`` per-example losses.
        needs_teacher: the module takes ``teacher=`` logits ``[M, K]``.
    """

    members: Tensor
    module: nn.Module
    needs_teacher: bool = False


class MemberLosses:
    """Each member's loss module, per epoch.

    Args:
        runs: the pack's members, in order.
        shared: the context of losses that do not depend on the member (the number of classes, and
            for language models the unigram prior and the tokens that take no smoothing).
        member_context: ``member_context(m)`` the context of member ``m`` (its own label
            frequencies, realized noise matrix and a ``key`` naming it); called only for members
            whose technique needs it.
        device: where the modules live.
    """

    def __init__(
        self,
        runs: Sequence[RunConfig],
        shared: LossContext,
        member_context: Callable[[int], LossContext],
        device: torch.device,
    ) -> None:
        self.runs = list(runs)
        self.device = device
        self._modules: dict[tuple[Any, ...], tuple[nn.Module, bool]] = {}
        self._warmup_key = self._module_key(*WARMUP, shared)
        self._build(self._warmup_key, *WARMUP, shared)
        self._keys: list[tuple[Any, ...]] = []
        self.stateful: dict[int, nn.Module] = {}
        for m, run in enumerate(self.runs):
            technique = get_technique(run.arm.loss)
            params = dict(run.arm.params)
            if technique.stateful:
                key: tuple[Any, ...] = ("member", m)
                self._build(key, run.arm.loss, params, member_context(m))
                self.stateful[m] = self._modules[key][0]
            else:
                context = member_context(m) if technique.per_member(params) else shared
                key = self._module_key(run.arm.loss, params, context)
                self._build(key, run.arm.loss, params, context)
            self._keys.append(key)

    @staticmethod
    def _module_key(name: str, params: Mapping[str, Any], context: LossContext) -> tuple[Any, ...]:
        return (name, canonical_json(dict(params)), context.key)

    def _build(
        self, key: tuple[Any, ...], name: str, params: Mapping[str, Any], context: LossContext
    ) -> None:
        if key not in self._modules:
            module = build_loss(name, params, context).to(self.device)
            self._modules[key] = (module, get_technique(name).needs_teacher)

    def key(self, m: int, epoch: int) -> tuple[Any, ...]:
        """The module key member ``m`` trains with in ``epoch`` (1-based; warm-up first)."""
        return self._warmup_key if epoch <= self.runs[m].arm.warmup_epochs else self._keys[m]

    def module(self, m: int, epoch: int) -> tuple[nn.Module, bool]:
        """Member ``m``'s loss module in ``epoch`` and whether it needs the teacher's logits."""
        return self._modules[self.key(m, epoch)]

    def groups(self, epoch: int) -> list[LossGroup]:
        """Members grouped by the module they train with in ``epoch``, each group called once per step."""
        members: dict[tuple[Any, ...], list[int]] = {}
        for m in range(len(self.runs)):
            members.setdefault(self.key(m, epoch), []).append(m)
        out = []
        for key, ms in members.items():
            module, needs_teacher = self._modules[key]
            out.append(LossGroup(torch.tensor(ms, device=self.device), module, needs_teacher))
        return out

    def end_epoch(self, epoch: int) -> None:
        """Call the epoch hook of every stateful loss that trained this epoch (not in warm-up)."""
        for m, module in self.stateful.items():
            if epoch > self.runs[m].arm.warmup_epochs:
                module.end_epoch()

    def state_dict(self) -> dict[str, Any]:
        """The stateful losses' buffers by member (for a pack checkpoint)."""
        return {str(m): module.state_dict() for m, module in self.stateful.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for m, module in self.stateful.items():
            module.load_state_dict(state[str(m)])


def grouped_member_losses(
    logits: Tensor, target: Tensor, groups: Sequence[LossGroup], teacher: Tensor | None = None
) -> Tensor:
    """``[P]`` mean loss of each member on its batch.

    Args:
        logits: ``[P, M, K]`` every member's logits on its ``M`` examples (positions).
        target: ``[P, M]`` class indices.
        groups: from :meth:`MemberLosses.groups`.
        teacher: ``[P, M, K]`` teacher logits (distilled students), or None.
    """
    k = logits.shape[-1]
    parts, order = [], []
    for group in groups:
        members = group.members
        extra = {"teacher": teacher[members].reshape(-1, k)} if group.needs_teacher else {}
        per_example = group.module(logits[members].reshape(-1, k), target[members].reshape(-1), **extra)
        parts.append(per_example.view(len(members), -1).mean(dim=1))
        order.append(members)
    return torch.cat(parts)[torch.argsort(torch.cat(order))]
