"""Convolutional built-ins without normalization: ``cnn1d`` (the MNIST-1D CNN) and ``cnn2d``.

See :func:`smoothflip.models.build_model` for their options.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

from torch import nn

from smoothflip._validation import check_int
from smoothflip.models.classifier import _image_layout, _int_list

__all__ = ["CNN1D_DEFAULTS", "CNN2D_DEFAULTS"]

#: ``cnn1d`` options and their defaults, in documentation order.
CNN1D_DEFAULTS: dict[str, Any] = {
    "channels": 25,
    "kernel_sizes": [5, 3, 3],
    "strides": [2, 2, 2],
    "padding": 1,
}

#: ``cnn2d`` options and their defaults, in documentation order.
CNN2D_DEFAULTS: dict[str, Any] = {"channels": [16, 32], "kernel_size": 3, "pool": 2, "hidden": 64}


def _check_cnn1d(opts: dict[str, Any]) -> dict[str, Any]:
    opts["channels"] = check_int("model.channels", opts["channels"], low=1)
    kernels = _int_list("kernel_sizes", opts["kernel_sizes"], low=1, allow_empty=False)
    strides = opts["strides"]
    if isinstance(strides, Integral) and not isinstance(strides, bool):
        strides = [check_int("model.strides", strides, low=1)] * len(kernels)
    strides = _int_list("strides", strides, low=1, allow_empty=False)
    if len(strides) != len(kernels):
        raise ValueError(
            f"model.strides must be one int or a list as long as model.kernel_sizes "
            f"({len(kernels)}), got {len(strides)} values"
        )
    opts["kernel_sizes"], opts["strides"] = kernels, strides
    opts["padding"] = check_int("model.padding", opts["padding"], low=0)
    return opts


def _check_cnn2d(opts: dict[str, Any]) -> dict[str, Any]:
    opts["channels"] = _int_list("channels", opts["channels"], low=1, allow_empty=False)
    kernel = check_int("model.kernel_size", opts["kernel_size"], low=1)
    if kernel % 2 == 0:
        raise ValueError(f"model.kernel_size must be odd (for 'same' padding), got {kernel}")
    opts["kernel_size"] = kernel
    opts["pool"] = check_int("model.pool", opts["pool"], low=1)
    opts["hidden"] = check_int("model.hidden", opts["hidden"], low=1)
    return opts


def _build_cnn1d(
    shape: tuple[int, ...], *, channels: int, kernel_sizes: list[int], strides: list[int], padding: int
) -> tuple[nn.Module, int]:
    if len(shape) not in (1, 2):
        raise ValueError(
            f"input_shape {shape} does not fit model 'cnn1d': it needs (length,) or (channels, length)"
        )
    in_channels, length = (1, shape[0]) if len(shape) == 1 else shape
    layers: list[nn.Module] = []
    if len(shape) == 1:
        layers.append(nn.Unflatten(1, (1, length)))  # [B, L] -> [B, 1, L]
    for k, s in zip(kernel_sizes, strides, strict=True):
        out_length = (length + 2 * padding - k) // s + 1
        if length + 2 * padding < k or out_length < 1:
            raise ValueError(
                f"input_shape {shape} is too short for model 'cnn1d': a length-{length} feature map "
                f"cannot take kernel size {k} with padding {padding}"
            )
        layers += [nn.Conv1d(in_channels, channels, k, stride=s, padding=padding), nn.ReLU()]
        in_channels, length = channels, out_length
    layers.append(nn.Flatten(start_dim=1))
    return nn.Sequential(*layers), in_channels * length


def _build_cnn2d(
    shape: tuple[int, ...], *, channels: list[int], kernel_size: int, pool: int, hidden: int
) -> tuple[nn.Module, int]:
    in_channels, height, width = _image_layout("cnn2d", shape)
    if height < pool or width < pool:
        raise ValueError(
            f"input_shape {shape} is too small for model 'cnn2d': {pool}x{pool} pooling needs "
            f"height and width >= {pool}"
        )
    layers: list[nn.Module] = []
    if len(shape) == 2:
        layers.append(nn.Unflatten(1, (1, height)))  # [B, H, W] -> [B, 1, H, W]
    for c in channels:
        layers += [nn.Conv2d(in_channels, c, kernel_size, padding=kernel_size // 2), nn.ReLU()]
        in_channels = c
    if pool > 1:
        layers.append(nn.MaxPool2d(pool))
        height, width = height // pool, width // pool
    flat = in_channels * height * width
    layers += [nn.Flatten(start_dim=1), nn.Linear(flat, hidden), nn.ReLU()]
    return nn.Sequential(*layers), hidden
