"""Small reference classifiers for studies, and loading of user-supplied model factories.

Every built-in model is a :class:`Classifier`: a ``body`` that maps a batch of inputs to the
penultimate features ``[B, F]`` and a linear ``head`` (``nn.Linear(F, K)``) that maps them to
logits ``[B, K]``. The split is what the representation analysis (Müller et al. 2019) reads.

The study engine trains many copies at once with :func:`torch.func.stack_module_state` and
:func:`torch.vmap`, so the built-in models are

- **deterministic**: no dropout, no batch statistics (no BatchNorm), no random ops in ``forward``;
- **vmap-compatible**: no in-place ops on inputs, no data-dependent Python control flow;
- **seeded by torch only**: construction draws from torch's global RNG (PyTorch default
  initialization) and nothing else, so ``torch.manual_seed(s)`` before :func:`build_model` fixes
  the parameters.

Models (``input_shape`` is one example's shape, without the batch dimension):

=============  ============================  ===============================================
name           input_shape                   parameters for its typical input, 10 classes
=============  ============================  ===============================================
``mlp``        any, flattened                15,210 for ``(40,)`` (MNIST-1D's 40-100-100-10)
``cnn1d``      ``(L,)`` or ``(C, L)``        5,210 for ``(40,)`` (MNIST-1D's CNN)
``cnn2d``      ``(H, W)`` or ``(C, H, W)``   38,282 for ``(8, 8)`` (scikit-learn digits)
``logistic``   any, flattened                410 for ``(40,)``; 650 for ``(8, 8)``
=============  ============================  ===============================================

A custom model is a *factory reference* ``"package.module:function"`` or
``"path/to/file.py:function"``: :func:`load_factory` imports it and :func:`build_from_factory`
calls it as ``factory(input_shape=..., num_classes=..., **options)`` and checks what it returns.

Training budget on MNIST-1D (``benchmarks/model_budget.py``): ``cnn1d`` with Adam, batch 100,
cosine-annealed lr 2e-2 for 75 epochs of 3,600 examples reaches about 93% test accuracy (worst of
10 seeds 91.9%) in about 5 s on 2 CPU cores; the ``mlp`` reaches about 65% with the same budget.

Example:
    >>> import torch
    >>> from smoothflip.models import build_model, count_parameters
    >>> _ = torch.manual_seed(0)
    >>> model = build_model("cnn1d", input_shape=(40,), num_classes=10)
    >>> count_parameters(model)
    5210
    >>> x = torch.randn(8, 40)
    >>> model(x).shape, model.features(x).shape
    (torch.Size([8, 10]), torch.Size([8, 125]))
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smoothflip._validation import check_choice, check_int

__all__ = [
    "ACTIVATIONS",
    "MODELS",
    "Classifier",
    "build_from_factory",
    "build_model",
    "count_parameters",
    "load_factory",
    "model_options",
]

#: Names of the built-in models, in the order the docs list them.
MODELS: tuple[str, ...] = ("mlp", "cnn1d", "cnn2d", "logistic")

#: Activations the ``mlp`` accepts.
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "tanh")

# Defaults per model; the keys are the model's complete set of options, in documentation order.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": [100, 100], "activation": "relu"},
    "cnn1d": {"channels": 25, "kernel_sizes": [5, 3, 3], "strides": [2, 2, 2], "padding": 1},
    "cnn2d": {"channels": [16, 32], "kernel_size": 3, "pool": 2, "hidden": 64},
    "logistic": {},
}

_FACTORY_HINT = (
    "a custom model is given as a factory reference 'package.module:function' or 'path/to/file.py:function'"
)


# --------------------------------------------------------------------------------------------------
# the classifier
# --------------------------------------------------------------------------------------------------


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

    Under :func:`torch.func.functional_call`, the body's parameters are the ones whose names start
    with ``"body."`` (strip the prefix to call ``body`` alone).

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


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def model_options(name: str) -> dict[str, Any]:
    """The options a built-in model accepts, with their defaults (a fresh copy).

    Args:
        name: one of :data:`MODELS`.

    Returns:
        ``{option: default}``; the empty dict for ``logistic``.

    Example:
        >>> model_options("mlp")
        {'hidden': [100, 100], 'activation': 'relu'}
    """
    return copy.deepcopy(_DEFAULTS[_check_name(name)])


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

    Args:
        name: one of :data:`MODELS`.
        input_shape: one example's shape, without the batch dimension: ``(40,)`` for MNIST-1D,
            ``(8, 8)`` for digits, ``(d,)`` for tabular data. ``cnn1d`` takes ``(L,)`` or
            ``(C, L)``; ``cnn2d`` takes ``(H, W)`` or ``(C, H, W)``; a missing channel dimension
            is added in ``forward``.
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
        >>> _ = torch.manual_seed(0)
        >>> net = build_model("mlp", input_shape=(8, 8), num_classes=10, options={"hidden": [32]})
        >>> net(torch.zeros(5, 8, 8)).shape, count_parameters(net)
        (torch.Size([5, 10]), 2410)
    """
    name = _check_name(name)
    shape = _check_input_shape(input_shape)
    num_classes = check_int("num_classes", num_classes, low=2)
    opts = _resolve_options(name, options)
    builder = _BUILDERS[name]
    body, feature_dim = builder(shape, **opts)
    return Classifier(body, nn.Linear(feature_dim, num_classes))


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


