"""``resnet``: the CIFAR ResNet of He et al. 2016 (§4.2), with batch norm.

The architecture (``depth = 6n + 2`` weighted layers):

- a 3x3 stem convolution to ``width`` channels, batch norm, ReLU;
- three stages of ``n`` basic blocks with ``width``, ``2·width`` and ``4·width`` channels; the
  first block of the second and third stage halves the height and width (stride 2);
- a basic block is ``conv3x3 → BN → ReLU → conv3x3 → BN``, added to its shortcut, then ReLU; the
  shortcut is the identity, or a projection (1x1 convolution with the block's stride + BN) where
  the number of channels or the resolution changes (the paper's option B);
- global average pooling gives the features ``[B, 4·width]`` (the ``body`` ends here) and the
  linear ``head`` maps them to logits.

Convolutions have no bias (each is followed by batch norm) and are initialized as in the paper
(He et al. 2015, ``kaiming_normal_``, fan-out, from torch's global RNG); batch norm starts at
weight 1, bias 0; the head keeps PyTorch's default initialization.

Parameters with 10 classes, width 16, any input size (they do not depend on it), 3 input
channels: ResNet-8 78,042, ResNet-14 175,258, ResNet-20 272,474 (the paper's 0.27M counts
option-A identity shortcuts, 269,722, i.e. without the two projections' 2,752).

**Batch norm under torch.func.** In train mode each batch norm normalizes with the statistics of
the batch it sees and updates its running mean / variance and ``num_batches_tracked`` in place; in
eval mode it uses the running statistics. Stack the members' buffers with
:func:`torch.func.stack_module_state` and pass them to :func:`torch.func.functional_call` with
``in_dims=0`` under :func:`torch.vmap`: each member then normalizes with its own batch's
statistics and updates its own slice of the stacked buffers, exactly as if it ran alone. The
model's output for one example depends on the rest of its batch in train mode — switch the base
module to ``eval()`` before evaluating.

Example:
    >>> import torch
    >>> from smoothflip.models import build_model, count_parameters
    >>> _ = torch.manual_seed(0)
    >>> net = build_model("resnet", input_shape=(3, 16, 16), num_classes=10, options={"depth": 8})
    >>> count_parameters(net), net(torch.zeros(4, 3, 16, 16)).shape, net.feature_dim
    (78042, torch.Size([4, 10]), 64)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from smoothflip._validation import check_int
from smoothflip.models.classifier import _image_layout

__all__ = ["RESNET_DEFAULTS", "BasicBlock", "ResNetBody", "resnet_blocks"]

#: ``resnet`` options and their defaults, in documentation order.
RESNET_DEFAULTS: dict[str, Any] = {"depth": 8, "width": 16}


def resnet_blocks(depth: int) -> int:
    """Basic blocks per stage, ``n``, of a CIFAR ResNet of ``depth = 6n + 2`` layers.

    Raises:
        ValueError: ``depth`` is not ``6n + 2`` with ``n >= 1``; the message names ``model.depth``.

    Example:
        >>> resnet_blocks(8), resnet_blocks(20), resnet_blocks(110)
        (1, 3, 18)
    """
    depth = check_int("model.depth", depth)
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"model.depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}"
        )
    return (depth - 2) // 6


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, ``[B, C_in, H, W] -> [B, C_out, H', W']``.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        stride: of the first convolution (and of the projection shortcut); ``H' = ceil(H / stride)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetBody(nn.Module):
    """Stem, three stages and global average pooling: ``[B, C, H, W]`` (or ``[B, H, W]``) ``-> [B, 4w]``.

    Args:
        in_channels: ``C`` of the input (1 for ``[B, H, W]`` input).
        blocks: ``n``, basic blocks per stage.
        width: ``w``, channels of the first stage.
        add_channel: the input is ``[B, H, W]``; a channel dimension is added in ``forward``.
    """

    def __init__(self, in_channels: int, *, blocks: int, width: int, add_channel: bool = False) -> None:
        super().__init__()
        self.add_channel = add_channel
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages: list[nn.Module] = []
        channels = width
        for i in range(3):
            out = width * 2**i
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(channels, out, stride=stride)]
            layers += [BasicBlock(out, out) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.out_channels = channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.add_channel:
            x = x.unsqueeze(1)  # [B, H, W] -> [B, 1, H, W]
        x = self.stages(self.stem(x))
        return x.mean(dim=(2, 3))  # global average pooling -> [B, 4w]


def _check_resnet(opts: dict[str, Any]) -> dict[str, Any]:
    resnet_blocks(opts["depth"])
    opts["depth"] = int(opts["depth"])
    opts["width"] = check_int("model.width", opts["width"], low=1)
    return opts


def _build_resnet(shape: tuple[int, ...], *, depth: int, width: int) -> tuple[nn.Module, int]:
    channels, _, _ = _image_layout("resnet", shape)
    body = ResNetBody(channels, blocks=resnet_blocks(depth), width=width, add_channel=len(shape) == 2)
    return body, body.out_channels
