"""A pack's convolutional models without ``vmap``: the CPU path of ``engine.stacked.Stacked``.

Under :func:`torch.vmap` a stacked ``Conv1d``/``Conv2d`` becomes one grouped convolution (a group
per member), which the CPU runs far below its matrix-product rate on the small models of a study,
and whose kernel, and with it every member's rounding, changes with the pack's size. Here each
supported layer has a stacked twin (the registry :data:`LAYERS`, keyed by the module's exact type:
a subclass may change ``forward``), and :func:`stacked_forward` composes them into the program of a
model built only from them (the built-in ``cnn1d``, ``cnn2d`` and ``resnet``, and user models made of
the same layers; else None, and the pack keeps ``vmap``):

- ``Conv1d``: im2col and batched matrix products (:func:`~smoothflip.engine.stacked_ops.conv`) on
  activations ``[P, C, L, B]``;
- ``Conv2d``: one grouped convolution per chunk of members (``[B, P·C, H, W]``; contiguous by
  default, see :data:`CHANNELS_LAST`); on the CPU's small images im2col moves 9x the activations
  through memory and loses;
- batch norm on the members' channels side by side (``F.batch_norm`` on ``[B, P·C, H, W]`` or
  ``[1, P·C, L·B]``: each member its own batch statistics and its own running statistics, updated
  in place), max pooling, linear layers as batched products, ReLU (in place where nothing else holds
  its input), the ResNet's blocks and global average pooling.

The members run :data:`CHUNK` at a time, a short last chunk filled with zero members where an
operation's rounding would depend on how many members it holds, so a member's numbers are bitwise the
same in any pack (``tests/test_stacked_layers.py``); a chunk's activations stay in the caches.
In evaluation the examples run :data:`EVAL_EXAMPLES` at a time.

Example:
    >>> import torch
    >>> from torch.func import stack_module_state
    >>> from smoothflip.models import build_model
    >>> models = [build_model("cnn1d", input_shape=(40,), num_classes=10) for _ in range(3)]
    >>> params, buffers = stack_module_state(models)
    >>> forward = stacked_forward(models[0])
    >>> forward(params, buffers, torch.zeros(3, 8, 40)).shape  # [P, B, K]
    torch.Size([3, 8, 10])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothflip.engine.stacked_ops import conv, linear
from smoothflip.models.classifier import Classifier
from smoothflip.models.resnet import BasicBlock, ResNetBody

__all__ = ["LAYERS", "Layer", "StackedForward", "forward_once", "im2col_elements", "stacked_forward"]

Params = Mapping[str, Tensor]


@dataclass
class Act:
    """A pack's activations in one of three layouts (``P`` members, ``B`` examples each):

    - ``"natural"``: ``[P, B, *F]`` (as ``vmap`` sees them; features ``[P, B, F]``);
    - ``"csb"``: ``[P, C, *S, B]``, channels first, the batch innermost (the im2col convolutions);
    - ``"bpc"``: ``[B, P·C, *S]``, the members' channels side by side (the grouped convolutions).
    """

    data: Tensor
    layout: str = "natural"
    members: int = 0
    fresh: bool = False
    """``data`` was made by the layer that returned it and nothing else holds it (an activation may
    then overwrite it in place)."""

    def __post_init__(self) -> None:
        if self.layout != "bpc":
            self.members = self.data.shape[0]

    def natural(self) -> Tensor:
        """``[P, B, *F]`` (a view where it can be)."""
        if self.layout == "csb":
            return self.data.movedim(-1, 1)
        if self.layout == "bpc":
            b, _, *rest = self.data.shape
            return self.data.view(b, self.members, -1, *rest).movedim(0, 1)
        return self.data

    def csb(self) -> Tensor:
        """``[P, C, *S, B]``, contiguous."""
        if self.layout == "csb":
            return self.data
        return self.natural().movedim(1, -1).contiguous()

    def bpc(self) -> Tensor:
        """``[B, P·C, *S]``, contiguous."""
        if self.layout == "bpc":
            return self.data
        x = self.natural()  # [P, B, C, *S]
        return x.movedim(0, 1).reshape(x.shape[1], -1, *x.shape[3:])

    def like(self, data: Tensor, *, fresh: bool = False) -> Act:
        """Other data in this layout."""
        return Act(data, self.layout, self.members, fresh)


# --------------------------------------------------------------------------------------------------
# the layer registry
# --------------------------------------------------------------------------------------------------

Run = Callable[[nn.Module, str, Params, Params, Act], Act]


@dataclass(frozen=True)
class Layer:
    """A module type's stacked twin.

    Attributes:
        supports: whether this module (its options) can run stacked.
        run: ``run(module, name, params, buffers, act) -> act``; ``name`` is the module's prefix in
            the stacked parameter dict (``""`` at the root, else ``"body.0."``-style).
        children: the module's children run through the registry too (checked recursively).
    """

    supports: Callable[[nn.Module], bool]
    run: Run
    children: bool = False


LAYERS: dict[type[nn.Module], Layer] = {}
"""Module type (exact) -> its stacked twin."""


def _layer(
    *types: type[nn.Module], supports: Callable[[nn.Module], bool] = lambda m: True, children: bool = False
) -> Callable[[Run], Run]:
    def register(run: Run) -> Run:
        for t in types:
            LAYERS[t] = Layer(supports, run, children)
        return run

    return register


def _call(module: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    return LAYERS[type(module)].run(module, name, params, buffers, act)


def _child(module: nn.Module, child: str, name: str, params: Params, buffers: Params, act: Act) -> Act:
    return _call(getattr(module, child), f"{name}{child}.", params, buffers, act)


def _conv_padding(m: nn.Module) -> tuple[int, ...] | None:
    if m.padding == "valid":
        return (0,) * len(m.kernel_size)
    if m.padding == "same":
        return tuple(k // 2 for k in m.kernel_size) if all(k % 2 for k in m.kernel_size) else None
    return tuple(m.padding)


def _conv_ok(m: nn.Module) -> bool:
    return (
        m.groups == 1
        and all(d == 1 for d in m.dilation)
        and m.padding_mode == "zeros"
        and _conv_padding(m) is not None
    )


IM2COL = (nn.Conv1d,)
"""The convolutions that run as im2col and products (the others as grouped convolutions)."""


@_layer(*IM2COL, supports=_conv_ok)
def _conv_im2col(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    bias = params[f"{name}bias"] if m.bias is not None else None
    y = conv(act.csb(), params[f"{name}weight"], bias, stride=tuple(m.stride), padding=_conv_padding(m))
    return Act(y, "csb", fresh=True)


CHANNELS_LAST = False
"""Run the grouped convolutions channels last. About 30% faster for the ResNet on 8x8 digits, but
its kernels round differently from the contiguous ones a run trained alone uses, and under training
a ResNet amplifies that: its losses left the per-run reference's by 1e-3 within two epochs, where
contiguous kernels stay within 1e-5 as ``vmap`` does (benchmarks/RESULTS.md)."""


GROUPED = (nn.Conv2d,)
"""The convolutions that run as grouped convolutions (one group per member)."""


@_layer(*GROUPED, supports=_conv_ok)
def _conv_grouped(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    fmt = torch.channels_last if CHANNELS_LAST else torch.contiguous_format
    x = act.bpc().contiguous(memory_format=fmt)  # [B, P·C_in, H, W]
    weight = params[f"{name}weight"]  # [P, C_out, C_in, kh, kw]
    p, c_out, c_in = weight.shape[:3]
    bias = params[f"{name}bias"].reshape(-1) if m.bias is not None else None
    w = weight.reshape(p * c_out, c_in, *weight.shape[3:])
    y = F.conv2d(x, w, bias, tuple(m.stride), _conv_padding(m), 1, p)
    return Act(y.contiguous(memory_format=fmt), "bpc", p, fresh=True)


def _bn_ok(m: nn.Module) -> bool:
    return m.affine and m.track_running_stats and m.momentum is not None


@_layer(nn.BatchNorm1d, nn.BatchNorm2d, supports=_bn_ok)
def _batch_norm(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    if act.layout == "bpc":
        x = act.data  # [B, P·C, *S]: batch norm's own layout
    elif act.layout == "csb":
        x = act.data.reshape(1, act.data.shape[0] * act.data.shape[1], -1)  # [1, P·C, S·B]
    elif act.data.dim() == 3:  # BatchNorm1d on features [P, B, F]: the members' features are channels
        x = act.data.transpose(1, 2).reshape(1, -1, act.data.shape[1])
    else:
        return _batch_norm(m, name, params, buffers, Act(act.bpc(), "bpc", act.members))
    if m.training:
        buffers[f"{name}num_batches_tracked"].add_(1)
    y = F.batch_norm(
        _dense(x),  # its kernel for strided inputs rounds differently
        buffers[f"{name}running_mean"].view(-1),
        buffers[f"{name}running_var"].view(-1),
        params[f"{name}weight"].reshape(-1),
        params[f"{name}bias"].reshape(-1),
        m.training,
        m.momentum,
        m.eps,
    )
    if act.layout == "natural":
        return Act(y.view(act.members, -1, act.data.shape[1]).transpose(1, 2))
    if act.layout == "bpc":
        return act.like(y, fresh=True)
    # a view: overwriting it in place would cost autograd a copy of the whole base in the backward
    return act.like(y.view(act.data.shape))


def _dense(x: Tensor) -> Tensor:
    """``x`` contiguous, channels last where it is so (4-d)."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()