def load_factory(reference: str, *, base_dir: str | Path | None = None) -> Callable[..., nn.Module]:
    """Import the model factory named by ``reference``.

    Two forms:

    - ``"package.module:function"`` — imported with :func:`importlib.import_module`; ``base_dir``
      (if given) is put first on ``sys.path`` for the duration of the import. A module imported
      earlier is reused as it is.
    - ``"path/to/file.py:function"`` — the file (relative to ``base_dir``, or to the current
      directory when ``base_dir`` is ``None``) is executed as a module of its own; later calls
      reuse it until the file changes (its modification time or size).

    The attribute may be dotted (``"module:Class.create"``). The factory is later called as
    ``factory(input_shape=..., num_classes=..., **options)``; see :func:`build_from_factory`.

    Args:
        reference: ``"<module or file.py>:<attribute>"``.
        base_dir: the directory the reference is relative to (a study's directory).

    Returns:
        The callable.

    Raises:
        ValueError: a malformed reference, a module or file that cannot be found or imported, a
            missing attribute; the message names the reference.
        TypeError: the attribute is not callable.

    Example:
        >>> factory = load_factory("smoothflip.models:build_model")
        >>> factory.__name__
        'build_model'
    """
    if not isinstance(reference, str):
        raise TypeError(f"model factory reference must be a string, got {type(reference).__name__}")
    where, sep, attr = reference.rpartition(":")
    if not sep or not where.strip() or not attr.strip():
        raise ValueError(
            f"model factory {reference!r}: expected 'package.module:function' or 'path/to/file.py:function'"
        )
    where, attr = where.strip(), attr.strip()
    base = Path(base_dir) if base_dir is not None else None
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _load_file(reference, where, base)
    else:
        module = _import_module(reference, where, base)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"model factory {reference!r}: {where!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise TypeError(
            f"model factory {reference!r}: {attr!r} is not callable (it is a {type(obj).__name__})"
        )
    return obj


