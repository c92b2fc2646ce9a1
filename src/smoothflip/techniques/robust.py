"""Noise-robust baselines: ``gce``, ``sce``, ``bootstrap`` and forward correction (``forward``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from smoothflip import losses
from smoothflip.techniques._registry import LossContext, Technique, register

CLASSIFIERS = frozenset({"classification"})
"""Robust losses are for label noise: classifiers only (a language model's next tokens are not noisy)."""


def _forward(params: Mapping[str, Any], context: LossContext) -> torch.nn.Module:
    matrix = context.transition_matrix
    if matrix is None:
        matrix = torch.eye(context.num_classes)
    return losses.ForwardCorrectedCrossEntropy(matrix, reduction="none")


register(
    Technique(
        name="gce",
        params={"q": 0.7},
        summary="generalized cross-entropy",
        build=lambda p, c: losses.GeneralizedCrossEntropy(p["q"], reduction="none"),
        family="robust",
        tasks=CLASSIFIERS,
        reference="Zhang and Sabuncu 2018",
        order=40,
    )
)
register(
    Technique(
        name="sce",
        params={"alpha": 0.1, "beta": 1.0, "clamp": 1e-4},
        summary="symmetric cross-entropy",
        build=lambda p, c: losses.SymmetricCrossEntropy(
            p["alpha"], p["beta"], clamp=p["clamp"], reduction="none"
        ),
        family="robust",
        tasks=CLASSIFIERS,
        reference="Wang et al. 2019",
        order=50,
    )
)
register(
    Technique(
        name="bootstrap",
        params={"mode": "soft", "beta": None},
        summary="bootstrapping: mix the label with the model's own prediction",
        build=lambda p, c: losses.BootstrappingLoss(p["mode"], p["beta"], reduction="none"),
        family="robust",
        tasks=CLASSIFIERS,
        reference="Reed et al. 2014",
        order=60,
    )
)
register(
    Technique(
        name="forward",
        params={},
        summary="forward-corrected cross-entropy with the run's realized (oracle) transition matrix",
        build=_forward,
        family="correction",
        tasks=CLASSIFIERS,
        reference="Patrini et al. 2017",
        per_member=lambda params: True,
        order=70,
    )
)
