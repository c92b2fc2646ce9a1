"""Cross-entropy and its smoothing-type variants: ``ce``, ``smoothed_ce``, ``confidence_penalty``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from smoothflip import losses
from smoothflip.techniques._registry import REQUIRED, LossContext, Technique, register


def _smoothing_prior(prior: Any, context: LossContext) -> Tensor | None:
    """The distribution smoothing mixes in: None (uniform), the labels' frequencies, or a given list.

    Classes in ``context.no_smoothing`` get no mass (a language model's special tokens).
    """
    mask = context.no_smoothing
    if prior == "uniform":
        if mask is None:
            return None
        u = (~mask.cpu()).to(torch.float64)
    elif prior == "train":
        if context.class_prior is None:
            u = torch.ones(context.num_classes, dtype=torch.float64)
        else:
            u = context.class_prior.detach().cpu().to(torch.float64)
    elif isinstance(prior, list | tuple):
        u = torch.as_tensor(prior, dtype=torch.float64)
        if u.dim() != 1 or u.shape[0] != context.num_classes:
            raise ValueError(
                f"prior has {u.shape[0] if u.dim() == 1 else tuple(u.shape)} entries; "
                f"the data has {context.num_classes} classes"
            )
    else:
        raise ValueError(f"prior must be 'uniform', 'train' or a list of class probabilities, got {prior!r}")
    if mask is not None:
        u = torch.where(mask.cpu(), torch.zeros_like(u), u)
    total = float(u.sum())
    if not total > 0:
        raise ValueError("prior gives no mass to any class that may receive smoothing")
    return u / total


def _check_prior_length(params: Mapping[str, Any], num_classes: int) -> None:
    prior = params.get("prior")
    if isinstance(prior, list | tuple) and len(prior) != num_classes:
        raise ValueError(f"prior has {len(prior)} entries; the data has {num_classes} classes")


def _build_ce(params: Mapping[str, Any], context: LossContext) -> torch.nn.Module:
    return losses.SmoothedCrossEntropy(0.0, z_loss=params["z_loss"], reduction="none")


def _build_smoothed(params: Mapping[str, Any], context: LossContext) -> torch.nn.Module:
    if params["convention"] != "uniform" and (
        params["prior"] != "uniform" or context.no_smoothing is not None
    ):
        raise ValueError(
            f"convention {params['convention']!r} spreads eps over the wrong classes and cannot be combined "
            "with a prior or with classes that take no smoothing (a language model's special tokens); "
            "use convention 'uniform'"
        )
    prior = _smoothing_prior(params["prior"], context) if params["eps"] != 0.0 else None
    return losses.SmoothedCrossEntropy(
        params["eps"], convention=params["convention"], prior=prior, z_loss=params["z_loss"], reduction="none"
    )


def _build_confidence_penalty(params: Mapping[str, Any], context: LossContext) -> torch.nn.Module:
    return losses.ConfidencePenaltyLoss(
        params["beta"], hinge=params["hinge"], z_loss=params["z_loss"], reduction="none"
    )


def _ce_terms(params: Mapping[str, Any], context: LossContext) -> tuple[float, float, float]:
    return 0.0, 0.0, float(params["z_loss"])


def _smoothed_terms(params: Mapping[str, Any], context: LossContext) -> tuple[float, float, float] | None:
    uniform = params["convention"] == "uniform" and params["prior"] == "uniform"
    if params["eps"] != 0.0 and (not uniform or context.no_smoothing is not None):
        return None  # another smoothing distribution than the uniform one over every class
    return float(params["eps"]), 0.0, float(params["z_loss"])


def _penalty_terms(params: Mapping[str, Any], context: LossContext) -> tuple[float, float, float] | None:
    if params["hinge"] is not None:
        return None
    return 0.0, float(params["beta"]), float(params["z_loss"])


register(
    Technique(
        name="ce",
        params={"z_loss": 0.0},
        summary="plain cross-entropy (the usual baseline); z_loss adds the PaLM z-loss term",
        build=_build_ce,
        family="baseline",
        order=0,
        ce_terms=_ce_terms,
    )
)
register(
    Technique(
        name="smoothed_ce",
        params={"eps": 0.1, "convention": "uniform", "prior": "uniform", "z_loss": 0.0},
        summary="label smoothing; eps < 0 is negative smoothing; prior='train' smooths toward the label "
        "frequencies of the (noisy) training labels, or give a list of class probabilities",
        build=_build_smoothed,
        family="smoothing",
        reference="Szegedy et al. 2016; Müller et al. 2019; negative: Wei et al. 2022",
        per_member=lambda params: params.get("prior") == "train",
        check=_check_prior_length,
        order=10,
        ce_terms=_smoothed_terms,
    )
)
register(
    Technique(
        name="confidence_penalty",
        params={"beta": REQUIRED, "hinge": None, "z_loss": 0.0},
        summary="cross-entropy minus beta times the prediction's entropy (hinged below an entropy hinge)",
        build=_build_confidence_penalty,
        family="smoothing",
        reference="Pereyra et al. 2017",
        order=20,
        ce_terms=_penalty_terms,
    )
)
