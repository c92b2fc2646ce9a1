"""How many runs to train in one pack: as many as fit a memory budget, within a cap."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from smoothflip.engine.stacked import EVAL_CHUNK
from smoothflip.engine.stacked_layers import forward_once, im2col_elements, stacked_forward
from smoothflip.errors import SmoothflipError

MAX_PACK = {"cpu": 64, "cuda": 1024}
"""Upper bound on a pack's size per device type. On the CPU bigger packs gained nothing under ``vmap``
and could lose: the MNIST-1D CNN cost 1.18 ms per member-step in a pack of 45 and 1.55 ms in a pack of
90 (cache effects of the grouped convolution); the stacked layers run eight members at a time, so a
bigger pack only adds chunks. The plan cuts balanced packs (75 runs: 38 + 37); a kill costs at most
the work since the pack's last checkpoint, whatever its size."""

MEMORY_SHARE = 0.25
"""Fraction of the free memory a pack may plan to use."""

TRAIN_BYTES_PER_PARAMETER = 16
"""float32 weights, their gradients and Adam's two moments: what one member needs per parameter."""


def activation_elements(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Elements of every module output for one example (a proxy for activation memory)."""
    total = 0

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    forward_once(model, input_shape, [m for m in model.modules() if m is not model], hook)
    return max(total, 1)


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device`` (available RAM for the CPU)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 4 << 30


def member_bytes(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, device: torch.device | None = None
) -> int:
    """Planned bytes per pack member: parameters with gradients and Adam state, and activations (on
    the CPU with the stacked layers, also the im2col columns kept for the backward pass)."""
    params = sum(p.numel() for p in model.parameters())
    acts = activation_elements(model, input_shape)
    train = 3 * acts * batch_size  # forward outputs kept for backward, their gradients, slack
    if (device is None or device.type == "cpu") and stacked_forward(model) is not None:
        train += im2col_elements(model, input_shape) * batch_size
    evaluation = acts * EVAL_CHUNK
    return 4 * (4 * params + max(train, evaluation))


def auto_pack_size(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, device: torch.device
) -> int:
    """The largest pack that fits :data:`MEMORY_SHARE` of free memory, capped by :data:`MAX_PACK`."""
    budget = MEMORY_SHARE * free_memory(device)
    fit = int(budget // member_bytes(model, input_shape, batch_size, device))
    return max(1, min(MAX_PACK.get(device.type, MAX_PACK["cpu"]), fit))


def meta_parameter_count(build: Callable[[], nn.Module]) -> int | None:
    """Parameters of the model ``build()`` makes, counted on the ``meta`` device (nothing allocated).

    Returns None when the model cannot be built there (the caller then builds it for real).
    """
    try:
        with torch.device("meta"), torch.random.fork_rng(devices=[]):
            model = build()
    except Exception:
        return None
    return sum(p.numel() for p in model.parameters())


def check_fits(parameters: int, device: torch.device, *, what: str) -> None:
    """Refuse a model whose training state alone (:data:`TRAIN_BYTES_PER_PARAMETER` per parameter)
    exceeds the free memory of ``device`` (one line naming the parameter count and the limit)."""
    need = parameters * TRAIN_BYTES_PER_PARAMETER
    free = free_memory(device)
    if need > free:
        raise SmoothflipError(
            f"{what} has {parameters:,} parameters; training one needs about {_bytes(need)} "
            f"({TRAIN_BYTES_PER_PARAMETER} bytes per parameter) but {device.type} has {_bytes(free)} free "
            f"(at most {free // TRAIN_BYTES_PER_PARAMETER:,} parameters); make the model smaller"
        )


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover
