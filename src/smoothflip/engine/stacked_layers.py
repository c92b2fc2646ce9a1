"""A pack's convolutional models as batched matrix products: the CPU path that replaces ``vmap``.

Under :func:`torch.vmap` a stacked ``Conv1d``/``Conv2d`` becomes one grouped convolution (a group
per member), which the CPU runs far below its matrix-product rate on the small models of a study
(benchmarks/RESULTS.md). Here each supported layer has a stacked twin that works on all P members
at once without ``vmap``:

- activations of convolutional layers are kept **channels first, batch inside**, ``[P, C, B, *S]``
  (``S`` the spatial dimensions): a convolution is ``im2col`` (a padded, unfolded copy
  ``[P, C_in·k, B·S_out]``) and one ``torch.bmm`` with the weights ``[P, C_out, C_in·k]``, whose
  output ``[P, C_out, B·S_out]`` is already the next layer's input — the product with the long
  dimension last, which runs about 1.5x faster on the CPU than the transposed (channels-last) one;
  its backward is written by hand (:class:`_Conv`): two more products and a ``col2im`` made of one
  strided addition per kernel offset into a contiguous gradient;
- batch norm normalizes a ``[1, P·C, B·S]`` view with ``F.batch_norm`` (each member's channel its
  own channel: its own batch statistics, its own running statistics updated in place), max pooling
  pools a ``[P·C, B, H, W]`` view;
- linear layers are ``[P, B, F] @ [P, F, out]`` products (:class:`_Linear`), elementwise
  activations act in place of nothing.

The layers are a registry (:data:`LAYERS`), keyed by the module's exact type (a subclass may
change ``forward``); :func:`stacked_forward` returns the program for a model built only from them
(the built-in ``cnn1d``, ``cnn2d`` and ``resnet``, and user models made of the same layers), else
None, and the pack keeps ``vmap``. Every member's arithmetic is the same whatever its pack mates
and the pack's size: products of one member never mix with another's, and a pack of one runs its
products as a pack of two (``torch.bmm`` takes another code path for a batch of one, which rounds
some shapes differently).

Example:
    >>> import torch
    >>> from smoothflip.models import build_model
    >>> models = [build_model("cnn1d", input_shape=(40,), num_classes=10) for _ in range(3)]
    >>> params = {k: torch.stack([dict(m.named_parameters())[k] for m in models]) for k, _ in
    ...           models[0].named_parameters()}
    >>> forward = stacked_forward(models[0])
    >>> forward(params, {}, torch.zeros(3, 8, 40)).shape  # [P, B, K]
    torch.Size([3, 8, 10])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothflip.models.classifier import Classifier
from smoothflip.models.resnet import BasicBlock, ResNetBody

__all__ = ["LAYERS", "Layer", "StackedForward", "im2col_elements", "stacked_forward"]

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

    def like(self, data: Tensor) -> Act:
        """Other data in this layout."""
        return Act(data, self.layout, self.members)


# --------------------------------------------------------------------------------------------------
# convolution as im2col + bmm, with its backward
# --------------------------------------------------------------------------------------------------


def _ranges(
    offset: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    size: tuple[int, ...],
    out: tuple[int, ...],
) -> tuple[list[slice], list[slice]] | None:
    """For one kernel offset: the output positions that read the input (``src``, along ``S_out``)
    and the input positions they read (``dst``, along ``S``); None if none do."""
    src: list[slice] = []
    dst: list[slice] = []
    for o, s, q, n, m in zip(offset, stride, padding, size, out, strict=True):
        first = max(0, -((o - q) // s))  # smallest i with o - q + s·i >= 0
        last = min(m, (n - 1 - o + q) // s + 1)  # one past the largest i with o - q + s·i <= n - 1
        if last <= first:
            return None
        start = o - q + s * first
        src.append(slice(first, last))
        dst.append(slice(start, start + s * (last - first - 1) + 1, s))
    return src, dst


def _columns(
    x: Tensor,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    out: tuple[int, ...],
    ones: bool,
) -> Tensor:
    """``im2col``: ``[P, C, *S, B] -> [P, C·prod(k) (+1), prod(S_out)·B]``, rows ``(c, *k)``, columns
    ``(*s, b)``, and with ``ones`` a last row of ones (the bias as one more weight). One strided copy
    per kernel offset straight from ``x`` (runs of B contiguous values); the padding is written as
    zeros, never built."""
    p, c, *size, b = x.shape
    rows = c * math.prod(kernel)
    cols = x.new_empty(p, rows + ones, math.prod(out) * b)
    view = cols[:, :rows].view(p, c, *kernel, *out, b)
    every = slice(None)
    for offset in itertools.product(*(range(k) for k in kernel)):
        region = _ranges(offset, stride, padding, tuple(size), out)
        target = view[(every, every, *offset)]  # [P, C, *S_out, B]
        if region is None:
            target.zero_()
            continue
        src, dst = region
        target[(every, every, *src, every)] = x[(every, every, *dst, every)]
        for d, (r, m) in enumerate(zip(src, out, strict=True)):  # the padding this offset reads
            lead = (every,) * (2 + d)
            if r.start > 0:
                target[(*lead, slice(0, r.start))] = 0
            if r.stop < m:
                target[(*lead, slice(r.stop, m))] = 0
    if ones:
        cols[:, rows] = 1
    return cols


def _fold(
    cols: Tensor,
    shape: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    out: tuple[int, ...],
) -> Tensor:
    """``col2im``, the adjoint of :func:`_columns`: ``[P, C·prod(k), prod(S_out)·B] -> [P, C, *S, B]``.

    One strided addition per kernel offset, in a fixed order, into a contiguous tensor (the padding
    is never materialized)."""
    p, c, *size, b = shape
    g = cols.view(p, c, *kernel, *out, b)
    grad = cols.new_zeros(shape)
    every = slice(None)
    for offset in itertools.product(*(range(k) for k in kernel)):
        region = _ranges(offset, stride, padding, tuple(size), out)
        if region is not None:
            src, dst = region
            grad[(every, every, *dst, every)] += g[(every, every, *offset, *src, every)]
    return grad


class _Conv(torch.autograd.Function):
    """A stacked convolution ``[P, C_in, *S, B] -> [P, C_out, *S_out, B]`` (weights
    ``[P, C_out, C_in, *k]``, bias ``[P, C_out]`` or None): one ``bmm`` on the im2col columns; its
    backward by hand (two ``bmm`` and a col2im)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        p, c_out = weight.shape[:2]
        kernel = tuple(weight.shape[3:])
        out = tuple(
            (n + 2 * q - k) // s + 1
            for n, q, k, s in zip(x.shape[2:-1], padding, kernel, stride, strict=True)
        )
        cols = _columns(x, kernel, stride, padding, out, ones=bias is not None)
        w = weight.reshape(p, c_out, -1)
        if bias is not None:  # the bias is the weight of the row of ones
            w = torch.cat([w, bias.unsqueeze(2)], 2)
        y = torch.bmm(w, cols)
        ctx.save_for_backward(cols, w)
        ctx.geometry = (tuple(x.shape), tuple(weight.shape), stride, padding, out)
        return y.view(p, c_out, *out, x.shape[-1])

    @staticmethod
    def backward(ctx, grad_y):
        cols, w = ctx.saved_tensors
        shape, weight_shape, stride, padding, out = ctx.geometry
        p, c_out = weight_shape[:2]
        rows = math.prod(weight_shape[2:])
        g = grad_y.reshape(p, c_out, -1)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_cols = torch.bmm(w[:, :, :rows].transpose(1, 2), g)
            grad_x = _fold(grad_cols, shape, weight_shape[3:], stride, padding, out)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad = torch.bmm(g, cols.transpose(1, 2))  # [P, C_out, rows (+1)]: the bias's gradient last
            grad_w = grad[:, :, :rows].reshape(weight_shape)
            grad_b = grad[:, :, rows] if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None


