"""The table of built-in models: each name's options, their check and the builder of its body.

Adding a model is one entry in :data:`_REGISTRY`; the study file (``[model] name = ...``), the
option checks and :func:`build_model` read the entry.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from smoothflip._validation import check_int
from smoothflip.models.classifier import Classifier, _check_input_shape
from smoothflip.models.cnn import (
    CNN1D_DEFAULTS,
    CNN2D_DEFAULTS,
    _build_cnn1d,
    _build_cnn2d,
    _check_cnn1d,
    _check_cnn2d,
)
from smoothflip.models.mlp import MLP_DEFAULTS, _build_logistic, _build_mlp, _check_mlp
from smoothflip.models.resnet import RESNET_DEFAULTS, _build_resnet, _check_resnet

__all__ = ["MODELS", "build_model", "model_options"]


@dataclass(frozen=True)
class _Entry:
    """One built-in model.

    Attributes:
        defaults: ``{option: default}``, the model's complete set of options in documentation order.
        check: validates and normalizes a complete option dict (messages name ``model.<option>``).
        build: ``build(input_shape, **options) -> (body, feature_dim)``.
    """

    defaults: Mapping[str, Any]
    check: Callable[[dict[str, Any]], dict[str, Any]] | None
    build: Callable[..., tuple[nn.Module, int]]


_REGISTRY: dict[str, _Entry] = {
    "mlp": _Entry(MLP_DEFAULTS, _check_mlp, _build_mlp),
    "cnn1d": _Entry(CNN1D_DEFAULTS, _check_cnn1d, _build_cnn1d),
    "cnn2d": _Entry(CNN2D_DEFAULTS, _check_cnn2d, _build_cnn2d),
    "logistic": _Entry({}, None, _build_logistic),
    "resnet": _Entry(RESNET_DEFAULTS, _check_resnet, _build_resnet),
}

#: Names of the built-in models, in the order the docs list them.
MODELS: tuple[str, ...] = tuple(_REGISTRY)

# Defaults and builders per model (views of the registry, kept for callers of the old module).
_DEFAULTS: dict[str, Mapping[str, Any]] = {name: entry.defaults for name, entry in _REGISTRY.items()}
_BUILDERS: dict[str, Callable[..., tuple[nn.Module, int]]] = {
    name: entry.build for name, entry in _REGISTRY.items()
}

_FACTORY_HINT = (
    "a custom model is given as a factory reference 'package.module:function' or 'path/to/file.py:function'"
)


def model_options(name: str) -> dict[str, Any]:
    """The options a built-in model accepts, with their defaults (a fresh copy).

    Args:
        name: one of :data:`MODELS`.

    Returns:
        ``{option: default}``; the empty dict for ``logistic``.

    Example:
        >>> model_options("mlp")
        {'hidden': [100, 100], 'activation': 'relu'}
        >>> model_options("resnet")
        {'depth': 8, 'width': 16}
    """
    return copy.deepcopy(dict(_REGISTRY[_check_name(name)].defaults))


def build_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    options: Mapping[str, Any] | None = None,
) -> Classifier:
    """Build a built-in classifier, initialized from torch's global RNG.

    Options (all optional; see :func:`model_options` for the defaults):

    - ``mlp``: ``hidden`` — list of hidden widths (``[100, 100]``; the empty list gives a linear
      model, the same as ``logistic``); ``activation`` — ``"relu"`` | ``"gelu"`` | ``"tanh"``.
      The input is flattened; the features are the last hidden layer's activations.
    - ``cnn1d``: the MNIST-1D CNN (Greydanus & Kobak 2024): Conv1d layers with ``channels`` (25)
      channels each, kernel sizes ``kernel_sizes`` ([5, 3, 3]), ``strides`` ([2, 2, 2], or one
      int for all) and zero ``padding`` (1), each followed by ReLU; the features are the last
      feature map flattened (``25 × 5 = 125`` for a 40-long input).
    - ``cnn2d``: Conv2d layers with ``channels`` ([16, 32]) channels, ``kernel_size`` (3, odd,
      "same" padding), each followed by ReLU, then ``pool × pool`` max pooling (2; 1 turns it
      off), flatten, and a ``hidden`` (64) wide linear layer + ReLU whose output is the features.
    - ``logistic``: multinomial logistic regression; the body only flattens (the features are the
      input itself) and the head is ``Linear(d, K)``.
    - ``resnet``: the CIFAR ResNet of He et al. 2016 with batch norm
      (:mod:`smoothflip.models.resnet`): ``depth`` (8; must be ``6n + 2``: 8, 14, 20, 32, ...)
      layers, ``n`` basic blocks in each of three stages of ``width`` (16), ``2·width`` and
      ``4·width`` channels; the features are the globally average-pooled last feature map
      (``4·width``).

    Args:
        name: one of :data:`MODELS`.
        input_shape: one example's shape, without the batch dimension: ``(40,)`` for MNIST-1D,
            ``(8, 8)`` for digits, ``(d,)`` for tabular data. ``cnn1d`` takes ``(L,)`` or
            ``(C, L)``; ``cnn2d`` and ``resnet`` take ``(H, W)`` or ``(C, H, W)``; a missing
            channel dimension is added in ``forward``.
        num_classes: ``K >= 2``.
        options: the model's options, as named above; ``None`` means all defaults.

    Returns:
        A :class:`Classifier` mapping ``[B, *input_shape]`` to logits ``[B, K]``.

    Raises:
        ValueError: unknown ``name`` or option, an option value out of range (the message names
            ``model.<option>``), or an ``input_shape`` the model cannot take.
        TypeError: an option or argument of the wrong type.

    Example:
        >>> import torch
        >>> from smoothflip.models import count_parameters
        >>> _ = torch.manual_seed(0)
        >>> net = build_model("mlp", input_shape=(8, 8), num_classes=10, options={"hidden": [32]})
        >>> net(torch.zeros(5, 8, 8)).shape, count_parameters(net)
        (torch.Size([5, 10]), 2410)
    """
    name = _check_name(name)
    shape = _check_input_shape(input_shape)
    num_classes = check_int("num_classes", num_classes, low=2)
    opts = _resolve_options(name, options)
    body, feature_dim = _REGISTRY[name].build(shape, **opts)
    return Classifier(body, nn.Linear(feature_dim, num_classes))


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or name not in _REGISTRY:
        allowed = ", ".join(repr(m) for m in MODELS)
        raise ValueError(f"model name must be one of {allowed}, got {name!r}; {_FACTORY_HINT}")
    return name


def _resolve_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    entry = _REGISTRY[name]
    defaults = entry.defaults
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TypeError(f"model options must be a mapping, got {type(options).__name__}")
    for key in options:
        if key not in defaults:
            allowed = ", ".join(defaults) if defaults else "(none)"
            raise ValueError(f"model.{key}: unknown option for {name!r}; allowed: {allowed}")
    opts = {**copy.deepcopy(dict(defaults)), **options}
    return entry.check(opts) if entry.check is not None else opts
