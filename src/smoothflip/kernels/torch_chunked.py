"""Exact chunked torch fallback, and the chunk loops that the Triton backend reuses.

The fused linear loss walks over ``chunk_size`` rows of ``hidden`` at a time: it computes that
chunk's logits ``h_c @ W.T + b`` (``[C, V]``), the per-row loss and the gradient with respect to
those logits, turns the gradient into the chunk's share of ``grad_hidden`` / ``grad_weight`` /
``grad_bias`` at once (two matmuls and a sum), and drops the chunk. Nothing of shape ``[N, V]`` is
ever alive; the extra memory is a few ``[C, V]`` buffers plus the gradients themselves. For
``reduction="mean"|"sum"`` the gradients are computed during the forward pass and only scaled by
``grad_output`` in backward (no recomputation); for ``reduction="none"`` the weight gradient depends
on the per-row ``grad_output``, so backward recomputes the chunks instead.

The per-chunk work is done by a *row function* ``rows_fn(z, target, opts, scale=, out=, z_owned=)``;
:func:`torch_rows` is the torch one, ``smoothflip.kernels.triton_ce.triton_rows`` the Triton one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from smoothflip.kernels._common import (
    Options,
    compute_dtype,
    grad_scale,
    reduce_rows,
    scale_stored_grad,
)

__all__ = ["RowsFn", "chunked_cross_entropy", "chunked_linear_cross_entropy", "torch_rows"]


class RowsFn(Protocol):
    def __call__(
        self,
        z: Tensor,
        target: Tensor,
        opts: Options,
        *,
        scale: Tensor | None,
        out: Tensor | None,
        z_owned: bool,
        prior: Tensor | None,
    ) -> Tensor: ...


def torch_rows(
    z: Tensor,
    target: Tensor,
    opts: Options,
    *,
    scale: Tensor | None = None,
    out: Tensor | None = None,
    z_owned: bool = False,
    prior: Tensor | None = None,
) -> Tensor:
    """Per-row loss of a block of logits, and optionally its gradient, in plain torch.

    Args:
        z: ``[C, V]`` logits (any floating dtype; computed in float32, float64 kept).
        target: ``[C]`` class indices (``opts.ignore_index`` allowed, already range-checked).
        opts: the loss options.
        scale: 0-dim or ``[C]`` factor applied to the gradient rows (e.g. ``1 / n_valid``).
        out: ``[C, V]`` tensor that receives ``scale * dloss/dz`` in its own dtype (it may be ``z``
            itself), or None to skip the gradient.
        z_owned: True when ``z`` may be overwritten (a temporary of the caller).
        prior: ``[V]`` distribution that receives the smoothing mass ``eps`` (validated, in the
            compute dtype), or None for uniform ``eps / V``.

    Returns:
        ``[C]`` per-row losses in the compute dtype, 0 at ignored rows.

    Example:
        >>> z, y = torch.randn(3, 5), torch.tensor([0, 4, -100])
        >>> torch_rows(z, y, Options(eps=0.1)).shape
        torch.Size([3])
    """
    n_cols = z.shape[1]
    cdtype = compute_dtype(z.dtype)
    eps, beta, zl = opts.eps, opts.beta, opts.z_loss
    may_clobber = z_owned or (out is not None and out.data_ptr() == z.data_ptr())
    x = z.to(cdtype, copy=not may_clobber)  # [C, V] owned working buffer
    valid = target != opts.ignore_index
    y = torch.where(valid, target, torch.zeros_like(target)).long().unsqueeze(1)
    z_y = x.gather(1, y).squeeze(1)
    loss = -(1.0 - eps) * z_y
    if eps != 0.0:
        if prior is None:
            loss = loss - eps * x.mean(dim=1)
        else:
            u = prior.to(cdtype)
            # a class with prior 0 adds 0 even where its logit is -inf (a masked vocabulary entry)
            loss = loss - eps * (torch.where(u > 0, x, 0.0) if bool((u == 0).any()) else x).mv(u)
    m = x.amax(dim=1, keepdim=True)
    x.sub_(m)  # x = z - max
    e = torch.exp(x)
    d = e.sum(dim=1, keepdim=True)
    log_d = d.log()
    lse = (m + log_d).squeeze(1)
    loss = loss + lse
    if zl != 0.0:
        loss = loss + zl * lse.square()
    p = None
    if beta != 0.0:
        p = e.div_(d)
        x.clamp_(min=torch.finfo(cdtype).min)  # -inf logits: p = 0 there, so p * x = 0, not NaN
        ez_rel = torch.bmm(p.unsqueeze(1), x.unsqueeze(2)).squeeze(2)  # [C, 1]: E_p[z] - max
        loss = loss - beta * (log_d - ez_rel).squeeze(1)  # H = log d - (E_p[z] - max)
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if out is None:
        return loss
    if p is None:
        p = e.div_(d)
    coef = (1.0 + 2.0 * zl * lse).unsqueeze(1) if zl != 0.0 else None
    if beta != 0.0:
        g = x.sub_(ez_rel).mul_(beta)  # beta * (z - E_p[z])
        g = g.add_(coef if coef is not None else 1.0).mul_(p)
    else:
        g = p.mul_(coef) if coef is not None else p
    if eps != 0.0:
        g.sub_(eps / n_cols if prior is None else eps * prior.to(cdtype))
    if eps != 1.0:
        g.scatter_add_(1, y, torch.full_like(z_y, -(1.0 - eps)).unsqueeze(1))
    row_factor = valid.to(cdtype)
    if scale is not None:
        row_factor = row_factor * scale.to(cdtype)
    g.mul_(row_factor.unsqueeze(1))
    g.masked_fill_(~valid.unsqueeze(1), 0.0)  # NaN-safe zeros at ignored rows
    out.copy_(g)
    return loss


# ----------------------------------------------------------------------------------- given logits


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, opts, chunk_size, rows_fn, want_grad, inplace, prior):  # type: ignore[override]
        n_rows = logits.shape[0]
        valid = target != opts.ignore_index
        n_valid = valid.sum()
        cdtype = compute_dtype(logits.dtype)
        grad = scale = None
        if want_grad:
            grad = logits if inplace else torch.empty_like(logits)
            scale = grad_scale(n_valid, opts, cdtype) if opts.reduction != "none" else None
        loss_rows = torch.empty(n_rows, dtype=cdtype, device=logits.device)
        for start in range(0, n_rows, chunk_size):
            stop = min(start + chunk_size, n_rows)
            loss_rows[start:stop] = rows_fn(
                logits[start:stop],
                target[start:stop],
                opts,
                scale=scale,
                out=None if grad is None else grad[start:stop],
                z_owned=False,
                prior=prior,
            )
        if inplace and grad is not None:
            torch.autograd.graph.increment_version(logits)  # the logits now hold the gradient
        ctx.reduction = opts.reduction
        ctx.has_grad = grad is not None
        if grad is not None:
            ctx.save_for_backward(grad)
        return reduce_rows(loss_rows, n_valid, opts)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        if not ctx.has_grad:
            raise RuntimeError(
                "smoothflip.kernels.cross_entropy: the logits did not require grad when the loss was computed"
            )
        (grad,) = ctx.saved_tensors
        factor = grad_output.unsqueeze(1) if ctx.reduction == "none" else grad_output
        return scale_stored_grad(grad, factor), None, None, None, None, None, None, None


def chunked_cross_entropy(
    logits: Tensor,
    target: Tensor,
    opts: Options,
    *,
    chunk_size: int,
    rows_fn: RowsFn = torch_rows,
    inplace_backward: bool = False,
    prior: Tensor | None = None,
) -> Tensor:
    """Smoothed cross-entropy (+ confidence penalty, z-loss) of given ``[N, V]`` logits, chunk by chunk.

    When ``logits`` requires grad the gradient is computed here, into one logits-sized buffer (or
    over ``logits`` itself with ``inplace_backward=True``), and only rescaled in backward.

    Args:
        logits: ``[N, V]``.
        target: ``[N]`` class indices (checked by the caller).
        opts: validated options.
        chunk_size: rows per call of ``rows_fn``.
        rows_fn: the row function (:func:`torch_rows` or the Triton one).
        inplace_backward: write the gradient over ``logits``.
        prior: ``[V]`` smoothing distribution (validated, compute dtype) or None for uniform.

    Returns:
        The reduced loss (scalar) or ``[N]`` per-row losses.

    Example:
        >>> z, y = torch.randn(4, 6, requires_grad=True), torch.tensor([1, 2, 3, -100])
        >>> chunked_cross_entropy(z, y, Options(eps=0.1), chunk_size=3).backward()
    """
    want_grad = torch.is_grad_enabled() and logits.requires_grad
    return _ChunkedCrossEntropy.apply(
        logits, target, opts, chunk_size, rows_fn, want_grad, inplace_backward, prior
    )


# ------------------------------------------------------------------------------------- fused linear


def _linear_pass(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    opts: Options,
    chunk_size: int,
    rows_fn: RowsFn,
    *,
    scale: Tensor | None,
    row_scale: Tensor | None,
    want: tuple[bool, bool, bool],
    prior: Tensor | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """One sweep over the chunks: per-row losses and (where ``want``) the three gradients."""
    n_rows = hidden.shape[0]
    vocab = weight.shape[0]
    cdtype = compute_dtype(hidden.dtype)
    want_h, want_w, want_b = want
    any_grad = want_h or want_w or want_b
    loss_rows = torch.empty(n_rows, dtype=cdtype, device=hidden.device)
    grad_h = torch.empty_like(hidden) if want_h else None
    grad_w: Tensor | None = None
    grad_b = torch.zeros(vocab, dtype=cdtype, device=hidden.device) if want_b else None
    weight_t = weight.t()
    for start in range(0, n_rows, chunk_size):
        stop = min(start + chunk_size, n_rows)
        h = hidden[start:stop]
        z = torch.mm(h, weight_t) if bias is None else torch.addmm(bias, h, weight_t)
        chunk_scale = scale if row_scale is None else row_scale[start:stop]
        loss_rows[start:stop] = rows_fn(
            z,
            target[start:stop],
            opts,
            scale=chunk_scale if any_grad else None,
            out=z if any_grad else None,
            z_owned=True,
            prior=prior,
        )
        if not any_grad:
            continue
        dz = z  # now d(loss)/d(logits) of the chunk, in the inputs' dtype
        if grad_h is not None:
            torch.mm(dz, weight, out=grad_h[start:stop])
        if want_w:
            if grad_w is None:
                grad_w = torch.mm(dz.t(), h)
            else:
                grad_w.addmm_(dz.t(), h)
        if grad_b is not None:
            grad_b += dz.sum(dim=0, dtype=cdtype)
        del z, dz
    if want_w and grad_w is None:  # no rows at all
        grad_w = torch.zeros_like(weight)
    return loss_rows, grad_h, grad_w, None if grad_b is None else grad_b.to(bias.dtype)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, target, opts, chunk_size, rows_fn, want, prior):  # type: ignore[override]
        valid = target != opts.ignore_index
        n_valid = valid.sum()
        cdtype = compute_dtype(hidden.dtype)
        ctx.opts, ctx.chunk_size, ctx.rows_fn, ctx.want, ctx.prior = opts, chunk_size, rows_fn, want, prior
        if opts.reduction == "none":
            # grad_weight depends on the per-row grad_output: recompute the chunks in backward.
            loss_rows, *_ = _linear_pass(
                hidden, weight, bias, target, opts, chunk_size, rows_fn,
                scale=None, row_scale=None, want=(False, False, False), prior=prior,
            )  # fmt: skip
            if any(want):
                ctx.save_for_backward(hidden, weight, bias, target)
            return loss_rows
        scale = grad_scale(n_valid, opts, cdtype)
        loss_rows, grad_h, grad_w, grad_b = _linear_pass(
            hidden, weight, bias, target, opts, chunk_size, rows_fn,
            scale=scale, row_scale=None, want=want, prior=prior,
        )  # fmt: skip
        ctx.present = (grad_h is not None, grad_w is not None, grad_b is not None)
        ctx.save_for_backward(*(g for g in (grad_h, grad_w, grad_b) if g is not None))
        return reduce_rows(loss_rows, n_valid, opts)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        opts = ctx.opts
        if opts.reduction == "none":
            hidden, weight, bias, target = ctx.saved_tensors
            _, grad_h, grad_w, grad_b = _linear_pass(
                hidden, weight, bias, target, opts, ctx.chunk_size, ctx.rows_fn,
                scale=None, row_scale=grad_output.to(compute_dtype(hidden.dtype)), want=ctx.want,
                prior=ctx.prior,
            )  # fmt: skip
            return grad_h, grad_w, grad_b, None, None, None, None, None, None
        stored = iter(ctx.saved_tensors)
        grads = [scale_stored_grad(next(stored), grad_output) if p else None for p in ctx.present]
        return (*grads, None, None, None, None, None, None)


def chunked_linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    opts: Options,
    *,
    bias: Tensor | None = None,
    chunk_size: int,
    rows_fn: Callable[..., Tensor] = torch_rows,
    prior: Tensor | None = None,
) -> Tensor:
    """Fused ``hidden @ weight.T + bias`` and smoothed cross-entropy, ``chunk_size`` rows at a time.

    Args:
        hidden: ``[N, D]``.
        weight: ``[V, D]``.
        target: ``[N]`` class indices (checked by the caller).
        opts: validated options.
        bias: ``[V]`` or None.
        chunk_size: rows per chunk; peak extra memory is O(chunk_size * V).
        rows_fn: the row function (:func:`torch_rows` or the Triton one).
        prior: ``[V]`` smoothing distribution (validated, compute dtype) or None for uniform.

    Returns:
        The reduced loss (scalar) or ``[N]`` per-row losses.

    Example:
        >>> h, w = torch.randn(6, 4, requires_grad=True), torch.randn(9, 4, requires_grad=True)
        >>> loss = chunked_linear_cross_entropy(h, w, torch.arange(6), Options(eps=0.1), chunk_size=4)
        >>> loss.backward()
        >>> w.grad.shape
        torch.Size([9, 4])
    """
    grad_on = torch.is_grad_enabled()
    want = (
        grad_on and hidden.requires_grad,
        grad_on and weight.requires_grad,
        grad_on and bias is not None and bias.requires_grad,
    )
    return _ChunkedLinearCrossEntropy.apply(
        hidden, weight, bias, target, opts, chunk_size, rows_fn, want, prior
    )
