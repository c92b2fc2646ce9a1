"""Hugging Face ``Trainer`` adapter: smoothflip's causal-LM losses as ``compute_loss_func``.

Needs the optional extra ``hf`` (``pip install smoothflip[hf]``: transformers with accelerate);
importing this module without transformers raises ``ImportError`` saying so. Checked against
transformers 5.24.0.

.. code-block:: python

    from transformers import Trainer, TrainingArguments
    from smoothflip.lm.hf import compute_loss_func, count_shifted_labels

    model = count_shifted_labels(model)          # see "Token counts" below
    trainer = Trainer(
        model=model,
        args=TrainingArguments(output_dir="out", gradient_accumulation_steps=4),
        train_dataset=dataset,                   # items with input_ids and labels (-100 = padding)
        compute_loss_func=compute_loss_func("smoothed", eps=0.1),
    )

The Trainer calls ``compute_loss_func(outputs, labels, num_items_in_batch=...)`` with the model's
outputs (computed *without* labels, so the model computes no loss of its own) and the batch's
``labels``. The returned callable shifts the labels (``shift=True``: the logits at ``t`` predict
``labels[:, t + 1]``, as every HF causal LM does internally — the shift that ``LabelSmoother``
once forgot, transformers #17960 / #27161) and applies :func:`smoothflip.lm.causal_lm_loss`.

**Gradient accumulation.** When the Trainer passes ``num_items_in_batch`` (the number of
non-ignored labels in the whole accumulated batch, all micro-batches together), the loss is the
*sum* over this micro-batch's tokens divided by it, so the accumulated gradient is that of the
token mean over the full batch — whatever the padding of each micro-batch. (The Trainer treats the
result of any ``compute_loss_func`` as already scaled for accumulation.) Without
``num_items_in_batch`` it is this batch's token mean.

**Token counts.** The Trainer counts ``labels[..., 1:]`` (the positions a shifted loss scores) only
for models whose ``loss_type`` is ``"ForCausalLM"`` — models named ``...ForCausalLM``. For others,
such as ``GPT2LMHeadModel``, it counts every label, the unscored first position included, and a
token-mean loss comes out too small by a factor ``(T - 1) / T`` for unpadded rows of length ``T``.
:func:`count_shifted_labels` marks such a model so that the Trainer counts the shifted labels.

Do not also set ``TrainingArguments(label_smoothing_factor=...)``: ``compute_loss_func`` takes
precedence and the factor would be silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

try:
    import transformers
except ImportError as err:  # pragma: no cover - exercised by a test that hides transformers
    raise ImportError(
        "smoothflip.lm.hf needs Hugging Face transformers; install it with: pip install smoothflip[hf]"
    ) from err

from smoothflip.lm.losses import Kind, _resolve_kind, causal_lm_loss
from smoothflip.losses._common import AllIgnored, check_common

__all__ = ["CausalLMLossFunction", "compute_loss_func", "count_shifted_labels"]

TRANSFORMERS_VERSION: str = transformers.__version__


class CausalLMLossFunction:
    """The callable :func:`compute_loss_func` returns (picklable; options fixed at construction).

    Call it as ``fn(outputs, labels, num_items_in_batch=None)``:

    - ``outputs``: the model's output — a ``ModelOutput`` / mapping with ``"logits"``, a tuple
      whose first item is the logits, or the logits tensor ``[B, T, V]`` itself;
    - ``labels``: ``[B, T]`` token ids, ``ignore_index`` (-100) at padding;
    - ``num_items_in_batch``: the accumulated batch's count of labels (int or tensor), or None.

    Returns the scalar loss (float32 for half-precision logits).
    """

    def __init__(self, kind: Kind, options: Mapping[str, Any]) -> None:
        self.kind = kind
        self.options = dict(options)

    def __call__(
        self, outputs: Any, labels: Tensor, num_items_in_batch: Tensor | int | None = None
    ) -> Tensor:
        if labels is None:
            raise ValueError("compute_loss_func needs labels: give the dataset a 'labels' column")
        logits = _logits(outputs)
        if num_items_in_batch is None:
            return causal_lm_loss(logits, labels, kind=self.kind, reduction="mean", **self.options)
        total = causal_lm_loss(logits, labels, kind=self.kind, reduction="sum", **self.options)
        count = torch.as_tensor(num_items_in_batch, device=total.device).to(total.dtype)
        if count.dim() != 0:
            count = count.sum()
        nonzero = count != 0
        loss = total / torch.where(nonzero, count, torch.ones_like(count))
        if self.options["all_ignored"] == "nan":
            loss = torch.where(nonzero, loss, torch.full_like(loss, float("nan")))
        return loss

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if v is not None)
        return f"CausalLMLossFunction(kind={self.kind!r}, {shown})"


def compute_loss_func(
    kind: Kind = "smoothed",
    *,
    eps: float = 0.1,
    beta: float | None = None,
    hinge: float | None = None,
    prior: Tensor | None = None,
    never_target: Tensor | None = None,
    ignore_index: int = -100,
    shift: bool = True,
    z_loss: float = 0.0,
    all_ignored: AllIgnored = "zero",
) -> CausalLMLossFunction:
    """A ``compute_loss_func`` for ``transformers.Trainer`` that trains with a smoothflip LM loss.

    Args:
        kind: ``"ce"``, ``"smoothed"``, ``"negative"``, ``"prior"`` or ``"confidence_penalty"``
            (see :func:`smoothflip.lm.causal_lm_loss`, which also documents ``eps``, ``beta``,
            ``hinge``, ``prior``, ``never_target`` and ``z_loss``).
        eps, beta, hinge, prior, never_target, z_loss: the loss's options.
        ignore_index: label of padding (the Trainer's convention is -100).
        shift: True for causal LMs whose labels are a copy of ``input_ids`` (the HF convention);
            False when the labels are already aligned with the logits.
        all_ignored: the loss of a batch without a single label: ``"zero"`` (default here, so one
            all-padding batch cannot turn the run's loss into NaN) or ``"nan"``. The gradient is
            zero either way.

    Returns:
        A :class:`CausalLMLossFunction`.

    Raises:
        ValueError: an option out of range for ``kind`` (checked now, not at the first step).

    Example:
        >>> import torch
        >>> fn = compute_loss_func("smoothed", eps=0.1)
        >>> logits, labels = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
        >>> ref = torch.nn.functional.cross_entropy(
        ...     logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1), label_smoothing=0.1)
        >>> torch.allclose(fn({"logits": logits}, labels, num_items_in_batch=8), ref)
        True
    """
    check_common("mean", all_ignored)
    _resolve_kind(kind, eps=eps, beta=beta, hinge=hinge, prior=prior, never_target=never_target)
    if not isinstance(shift, bool):
        raise TypeError(f"shift must be True or False, got {shift!r}")
    options = {
        "eps": eps,
        "beta": beta,
        "hinge": hinge,
        "prior": prior,
        "never_target": never_target,
        "ignore_index": ignore_index,
        "shift": shift,
        "z_loss": z_loss,
        "all_ignored": all_ignored,
    }
    return CausalLMLossFunction(kind, options)


def count_shifted_labels(model: Any) -> Any:
    """Make the Trainer count ``labels[..., 1:]`` in ``num_items_in_batch`` for this causal LM.

    Sets ``loss_type = "ForCausalLM"`` on a decoder-only Hugging Face model whose ``loss_type`` is
    unset (``GPT2LMHeadModel`` and other ``...LMHeadModel`` classes; the model's own loss already
    falls back to the causal-LM loss, so nothing else changes). Call it before building the
    ``Trainer``. A model that already has a ``loss_type`` is returned untouched.

    Args:
        model: a ``transformers.PreTrainedModel`` (or a PEFT model wrapping one).

    Returns:
        ``model`` itself.

    Raises:
        TypeError: ``model`` is not a Hugging Face model.
        ValueError: ``model`` is an encoder-decoder model, whose labels are not shifted.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(base, transformers.PreTrainedModel):
        raise TypeError(f"model must be a transformers.PreTrainedModel, got {type(base).__name__}")
    if getattr(base.config, "is_encoder_decoder", False):
        raise ValueError("count_shifted_labels is for decoder-only causal LMs, not encoder-decoder models")
    if getattr(base, "loss_type", None) is None:
        base.loss_type = "ForCausalLM"
    return model


def _logits(outputs: Any) -> Tensor:
    if isinstance(outputs, Tensor):
        return outputs
    if isinstance(outputs, Mapping) or hasattr(outputs, "keys"):
        if "logits" not in outputs:
            raise ValueError(f"the model outputs have no 'logits' (keys: {', '.join(outputs.keys())})")
        return outputs["logits"]
    if isinstance(outputs, tuple | list) and outputs and isinstance(outputs[0], Tensor):
        return outputs[0]
    raise TypeError(f"cannot find logits in model outputs of type {type(outputs).__name__}")
