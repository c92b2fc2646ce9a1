"""Small reference classifiers for studies, and loading of user-supplied model factories.

Every built-in model is a :class:`Classifier`: a ``body`` that maps a batch of inputs to the
penultimate features ``[B, F]`` and a linear ``head`` (``nn.Linear(F, K)``) that maps them to
logits ``[B, K]``. The split is what the representation analysis (Müller et al. 2019) reads.

The study engine trains many copies at once with :func:`torch.func.stack_module_state` and
:func:`torch.vmap`, so the built-in models are

- **deterministic**: no dropout and no random ops in ``forward``; only ``resnet`` has batch
  statistics (batch norm, see :mod:`smoothflip.models.resnet` for running it under
  :func:`torch.vmap`), the others have no buffers and compute the same function in train and
  eval mode;
- **vmap-compatible**: no in-place ops on inputs, no data-dependent Python control flow;
- **seeded by torch only**: construction draws from torch's global RNG (PyTorch default
  initialization; He initialization for the ResNet's convolutions) and nothing else, so
  ``torch.manual_seed(s)`` before :func:`build_model` fixes the parameters.

Models (``input_shape`` is one example's shape, without the batch dimension):

=============  ============================  ===============================================
name           input_shape                   parameters for its typical input, 10 classes
=============  ============================  ===============================================
``mlp``        any, flattened                15,210 for ``(40,)`` (MNIST-1D's 40-100-100-10)
``cnn1d``      ``(L,)`` or ``(C, L)``        5,210 for ``(40,)`` (MNIST-1D's CNN)
``cnn2d``      ``(H, W)`` or ``(C, H, W)``   38,282 for ``(8, 8)`` (scikit-learn digits)
``logistic``   any, flattened                410 for ``(40,)``; 650 for ``(8, 8)``
``resnet``     ``(H, W)`` or ``(C, H, W)``   78,042 for ``(3, 32, 32)`` (ResNet-8, width 16);
                                             272,474 with ``depth = 20`` (ResNet-20)
=============  ============================  ===============================================

The package is split by concept: :mod:`~smoothflip.models.registry` (the table of built-ins,
:func:`build_model`, :func:`model_options`), :mod:`~smoothflip.models.classifier` (the
:class:`Classifier`), :mod:`~smoothflip.models.mlp` (``mlp``, ``logistic``),
:mod:`~smoothflip.models.cnn` (``cnn1d``, ``cnn2d``), :mod:`~smoothflip.models.resnet` and
:mod:`~smoothflip.models.factories` (user models); everything is importable from here.

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

# The private names (_x) of the former single module smoothflip.models stay importable from here.
from smoothflip.models.classifier import (  # noqa: F401
    BodyHead,
    Classifier,
    _check_input_shape,
    _int_list,
    _numel,
    count_parameters,
)
from smoothflip.models.cnn import _build_cnn1d, _build_cnn2d  # noqa: F401
from smoothflip.models.factories import (  # noqa: F401
    _describe,
    _dummy_forward,
    _import_module,
    _load_file,
    build_from_factory,
    load_factory,
)
from smoothflip.models.mlp import ACTIVATIONS, _activation, _build_logistic, _build_mlp  # noqa: F401
from smoothflip.models.registry import (  # noqa: F401
    _BUILDERS,
    _DEFAULTS,
    _FACTORY_HINT,
    MODELS,
    _check_name,
    _resolve_options,
    build_model,
    model_options,
)
from smoothflip.models.resnet import BasicBlock, ResNetBody

__all__ = [
    "ACTIVATIONS",
    "MODELS",
    "BasicBlock",
    "BodyHead",
    "Classifier",
    "ResNetBody",
    "build_from_factory",
    "build_model",
    "count_parameters",
    "load_factory",
    "model_options",
]
