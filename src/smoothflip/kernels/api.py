"""Public entry points: :func:`linear_cross_entropy`, :func:`cross_entropy` and their module twins."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smoothflip._validation import check_choice
from smoothflip.kernels._common import (
    BACKENDS,
    Backend,
    check_chunk_size,
    check_prior,
    check_target,
    given_logits_chunk_size,
    linear_chunk_size,
    make_options,
    resolve_backend,
)
from smoothflip.kernels.torch_chunked import chunked_cross_entropy, chunked_linear_cross_entropy
from smoothflip.losses._common import AllIgnored, Reduction

__all__ = ["CrossEntropy", "LinearCrossEntropy", "cross_entropy", "linear_cross_entropy"]


def _check_matrix(name: str, value: Tensor, dims: str) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {value.dtype}")
    if value.dim() != 2:
        raise ValueError(
            f"{name} must have shape {dims}, got {tuple(value.shape)}; "
            "flatten batch and time dimensions first"
        )


def _module_prior(prior: Tensor | None) -> Tensor | None:
    if prior is None:
        return None
    prior = torch.as_tensor(prior)
    check_prior(prior, prior.shape[0] if prior.dim() == 1 else -1, prior.device, prior.dtype)
    return prior


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    eps: float = 0.0,
    beta: float = 0.0,
    z_loss: float = 0.0,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    bias: Tensor | None = None,
    prior: Tensor | None = None,
    all_ignored: AllIgnored = "nan",
    chunk_size: int | None = None,
    backend: Backend = "auto",
) -> Tensor:
    r"""Smoothed cross-entropy of ``hidden @ weight.T + bias`` without materializing the ``[N, V]`` logits.

    Per non-ignored row, with logits ``z``, ``lse = logsumexp(z)``, ``p = softmax(z)``::

        loss = (1 - eps) * (lse - z_y) + eps * (lse - sum_v u_v z_v) + z_loss * lse**2 - beta * H(p)

    which is exactly ``smoothflip.losses.smoothed_cross_entropy(hidden @ weight.T + bias, target,
    eps=eps, z_loss=z_loss, prior=prior)`` (``u`` uniform, ``eps / V`` per class — PyTorch's
    convention — unless a ``prior`` distribution is given) plus the confidence penalty
    ``-beta * H(p)`` (Pereyra et al. 2017) on every non-ignored row.

    The rows are processed ``chunk_size`` at a time; each chunk's loss *and* its share of the
    gradients of ``hidden``, ``weight`` and ``bias`` are computed in the forward pass, so no
    ``[N, V]`` tensor is ever alive: the extra memory is O(chunk_size * V) plus the gradients
    themselves. ``backward`` only rescales the stored gradients by ``grad_output`` (for
    ``reduction="none"`` it recomputes the chunks, since the weight gradient then depends on the
    per-row ``grad_output``). A plain ``loss.backward()`` hands the stored buffers over without a
    copy; with ``retain_graph=True`` (or ``torch.autograd.grad``) each backward returns fresh
    tensors and the stored ones stay valid. Double backward is not supported.

    Args:
        hidden: ``[N, D]`` hidden states (fp16 / bf16 / fp32 / fp64).
        weight: ``[V, D]`` classifier (unembedding) matrix, same dtype and device.
        target: ``[N]`` class indices; ``ignore_index`` marks rows that contribute nothing.
        eps: label-smoothing strength, ``<= 1``; negative values give negative label smoothing
            (Wei et al. 2022), which is unbounded below.
        beta: confidence-penalty weight, ``>= 0`` (0 = off).
        z_loss: PaLM z-loss coefficient, ``>= 0`` (0 = off).
        ignore_index: target value of ignored rows.
        reduction: ``"mean"`` (over non-ignored rows), ``"sum"`` or ``"none"`` (``[N]``, 0 at
            ignored rows).
        bias: ``[V]`` or None.
        prior: ``[V]`` distribution that receives the smoothing mass (unigram smoothing; or uniform
            over the tokens that can be targets, zero on BOS / PAD), or None for uniform. Finite,
            non-negative, summing to 1; used only when ``eps != 0``.
        all_ignored: what ``"mean"`` returns when every row is ignored: ``"nan"`` (0/0, as
            ``F.cross_entropy`` and :mod:`smoothflip.losses`) or ``"zero"``; the gradient is zero
            either way.
        chunk_size: rows per chunk; default ``next_pow2(ceil(N / ceil(V / D)))`` (a chunk's logits
            about the size of ``hidden``), off CUDA at least ``2**22 / V`` rows.
        backend: ``"auto"`` (Triton on CUDA tensors when triton is importable, else torch),
            ``"torch"`` (exact chunked fallback, any device) or ``"triton"``.

    Returns:
        A scalar, or ``[N]`` for ``reduction="none"``; float32 for fp16 / bf16 / fp32 inputs
        (accumulated in float32), float64 for float64.

    Example:
        >>> import torch
        >>> from smoothflip.kernels import linear_cross_entropy
        >>> from smoothflip.kernels.reference import reference_linear_cross_entropy
        >>> h = torch.randn(64, 16, dtype=torch.float64, requires_grad=True)
        >>> w = torch.randn(1000, 16, dtype=torch.float64, requires_grad=True)
        >>> y = torch.randint(0, 1000, (64,))
        >>> loss = linear_cross_entropy(h, w, y, eps=0.1, beta=0.2, chunk_size=16)
        >>> bool(torch.isclose(loss, reference_linear_cross_entropy(h, w, y, eps=0.1, beta=0.2)))
        True
        >>> loss.backward()
    """
    _check_matrix("hidden", hidden, "[N, D]")
    _check_matrix("weight", weight, "[V, D]")
    opts = make_options(
        eps=eps,
        beta=beta,
        z_loss=z_loss,
        ignore_index=ignore_index,
        reduction=reduction,
        all_ignored=all_ignored,
    )
    if weight.shape[1] != hidden.shape[1]:
        raise ValueError(
            f"weight must have shape [V, {hidden.shape[1]}] to match hidden [N, {hidden.shape[1]}], "
            f"got {tuple(weight.shape)}"
        )
    if weight.shape[0] < 1:
        raise ValueError("weight must have at least one row (the vocabulary is empty)")
    if weight.dtype != hidden.dtype or weight.device != hidden.device:
        raise ValueError(
            f"weight ({weight.dtype}, {weight.device}) must match hidden ({hidden.dtype}, {hidden.device})"
        )
    if bias is not None:
        if not isinstance(bias, Tensor):
            raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape [{weight.shape[0]}], got {tuple(bias.shape)}")
        if bias.dtype != hidden.dtype or bias.device != hidden.device:
            raise ValueError(
                f"bias ({bias.dtype}, {bias.device}) must match hidden ({hidden.dtype}, {hidden.device})"
            )
    check_target(target, hidden.shape[0], weight.shape[0], opts.ignore_index, hidden.device)
    prior = check_prior(prior, weight.shape[0], hidden.device, hidden.dtype)
    chunk = check_chunk_size(chunk_size) or linear_chunk_size(
        *hidden.shape, weight.shape[0], hidden.device.type
    )
    chosen = resolve_backend(backend, hidden.device, hidden.dtype)
    if chosen == "triton":
        from smoothflip.kernels.triton_ce import triton_linear_cross_entropy

        return triton_linear_cross_entropy(
            hidden, weight, target, opts, bias=bias, chunk_size=chunk, prior=prior
        )
    return chunked_linear_cross_entropy(
        hidden, weight, target, opts, bias=bias, chunk_size=chunk, prior=prior
    )


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    eps: float = 0.0,
    beta: float = 0.0,
    z_loss: float = 0.0,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    prior: Tensor | None = None,
    all_ignored: AllIgnored = "nan",
    backend: Backend = "auto",
    inplace_backward: bool = False,
    chunk_size: int | None = None,
) -> Tensor:
    r"""Smoothed cross-entropy + confidence penalty + z-loss of given ``[N, V]`` logits, memory-lean.

    The same per-row loss as :func:`linear_cross_entropy`. When ``logits`` requires grad the
    gradient is computed in the forward pass into **one logits-sized buffer** (the only extra
    memory besides O(N) vectors and, on the torch fallback, a few chunks of ``chunk_size`` rows in
    float32); ``backward`` rescales it by ``grad_output`` and hands it over (a fresh copy when the
    graph is retained). Double backward is not supported.

    ``inplace_backward=True`` writes the gradient **over the logits** (like Liger-Kernel), so no
    extra buffer at all. The hazard: after the call ``logits`` holds the gradient, not the logits —
    do not read them again, and do not use it when another autograd node saved ``logits`` for its
    own backward (e.g. a softcap ``tanh``); the version counter is bumped so autograd raises in that
    case instead of silently computing a wrong gradient.

    Args:
        logits: ``[N, V]`` (fp16 / bf16 / fp32 / fp64); class dimension last.
        target: ``[N]`` class indices; ``ignore_index`` marks ignored rows.
        eps, beta, z_loss, ignore_index, reduction, prior, all_ignored: as in
            :func:`linear_cross_entropy`.
        backend: ``"auto"``, ``"torch"`` or ``"triton"`` (as in :func:`linear_cross_entropy`).
        inplace_backward: overwrite ``logits`` with the gradient (see above).
        chunk_size: rows per chunk of the torch fallback (default: about 16 MiB of float32 per
            temporary); the Triton kernel does all rows in one launch.

    Returns:
        A scalar, or ``[N]`` for ``reduction="none"`` (float32; float64 for float64 logits).

    Example:
        >>> import torch
        >>> from smoothflip.kernels import cross_entropy
        >>> from smoothflip.losses import smoothed_cross_entropy
        >>> logits = torch.randn(32, 500, requires_grad=True)
        >>> target = torch.randint(0, 500, (32,))
        >>> loss = cross_entropy(logits, target, eps=0.1)
        >>> bool(torch.isclose(loss, smoothed_cross_entropy(logits, target, eps=0.1)))
        True
        >>> loss.backward()
    """
    _check_matrix("logits", logits, "[N, V]")
    opts = make_options(
        eps=eps,
        beta=beta,
        z_loss=z_loss,
        ignore_index=ignore_index,
        reduction=reduction,
        all_ignored=all_ignored,
    )
    if logits.shape[1] < 1:
        raise ValueError("logits must have at least one class (dimension 1 is empty)")
    if not isinstance(inplace_backward, bool):
        raise TypeError(f"inplace_backward must be a bool, got {inplace_backward!r}")
    check_target(target, logits.shape[0], logits.shape[1], opts.ignore_index, logits.device)
    prior = check_prior(prior, logits.shape[1], logits.device, logits.dtype)
    chunk = check_chunk_size(chunk_size) or given_logits_chunk_size(*logits.shape)
    chosen = resolve_backend(backend, logits.device, logits.dtype)
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    if chosen == "triton":
        from smoothflip.kernels.triton_ce import triton_cross_entropy

        return triton_cross_entropy(logits, target, opts, inplace_backward=inplace_backward, prior=prior)
    return chunked_cross_entropy(
        logits, target, opts, chunk_size=chunk, inplace_backward=inplace_backward, prior=prior
    )


class _KernelLoss(nn.Module):
    """Shared option handling of the module twins: validated options, ``prior`` as a buffer."""

    def __init__(
        self,
        *,
        eps: float,
        beta: float,
        z_loss: float,
        ignore_index: int,
        reduction: Reduction,
        prior: Tensor | None,
        all_ignored: AllIgnored,
        chunk_size: int | None,
        backend: Backend,
    ) -> None:
        super().__init__()
        opts = make_options(
            eps=eps,
            beta=beta,
            z_loss=z_loss,
            ignore_index=ignore_index,
            reduction=reduction,
            all_ignored=all_ignored,
        )
        self.eps, self.beta, self.z_loss = opts.eps, opts.beta, opts.z_loss
        self.ignore_index, self.reduction, self.all_ignored = (
            opts.ignore_index,
            opts.reduction,
            opts.all_ignored,
        )
        self.chunk_size = check_chunk_size(chunk_size)
        check_choice("backend", backend, BACKENDS)
        self.backend = backend
        self.register_buffer("prior", _module_prior(prior))

    def _options(self) -> dict:
        return {
            "eps": self.eps,
            "beta": self.beta,
            "z_loss": self.z_loss,
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
            "prior": self.prior,
            "all_ignored": self.all_ignored,
            "chunk_size": self.chunk_size,
            "backend": self.backend,
        }

    def extra_repr(self) -> str:
        return f"eps={self.eps}, beta={self.beta}, z_loss={self.z_loss}, reduction={self.reduction!r}"


class LinearCrossEntropy(_KernelLoss):
    """Module twin of :func:`linear_cross_entropy`: holds the options.

    ``forward(hidden, weight, target, bias=None)`` takes the classifier as arguments, so one module
    serves a tied or untied head. ``prior`` is a buffer (it follows ``.to(device)``).

    Example:
        >>> import torch
        >>> head = torch.nn.Linear(16, 100)
        >>> loss_fn = LinearCrossEntropy(eps=0.1, beta=0.1)
        >>> loss = loss_fn(torch.randn(8, 16), head.weight, torch.randint(0, 100, (8,)), bias=head.bias)
        >>> loss.backward()
    """

    def __init__(
        self,
        eps: float = 0.0,
        *,
        beta: float = 0.0,
        z_loss: float = 0.0,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        prior: Tensor | None = None,
        all_ignored: AllIgnored = "nan",
        chunk_size: int | None = None,
        backend: Backend = "auto",
    ) -> None:
        super().__init__(
            eps=eps,
            beta=beta,
            z_loss=z_loss,
            ignore_index=ignore_index,
            reduction=reduction,
            prior=prior,
            all_ignored=all_ignored,
            chunk_size=chunk_size,
            backend=backend,
        )

    def forward(self, hidden: Tensor, weight: Tensor, target: Tensor, bias: Tensor | None = None) -> Tensor:
        return linear_cross_entropy(hidden, weight, target, bias=bias, **self._options())


class CrossEntropy(_KernelLoss):
    """Module twin of :func:`cross_entropy` (given logits); ``prior`` is a buffer.

    Example:
        >>> import torch
        >>> CrossEntropy(eps=0.1)(torch.randn(4, 10), torch.tensor([1, 2, 3, -100])).dim()
        0
    """

    def __init__(
        self,
        eps: float = 0.0,
        *,
        beta: float = 0.0,
        z_loss: float = 0.0,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        prior: Tensor | None = None,
        all_ignored: AllIgnored = "nan",
        backend: Backend = "auto",
        inplace_backward: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            eps=eps,
            beta=beta,
            z_loss=z_loss,
            ignore_index=ignore_index,
            reduction=reduction,
            prior=prior,
            all_ignored=all_ignored,
            chunk_size=chunk_size,
            backend=backend,
        )
        if not isinstance(inplace_backward, bool):
            raise TypeError(f"inplace_backward must be a bool, got {inplace_backward!r}")
        self.inplace_backward = inplace_backward

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(logits, target, inplace_backward=self.inplace_backward, **self._options())
