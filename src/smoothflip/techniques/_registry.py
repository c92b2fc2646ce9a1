"""The technique registry: what a study arm may name, and how the engines build it.

A :class:`Technique` is one entry: its name (``loss = "..."`` in a study file), its parameters
with their defaults, a one-line summary, how to build the per-example loss, the tasks it works
on (classification, language modelling), its family (the report groups smoothing-type arms by
it), and whether it keeps state across epochs. The spec validates arms against the entry; the
engines, the report and ``smoothflip techniques`` read it; nothing else knows a technique by name.

Adding a technique is a loss in :mod:`smoothflip.losses` plus one :func:`register` call in a module
of this package (every module here is imported when the package is).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()
"""Marks a parameter without a default (the study file must give it)."""

FAMILIES = ("baseline", "smoothing", "robust", "correction", "distillation")
"""Families of techniques; ``"smoothing"`` arms are the ones the report compares as smoothing-type."""

TASKS = frozenset({"classification", "language"})
"""What a study predicts: a class per example, or the next token (each study kind names its task in
:mod:`smoothflip.study.kinds`). A technique lists the tasks it applies to."""

ARM_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {"disturb_alpha": 0.0, "flip_rate": 0.0, "warmup_epochs": 0}
)
"""Options every arm takes besides its technique's parameters (training-time flipping, CE warm-up)."""


@dataclass(frozen=True)
class LossContext:
    """What a loss may need to know about the run (or the study) it trains.

    Attributes:
        num_classes: ``K`` (the vocabulary size for language models).
        class_prior: ``[K]`` distribution of the labels trained on (``prior = "train"``): the
            (noisy) training labels' frequencies for classifiers, the add-one-smoothed unigram
            distribution of the training tokens for language models; None when unknown.
        transition_matrix: ``[K, K]`` realized row-stochastic noise matrix of the labels trained
            on (forward correction), or None.
        no_smoothing: ``[K]`` bool mask of classes that never receive smoothing mass (a language
            model's special tokens), or None.
        key: identifies the context for sharing: losses built from equal keys are interchangeable.
    """

    num_classes: int
    class_prior: Tensor | None = None
    transition_matrix: Tensor | None = None
    no_smoothing: Tensor | None = None
    key: str = ""


CETerms = Callable[[Mapping[str, Any], LossContext], tuple[float, float, float] | None]
"""``ce_terms(params, context) -> (eps, beta, z)`` or None (see :attr:`Technique.ce_terms`)."""

LossBuilder = Callable[[Mapping[str, Any], LossContext], nn.Module]
"""``build(params, context) -> module``; ``module(logits [B, K], target [B], **extra) -> [B]``."""


@dataclass(frozen=True)
class Technique:
    """One technique a study arm may use.

    Attributes:
        name: what study files write (``loss = "smoothed_ce"``).
        params: parameter names and defaults (:data:`REQUIRED` when there is none), in file order.
        summary: one line for the docs and ``smoothflip techniques``.
        build: makes the per-example loss module from the parameters and a :class:`LossContext`.
        family: one of :data:`FAMILIES`.
        tasks: the tasks it applies to (:data:`TASKS`): arms of a study kind whose task is among them
            may use it.
        reference: the paper, for the docs.
        needs_teacher: the module takes ``teacher=`` logits ``[B, K]`` (distillation).
        in_arms: may be named in ``[[arms]]`` (False for techniques a study kind generates itself).
        per_member: ``per_member(params)`` is True when the loss depends on the member's own labels
            (its prior or its realized noise), so every member gets a loss built from its own context.
        stateful: the module keeps state across epochs: every member gets its own instance, the
            engines call its ``end_epoch()`` after every training epoch, and its buffers are part of
            a pack's checkpoint.
        check: extra validation ``check(params, num_classes)`` (raises ``ValueError``).
        order: position in listings.
        ce_terms: for a loss that equals, per example, ``(1 - eps) * CE + eps * mean_k(-log p_k)
            - beta * H(p) + z * logsumexp(logits)^2`` with these parameters in this context:
            ``ce_terms(params, context) -> (eps, beta, z)``, else None. Packs then compute all such
            members' losses in one fused call (:func:`smoothflip.engine.member_losses.ce_family_losses`)
            instead of one call per distinct loss.
    """

    name: str
    params: Mapping[str, Any]
    summary: str
    build: LossBuilder
    family: str
    tasks: frozenset[str] = TASKS
    reference: str = ""
    needs_teacher: bool = False
    in_arms: bool = True
    per_member: Callable[[Mapping[str, Any]], bool] = field(default=lambda params: False, repr=False)
    stateful: bool = False
    check: Callable[[Mapping[str, Any], int], None] | None = field(default=None, repr=False)
    order: int = 100
    ce_terms: CETerms | None = field(default=None, repr=False)

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in; unknown or missing parameters refused (``ValueError`` naming them)."""
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            allowed = ", ".join(self.params) or "none"
            raise ValueError(f"unknown parameter {unknown[0]!r} for loss {self.name!r}; allowed: {allowed}")
        missing = [k for k, v in self.params.items() if v is REQUIRED and k not in params]
        if missing:
            raise ValueError(f"loss {self.name!r} needs parameter {missing[0]!r}")
        return {**{k: v for k, v in self.params.items() if v is not REQUIRED}, **params}


_TECHNIQUES: dict[str, Technique] = {}


def register(technique: Technique) -> Technique:
    """Add a technique to the registry (its name must be new); returns it."""
    if technique.name in _TECHNIQUES:
        raise ValueError(f"a technique named {technique.name!r} is registered already")
    if technique.family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(map(repr, FAMILIES))}, got {technique.family!r}")
    _TECHNIQUES[technique.name] = technique
    return technique


def techniques() -> dict[str, Technique]:
    """Every registered technique by name, in listing order."""
    return {t.name: t for t in sorted(_TECHNIQUES.values(), key=lambda t: (t.order, t.name))}


def get_technique(name: str) -> Technique:
    """The technique called ``name``.

    Raises:
        ValueError: no such technique (the message lists the known ones).
    """
    if name not in _TECHNIQUES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, techniques()))}, got {name!r}")
    return _TECHNIQUES[name]


def build_loss(name: str, params: Mapping[str, Any], context: LossContext) -> nn.Module:
    """The per-example loss module of technique ``name`` with ``params`` in ``context``.

    Raises:
        ValueError: unknown technique or parameter, or a bad parameter value (the message names it).
    """
    technique = get_technique(name)
    resolved = technique.resolve(params)
    if technique.check is not None:
        technique.check(resolved, context.num_classes)
    return technique.build(resolved, context)


def check_arm(name: str, params: Mapping[str, Any], num_classes: int = 10) -> None:
    """Validate a technique's parameters by building it once and running it on a tiny batch."""
    technique = get_technique(name)
    module = build_loss(name, params, LossContext(num_classes=num_classes))
    extra = {"teacher": torch.zeros(2, num_classes)} if technique.needs_teacher else {}
    with torch.no_grad():
        module.eval()  # a stateful loss must not record the dummy batch
        module(torch.zeros(2, num_classes), torch.zeros(2, dtype=torch.long), **extra)
