"""Triton backend: a row-wise smoothed cross-entropy kernel and the fused linear path built on it.

**The kernel** (:func:`triton_rows`) runs one program per row of ``[C, V]`` logits:

1. *One pass* over the row in ``BLOCK``-wide tiles keeps an online softmax: the running max ``m``,
   ``d = sum exp(z - m)``, ``t = sum exp(z - m) * (z - m)`` (rescaled like ``d`` when ``m`` grows:
   ``t <- a * (t + (m_old - m_new) * d)`` with ``a = exp(m_old - m_new)``) and ``s = sum z``. Then
   ``lse = m + log d``, ``E_p[z] = m + t / d``, ``H = log d - t / d`` and the row's loss
   ``lse - (1 - eps) z_y - eps s / V + z_loss lse^2 - beta H`` — label smoothing costs one add per
   element, the confidence penalty one multiply-add per element, both in registers. With a
   smoothing ``prior`` ``u`` (unigram smoothing, or uniform over the tokens that can be targets),
   ``s = sum u z`` and the ``eps / V`` below becomes ``eps u`` (one extra ``[V]`` read per row).
2. *A second pass* writes ``scale * (p (1 + 2 z_loss lse + beta (z - E_p[z])) - eps / V - (1 - eps)[v = y])``
   to the gradient buffer, which may be the logits themselves (the row was fully read first).

Accumulation is float32 (float64 for float64 logits). Ignored rows get loss 0 and a zero gradient.

**The fused linear path** is :func:`~smoothflip.kernels.torch_chunked.chunked_linear_cross_entropy`
with this kernel as its row function: per chunk of rows, ``torch.mm`` for the chunk's logits, the
kernel writing the gradient over them in place, then ``torch.mm`` / ``addmm_`` for the hidden and
weight gradients (Liger-Kernel's FLCE design). The extra memory is one chunk of logits.

The kernels are compiled for CUDA. With ``TRITON_INTERPRET=1`` in the environment *before this
module is imported*, Triton's interpreter runs them on CPU tensors instead (slowly; the tests use
it in a subprocess). Importing this module without triton installed works; calling it does not.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothflip.kernels._common import Options, compute_dtype, next_power_of_2
from smoothflip.kernels.torch_chunked import chunked_cross_entropy, chunked_linear_cross_entropy

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is missing
    triton = None
    tl = None

__all__ = ["MAX_BLOCK_SIZE", "triton_cross_entropy", "triton_linear_cross_entropy", "triton_rows"]

#: Widest tile of a row one program loads at a time (a power of two). Tests lower it to exercise the
#: multi-tile loop on tiny vocabularies; a GPU session may tune it together with the warp count.
MAX_BLOCK_SIZE = 16384


def _num_warps(block: int) -> int:
    if block <= 1024:
        return 4
    if block <= 4096:
        return 8
    return 16


if triton is not None:

    @triton.jit
    def _smoothed_ce_rows_kernel(
        z_ptr,
        z_stride,
        g_ptr,
        g_stride,
        target_ptr,
        loss_ptr,
        scale_ptr,
        scale_stride,
        prior_ptr,
        n_cols,
        eps,
        beta,
        z_loss,
        ignore_index,
        HAS_GRAD: tl.constexpr,
        HAS_EPS: tl.constexpr,
        HAS_BETA: tl.constexpr,
        HAS_Z_LOSS: tl.constexpr,
        HAS_PRIOR: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        z_row = z_ptr + row * z_stride
        g_row = g_ptr + row * g_stride
        cols = tl.arange(0, BLOCK)
        y = tl.load(target_ptr + row)
        if y == ignore_index:
            tl.store(loss_ptr + row, 0.0)
            if HAS_GRAD:
                for start in range(0, n_cols, BLOCK):
                    offs = start + cols
                    tl.store(
                        g_row + offs, tl.zeros([BLOCK], dtype=g_ptr.dtype.element_ty), mask=offs < n_cols
                    )
            return

        # Pass 1: online max / sum-exp / sum-exp*(z - max) / sum z.
        zero = tl.sum(tl.zeros([BLOCK], dtype=ACC), axis=0)
        m = tl.load(z_row).to(ACC)  # any element of the row is a valid starting max
        d = zero
        t = zero
        s = zero
        for start in range(0, n_cols, BLOCK):
            offs = start + cols
            mask = offs < n_cols
            z = tl.load(z_row + offs, mask=mask, other=float("-inf")).to(ACC)
            m_new = tl.maximum(m, tl.max(z, axis=0))
            # -inf logits (masked vocabulary entries) are exact zeros of p: guard every 0 * inf.
            alpha = tl.where(m == m_new, 1.0, tl.exp(m - m_new))
            ex = tl.where(z > float("-inf"), tl.exp(z - m_new), 0.0)  # 0 where masked or -inf
            if HAS_BETA:
                shift = tl.where(d > 0, (m - m_new) * d, 0.0)
                t = alpha * (t + shift) + tl.sum(tl.where(ex > 0, ex * (z - m_new), 0.0), axis=0)
            d = d * alpha + tl.sum(ex, axis=0)
            if HAS_EPS:
                if HAS_PRIOR:
                    u = tl.load(prior_ptr + offs, mask=mask, other=0.0).to(ACC)
                    s += tl.sum(tl.where(u != 0, z * u, 0.0), axis=0)
                else:
                    s += tl.sum(tl.where(mask, z, 0.0), axis=0)
            m = m_new

        log_d = tl.log(d)
        lse = m + log_d
        ez_rel = t / d  # E_p[z] - m
        z_y = tl.load(z_row + y).to(ACC)
        loss = lse - (1.0 - eps) * z_y
        if HAS_EPS:
            if HAS_PRIOR:
                loss = loss - eps * s
            else:
                loss = loss - eps * (s / n_cols)
        if HAS_Z_LOSS:
            loss = loss + z_loss * lse * lse
        if HAS_BETA:
            loss = loss - beta * (log_d - ez_rel)
        tl.store(loss_ptr + row, loss)

        # Pass 2: the gradient, scaled, in the buffer's dtype.
        if HAS_GRAD:
            scale = tl.load(scale_ptr + row * scale_stride).to(ACC)
            if HAS_Z_LOSS:
                c0 = 1.0 + 2.0 * z_loss * lse
            else:
                c0 = 1.0
            for start in range(0, n_cols, BLOCK):
                offs = start + cols
                mask = offs < n_cols
                z = tl.load(z_row + offs, mask=mask, other=0.0).to(ACC)
                p = tl.exp(z - lse)
                if HAS_BETA:
                    g = tl.where(p > 0, p * (c0 + beta * (z - m - ez_rel)), 0.0)
                else:
                    g = p * c0
                if HAS_EPS:
                    if HAS_PRIOR:
                        g = g - eps * tl.load(prior_ptr + offs, mask=mask, other=0.0).to(ACC)
                    else:
                        g = g - eps / n_cols
                g = tl.where(offs == y, g - (1.0 - eps), g)
                tl.store(g_row + offs, (g * scale).to(g_ptr.dtype.element_ty), mask=mask)


def _require_triton() -> None:
    if triton is None:
        raise ValueError(
            "the Triton backend needs the triton package (pip install triton); use backend='torch'"
        )


def triton_rows(
    z: Tensor,
    target: Tensor,
    opts: Options,
    *,
    scale: Tensor | None = None,
    out: Tensor | None = None,
    z_owned: bool = False,
    prior: Tensor | None = None,
) -> Tensor:
    """Per-row loss of ``[C, V]`` logits and optionally the scaled gradient, with the Triton kernel.

    Same contract as :func:`smoothflip.kernels.torch_chunked.torch_rows` (``z_owned`` is unused:
    the kernel never writes ``z`` unless ``out`` is ``z``).

    Args:
        z: ``[C, V]`` logits (fp16 / bf16 / fp32 / fp64), CUDA (or CPU under ``TRITON_INTERPRET=1``).
        target: ``[C]`` class indices (range-checked by the caller).
        opts: the loss options.
        scale: 0-dim or ``[C]`` gradient factor, or None for 1.
        out: ``[C, V]`` gradient destination (may be ``z``), or None for the loss only.
        z_owned: ignored.
        prior: ``[V]`` smoothing distribution (compute dtype) or None for uniform ``eps / V``.

    Returns:
        ``[C]`` per-row losses (float32; float64 for float64 logits).

    Example:
        >>> import torch
        >>> z = torch.randn(4, 10, device="cuda")  # doctest: +SKIP
        >>> triton_rows(z, torch.tensor([1, 2, 3, -100], device="cuda"), Options(eps=0.1))  # doctest: +SKIP
    """
    _require_triton()
    del z_owned
    n_rows, n_cols = z.shape
    cdtype = compute_dtype(z.dtype)
    loss = torch.empty(n_rows, dtype=cdtype, device=z.device)
    if n_rows == 0:
        return loss
    if z.stride(1) != 1:
        z = z.contiguous()
    if out is not None and out.stride(1) != 1:
        raise ValueError("the gradient buffer must be contiguous along the vocabulary")
    if scale is None:
        scale = torch.ones((), dtype=cdtype, device=z.device)
    scale = scale.to(device=z.device, dtype=cdtype)
    scale_stride = 0
    if scale.dim() > 0:
        scale = scale.contiguous()
        scale_stride = 1
    grad = z if out is None else out
    has_prior = prior is not None and opts.eps != 0.0
    prior_arg = prior.to(device=z.device, dtype=cdtype).contiguous() if has_prior else loss
    block = min(next_power_of_2(n_cols), MAX_BLOCK_SIZE)
    _smoothed_ce_rows_kernel[(n_rows,)](
        z,
        z.stride(0),
        grad,
        grad.stride(0),
        target.contiguous(),
        loss,
        scale,
        scale_stride,
        prior_arg,
        n_cols,
        float(opts.eps),
        float(opts.beta),
        float(opts.z_loss),
        int(opts.ignore_index),
        HAS_GRAD=out is not None,
        HAS_EPS=opts.eps != 0.0,
        HAS_BETA=opts.beta != 0.0,
        HAS_Z_LOSS=opts.z_loss != 0.0,
        HAS_PRIOR=has_prior,
        ACC=tl.float64 if cdtype == torch.float64 else tl.float32,
        BLOCK=block,
        num_warps=_num_warps(block),
    )
    return loss


def triton_cross_entropy(
    logits: Tensor,
    target: Tensor,
    opts: Options,
    *,
    inplace_backward: bool = False,
    prior: Tensor | None = None,
) -> Tensor:
    """Given-logits loss with the Triton kernel: one launch over all rows (see the module docstring).

    Example:
        >>> import torch
        >>> z = torch.randn(8, 100, device="cuda", requires_grad=True)  # doctest: +SKIP
        >>> y = torch.randint(0, 100, (8,), device="cuda")  # doctest: +SKIP
        >>> triton_cross_entropy(z, y, Options()).backward()  # doctest: +SKIP
    """
    _require_triton()
    return chunked_cross_entropy(
        logits,
        target,
        opts,
        chunk_size=max(1, logits.shape[0]),
        rows_fn=triton_rows,
        inplace_backward=inplace_backward,
        prior=prior,
    )


def triton_linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    opts: Options,
    *,
    bias: Tensor | None = None,
    chunk_size: int,
    prior: Tensor | None = None,
) -> Tensor:
    """Fused linear loss: chunked ``torch.mm`` + the Triton row kernel (in place) + gradient matmuls.

    Example:
        >>> import torch
        >>> h = torch.randn(16, 8, device="cuda", requires_grad=True)  # doctest: +SKIP
        >>> w = torch.randn(50, 8, device="cuda", requires_grad=True)  # doctest: +SKIP
        >>> y = torch.randint(0, 50, (16,), device="cuda")  # doctest: +SKIP
        >>> triton_linear_cross_entropy(h, w, y, Options(eps=0.1), chunk_size=8).backward()  # doctest: +SKIP
    """
    _require_triton()
    return chunked_linear_cross_entropy(
        hidden, weight, target, opts, bias=bias, chunk_size=chunk_size, rows_fn=triton_rows, prior=prior
    )