def _elementwise(fn: Callable[[nn.Module, Tensor], Tensor]) -> Run:
    return lambda m, name, params, buffers, act: act.like(fn(m, act.data))


def _relu_layer(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    return _relu(act)


LAYERS[nn.ReLU] = Layer(lambda m: True, _relu_layer)
LAYERS[nn.Tanh] = Layer(lambda m: True, _elementwise(lambda m, x: torch.tanh(x)))
LAYERS[nn.GELU] = Layer(lambda m: True, _elementwise(lambda m, x: F.gelu(x, approximate=m.approximate)))
LAYERS[nn.Identity] = Layer(lambda m: True, lambda m, name, params, buffers, act: act)


@_layer(nn.Linear)
def _linear(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    bias = params[f"{name}bias"] if m.bias is not None else None
    if act.layout == "csb" and act.data.dim() == 3:  # features first, [P, F, B]
        return Act(linear(act.data, params[f"{name}weight"], bias, features_first=True), "csb", fresh=True)
    x = act.natural()
    if x.dim() != 3:
        raise ValueError(f"a stacked Linear needs [P, B, F] inputs, got {tuple(x.shape)}")
    return Act(linear(x, params[f"{name}weight"], bias, features_first=False), fresh=True)


@_layer(nn.Flatten, supports=lambda m: m.start_dim == 1 and m.end_dim == -1)
def _flatten(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    if act.layout == "csb":  # [P, C, *S, B] -> [P, C·S, B]: a view, the order of Flatten
        return Act(act.data.reshape(act.data.shape[0], -1, act.data.shape[-1]), "csb")
    x = act.natural()
    return Act(x.reshape(x.shape[0], x.shape[1], -1))


@_layer(nn.Unflatten, supports=lambda m: m.dim == 1)
def _unflatten(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    x = act.natural()
    return Act(x.reshape(x.shape[0], x.shape[1], *m.unflattened_size, *x.shape[3:]))


@_layer(nn.MaxPool2d, supports=lambda m: not m.return_indices)
def _max_pool(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    y = F.max_pool2d(act.bpc(), m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
    return Act(y, "bpc", act.members)


@_layer(nn.Sequential, children=True)
def _sequential(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    for child, _ in m.named_children():
        act = _child(m, child, name, params, buffers, act)
    return act


@_layer(Classifier, children=True)
def _classifier(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    return _child(m, "head", name, params, buffers, _child(m, "body", name, params, buffers, act))


@_layer(BasicBlock, children=True)
def _basic_block(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    out = _relu(_child(m, "bn1", name, params, buffers, _child(m, "conv1", name, params, buffers, act)))
    out = _child(m, "bn2", name, params, buffers, _child(m, "conv2", name, params, buffers, out))
    short = _child(m, "shortcut", name, params, buffers, act)
    other = {"bpc": short.bpc, "csb": short.csb, "natural": short.natural}[out.layout]()
    return out.like((out.data + other).relu_(), fresh=True)


@_layer(ResNetBody, children=True)
def _resnet_body(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    if m.add_channel:  # [P, B, H, W] -> [P, B, 1, H, W]
        act = Act(act.data.unsqueeze(2))
    act = _child(m, "stages", name, params, buffers, _child(m, "stem", name, params, buffers, act))
    x = act.natural()  # [P, B, C, H, W]
    return Act(x.mean(dim=(3, 4)))  # global average pooling -> [P, B, C]


def _relu(act: Act) -> Act:
    """ReLU, in place on a fresh activation (one tensor fewer; its backward reads only the result)."""
    return act.like(act.data.relu_() if act.fresh else F.relu(act.data), fresh=act.fresh)


# --------------------------------------------------------------------------------------------------
# the program
# --------------------------------------------------------------------------------------------------


def _supported(module: nn.Module) -> bool:
    layer = LAYERS.get(type(module))
    if layer is None or not layer.supports(module):
        return False
    children = list(module.children())
    if not layer.children:
        return not children
    return all(_supported(c) for c in children)


CHUNK = 8
"""Members per call of the stacked program (a chunk's activations stay in the CPU's caches). With a
grouped convolution every chunk holds exactly this many, a short last one filled with zero members:
the convolution's kernel, and with it a member's rounding, depends on the number of groups. Batched
products round each member's matrices the same way for any batch of two or more (not of one), so
models without grouped convolutions fill a chunk of one member to two only."""


EVAL_EXAMPLES = 256
"""Examples per member per call in evaluation (a fixed number: no product sees the pack's size)."""


class StackedForward:
    """``forward(params, buffers, x [P, B, *input]) -> [P, B, *out]``: the model's stacked program.

    ``params``/``buffers`` are the stacked state (``torch.func.stack_module_state`` names); training
    or evaluation mode is read from ``base``'s modules at call time (batch norm updates its running
    statistics in ``buffers`` in place in training mode). The members run :data:`CHUNK` at a time."""

    def __init__(self, base: nn.Module, chunk: int = CHUNK, examples: int = EVAL_EXAMPLES) -> None:
        self.base = base
        self.chunk = chunk
        self.examples = examples
        grouped = any(type(m) in GROUPED for m in base.modules())
        self.least = chunk if grouped else min(2, chunk)  # members a call holds at least

    def __call__(self, params: Params, buffers: Params, x: Tensor) -> Tensor:
        size, chunk = x.shape[0], self.chunk
        # split, not slices: the backward of a split is one concatenation (a slice's is a zero tensor
        # of the whole stack per chunk)
        split = {k: v.split(chunk) for k, v in params.items()}
        outs = []
        for i, first in enumerate(range(0, size, chunk)):
            n = min(chunk, size - first)
            fill = max(self.least - n, 0)  # a short last chunk: zero members fill it
            p = {k: v[i] if not fill else _fill(v[i], fill) for k, v in split.items()}
            # buffers: a copy per chunk, written back after (batch norm updates its running statistics
            # in place, and views of one tensor share one version counter that autograd checks)
            b = {k: _fill(v[first : first + n], fill) for k, v in buffers.items()}
            xs = x[first : first + n] if not fill else _fill(x[first:], fill)
            if torch.is_grad_enabled() or self.base.training:
                out = self._run(p, b, xs)
            else:  # evaluation: examples are independent; a few at a time stay in the caches
                out = torch.cat(
                    [
                        self._run(p, b, xs[:, j : j + self.examples])
                        for j in range(0, xs.shape[1], self.examples)
                    ],
                    1,
                )
            outs.append(out if not fill else out[:n])
            with torch.no_grad():
                for k, v in buffers.items():
                    v[first : first + n].copy_(b[k][:n])
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _run(self, params: Params, buffers: Params, x: Tensor) -> Tensor:
        return _call(self.base, "", params, buffers, Act(x)).natural().contiguous()


def _fill(v: Tensor, fill: int) -> Tensor:
    """``v`` with ``fill`` zero members after its own (a copy)."""
    return torch.cat([v, v.new_zeros(fill, *v.shape[1:])]) if fill else v.clone()


def stacked_forward(model: nn.Module) -> StackedForward | None:
    """The stacked program of ``model`` if every module of it is in :data:`LAYERS` (with supported
    options) and it has a convolution; else None (the pack then runs the model under ``vmap``).

    Example:
        >>> from torch import nn
        >>> stacked_forward(nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten())) is not None
        True
        >>> stacked_forward(nn.Sequential(nn.Conv1d(1, 2, 3), nn.Dropout())) is None
        True
    """
    if not _supported(model) or not any(isinstance(m, (nn.Conv1d, nn.Conv2d)) for m in model.modules()):
        return None
    return StackedForward(model)


def im2col_elements(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Elements of the ``im2col`` columns (``(C_in·prod(k) + 1)·prod(S_out)`` per convolution) that
    the stacked program keeps for the backward pass, per example: its memory beyond the activations.

    Example:
        >>> from torch import nn
        >>> im2col_elements(nn.Sequential(nn.Conv1d(1, 4, 5, stride=2), nn.Conv1d(4, 4, 3)), (1, 40))
        316
    """
    sizes: list[int] = []

    def hook(module: nn.Module, _inputs: object, output: Tensor) -> None:
        rows = module.in_channels * math.prod(module.kernel_size) + (module.bias is not None)
        sizes.append(rows * math.prod(output.shape[2:]))

    forward_once(model, input_shape, [m for m in model.modules() if type(m) in IM2COL], hook)
    return sum(sizes)


def forward_once(
    model: nn.Module,
    input_shape: tuple[int, ...],
    modules: Iterable[nn.Module],
    hook: Callable[[nn.Module, object, Any], None],
) -> None:
    """Run ``model`` once on one zero example with ``hook`` on each of ``modules``, changing nothing.

    In eval mode (batch norm cannot train on a batch of one, and its running statistics stay
    untouched), without gradients and with the global random state restored; the hooks are removed
    and every module's training flag is put back, whatever happens.
    """
    handles = [m.register_forward_hook(hook) for m in modules]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