def build_from_factory(
    factory: Callable[..., Any],
    *,
    input_shape: Sequence[int],
    num_classes: int,
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Call a user's model factory and check that it builds a usable classifier.

    The factory is called as ``factory(input_shape=input_shape, num_classes=num_classes,
    **options)``. The result must be an ``nn.Module`` that maps a batch ``[2, *input_shape]`` to
    logits ``[2, num_classes]``. The check runs one all-zeros batch in eval mode without gradients
    and leaves the torch RNG state and the modules' train/eval flags as they were, so it does not
    disturb seeding or BatchNorm statistics.

    For batched training the engine also needs the model to be deterministic and vmap-compatible
    (see the module docstring); that is the factory's responsibility and is not checked here.

    Args:
        factory: a callable, e.g. from :func:`load_factory`.
        input_shape: one example's shape, without the batch dimension.
        num_classes: ``K >= 2``.
        options: extra keyword arguments for the factory.

    Returns:
        The module the factory built.

    Raises:
        TypeError: the factory does not accept these arguments, or returns something that is not an
            ``nn.Module``; the message names the factory.
        ValueError: the module's output on the dummy batch is not ``[2, num_classes]``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> def tiny(*, input_shape, num_classes, width=4):
        ...     return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes))
        >>> build_from_factory(tiny, input_shape=(3,), num_classes=2, options={"width": 8})
        Sequential(
          (0): Flatten(start_dim=1, end_dim=-1)
          (1): Linear(in_features=3, out_features=2, bias=True)
        )
    """
    if not callable(factory):
        raise TypeError(f"model factory must be callable, got {type(factory).__name__}")
    shape = _check_input_shape(input_shape)
    num_classes = check_int("num_classes", num_classes, low=2)
    opts = dict(options or {})
    label = _describe(factory)
    kwargs = {"input_shape": shape, "num_classes": num_classes, **opts}
    if "input_shape" in opts or "num_classes" in opts:
        raise ValueError(f"model factory {label}: options must not contain input_shape or num_classes")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have no signature; just call them
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            names = ", ".join(kwargs)
            raise TypeError(f"model factory {label} cannot be called with ({names}): {exc}") from None
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model factory {label} must return an nn.Module, got {type(model).__name__}")
    try:
        out = _dummy_forward(model, shape)
    except (RuntimeError, IndexError) as exc:  # shape mismatches inside the user's model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"model factory {label}: a batch of shape {[2, *shape]} (the data's input shape) "
            f"does not go through the model: {first}"
        ) from None
    expected = (2, num_classes)
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"model factory {label}: the model must return a logits tensor of shape {list(expected)} "
            f"for a batch of shape {[2, *shape]}, got {type(out).__name__}"
        )
    if tuple(out.shape) != expected:
        raise ValueError(
            f"model factory {label}: the model must map a batch of shape {[2, *shape]} to logits of "
            f"shape {list(expected)}, got {list(out.shape)}"
        )
    return model


# --------------------------------------------------------------------------------------------------
# built-in architectures
# --------------------------------------------------------------------------------------------------


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[name]()


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _build_mlp(shape: tuple[int, ...], *, hidden: list[int], activation: str) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = [nn.Flatten(start_dim=1)]
    width = _numel(shape)
    for h in hidden:
        layers += [nn.Linear(width, h), _activation(activation)]
        width = h
    return nn.Sequential(*layers), width


def _build_logistic(shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    return nn.Sequential(nn.Flatten(start_dim=1)), _numel(shape)


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
    if len(shape) not in (2, 3):
        raise ValueError(
            f"input_shape {shape} does not fit model 'cnn2d': it needs (height, width) or "
            "(channels, height, width)"
        )
    in_channels, height, width = (1, *shape) if len(shape) == 2 else shape
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


_BUILDERS: dict[str, Callable[..., tuple[nn.Module, int]]] = {
    "mlp": _build_mlp,
    "cnn1d": _build_cnn1d,
    "cnn2d": _build_cnn2d,
    "logistic": _build_logistic,
}


# --------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or name not in MODELS:
        allowed = ", ".join(repr(m) for m in MODELS)
        raise ValueError(f"model name must be one of {allowed}, got {name!r}; {_FACTORY_HINT}")
    return name


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


def _resolve_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    defaults = _DEFAULTS[name]
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TypeError(f"model options must be a mapping, got {type(options).__name__}")
    for key in options:
        if key not in defaults:
            allowed = ", ".join(defaults) if defaults else "(none)"
            raise ValueError(f"model.{key}: unknown option for {name!r}; allowed: {allowed}")
    opts = {**copy.deepcopy(defaults), **options}
    if name == "mlp":
        opts["hidden"] = _int_list("hidden", opts["hidden"], low=1, allow_empty=True)
        opts["activation"] = check_choice("model.activation", opts["activation"], ACTIVATIONS)
    elif name == "cnn1d":
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
    elif name == "cnn2d":
        opts["channels"] = _int_list("channels", opts["channels"], low=1, allow_empty=False)
        kernel = check_int("model.kernel_size", opts["kernel_size"], low=1)
        if kernel % 2 == 0:
            raise ValueError(f"model.kernel_size must be odd (for 'same' padding), got {kernel}")
        opts["kernel_size"] = kernel
        opts["pool"] = check_int("model.pool", opts["pool"], low=1)
        opts["hidden"] = check_int("model.hidden", opts["hidden"], low=1)
    return opts


# --------------------------------------------------------------------------------------------------
# factory helpers
# --------------------------------------------------------------------------------------------------


def _import_module(reference: str, module_name: str, base_dir: Path | None) -> Any:
    added = None
    if base_dir is not None:
        added = str(base_dir)
        sys.path.insert(0, added)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            extra = f" (also searched {str(base_dir)!r})" if base_dir is not None else ""
            raise ValueError(
                f"model factory {reference!r}: module {module_name!r} not found{extra}"
            ) from None
        raise ValueError(f"model factory {reference!r}: importing {module_name!r} failed: {exc}") from exc
    except ImportError as exc:
        raise ValueError(f"model factory {reference!r}: importing {module_name!r} failed: {exc}") from exc
    finally:
        if added is not None:
            with contextlib.suppress(ValueError):  # the module itself may have removed it
                sys.path.remove(added)


def _load_file(reference: str, file: str, base_dir: Path | None) -> Any:
    path = Path(file)
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        raise ValueError(f"model factory {reference!r}: file {str(path)!r} not found")
    digest = hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()[:10]
    module_name = f"_smoothflip_factory_{digest}"
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = sys.modules.get(module_name)
    if cached is not None and getattr(cached, "__smoothflip_stamp__", None) == stamp:
        return cached  # one execution per file version, like an import (the engine loads per member)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"model factory {reference!r}: cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[module_name]
        raise ValueError(f"model factory {reference!r}: importing {str(path)!r} failed: {exc}") from exc
    except BaseException:
        del sys.modules[module_name]
        raise
    module.__smoothflip_stamp__ = stamp  # type: ignore[attr-defined]
    return module


def _describe(factory: Callable[..., Any]) -> str:
    name = getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None)
    if name is None:
        return repr(factory)
    module = getattr(factory, "__module__", None)
    return f"{module}.{name}" if module else name


def _dummy_forward(model: nn.Module, shape: tuple[int, ...]) -> Any:
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.get_default_dtype()
    modes = {m: m.training for m in model.modules()}
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            return model(torch.zeros(2, *shape, device=device, dtype=dtype))
    finally:
        for m, training in modes.items():
            m.training = training