class _Linear(torch.autograd.Function):
    """A stacked linear layer, weights ``[P, out, F]`` and bias ``[P, out]`` or None, on features
    ``[P, B, F] -> [P, B, out]`` or, ``first``, ``[P, F, B] -> [P, out, B]`` (the product then has
    the long dimension last, and the features of a convolution need no copy)."""

    @staticmethod
    def forward(ctx, x, weight, bias, first):
        if first:
            y = torch.bmm(weight, x) if bias is None else torch.baddbmm(bias.unsqueeze(2), weight, x)
        else:
            w = weight.transpose(1, 2)
            y = torch.bmm(x, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, w)
        ctx.save_for_backward(x, weight)
        ctx.first = first
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        first = ctx.first
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(weight.transpose(1, 2), grad_y) if first else torch.bmm(grad_y, weight)
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(grad_y, x.transpose(1, 2)) if first else torch.bmm(grad_y.transpose(1, 2), x)
        if ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(2 if first else 1)
        return grad_x, grad_w, grad_b, None


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


def _layer(*types: type[nn.Module], supports: Callable[[nn.Module], bool] = lambda m: True, children=False):
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


@_layer(nn.Conv1d, supports=_conv_ok)
def _conv_im2col(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    bias = params[f"{name}bias"] if m.bias is not None else None
    y = _Conv.apply(act.csb(), params[f"{name}weight"], bias, tuple(m.stride), _conv_padding(m))
    return Act(y, "csb")


@_layer(nn.Conv2d, supports=_conv_ok)
def _conv_grouped(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    x = act.bpc().contiguous(memory_format=torch.channels_last)  # [B, P·C_in, H, W]
    weight = params[f"{name}weight"]  # [P, C_out, C_in, kh, kw]
    p, c_out, c_in = weight.shape[:3]
    bias = params[f"{name}bias"].reshape(-1) if m.bias is not None else None
    w = weight.reshape(p * c_out, c_in, *weight.shape[3:])
    y = F.conv2d(x, w, bias, tuple(m.stride), _conv_padding(m), 1, p)
    return Act(y.contiguous(memory_format=torch.channels_last), "bpc", p)


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
    return act.like(y.view(act.data.shape))


def _dense(x: Tensor) -> Tensor:
    """``x`` contiguous, channels last where it is so (4-d)."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()


def _elementwise(fn: Callable[[nn.Module, Tensor], Tensor]) -> Run:
    return lambda m, name, params, buffers, act: act.like(fn(m, act.data))


LAYERS[nn.ReLU] = Layer(lambda m: True, _elementwise(lambda m, x: F.relu(x)))
LAYERS[nn.Tanh] = Layer(lambda m: True, _elementwise(lambda m, x: torch.tanh(x)))
LAYERS[nn.GELU] = Layer(lambda m: True, _elementwise(lambda m, x: F.gelu(x, approximate=m.approximate)))
LAYERS[nn.Identity] = Layer(lambda m: True, lambda m, name, params, buffers, act: act)


@_layer(nn.Linear)
def _linear(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    bias = params[f"{name}bias"] if m.bias is not None else None
    if act.layout == "csb" and act.data.dim() == 3:  # features first, [P, F, B]
        return Act(_Linear.apply(act.data, params[f"{name}weight"], bias, True), "csb")
    x = act.natural()
    if x.dim() != 3:
        raise ValueError(f"a stacked Linear needs [P, B, F] inputs, got {tuple(x.shape)}")
    return Act(_Linear.apply(x, params[f"{name}weight"], bias, False))


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
    return out.like(F.relu(out.data + other))


@_layer(ResNetBody, children=True)
def _resnet_body(m: nn.Module, name: str, params: Params, buffers: Params, act: Act) -> Act:
    if m.add_channel:  # [P, B, H, W] -> [P, B, 1, H, W]
        act = Act(act.data.unsqueeze(2))
    act = _child(m, "stages", name, params, buffers, _child(m, "stem", name, params, buffers, act))
    x = act.natural()  # [P, B, C, H, W]
    return Act(x.mean(dim=(3, 4)))  # global average pooling -> [P, B, C]


def _relu(act: Act) -> Act:
    return act.like(F.relu(act.data))


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
"""Members per call of the stacked program: always this many, a short last chunk filled with zero
members. Every operation then sees the same shapes whatever the pack's size (so the kernels, and
every member's rounding, never depend on it), and a chunk's activations stay in the CPU's caches."""


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

    def __call__(self, params: Params, buffers: Params, x: Tensor) -> Tensor:
        size, chunk = x.shape[0], self.chunk
        # split, not slices: the backward of a split is one concatenation (a slice's is a zero tensor
        # of the whole stack per chunk)
        split = {k: v.split(chunk) for k, v in params.items()}
        outs = []
        for i, first in enumerate(range(0, size, chunk)):
            n = min(chunk, size - first)
            fill = chunk - n  # a short last chunk: zero members fill it
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


def im2col_elements(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(sum, max)`` over the model's convolutions of the ``im2col`` columns one example needs
    (``C_in·prod(k)·prod(S_out)`` each): what the stacked program keeps for the backward pass (sum)
    and holds at once in evaluation (max), per example, beyond the model's activations.

    Example:
        >>> from torch import nn
        >>> im2col_elements(nn.Sequential(nn.Conv1d(1, 4, 5, stride=2), nn.Conv1d(4, 4, 3)), (1, 40))
        (288, 198)
    """
    sizes: list[int] = []

    def hook(module: nn.Module, _inputs: object, output: Tensor) -> None:
        sizes.append(module.in_channels * math.prod(module.kernel_size) * math.prod(output.shape[2:]))

    convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    handles = [m.register_forward_hook(hook) for m in convs]
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
    return sum(sizes), max(sizes, default=0)
