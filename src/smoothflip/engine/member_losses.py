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
    """Members that train with one loss module this epoch, or (``terms``) the members of the fused
    cross-entropy family, whose losses one call computes with per-member parameters.

    Attributes:
        members: ``[G]`` member indices (a long tensor on the pack's device).
        module: ``module(logits [M, K], target [M], **extra) -> [M]`` per-example losses (None for
            the fused family).
        needs_teacher: the module takes ``teacher=`` logits ``[M, K]``.
        terms: the fused family's ``[G, 3]`` per-member ``(eps, beta, z)`` (see
            :func:`ce_family_losses`); None for a module group.
        all_members: the group holds every member of the pack, in order (no gather needed).
        uses: whether any member of the fused group has a nonzero ``eps``, ``beta``, ``z`` (known
            when the group is made, so the step never asks the device).
    """

    members: Tensor
    module: nn.Module | None
    needs_teacher: bool = False
    terms: Tensor | None = None
    all_members: bool = False
    uses: tuple[bool, bool, bool] = (True, True, True)


FUSE_MIN_LOSSES = 1
"""The fused family is used when at least this many distinct losses of a pack's epoch belong to it.
One: a member's loss is then computed the same way whichever pack it trains in (its mates' arms
decide nothing), so a member's results do not depend on its pack mates, bitwise."""


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
        self._terms: dict[tuple[Any, ...], tuple[float, float, float]] = {}
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
            technique = get_technique(name)
            module = build_loss(name, params, context).to(self.device)
            self._modules[key] = (module, technique.needs_teacher)
            resolved = technique.resolve(params)
            terms = technique.ce_terms(resolved, context) if technique.ce_terms is not None else None
            if terms is not None and not technique.stateful:
                self._terms[key] = terms

    def key(self, m: int, epoch: int) -> tuple[Any, ...]:
        """The module key member ``m`` trains with in ``epoch`` (1-based; warm-up first)."""
        return self._warmup_key if epoch <= self.runs[m].arm.warmup_epochs else self._keys[m]

    def module(self, m: int, epoch: int) -> tuple[nn.Module, bool]:
        """Member ``m``'s loss module in ``epoch`` and whether it needs the teacher's logits."""
        return self._modules[self.key(m, epoch)]

    def groups(self, epoch: int, *, fuse: bool = True) -> list[LossGroup]:
        """Members grouped by the module they train with in ``epoch``, each group called once per
        step; with ``fuse``, the members of the cross-entropy family form one fused group when they
        use at least :data:`FUSE_MIN_LOSSES` distinct losses."""
        members: dict[tuple[Any, ...], list[int]] = {}
        for m in range(len(self.runs)):
            members.setdefault(self.key(m, epoch), []).append(m)
        family = [key for key in members if key in self._terms]
        out = []
        if fuse and len(family) >= FUSE_MIN_LOSSES:
            ms = sorted(m for key in family for m in members.pop(key))
            rows = [self._terms[self.key(m, epoch)] for m in ms]
            out.append(
                LossGroup(
                    torch.tensor(ms, device=self.device),
                    None,
                    terms=torch.tensor(rows, dtype=torch.float32, device=self.device),
                    all_members=ms == list(range(len(self.runs))),
                    uses=tuple(any(row[i] != 0.0 for row in rows) for i in range(3)),  # type: ignore[arg-type]
                )
            )
        for key, ms in members.items():
            module, needs_teacher = self._modules[key]
            group = LossGroup(torch.tensor(ms, device=self.device), module, needs_teacher)
            out.append(group)
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
    if len(groups) == 1 and groups[0].terms is not None and groups[0].all_members:
        return ce_family_losses(logits, target, groups[0].terms, uses=groups[0].uses)
    parts, order = [], []
    for group in groups:
        members = group.members
        if group.terms is not None:
            parts.append(ce_family_losses(logits[members], target[members], group.terms, uses=group.uses))
            order.append(members)
            continue
        extra = {"teacher": teacher[members].reshape(-1, k)} if group.needs_teacher else {}
        per_example = group.module(logits[members].reshape(-1, k), target[members].reshape(-1), **extra)
        parts.append(per_example.view(len(members), -1).mean(dim=1))
        order.append(members)
    return torch.cat(parts)[torch.argsort(torch.cat(order))]


def ce_family_losses(
    logits: Tensor, target: Tensor, terms: Tensor, *, uses: tuple[bool, bool, bool] = (True, True, True)
) -> Tensor:
    """``[G]`` mean losses of members of the cross-entropy family, in one call.

    Member ``g``'s per-example loss is ``(1 - eps_g) * CE + eps_g * mean_k(-log p_k) - beta_g * H(p)
    + z_g * logsumexp(logits)^2``: plain cross-entropy (``eps = beta = 0``), uniform label smoothing
    (``eps``; negative for negative smoothing), the confidence penalty (``beta``) and the z-loss
    (``z``), the formulas of :func:`smoothflip.losses.smoothed_cross_entropy` and
    :func:`smoothflip.losses.confidence_penalty_loss`, with per-member parameters as tensors.

    Args:
        logits: ``[G, M, K]``; half precision is computed in float32.
        target: ``[G, M]`` class indices.
        terms: ``[G, 3]`` per-member ``(eps, beta, z)``.
        uses: which of the three terms any member uses (the others are skipped; a term skipped
            while a member uses it would be wrong, so pass it as known, not as a guess).
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # [G, M]
    eps, beta, z = (terms[:, i : i + 1].to(logp.dtype) for i in range(3))
    # plain products and sums (no fused multiply-add): the same bits on every element of the pack
    loss = nll
    if uses[0]:
        loss = loss + eps * (-logp.mean(dim=-1) - nll)  # (1 - eps) nll + eps * uniform
    if uses[1]:
        loss = loss - beta * (-(logp.exp() * logp).sum(dim=-1))
    if uses[2]:
        loss = loss + z * torch.logsumexp(logits, dim=-1).square()
    return loss.mean(dim=1)
