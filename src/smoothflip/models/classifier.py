"""The :class:`Classifier` every built-in model is (a ``body`` and a linear ``head``), and shared checks."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import torch
from torch import nn

from smoothflip._validation import check_int

__all__ = ["BodyHead", "Classifier", "count_parameters"]


class BodyHead(nn.Module):
    """A ``body`` module and a linear ``head`` (the base of :class:`Classifier` and ``lm.CausalLM``)."""

    def __init__(self, body: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        if not isinstance(body, nn.Module):
            raise TypeError(f"body must be an nn.Module, got {type(body).__name__}")
        if not isinstance(head, nn.Linear):
            raise TypeError(f"head must be an nn.Linear, got {type(head).__name__}")
        self.body = body
        self.head = head

    @property
    def feature_dim(self) -> int:
        """``F``, the width of the features the head reads."""
        return self.head.in_features


class Classifier(BodyHead):
    """A feature extractor followed by a linear head: ``forward(x) = head(body(x))``.

    Args:
        body: maps inputs ``[B, *input_shape]`` to penultimate features ``[B, F]``.
        head: ``nn.Linear(F, K)``, mapping features to logits ``[B, K]``.

    Shapes:
        - input: ``[B, *input_shape]`` (a batch dimension is required, even for one example);
        - :meth:`features`: ``[B, F]``;
        - output: ``[B, K]`` logits.

    Under :func:`torch.func.functional_call`, the body's parameters (and buffers, such as batch
    norm's running statistics) are the ones whose names start with ``"body."`` (strip the prefix to
    call ``body`` alone).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = Classifier(nn.Flatten(), nn.Linear(6, 3))
        >>> x = torch.zeros(4, 2, 3)
        >>> model(x).shape, model.features(x).shape, model.feature_dim, model.num_classes
        (torch.Size([4, 3]), torch.Size([4, 6]), 6, 3)
    """

    @property
    def num_classes(self) -> int:
        """``K``, the number of logits."""
        return self.head.out_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[B, F]`` of a batch ``[B, *input_shape]``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]`` of a batch ``[B, *input_shape]``."""
        return self.head(self.body(x))


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model`` (shared parameters counted once; buffers excluded).

    Example:
        >>> from torch import nn
        >>> count_parameters(nn.Linear(40, 10))
        410
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# checks shared by the registry, the architectures and the factories
# --------------------------------------------------------------------------------------------------


def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise TypeError(f"input_shape must be a tuple of positive ints, got {input_shape!r}")
    shape = tuple(input_shape)
    if not shape:
        raise ValueError("input_shape must have at least one dimension, got ()")
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, Integral) or s < 1:
            raise ValueError(f"input_shape must be a tuple of positive ints, got {input_shape!r}")
    return tuple(int(s) for s in shape)


def _int_list(key: str, value: Any, *, low: int, allow_empty: bool) -> list[int]:
    name = f"model.{key}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of integers, got {value!r}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return [check_int(f"{name}[{i}]", v, low=low) for i, v in enumerate(value)]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _image_layout(name: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(channels, height, width)`` of an image input ``(H, W)`` or ``(C, H, W)``, or a ValueError."""
    if len(shape) not in (2, 3):
        raise ValueError(
            f"input_shape {shape} does not fit model {name!r}: it needs (height, width) or "
            "(channels, height, width)"
        )
    channels, height, width = (1, *shape) if len(shape) == 2 else shape
    return channels, height, width
