"""Fully connected built-ins: ``mlp`` (hidden layers of one activation) and ``logistic`` regression.

Both flatten the input, so they take any ``input_shape``. See :func:`smoothflip.models.build_model`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from smoothflip._validation import check_choice
from smoothflip.models.classifier import _int_list, _numel

__all__ = ["ACTIVATIONS", "MLP_DEFAULTS"]

#: Activations the ``mlp`` accepts.
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "tanh")

#: ``mlp`` options and their defaults, in documentation order.
MLP_DEFAULTS: dict[str, Any] = {"hidden": [100, 100], "activation": "relu"}


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[name]()


def _check_mlp(opts: dict[str, Any]) -> dict[str, Any]:
    opts["hidden"] = _int_list("hidden", opts["hidden"], low=1, allow_empty=True)
    opts["activation"] = check_choice("model.activation", opts["activation"], ACTIVATIONS)
    return opts


def _build_mlp(shape: tuple[int, ...], *, hidden: list[int], activation: str) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = [nn.Flatten(start_dim=1)]
    width = _numel(shape)
    for h in hidden:
        layers += [nn.Linear(width, h), _activation(activation)]
        width = h
    return nn.Sequential(*layers), width


def _build_logistic(shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    return nn.Sequential(nn.Flatten(start_dim=1)), _numel(shape)
