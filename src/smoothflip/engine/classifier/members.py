"""A classifier run's model: a built-in model or the user's factory, seeded by the run's ``init`` seed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from smoothflip.data import Dataset
from smoothflip.models import build_from_factory, build_model, load_factory
from smoothflip.study.grid import RunConfig


def build_classifier(model_cfg: Mapping[str, Any], dataset: Dataset, *, base_dir: str = ".") -> nn.Module:
    """The model a ``[model]`` table describes, for ``dataset``'s input shape and classes."""
    if model_cfg.get("factory"):
        factory = load_factory(model_cfg["factory"], base_dir=base_dir)
        return build_from_factory(
            factory,
            input_shape=dataset.input_shape,
            num_classes=dataset.num_classes,
            options=model_cfg.get("options", {}),
        )
    return build_model(
        model_cfg["name"],
        input_shape=dataset.input_shape,
        num_classes=dataset.num_classes,
        options=model_cfg.get("options", {}),
    )


def build_member(run: RunConfig, dataset: Dataset, *, base_dir: str = ".") -> nn.Module:
    """The run's model, initialized from its ``init`` seed without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed_for("init"))
        return build_classifier(run.shared["model"], dataset, base_dir=base_dir)
