"""Shared plumbing of the fused cross-entropy kernels: options, checks, chunk sizes, reductions.

Every backend computes, per non-ignored row ``n`` with logits ``z`` (length ``V``), target ``y``,
``lse = logsumexp(z)``, ``p = softmax(z)`` and ``H = -sum_v p_v log p_v``::

    loss_n = (1 - eps) * (lse - z_y) + eps * (lse - sum_v u_v z_v) + z_loss * lse**2 - beta * H

with ``u`` the smoothing distribution (uniform ``1 / V`` unless a ``prior`` is given), and its exact
gradient with respect to the logits::

    dloss_n / dz_v = p_v * (1 + 2 * z_loss * lse + beta * (z_v - E_p[z])) - eps * u_v - (1 - eps) * [v == y]

(``dH/dz_v = -p_v (log p_v + H) = -p_v (z_v - E_p[z])``). Ignored rows give 0 and a zero gradient.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from smoothflip._validation import check_choice, check_int, check_number
from smoothflip.losses._common import ALL_IGNORED, REDUCTIONS, check_eps, check_z_loss

Backend = Literal["auto", "torch", "triton"]
BACKENDS = ("auto", "torch", "triton")

#: Elements (``rows * V``) of one chunk of the given-logits torch fallback: 2**22 floats, 16 MiB in fp32.
GIVEN_LOGITS_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Options:
    """The loss options every backend receives (already validated)."""

    eps: float = 0.0
    beta: float = 0.0
    z_loss: float = 0.0
    ignore_index: int = -100
    reduction: str = "mean"
    all_ignored: str = "nan"


def make_options(
    *, eps: float, beta: float, z_loss: float, ignore_index: int, reduction: str, all_ignored: str
) -> Options:
    """Validate the loss options (each error names the argument and what is allowed)."""
    eps = check_eps(eps)
    beta = check_number("beta", beta)
    if beta < 0:
        raise ValueError(f"beta must be >= 0 (the weight of the confidence penalty), got {beta!r}")
    z_loss = check_z_loss(z_loss)
    ignore_index = check_int("ignore_index", ignore_index)
    check_choice("reduction", reduction, REDUCTIONS)
    check_choice("all_ignored", all_ignored, ALL_IGNORED)
    return Options(eps, beta, z_loss, ignore_index, reduction, all_ignored)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; fp16 / bf16 / fp32 accumulate in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_target(
    target: Tensor, n_rows: int, n_classes: int, ignore_index: int, device: torch.device
) -> None:
    """``target`` must be ``[N]`` class indices in ``[0, V)`` or ``ignore_index`` (checked on the host).

    The range check is a host synchronisation; it turns what would be an out-of-bounds read on the
    GPU into a ``ValueError`` that names the bad value.
    """
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must hold class indices (an integer tensor), got dtype {target.dtype}")
    if target.dim() != 1 or target.shape[0] != n_rows:
        raise ValueError(
            f"target must have shape [{n_rows}] (one class index per row), got {tuple(target.shape)}; "
            "flatten batch and time dimensions first"
        )
    if target.device != device:
        raise ValueError(f"target is on {target.device}, the other inputs on {device}")
    if n_rows == 0:
        return
    bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
    if bool(bad.any()):
        value = int(target[bad][0])
        raise ValueError(
            f"target holds class index {value}, outside [0, {n_classes}) "
            f"(and not ignore_index={ignore_index})"
        )


def check_prior(
    prior: Tensor | None, n_classes: int, device: torch.device, dtype: torch.dtype
) -> Tensor | None:
    """A ``[V]`` smoothing distribution: finite, non-negative, summing to 1 (within 1e-4), on ``device``.

    Returned contiguous in the compute dtype of ``dtype`` (float32, or float64 for float64 inputs).
    """
    if prior is None:
        return None
    if not isinstance(prior, Tensor):
        raise TypeError(f"prior must be a torch.Tensor or None, got {type(prior).__name__}")
    if not prior.is_floating_point():
        raise TypeError(f"prior must be a floating tensor (a distribution over classes), got {prior.dtype}")
    if prior.dim() != 1 or prior.shape[0] != n_classes:
        raise ValueError(
            f"prior must have shape [{n_classes}] (one entry per class), got {tuple(prior.shape)}"
        )
    if prior.device != device:
        raise ValueError(f"prior is on {prior.device}, the other inputs on {device}")
    u = prior.detach().to(compute_dtype(dtype)).contiguous()
    if not bool(torch.isfinite(u).all()) or bool((u < 0).any()):
        raise ValueError("prior must hold finite, non-negative class probabilities")
    total = float(u.sum())
    if abs(total - 1.0) > 1e-4:
        raise ValueError(f"prior must sum to 1 over the classes, sums to {total:.6g}")
    return u


def check_chunk_size(chunk_size: int | None) -> int | None:
    if chunk_size is None:
        return None
    return check_int("chunk_size", chunk_size, low=1)


def next_power_of_2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def linear_chunk_size(n_rows: int, hidden_dim: int, vocab: int, device_type: str = "cuda") -> int:
    """Rows per chunk of the fused linear path: a chunk's logits about the size of ``hidden``.

    Liger-Kernel's heuristic: ``next_pow2(ceil(N / ceil(V / D)))``, clamped to ``[1, N]``. At
    N = 8192, D = 4096, V = 128256 that is 256 rows (a 63 MiB bf16 chunk of logits). Off CUDA the
    chunk is at least :data:`GIVEN_LOGITS_CHUNK_ELEMENTS` logits (16 MiB in float32): small matmuls
    are slow on a CPU (at N = 1024, D = 256, V = 16000 on 2 cores: 32 rows 343 ms, 256 rows 192 ms).
    """
    factor = max(1, math.ceil(vocab / max(hidden_dim, 1)))
    rows = next_power_of_2(math.ceil(max(n_rows, 1) / factor))
    if device_type != "cuda":
        rows = max(rows, GIVEN_LOGITS_CHUNK_ELEMENTS // max(vocab, 1))
    return max(1, min(max(n_rows, 1), rows))


def given_logits_chunk_size(n_rows: int, vocab: int) -> int:
    """Rows per chunk of the given-logits torch fallback (about 16 MiB of float32 per temporary)."""
    return max(1, min(max(n_rows, 1), GIVEN_LOGITS_CHUNK_ELEMENTS // max(vocab, 1)))


def triton_importable() -> bool:
    """True when ``import triton`` works (the import itself is deferred until a kernel is needed)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_interpreting() -> bool:
    """True when ``TRITON_INTERPRET=1``: Triton kernels then run on CPU tensors (slowly, for tests)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    """``"auto"``: Triton for CUDA tensors when triton imports, otherwise the torch fallback."""
    check_choice("backend", backend, BACKENDS)
    if backend == "torch":
        return "torch"
    if backend == "auto":
        if device.type == "cuda" and dtype != torch.float64 and triton_importable():
            return "triton"
        return "torch"
    if not triton_importable():
        raise ValueError(
            "backend='triton' needs the triton package (pip install triton); use backend='torch'"
        )
    if device.type != "cuda" and not triton_interpreting():
        raise ValueError(
            f"backend='triton' needs CUDA tensors (got {device.type}); set TRITON_INTERPRET=1 before "
            "importing smoothflip.kernels.triton_ce to run the kernels in Triton's interpreter, or use "
            "backend='torch'"
        )
    return "triton"


def reduce_rows(loss_rows: Tensor, n_valid: Tensor, opts: Options) -> Tensor:
    """Reduce ``[N]`` per-row losses (0 at ignored rows) like :mod:`smoothflip.losses`.

    ``"mean"`` divides by the number of non-ignored rows; when there are none it gives NaN
    (``all_ignored="nan"``, PyTorch's 0/0) or 0 (``all_ignored="zero"``).
    """
    if opts.reduction == "none":
        return loss_rows
    total = loss_rows.sum()
    if opts.reduction == "sum":
        return total
    count = n_valid.to(total.dtype)
    mean = total / count.clamp(min=1)
    if opts.all_ignored == "zero":
        return mean
    return torch.where(count > 0, mean, torch.full_like(mean, math.nan))


def grad_scale(n_valid: Tensor, opts: Options, dtype: torch.dtype) -> Tensor:
    """The factor that turns per-row gradients into the gradient of the reduced loss (0-dim tensor)."""
    if opts.reduction == "mean":
        return 1.0 / n_valid.to(dtype).clamp(min=1)
    return torch.ones((), dtype=dtype, device=n_valid.device)


def graph_kept() -> bool:
    """Inside a backward: whether the graph is retained (``retain_graph=True``, ``autograd.grad``, gradcheck).

    Uses a private autograd query; if it is unavailable, answers True (the safe, copying choice).
    """
    try:
        return bool(torch._C._autograd._get_current_graph_task_keep_graph())
    except (AttributeError, RuntimeError):  # pragma: no cover - older / newer torch
        return True


def scale_stored_grad(grad: Tensor, factor: Tensor) -> Tensor:
    """Return ``grad * factor`` for a gradient computed in the forward pass and saved for backward.

    When the graph is freed after this backward (plain ``loss.backward()``), the saved buffer is
    scaled in place (and not at all when ``factor`` is exactly 1) and handed over, so autograd can
    keep it as ``.grad`` without a copy. When the graph is retained, a new tensor is returned and
    the saved one stays intact for the next backward.
    """
    factor = factor.to(grad.dtype)
    if graph_kept():
        return grad * factor
    if factor.numel() == 1 and bool(factor == 1):
        return grad
    return grad.mul_(factor)
