"""Token-level losses for causal language models: logits ``[B, T, V]``, labels ``[B, T]``.

:func:`causal_lm_loss` is the one entry point. It puts a language model's logits through the
classification losses of :mod:`smoothflip.losses` (same conventions: ``ignore_index``, float32
accumulation for fp16/bf16, ``reduction``, ``all_ignored``, z-loss) after the causal shift.

**The shift.** With ``shift=True`` (the default, what Hugging Face causal LMs expect when
``labels`` is a copy of ``input_ids``), the logits at position ``t`` predict ``labels[:, t + 1]``:
the last logit position and the first label take no part. Hugging Face's ``LabelSmoother`` once
smoothed the *unshifted* labels of causal LMs (transformers #17960, fixed by PR #17987; the same bug
for PEFT-wrapped models, #27161), training every position to predict its own input token.

**Memory.** The shift moves the labels, not the logits: labels become ``[labels[:, 1:],
ignore_index]`` and the logits are flattened to ``[B*T, V]`` as a view, so contiguous float32 /
float64 logits are never copied (the last position's log-probabilities are computed and masked,
``1/T`` extra work). What the loss itself allocates is that of :mod:`smoothflip.losses`: the
log-probabilities and their negation (``[B*T, V]`` each, float32) plus, for fp16/bf16 logits, a
float32 copy of the logits.

**Fused kernels.** On CUDA the loss goes through :func:`smoothflip.kernels.cross_entropy` (Triton)
whenever the options allow it (``fused=None``, the default): every kind except the hinged
confidence penalty, without class ``weight``. It computes the same loss (the smoothing
distribution, with ``never_target`` and ``prior``, is handed to the kernel) and its gradient in one
pass, with one logits-sized gradient buffer as the only large allocation. ``fused=True`` asks for it
anywhere (the exact chunked torch fallback off CUDA), ``fused=False`` never. For very large
vocabularies, :func:`causal_lm_linear_loss` takes the hidden states and the unembedding matrix
instead and never materializes the ``[B, T, V]`` logits at all.

Kinds (``kind=``):

- ``"ce"``: plain cross-entropy (``eps`` is not used).
- ``"smoothed"``: uniform label smoothing, ``0 <= eps <= 1``; every token gets ``eps / V`` — the
  semantics of ``F.cross_entropy(label_smoothing=eps)``.
- ``"negative"``: negative label smoothing (Wei et al. 2022), ``eps < 0``. **Unbounded below**:
  the loss goes to minus infinity as non-target logits go to minus infinity, and can diverge at
  ordinary learning rates (warm up with ``"ce"``).
- ``"prior"``: unigram smoothing, ``(1 - eps) * onehot + eps * prior`` with a ``[V]`` token
  distribution (see :func:`unigram_prior`); ``eps`` may be negative here too.
- ``"confidence_penalty"``: ``CE - beta * H(p)`` (Pereyra et al. 2017), or the hinged form
  ``CE + beta * max(0, hinge - H(p))``.

**Tokens that never are targets** (``never_target``, a ``[V]`` bool mask: BOS, PAD, ...): they
get no smoothing mass; the uniform part is spread over the other tokens only (``eps / (V - m)``
each for ``m`` masked tokens), and a ``prior`` is zeroed there and renormalized. Pereyra et al.
(2017) had to mask such outputs (e.g. BOS on WSJ) for uniform smoothing to help. A target that *is*
a masked token still gets its ``1 - eps``. ``"ce"`` has no smoothing mass, so the mask changes
nothing there; ``"confidence_penalty"`` refuses it (the entropy is over all tokens).

Example:
    >>> import torch
    >>> logits = torch.randn(2, 5, 11)                   # [B, T, V]
    >>> labels = torch.randint(0, 11, (2, 5))
    >>> labels[1, 3:] = -100                             # padding
    >>> loss = causal_lm_loss(logits, labels, kind="smoothed", eps=0.1)
    >>> ref = torch.nn.functional.cross_entropy(
    ...     logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), label_smoothing=0.1)
    >>> torch.allclose(loss, ref)
    True
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from smoothflip._validation import check_choice, check_int, check_number
from smoothflip.losses import confidence_penalty_loss, smoothed_cross_entropy
from smoothflip.losses._common import AllIgnored, Reduction, check_common

__all__ = [
    "KINDS",
    "CausalLMLoss",
    "causal_lm_linear_loss",
    "causal_lm_loss",
    "shift_labels",
    "smoothing_prior",
    "unigram_prior",
]

Kind = Literal["ce", "smoothed", "negative", "confidence_penalty", "prior"]

#: The loss kinds :func:`causal_lm_loss` accepts.
KINDS: tuple[str, ...] = ("ce", "smoothed", "negative", "confidence_penalty", "prior")


def shift_labels(labels: Tensor, *, ignore_index: int = -100) -> Tensor:
    """Labels aligned with the logits of a causal LM: ``[labels[:, 1:], ignore_index]``.

    Position ``t`` of the result is the token that the logits at position ``t`` predict; the last
    position has nothing to predict and holds ``ignore_index``. No logits are sliced or copied.

    Args:
        labels: ``[B, T]`` integer token ids (``ignore_index`` where there is no target).
        ignore_index: the value of positions without a target.

    Returns:
        ``[B, T]`` int64 labels.

    Example:
        >>> shift_labels(torch.tensor([[5, 6, 7, 8]]))
        tensor([[   6,    7,    8, -100]])
    """
    labels = _check_labels(labels)
    pad = labels.new_full((labels.shape[0], 1), ignore_index)
    return torch.cat([labels[:, 1:], pad], dim=1)


def unigram_prior(
    token_ids: Any,
    vocab_size: int,
    *,
    ignore_index: int = -100,
    smoothing: float = 0.0,
    never_target: Any = None,
) -> Tensor:
    """Token frequencies as a ``[V]`` distribution, for ``kind="prior"`` (unigram smoothing).

    ``prior[v] = (count[v] + smoothing) / sum_u (count[u] + smoothing)``, counting every entry of
    ``token_ids`` except ``ignore_index``. Count the *targets* (e.g. ``labels[:, 1:]``), so that a
    BOS token at position 0 is not counted.

    Args:
        token_ids: integer token ids of any shape (NumPy array, torch tensor or nested lists).
        vocab_size: ``V``; every id (other than ``ignore_index``) must be in ``[0, V)``.
        ignore_index: id that is not counted (padding).
        smoothing: additive pseudo-count per token, ``>= 0`` (``1.0`` is add-one / Laplace
            smoothing; ``0`` gives unseen tokens no mass).
        never_target: optional ``[V]`` bool mask of tokens that get probability 0 whatever their
            count (BOS, PAD).

    Returns:
        ``[V]`` float64 tensor summing to 1.

    Raises:
        ValueError: an id outside ``[0, V)``, a negative ``smoothing``, or nothing to count (no
            tokens and ``smoothing == 0``).

    Example:
        >>> unigram_prior(torch.tensor([[1, 1, 2, -100]]), 4)
        tensor([0.0000, 0.6667, 0.3333, 0.0000], dtype=torch.float64)
        >>> unigram_prior([1, 1, 2], 4, smoothing=1.0)
        tensor([0.1429, 0.4286, 0.2857, 0.1429], dtype=torch.float64)
    """
    vocab_size = check_int("vocab_size", vocab_size, low=1)
    smoothing = check_number("smoothing", smoothing)
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0 (a pseudo-count per token), got {smoothing!r}")
    ids = token_ids.detach().cpu().numpy() if isinstance(token_ids, Tensor) else np.asarray(token_ids)
    if ids.size and ids.dtype.kind not in "iu":
        raise TypeError(f"token_ids must hold integers, got dtype {ids.dtype}")
    ids = ids.astype(np.int64).reshape(-1)
    ids = ids[ids != ignore_index]
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = ids[(ids < 0) | (ids >= vocab_size)][0]
        raise ValueError(f"token_ids holds {int(bad)}, outside [0, {vocab_size}) (and not ignore_index)")
    counts = np.bincount(ids, minlength=vocab_size).astype(np.float64) + smoothing
    if never_target is not None:
        counts[_check_mask(never_target, vocab_size).cpu().numpy()] = 0.0
    total = counts.sum()
    if total <= 0:
        raise ValueError(
            "unigram_prior has nothing to count: no tokens (other than ignored ones) and smoothing=0"
        )
    return torch.from_numpy(counts / total)


def smoothing_prior(
    vocab_size: int, *, prior: Any = None, never_target: Any = None, dtype: torch.dtype = torch.float64
) -> Tensor:
    """The ``[V]`` distribution that smoothing mixes in: uniform or ``prior``, minus ``never_target``.

    Args:
        vocab_size: ``V``.
        prior: ``[V]`` non-negative weights (normalized here), or None for uniform.
        never_target: ``[V]`` bool mask of tokens that get no mass, or None.
        dtype: floating dtype of the result.

    Returns:
        ``[V]`` tensor summing to 1: ``prior`` (or uniform) zeroed on ``never_target`` and
        renormalized.

    Example:
        >>> smoothing_prior(4, never_target=torch.tensor([True, False, False, False]))
        tensor([0.0000, 0.3333, 0.3333, 0.3333], dtype=torch.float64)
    """
    vocab_size = check_int("vocab_size", vocab_size, low=1)
    if prior is None:
        u = torch.ones(vocab_size, dtype=dtype)
    else:
        u = torch.as_tensor(prior).detach().to(device="cpu", dtype=dtype)
        if u.dim() != 1 or u.shape[0] != vocab_size:
            raise ValueError(
                f"prior must have shape [{vocab_size}] (one entry per token), got {tuple(u.shape)}"
            )
        if not bool(torch.isfinite(u).all()) or bool((u < 0).any()):
            raise ValueError("prior must hold finite, non-negative token probabilities")
    if never_target is not None:
        u = torch.where(_check_mask(never_target, vocab_size).cpu(), torch.zeros_like(u), u)
    total = float(u.sum())
    if total <= 0:
        what = "never_target masks every token" if prior is None else "prior has no mass outside never_target"
        raise ValueError(f"nothing to smooth towards: {what}")
    return u / total


def causal_lm_loss(
    logits: Tensor,
    labels: Tensor,
    *,
    kind: Kind = "smoothed",
    eps: float = 0.1,
    beta: float | None = None,
    hinge: float | None = None,
    prior: Tensor | None = None,
    never_target: Tensor | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    shift: bool = True,
    reduction: Reduction = "mean",
    z_loss: float = 0.0,
    all_ignored: AllIgnored = "nan",
    fused: bool | None = None,
) -> Tensor:
    """Next-token loss of a causal LM, averaged over non-ignored (non-padding) tokens.

    See the module docstring for the kinds, the shift and memory use.

    Args:
        logits: ``[B, T, V]`` unnormalized scores (any floating dtype; fp16/bf16 accumulate in
            float32).
        labels: ``[B, T]`` int token ids; ``ignore_index`` marks padding. With ``shift=True`` this
            is usually ``input_ids`` itself.
        kind: ``"ce"``, ``"smoothed"``, ``"negative"``, ``"prior"`` or ``"confidence_penalty"``.
        eps: smoothing strength: in ``[0, 1]`` for ``"smoothed"``, ``< 0`` for ``"negative"``,
            ``<= 1`` for ``"prior"``; ignored by ``"ce"`` and ``"confidence_penalty"``.
        beta: weight of the entropy penalty, ``>= 0`` (``"confidence_penalty"`` only; required).
        hinge: entropy threshold in nats for the hinged confidence penalty, or None.
        prior: ``[V]`` token distribution for ``"prior"`` (required there, refused elsewhere).
        never_target: ``[V]`` bool mask of tokens that receive no smoothing mass.
        weight: ``[V]`` class weights, as in ``F.cross_entropy`` (``"mean"`` then divides by the
            summed weights of the targets).
        ignore_index: label value of positions without a target.
        shift: ``True``: logits at ``t`` predict ``labels[:, t + 1]``; ``False``: logits and labels
            are already aligned (position ``t`` predicts ``labels[:, t]``).
        reduction: ``"mean"`` (over non-ignored tokens), ``"sum"`` or ``"none"``.
        z_loss: PaLM z-loss coefficient (``z_loss * logsumexp(logits)^2`` per token), ``>= 0``.
        all_ignored: ``"mean"`` of a batch whose every token is ignored (all padding, or ``T == 1``
            with ``shift=True``): ``"nan"`` (0/0, what ``F.cross_entropy`` gives) or ``"zero"``.
            The gradient is all zeros either way; ``"sum"`` gives 0.
        fused: use the fused kernel :func:`smoothflip.kernels.cross_entropy`: ``None`` (default)
            on CUDA logits when the options allow it (not ``weight``, not ``hinge``), ``True``
            always (a ``ValueError`` if the options do not allow it; the exact torch fallback off
            CUDA), ``False`` never. Same loss and gradient either way, up to float rounding.

    Returns:
        A scalar, or for ``reduction="none"`` the per-token loss ``[B, T - 1]`` (``shift=True``;
        entry ``t`` is the loss of predicting ``labels[:, t + 1]``) or ``[B, T]`` (``shift=False``),
        0 at ignored positions. float32 for fp16/bf16 logits.

    Raises:
        ValueError: bad shapes, a label outside ``[0, V)`` that is not ``ignore_index``, or an
            option out of range for the kind (the message names it).

    Example:
        >>> logits, labels = torch.randn(2, 6, 9), torch.randint(0, 9, (2, 6))
        >>> causal_lm_loss(logits, labels, kind="ce").shape
        torch.Size([])
        >>> causal_lm_loss(logits, labels, kind="negative", eps=-0.2, reduction="none").shape
        torch.Size([2, 5])
    """
    check_choice("kind", kind, KINDS)
    check_common(reduction, all_ignored)
    if not isinstance(shift, bool):
        raise TypeError(f"shift must be True or False, got {shift!r}")
    logits, labels = _check_logits_labels(logits, labels)
    vocab = logits.shape[-1]
    options = _resolve_kind(kind, eps=eps, beta=beta, hinge=hinge, prior=prior, never_target=never_target)
    target = shift_labels(labels, ignore_index=ignore_index) if shift else labels
    flat_logits = logits.reshape(-1, vocab)  # a view for contiguous logits: no copy
    flat_target = target.reshape(-1)
    if fused is not None and not isinstance(fused, bool):
        raise TypeError(f"fused must be True, False or None, got {fused!r}")
    use_fused = fused if fused is not None else (logits.is_cuda and weight is None and hinge is None)
    if use_fused:
        from smoothflip.kernels import cross_entropy as fused_cross_entropy

        loss = fused_cross_entropy(
            flat_logits,
            flat_target,
            **_fused_options(kind, options, vocab, never_target, hinge, weight, flat_logits.device),
            z_loss=z_loss,
            ignore_index=ignore_index,
            reduction=reduction,
            all_ignored=all_ignored,
        )
        return _unflatten(loss, labels, reduction, shift)
    common = {
        "weight": weight,
        "ignore_index": ignore_index,
        "reduction": reduction,
        "z_loss": z_loss,
        "all_ignored": all_ignored,
    }
    if kind == "confidence_penalty":
        loss = confidence_penalty_loss(flat_logits, flat_target, beta=options["beta"], hinge=hinge, **common)
    else:
        u = None
        if options["eps"] != 0.0 and (options["prior"] is not None or never_target is not None):
            u = smoothing_prior(vocab, prior=options["prior"], never_target=never_target)
        loss = smoothed_cross_entropy(flat_logits, flat_target, eps=options["eps"], prior=u, **common)
    return _unflatten(loss, labels, reduction, shift)


def causal_lm_linear_loss(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    kind: Kind = "smoothed",
    eps: float = 0.1,
    beta: float | None = None,
    prior: Tensor | None = None,
    never_target: Tensor | None = None,
    bias: Tensor | None = None,
    ignore_index: int = -100,
    shift: bool = True,
    reduction: Reduction = "mean",
    z_loss: float = 0.0,
    all_ignored: AllIgnored = "nan",
    chunk_size: int | None = None,
    backend: Literal["auto", "torch", "triton"] = "auto",
) -> Tensor:
    """:func:`causal_lm_loss` of ``hidden @ weight.T + bias`` without materializing the ``[B, T, V]`` logits.

    For large vocabularies: pass the last hidden states and the unembedding (``lm_head``) matrix
    instead of the logits. :func:`smoothflip.kernels.linear_cross_entropy` walks over
    ``chunk_size`` tokens at a time (Triton on CUDA, an exact chunked torch fallback elsewhere), so
    the extra memory is one chunk of logits plus the gradients themselves. Every kind is available
    except the hinged confidence penalty; there is no class ``weight``.

    Args:
        hidden: ``[B, T, D]`` final hidden states.
        weight: ``[V, D]`` unembedding matrix (same dtype and device as ``hidden``).
        labels: ``[B, T]`` token ids, as in :func:`causal_lm_loss`.
        kind, eps, beta, prior, never_target, ignore_index, shift, reduction, z_loss, all_ignored:
            as in :func:`causal_lm_loss`.
        bias: ``[V]`` output bias, or None.
        chunk_size: tokens per chunk (default: a chunk of logits about the size of ``hidden``).
        backend: ``"auto"``, ``"torch"`` or ``"triton"`` (see
            :func:`smoothflip.kernels.linear_cross_entropy`).

    Returns:
        As :func:`causal_lm_loss`: a scalar, or ``[B, T - 1]`` / ``[B, T]`` for ``reduction="none"``.

    Example:
        >>> hidden = torch.randn(2, 6, 8, requires_grad=True)
        >>> head = torch.nn.Linear(8, 50, bias=False)
        >>> labels = torch.randint(0, 50, (2, 6))
        >>> loss = causal_lm_linear_loss(hidden, head.weight, labels, kind="smoothed", eps=0.1)
        >>> bool(torch.isclose(loss, causal_lm_loss(head(hidden), labels, kind="smoothed", eps=0.1)))
        True
        >>> loss.backward()
    """
    from smoothflip.kernels import linear_cross_entropy

    check_choice("kind", kind, KINDS)
    check_common(reduction, all_ignored)
    if not isinstance(shift, bool):
        raise TypeError(f"shift must be True or False, got {shift!r}")
    if not isinstance(hidden, Tensor) or hidden.dim() != 3:
        got = tuple(hidden.shape) if isinstance(hidden, Tensor) else type(hidden).__name__
        raise ValueError(f"hidden must be a [B, T, D] tensor, got {got}")
    labels = _check_labels(labels)
    if tuple(labels.shape) != tuple(hidden.shape[:2]):
        raise ValueError(
            f"labels must have shape {tuple(hidden.shape[:2])} ([B, T] of hidden {tuple(hidden.shape)}), "
            f"got {tuple(labels.shape)}"
        )
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a [V, D] tensor, got {got}")
    options = _resolve_kind(kind, eps=eps, beta=beta, hinge=None, prior=prior, never_target=never_target)
    vocab = weight.shape[0]
    target = shift_labels(labels, ignore_index=ignore_index) if shift else labels
    loss = linear_cross_entropy(
        hidden.reshape(-1, hidden.shape[-1]),
        weight,
        target.reshape(-1).to(hidden.device),
        **_fused_options(kind, options, vocab, never_target, None, None, hidden.device),
        z_loss=z_loss,
        ignore_index=ignore_index,
        reduction=reduction,
        bias=bias,
        all_ignored=all_ignored,
        chunk_size=chunk_size,
        backend=backend,
    )
    return _unflatten(loss, labels, reduction, shift)


class CausalLMLoss(nn.Module):
    """Module twin of :func:`causal_lm_loss` (``prior``, ``never_target`` and ``weight`` are buffers).

    Example:
        >>> loss_fn = CausalLMLoss("smoothed", eps=0.1)
        >>> logits = torch.randn(2, 4, 7, requires_grad=True)
        >>> loss_fn(logits, torch.randint(0, 7, (2, 4))).backward()
    """

    def __init__(
        self,
        kind: Kind = "smoothed",
        *,
        eps: float = 0.1,
        beta: float | None = None,
        hinge: float | None = None,
        prior: Tensor | None = None,
        never_target: Tensor | None = None,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        shift: bool = True,
        reduction: Reduction = "mean",
        z_loss: float = 0.0,
        all_ignored: AllIgnored = "nan",
        fused: bool | None = None,
    ) -> None:
        super().__init__()
        check_choice("kind", kind, KINDS)
        check_common(reduction, all_ignored)
        _resolve_kind(kind, eps=eps, beta=beta, hinge=hinge, prior=prior, never_target=never_target)
        self.kind = kind
        self.eps = eps
        self.beta = beta
        self.hinge = hinge
        self.ignore_index = ignore_index
        self.shift = shift
        self.reduction = reduction
        self.z_loss = z_loss
        self.all_ignored = all_ignored
        if fused is not None and not isinstance(fused, bool):
            raise TypeError(f"fused must be True, False or None, got {fused!r}")
        self.fused = fused
        self.register_buffer("prior", None if prior is None else torch.as_tensor(prior))
        self.register_buffer("never_target", None if never_target is None else torch.as_tensor(never_target))
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return causal_lm_loss(
            logits,
            labels,
            kind=self.kind,
            eps=self.eps,
            beta=self.beta,
            hinge=self.hinge,
            prior=self.prior,
            never_target=self.never_target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            shift=self.shift,
            reduction=self.reduction,
            z_loss=self.z_loss,
            all_ignored=self.all_ignored,
            fused=self.fused,
        )

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, eps={self.eps}, beta={self.beta}, shift={self.shift}"


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _unflatten(loss: Tensor, labels: Tensor, reduction: str, shift: bool) -> Tensor:
    if reduction != "none":
        return loss
    loss = loss.reshape(labels.shape)
    return loss[:, :-1] if shift else loss


def _fused_options(
    kind: str,
    options: dict[str, Any],
    vocab: int,
    never_target: Any,
    hinge: float | None,
    weight: Tensor | None,
    device: torch.device,
) -> dict[str, Any]:
    """The ``eps`` / ``beta`` / ``prior`` arguments of the fused kernels for a resolved kind."""
    if weight is not None:
        raise ValueError("the fused kernel has no class weight: pass fused=False (or weight=None)")
    if hinge is not None:
        raise ValueError(
            "the fused kernel has no hinged confidence penalty: pass fused=False (or hinge=None)"
        )
    if kind == "confidence_penalty":
        return {"eps": 0.0, "beta": float(options["beta"]), "prior": None}
    eps = float(options["eps"])
    u = None
    if eps != 0.0 and (options["prior"] is not None or never_target is not None):
        u = smoothing_prior(vocab, prior=options["prior"], never_target=never_target).to(device)
    return {"eps": eps, "beta": 0.0, "prior": u}


def _check_labels(labels: Any) -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must hold integer token ids, got dtype {labels.dtype}")
    if labels.dim() != 2:
        raise ValueError(f"labels must have shape [B, T], got {tuple(labels.shape)}")
    return labels.long()


def _check_logits_labels(logits: Any, labels: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got dtype {logits.dtype}")
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape [B, T, V], got {tuple(logits.shape)}")
    labels = _check_labels(labels)
    if tuple(labels.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"labels must have shape {tuple(logits.shape[:2])} ([B, T] of logits {tuple(logits.shape)}), "
            f"got {tuple(labels.shape)}"
        )
    return logits, labels


def _check_mask(mask: Any, vocab_size: int) -> Tensor:
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"never_target must be a bool mask, got dtype {mask.dtype}")
    if mask.dim() != 1 or mask.shape[0] != vocab_size:
        raise ValueError(
            f"never_target must have shape [{vocab_size}] (one entry per token), got {tuple(mask.shape)}"
        )
    return mask


def _resolve_kind(
    kind: str,
    *,
    eps: float,
    beta: float | None,
    hinge: float | None,
    prior: Any,
    never_target: Any,
) -> dict[str, Any]:
    """Check the options against the kind; return the eps / beta / prior the kind uses."""
    eps = check_number("eps", eps)
    if eps > 1:
        raise ValueError(f"eps must be <= 1, got {eps!r}")
    if kind != "confidence_penalty" and (beta is not None or hinge is not None):
        raise ValueError(f"beta and hinge belong to kind='confidence_penalty', not kind={kind!r}")
    if kind != "prior" and prior is not None:
        raise ValueError(f"prior belongs to kind='prior', not kind={kind!r}")
    if kind == "ce":
        return {"eps": 0.0, "prior": None}
    if kind == "smoothed":
        if eps < 0:
            raise ValueError(
                f"kind='smoothed' needs 0 <= eps <= 1, got {eps!r}; use kind='negative' for eps < 0"
            )
        return {"eps": eps, "prior": None}
    if kind == "negative":
        if eps >= 0:
            raise ValueError(f"kind='negative' needs eps < 0 (e.g. eps=-0.2), got {eps!r}")
        return {"eps": eps, "prior": None}
    if kind == "prior":
        if prior is None:
            raise ValueError("kind='prior' needs prior: a [V] token distribution (see unigram_prior)")
        return {"eps": eps, "prior": prior}
    # confidence_penalty
    if beta is None:
        raise ValueError("kind='confidence_penalty' needs beta (the weight of the entropy penalty, >= 0)")
    if never_target is not None:
        raise ValueError(
            "never_target applies to the smoothing kinds ('smoothed', 'negative', 'prior'), "
            "not to kind='confidence_penalty'"
        )
    return {"beta": beta}
