"""smoothflip.kernels: the chunked torch fallback and the Triton kernels against a float64 reference.

The reference is :mod:`smoothflip.kernels.reference`: ``smoothflip.losses.smoothed_cross_entropy``
on materialized logits plus ``-beta * H(p)`` per non-ignored row, in float64, differentiated by
autograd. The Triton kernels run under ``TRITON_INTERPRET=1`` in a subprocess (the variable must be
set before the kernels are defined).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from smoothflip.kernels import CrossEntropy, LinearCrossEntropy, cross_entropy, linear_cross_entropy
from smoothflip.kernels._common import (
    given_logits_chunk_size,
    linear_chunk_size,
    resolve_backend,
    triton_importable,
)
from smoothflip.kernels.reference import reference_cross_entropy, reference_linear_cross_entropy
from smoothflip.kernels.torch_chunked import torch_rows
from smoothflip.losses import confidence_penalty_loss, smoothed_cross_entropy

F64 = torch.float64
REDUCTIONS = ("mean", "sum", "none")


# ------------------------------------------------------------------------------------------ helpers


def _linear_inputs(seed=0, *, n=11, d=5, v=13, dtype=F64, bias=True, ignored=(2, 7), scale=1.5):
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(n, d, generator=g, dtype=F64) * scale).to(dtype).requires_grad_()
    w = torch.randn(v, d, generator=g, dtype=F64).to(dtype).requires_grad_()
    b = (torch.randn(v, generator=g, dtype=F64) * 0.5).to(dtype).requires_grad_() if bias else None
    y = torch.randint(0, v, (n,), generator=g)
    for i in ignored:
        y[i] = -100
    return h, w, b, y


def _logit_inputs(seed=0, *, n=10, v=17, dtype=F64, ignored=(3,), scale=3.0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, v, generator=g, dtype=F64) * scale).to(dtype).requires_grad_()
    y = torch.randint(0, v, (n,), generator=g)
    for i in ignored:
        y[i] = -100
    return z, y


def _seed_grad(loss: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """A fixed random ``grad_output`` (0.7 for scalars, so the rescaling path is exercised)."""
    if loss.dim() == 0:
        return torch.tensor(0.7, dtype=F64)
    return torch.randn(loss.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _backprop(loss: torch.Tensor, leaves: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
    for leaf in leaves:
        if leaf is not None:
            leaf.grad = None
    (loss * _seed_grad(loss).to(loss.dtype)).sum().backward()
    return [None if leaf is None else leaf.grad.detach().clone() for leaf in leaves]


def _f64_copies(*tensors):
    return [None if t is None else t.detach().to(F64).requires_grad_() for t in tensors]


def _close(ours, ref, *, rtol=1e-9, atol=1e-10):
    assert ours is not None
    assert ref is not None
    torch.testing.assert_close(ours.to(F64), ref.to(F64), rtol=rtol, atol=atol, equal_nan=True)


def _check_linear(opts: dict, *, chunk_size=None, bias=True, seed=0, rtol=1e-9, atol=1e-10, **shape):
    h, w, b, y = _linear_inputs(seed, bias=bias, **shape)
    loss = linear_cross_entropy(h, w, y, bias=b, chunk_size=chunk_size, backend="torch", **opts)
    grads = _backprop(loss, [h, w, b])
    hr, wr, br = _f64_copies(h, w, b)
    ref = reference_linear_cross_entropy(hr, wr, y, bias=br, **opts)
    ref_grads = _backprop(ref, [hr, wr, br])
    _close(loss, ref, rtol=rtol, atol=atol)
    for ours, expected in zip(grads, ref_grads, strict=True):
        if expected is None:
            assert ours is None
        else:
            _close(ours, expected, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------- fused linear: every option


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("z_loss", [0.0, 0.05])
@pytest.mark.parametrize("beta", [0.0, 0.8])
@pytest.mark.parametrize("eps", [0.0, 0.1, -0.3, 1.0])
def test_linear_matches_float64_reference(eps, beta, z_loss, reduction, bias):
    _check_linear(dict(eps=eps, beta=beta, z_loss=z_loss, reduction=reduction), chunk_size=4, bias=bias)


@pytest.mark.parametrize("chunk_size", [*range(1, 12), 64, None])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_linear_every_chunk_size(chunk_size, reduction):
    # N = 11 rows, V = 13: every chunk size from 1 to N, one larger than N, and the default.
    _check_linear(dict(eps=0.2, beta=0.4, z_loss=0.01, reduction=reduction), chunk_size=chunk_size)


def test_linear_float32_inputs():
    _check_linear(dict(eps=0.1, beta=0.3), chunk_size=3, rtol=1e-5, atol=1e-6, dtype=torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("opts", [dict(eps=0.1), dict(eps=-0.1, beta=0.5, z_loss=1e-3)])
def test_linear_half_within_half_tolerance_of_float32(dtype, opts):
    h, w, b, y = _linear_inputs(3, n=40, d=16, v=300, dtype=dtype, ignored=(5,), scale=0.5)
    loss = linear_cross_entropy(h, w, y, bias=b, chunk_size=7, backend="torch", **opts)
    assert loss.dtype == torch.float32
    grads = _backprop(loss, [h, w, b])
    assert all(g.dtype == dtype for g in grads)
    hr, wr, br = (t.detach().float().requires_grad_() for t in (h, w, b))
    ref = reference_linear_cross_entropy(hr, wr, y, bias=br, dtype=None, **opts)
    ref_grads = _backprop(ref, [hr, wr, br])
    torch.testing.assert_close(loss, ref, rtol=1e-2, atol=1e-2)
    for ours, expected in zip(grads, ref_grads, strict=True):
        tol = 2e-2 * float(expected.abs().max())
        torch.testing.assert_close(ours.float(), expected, rtol=2e-2, atol=tol)


def test_linear_custom_ignore_index():
    h, w, b, y = _linear_inputs(4, ignored=())
    y[::3] = 0  # class 0 is a real class elsewhere; here it is the ignored value
    opts = dict(eps=0.1, beta=0.2, ignore_index=0)
    loss = linear_cross_entropy(h, w, y, bias=b, chunk_size=5, **opts)
    hr, wr, br = _f64_copies(h, w, b)
    _close(loss, reference_linear_cross_entropy(hr, wr, y, bias=br, **opts))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("all_ignored", ["nan", "zero"])
def test_linear_all_ignored(reduction, all_ignored):
    h, w, b, y = _linear_inputs(5, ignored=range(11))
    loss = linear_cross_entropy(
        h, w, y, bias=b, eps=0.1, beta=0.5, z_loss=0.1, reduction=reduction, all_ignored=all_ignored
    )
    if reduction == "mean" and all_ignored == "nan":
        assert math.isnan(float(loss.detach()))
    else:
        assert bool((loss == 0).all())
    hr, wr, br = _f64_copies(h, w, b)
    ref = reference_linear_cross_entropy(
        hr, wr, y, bias=br, eps=0.1, beta=0.5, z_loss=0.1, reduction=reduction, all_ignored=all_ignored
    )
    _close(loss, ref)
    loss.sum().backward()
    for t in (h, w, b):
        assert t.grad is not None
        assert bool((t.grad == 0).all())


def test_linear_matches_pytorch_label_smoothing_and_confidence_penalty():
    h, w, b, y = _linear_inputs(6)
    logits = h @ w.t() + b
    torch.testing.assert_close(
        linear_cross_entropy(h, w, y, bias=b, eps=0.1),
        F.cross_entropy(logits, y, label_smoothing=0.1),
    )
    torch.testing.assert_close(
        linear_cross_entropy(h, w, y, bias=b, beta=0.7), confidence_penalty_loss(logits, y, beta=0.7)
    )
    torch.testing.assert_close(
        linear_cross_entropy(h, w, y, bias=b, eps=-0.2, z_loss=0.1),
        smoothed_cross_entropy(logits, y, eps=-0.2, z_loss=0.1),
    )


def test_linear_only_requested_gradients():
    h, w, b, y = _linear_inputs(7)
    w.requires_grad_(False)
    linear_cross_entropy(h, w, y, bias=b, eps=0.1).backward()
    assert h.grad is not None
    assert b.grad is not None
    assert w.grad is None
    with torch.no_grad():
        loss = linear_cross_entropy(h, w, y, bias=b, eps=0.1)
    assert not loss.requires_grad


def test_retained_graph_backward_twice_accumulates():
    h, w, b, y = _linear_inputs(8)
    loss = linear_cross_entropy(h, w, y, bias=b, eps=0.1, beta=0.3)
    loss.backward(retain_graph=True)
    once = w.grad.clone()
    loss.backward(retain_graph=True)
    loss.backward(torch.tensor(2.0, dtype=F64))
    _close(w.grad, 4 * once)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_linear_gradcheck(reduction):
    h, w, b, y = _linear_inputs(9, n=5, d=3, v=7, ignored=(1,))

    def fn(h, w, b):
        return linear_cross_entropy(
            h, w, y, bias=b, eps=0.2, beta=0.6, z_loss=0.1, reduction=reduction, chunk_size=2
        )

    assert torch.autograd.gradcheck(fn, (h, w, b))


# ------------------------------------------------------------------------------ smoothing prior


def _prior(v: int, seed: int, *, zeros=(0,)) -> torch.Tensor:
    """A random distribution over ``v`` classes with some classes at exactly 0 (never-target tokens)."""
    u = torch.rand(v, generator=torch.Generator().manual_seed(seed), dtype=F64) + 0.05
    u[list(zeros)] = 0.0
    return u / u.sum()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("eps", "beta"), [(0.1, 0.0), (-0.3, 0.5), (1.0, 0.2), (0.0, 0.0)])
def test_prior_smoothing_matches_reference(eps, beta, reduction):
    opts = dict(eps=eps, beta=beta, z_loss=0.02, reduction=reduction)
    h, w, b, y = _linear_inputs(30)
    u = _prior(13, 30, zeros=(0, 4))
    loss = linear_cross_entropy(h, w, y, bias=b, prior=u, chunk_size=4, backend="torch", **opts)
    grads = _backprop(loss, [h, w, b])
    hr, wr, br = _f64_copies(h, w, b)
    ref = reference_linear_cross_entropy(hr, wr, y, bias=br, prior=u, **opts)
    for ours, expected in zip(grads, _backprop(ref, [hr, wr, br]), strict=True):
        _close(ours, expected)
    _close(loss, ref)
    z, y = _logit_inputs(31)
    u = _prior(17, 31)
    loss = cross_entropy(z, y, prior=u, chunk_size=3, backend="torch", **opts)
    (grad,) = _backprop(loss, [z])
    (zr,) = _f64_copies(z)
    ref = reference_cross_entropy(zr, y, prior=u, **opts)
    _close(loss, ref)
    _close(grad, _backprop(ref, [zr])[0])


@pytest.mark.parametrize(
    "backend_opts", [dict(beta=0.7), dict(eps=0.2, beta=0.3, prior="masked"), dict(eps=0.1)]
)
def test_masked_logits_minus_inf(backend_opts):
    """-inf logits (masked vocabulary entries): the loss equals the loss without those columns."""
    z, y = _logit_inputs(35, n=8, v=17, ignored=(3,))
    keep = torch.ones(17, dtype=torch.bool)
    keep[[0, 4, 9]] = False
    y[keep.logical_not()[y.clamp(min=0)] & (y >= 0)] = 1  # targets are never masked
    opts = dict(backend_opts)
    small_opts = dict(opts)
    if opts.get("prior") == "masked":
        u = _prior(17, 35, zeros=(0, 4, 9))
        opts["prior"], small_opts["prior"] = u, u[keep] / u[keep].sum()
    masked = z.detach().masked_fill(~keep, float("-inf")).requires_grad_()
    loss = cross_entropy(masked, y, backend="torch", chunk_size=3, **opts)
    loss.backward()
    small = z.detach()[:, keep].requires_grad_()
    y_small = torch.where(y >= 0, keep.cumsum(0)[y.clamp(min=0)] - 1, y)
    ref = reference_cross_entropy(small, y_small, **small_opts)
    ref.backward()
    if opts.get("eps", 0.0) != 0.0 and "prior" not in opts:
        # uniform smoothing puts mass on impossible tokens: PyTorch says inf too
        assert math.isinf(float(loss.detach()))
        torch.testing.assert_close(loss, F.cross_entropy(masked.detach(), y, label_smoothing=0.1))
        assert bool(torch.isfinite(masked.grad).all())
        return
    _close(loss, ref)
    _close(masked.grad[:, keep], small.grad)
    assert bool((masked.grad[:, ~keep] == 0).all())
    _close(loss, reference_cross_entropy(masked.detach(), y, **opts))


def test_uniform_prior_equals_no_prior_and_float32_prior_is_accepted():
    z, y = _logit_inputs(32, dtype=torch.float32)
    uniform = torch.full((17,), 1 / 17)
    torch.testing.assert_close(cross_entropy(z, y, eps=0.2, prior=uniform), cross_entropy(z, y, eps=0.2))
    h, w, b, y = _linear_inputs(33, dtype=torch.bfloat16)
    u = _prior(13, 33).float()
    loss = linear_cross_entropy(h, w, y, bias=b, eps=0.2, prior=u)
    ref = reference_linear_cross_entropy(h, w, y, bias=b, eps=0.2, prior=u, dtype=torch.float32)
    torch.testing.assert_close(loss, ref, rtol=1e-2, atol=1e-2)  # bf16 logits vs float32 logits
    assert not torch.isclose(
        loss, reference_linear_cross_entropy(h, w, y, bias=b, eps=0.2, dtype=torch.float32)
    )


def test_prior_module_buffer_and_bad_priors():
    u = _prior(17, 34)
    module = CrossEntropy(eps=0.1, prior=u)
    assert "prior" in dict(module.named_buffers())
    z, y = _logit_inputs(34)
    _close(module(z, y), cross_entropy(z, y, eps=0.1, prior=u))
    with pytest.raises(ValueError, match="prior must sum to 1"):
        cross_entropy(z, y, eps=0.1, prior=u * 2)
    with pytest.raises(ValueError, match=r"prior must have shape \[17\]"):
        cross_entropy(z, y, eps=0.1, prior=u[:5] / u[:5].sum())
    with pytest.raises(ValueError, match="non-negative"):
        cross_entropy(z, y, eps=0.1, prior=torch.cat([u[:-1], -u[-1:]]) / (1 - 2 * u[-1]))
    with pytest.raises(TypeError, match="prior must be a floating tensor"):
        cross_entropy(z, y, eps=0.1, prior=torch.ones(17, dtype=torch.long))
    with pytest.raises(ValueError, match="prior must sum to 1"):
        CrossEntropy(eps=0.1, prior=u * 3)


# ------------------------------------------------------------------------------------ given logits


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("z_loss", [0.0, 0.05])
@pytest.mark.parametrize("beta", [0.0, 1.2])
@pytest.mark.parametrize("eps", [0.0, 0.1, -0.3, 1.0])
@pytest.mark.parametrize("chunk_size", [3, None])
def test_given_logits_matches_float64_reference(eps, beta, z_loss, reduction, chunk_size):
    opts = dict(eps=eps, beta=beta, z_loss=z_loss, reduction=reduction)
    z, y = _logit_inputs(10)
    loss = cross_entropy(z, y, chunk_size=chunk_size, backend="torch", **opts)
    (grad,) = _backprop(loss, [z])
    (zr,) = _f64_copies(z)
    ref = reference_cross_entropy(zr, y, **opts)
    (ref_grad,) = _backprop(ref, [zr])
    _close(loss, ref)
    _close(grad, ref_grad)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_given_logits_low_precision(dtype):
    z, y = _logit_inputs(11, n=20, v=500, dtype=dtype)
    loss = cross_entropy(z, y, eps=0.1, beta=0.3, chunk_size=6)
    assert loss.dtype == torch.float32
    (grad,) = _backprop(loss, [z])
    assert grad.dtype == dtype
    zr = z.detach().float().requires_grad_()
    ref = reference_cross_entropy(zr, y, eps=0.1, beta=0.3, dtype=None)
    (ref_grad,) = _backprop(ref, [zr])
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    tol = 1e-2 * float(ref_grad.abs().max()) if dtype != torch.float32 else 1e-6
    torch.testing.assert_close(grad.float(), ref_grad, rtol=1e-2, atol=tol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_inplace_backward_overwrites_logits_with_the_gradient(reduction):
    z, y = _logit_inputs(12)
    opts = dict(eps=0.1, beta=0.5, reduction=reduction)
    leaf = z.detach().clone().requires_grad_()
    expected_loss = cross_entropy(leaf, y, **opts)
    (expected,) = _backprop(expected_loss, [leaf])
    logits = z.detach().clone().requires_grad_()
    work = logits * 1.0  # a non-leaf the kernel may overwrite
    loss = cross_entropy(work, y, inplace_backward=True, **opts)
    _close(loss, expected_loss)
    (grad,) = _backprop(loss, [logits])
    _close(grad, expected)
    _close(work.detach(), expected)  # the logits' buffer now holds the (scaled) gradient


def test_inplace_backward_hazard_is_caught_by_autograd():
    z, y = _logit_inputs(13)
    capped = torch.tanh(z)  # tanh saves its output for backward
    loss = cross_entropy(capped, y, eps=0.1, inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_given_logits_all_ignored(reduction):
    z, y = _logit_inputs(14, ignored=range(10))
    loss = cross_entropy(z, y, eps=0.1, beta=0.4, reduction=reduction)
    ref = reference_cross_entropy(z.detach(), y, eps=0.1, beta=0.4, reduction=reduction)
    _close(loss, ref)
    assert math.isnan(float(loss.detach())) if reduction == "mean" else bool((loss == 0).all())
    loss.sum().backward()
    assert bool((z.grad == 0).all())
    zero = cross_entropy(z, y, eps=0.1, all_ignored="zero")
    assert float(zero.detach()) == 0.0


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_given_logits_gradcheck(reduction):
    z, y = _logit_inputs(15, n=4, v=6, ignored=(2,))
    fn = lambda z: cross_entropy(z, y, eps=-0.2, beta=0.9, z_loss=0.1, reduction=reduction, chunk_size=3)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z,))


def test_torch_rows_gradient_formula_against_autograd():
    z, y = _logit_inputs(16, n=6, v=9)
    from smoothflip.kernels._common import Options

    opts = Options(eps=0.15, beta=0.7, z_loss=0.02)
    out = torch.empty_like(z)
    torch_rows(z.detach(), y, opts, scale=torch.tensor(0.5, dtype=F64), out=out)
    zr = z.detach().clone().requires_grad_()
    reference_cross_entropy(zr, y, eps=0.15, beta=0.7, z_loss=0.02, reduction="sum").backward()
    _close(out, 0.5 * zr.grad)


# ------------------------------------------------------------------------------------------- memory


class _Allocations(TorchDispatchMode):
    """Records the number of elements of every tensor an op creates (views excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.numels: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            self.numels.extend(t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor))
        return out


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_chunked_linear_never_creates_or_saves_an_n_by_v_tensor(reduction, beta):
    n, d, v = 64, 8, 50  # N * V = 3200 > V * D = 400 (grad_weight) and N * D = 512
    h, w, b, y = _linear_inputs(17, n=n, d=d, v=v, dtype=torch.float32)
    saved: list[int] = []

    def pack(t):
        saved.append(t.numel())
        return t

    with _Allocations() as rec, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = linear_cross_entropy(h, w, y, bias=b, eps=0.1, beta=beta, reduction=reduction, chunk_size=16)
        loss.sum().backward()
    assert h.grad is not None
    assert w.grad is not None
    assert max(rec.numels) < n * v // 2, "a tensor of at least half of [N, V] was created"
    assert max(saved) < n * v
    # The recorder does see the materializing reference's [N, V] logits.
    with _Allocations() as rec_ref:
        reference_linear_cross_entropy(h, w, y, bias=b, eps=0.1, dtype=None).backward()
    assert max(rec_ref.numels) >= n * v


@pytest.mark.parametrize("inplace", [False, True])
def test_given_logits_extra_memory_is_at_most_one_gradient_buffer(inplace):
    n, v = 64, 300
    z, y = _logit_inputs(18, n=n, v=v, dtype=torch.float32)
    work = z * 1.0
    with _Allocations() as rec:
        cross_entropy(work, y, eps=0.1, beta=0.5, chunk_size=8, inplace_backward=inplace).backward()
    big = [k for k in rec.numels if k >= n * v // 4]
    # Out of place: the gradient buffer (plus, in backward, the grad that flows into `z * 1.0`).
    assert len([k for k in big if k >= n * v]) <= (1 if inplace else 2)
    assert len(big) == len([k for k in big if k >= n * v]), "no other large temporaries"
    with _Allocations() as rec_eager:
        zz = z.detach().clone().requires_grad_()
        (F.cross_entropy(zz, y, label_smoothing=0.1)).backward()
    assert len([k for k in rec_eager.numels if k >= n * v]) >= 3  # what eager PyTorch needs


def test_default_chunk_sizes():
    assert linear_chunk_size(8192, 4096, 128256) == 256  # a 256 x 128256 chunk ~ hidden's size
    assert linear_chunk_size(4096, 256, 32000) == 64
    assert linear_chunk_size(3, 1000, 10) == 3
    assert linear_chunk_size(1024, 256, 16000, "cpu") == 262  # at least 2**22 logits off CUDA
    assert linear_chunk_size(100, 256, 16000, "cpu") == 100
    assert given_logits_chunk_size(16384, 128256) == 32
    assert given_logits_chunk_size(2, 5) == 2


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_memory_chunked_vs_materialized():
    """Peak RSS of forward + backward in a fresh process: chunked vs materializing (float32, CPU).

    The peak is Linux's VmHWM, reset to the current resident size just before the step (writing 5 to
    /proc/self/clear_refs), so whatever the process touched before (imports, warm-up) does not count.
    """
    script = textwrap.dedent(
        """
        import gc, sys
        import torch, torch.nn.functional as F
        from smoothflip.kernels import linear_cross_entropy

        def status(key):
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

        n, d, v = 2048, 128, 16000
        g = torch.Generator().manual_seed(0)
        h = torch.randn(n, d, generator=g).requires_grad_()
        w = (torch.randn(v, d, generator=g) * 0.05).requires_grad_()
        y = torch.randint(0, v, (n,), generator=g)

        def step(h, w, y):
            if sys.argv[1] == "chunked":
                linear_cross_entropy(h, w, y, eps=0.1, beta=0.1, chunk_size=128).backward()
            else:
                logits = h @ w.t()
                lp = torch.log_softmax(logits, 1)
                loss = F.cross_entropy(logits, y, label_smoothing=0.1) + 0.1 * (lp.exp() * lp).sum(1).mean()
                del logits, lp
                loss.backward()

        step(h[:64].detach().requires_grad_(), w.detach().requires_grad_(), y[:64])  # lazy kernels, pools
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident size (VmHWM) to the current one
        base = status("VmRSS")
        step(h, w, y)
        print(status("VmHWM") - base)
        """
    )
    extra = {}
    for mode in ("chunked", "materialized"):
        out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        extra[mode] = int(out.stdout.split()[-1])
    logits_bytes = 2048 * 16000 * 4
    chunk_bytes = 128 * 16000 * 4  # one [chunk, V] float32 buffer: 1/16 of the logits
    grads_bytes = (16000 + 2048) * 128 * 4  # grad_weight and grad_hidden, which any method returns
    assert extra["materialized"] > 2 * logits_bytes, extra
    # The chunk's logits, its float32 working copy and exp, and allocator slack: a handful of chunks.
    assert extra["chunked"] < 6 * chunk_bytes + grads_bytes, extra
    assert 10 * extra["chunked"] < extra["materialized"], extra


# --------------------------------------------------------------------------------- API and errors


def test_modules_equal_functions():
    h, w, b, y = _linear_inputs(19)
    module = LinearCrossEntropy(0.1, beta=0.2, z_loss=0.01, chunk_size=3)
    _close(module(h, w, y, bias=b), linear_cross_entropy(h, w, y, bias=b, eps=0.1, beta=0.2, z_loss=0.01))
    assert "eps=0.1" in repr(module)
    z, y = _logit_inputs(19)
    _close(
        CrossEntropy(0.1, beta=0.2, reduction="sum")(z, y),
        cross_entropy(z, y, eps=0.1, beta=0.2, reduction="sum"),
    )


def test_auto_backend_is_torch_on_cpu():
    assert resolve_backend("auto", torch.device("cpu"), torch.float32) == "torch"


@pytest.mark.skipif(not triton_importable(), reason="triton is not installed")
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="interpreter active")
def test_triton_backend_on_cpu_needs_the_interpreter():
    z, y = _logit_inputs(20)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        cross_entropy(z, y, backend="triton")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(eps=1.5), ValueError, "eps must be <= 1"),
        (dict(beta=-0.1), ValueError, "beta must be >= 0"),
        (dict(z_loss=-1.0), ValueError, "z_loss must be >= 0"),
        (dict(reduction="avg"), ValueError, "reduction must be one of"),
        (dict(all_ignored="skip"), ValueError, "all_ignored must be one of"),
        (dict(backend="cuda"), ValueError, "backend must be one of"),
        (dict(chunk_size=0), ValueError, "chunk_size must be >= 1"),
        (dict(eps=float("nan")), ValueError, "eps must be finite"),
    ],
)
def test_bad_options_name_the_argument(kwargs, error, match):
    h, w, _, y = _linear_inputs(21)
    with pytest.raises(error, match=match):
        linear_cross_entropy(h, w, y, **kwargs)
    z, y = _logit_inputs(21)
    with pytest.raises(error, match=match):
        cross_entropy(z, y, **kwargs)


def test_bad_inputs_name_the_argument():
    h, w, b, y = _linear_inputs(22)
    with pytest.raises(ValueError, match="class index 13, outside"):
        linear_cross_entropy(h, w, torch.full_like(y, 13))
    with pytest.raises(TypeError, match="target must hold class indices"):
        linear_cross_entropy(h, w, y.double())
    with pytest.raises(ValueError, match=r"target must have shape \[11\]"):
        linear_cross_entropy(h, w, y[:5])
    with pytest.raises(ValueError, match=r"hidden must have shape \[N, D\]"):
        linear_cross_entropy(h.unsqueeze(0), w, y)
    with pytest.raises(ValueError, match=r"weight must have shape \[V, 5\]"):
        linear_cross_entropy(h, w[:, :3], y)
    with pytest.raises(ValueError, match="must match hidden"):
        linear_cross_entropy(h, w.float(), y)
    with pytest.raises(ValueError, match=r"bias must have shape \[13\]"):
        linear_cross_entropy(h, w, y, bias=b[:4])
    with pytest.raises(TypeError, match="logits must be a floating tensor"):
        cross_entropy(torch.ones(3, 4, dtype=torch.long), torch.zeros(3, dtype=torch.long))


# ------------------------------------------------------------------------- Triton (the interpreter)

_TRITON_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are defined
    import torch
    from smoothflip.kernels import cross_entropy, linear_cross_entropy
    from smoothflip.kernels import triton_ce
    from smoothflip.kernels.reference import reference_cross_entropy, reference_linear_cross_entropy

    triton_ce.MAX_BLOCK_SIZE = 16  # V = 37 -> three tiles, the last one partial
    F64 = torch.float64
    DTYPES = {"f64": F64, "f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
    cases = json.loads(sys.argv[1])
    results = {}

    def err(a, b):
        a, b = a.detach().to(F64), b.detach().to(F64)
        same_nan = bool((a.isnan() == b.isnan()).all())
        diff = (a - b).nan_to_num(0.0).abs().max()
        return float(diff) if same_nan else float("inf"), float(b.nan_to_num(0.0).abs().max())

    for case in cases:
        name, kind, dtype = case["name"], case["kind"], DTYPES[case["dtype"]]
        opts, ignored = dict(case["opts"]), case["ignored"]
        g = torch.Generator().manual_seed(case["seed"])
        masked = list(range(17)) if opts.pop("masked", False) else []  # the first tile and one more
        if opts.pop("prior", False):  # a random smoothing distribution with zero entries
            u = torch.rand(37, generator=g, dtype=F64) + 0.05
            u[[0, 5, *masked]] = 0.0
            opts["prior"] = u / u.sum()
        if kind == "gradcheck":
            z = torch.randn(4, 21, generator=g, dtype=F64).requires_grad_()
            y = torch.tensor([3, -100, 20, 0])
            h = torch.randn(5, 3, generator=g, dtype=F64).requires_grad_()
            w = torch.randn(21, 3, generator=g, dtype=F64).requires_grad_()
            b = torch.randn(21, generator=g, dtype=F64).requires_grad_()
            y5 = torch.tensor([3, -100, 20, 0, 7])
            ok_given = torch.autograd.gradcheck(
                lambda z: cross_entropy(z, y, backend="triton", **opts), (z,))
            ok_linear = torch.autograd.gradcheck(
                lambda h, w, b: linear_cross_entropy(
                    h, w, y5, bias=b, backend="triton", chunk_size=2, **opts),
                (h, w, b))
            results[name] = {"gradcheck": bool(ok_given and ok_linear)}
            continue
        n, v = case["n"], 37
        y = torch.randint(0, v, (n,), generator=g)
        for i in ignored:
            y[i] = -100 if "ignore_index" not in opts else opts["ignore_index"]
        if kind == "given":
            z = (torch.randn(n, v, generator=g, dtype=F64) * 3).to(dtype)
            z[:, masked] = float("-inf")  # masked vocabulary entries
            leaf = z.clone().requires_grad_()
            work = leaf * 1 if case.get("inplace") else leaf
            inplace = bool(case.get("inplace"))
            loss = cross_entropy(work, y, backend="triton", inplace_backward=inplace, **opts)
            ref_dtype = F64 if dtype == F64 else torch.float32
            zr = z.to(ref_dtype).requires_grad_()
            ref = reference_cross_entropy(zr, y, dtype=None, **opts)
            leaves, ref_leaves = [leaf], [zr]
        else:
            d = 6
            h = torch.randn(n, d, generator=g, dtype=F64).to(dtype).requires_grad_()
            w = torch.randn(v, d, generator=g, dtype=F64).to(dtype).requires_grad_()
            b = torch.randn(v, generator=g, dtype=F64).to(dtype).requires_grad_()
            loss = linear_cross_entropy(h, w, y, bias=b, backend="triton", chunk_size=4, **opts)
            ref_dtype = F64 if dtype == F64 else torch.float32
            hr, wr, br = (t.detach().to(ref_dtype).requires_grad_() for t in (h, w, b))
            ref = reference_linear_cross_entropy(hr, wr, y, bias=br, dtype=None, **opts)
            leaves, ref_leaves = [h, w, b], [hr, wr, br]
        seed = torch.randn(loss.shape, generator=g, dtype=F64) if loss.dim() else torch.tensor(0.7, dtype=F64)
        (loss * seed.to(loss.dtype)).sum().backward()
        (ref * seed.to(ref.dtype)).sum().backward()
        out = {"loss": err(loss, ref), "loss_dtype": str(loss.dtype)}
        out["grads"] = [err(a.grad, r.grad) for a, r in zip(leaves, ref_leaves)]
        results[name] = out
    print("RESULTS" + json.dumps(results))
    """
)

_OPTION_SETS = {
    "plain": dict(),
    "ls": dict(eps=0.1),
    "nls_cp_z": dict(eps=-0.3, beta=0.5, z_loss=0.02),
    "cp_sum": dict(beta=1.0, reduction="sum"),
    "full_none": dict(eps=0.2, beta=0.3, z_loss=0.01, reduction="none"),
    "eps1_ignore0": dict(eps=1.0, beta=0.2, ignore_index=0),
    "prior_cp": dict(eps=0.3, beta=0.4, prior=True),
    "masked_prior_cp": dict(eps=0.3, beta=0.4, prior=True, masked=True),
}


def _triton_cases(full: bool) -> list[dict]:
    cases = []
    dtypes = ["f64", "f32", "bf16", "f16"] if full else ["f64", "bf16"]
    fast = ["plain", "nls_cp_z", "full_none", "prior_cp", "masked_prior_cp"]
    option_names = list(_OPTION_SETS) if full else fast
    for dtype in dtypes:
        for opt in option_names:
            cases.append(dict(kind="given", dtype=dtype, opts=_OPTION_SETS[opt], name=f"given-{dtype}-{opt}"))
            if dtype != "f16" and not _OPTION_SETS[opt].get("masked"):
                cases.append(
                    dict(kind="linear", dtype=dtype, opts=_OPTION_SETS[opt], name=f"linear-{dtype}-{opt}")
                )
    cases.append(
        dict(kind="given", dtype="f32", opts=dict(eps=0.1, beta=0.4), inplace=True, name="given-inplace")
    )
    for red in REDUCTIONS:
        for kind in ("given", "linear"):
            opts = dict(eps=0.1, beta=0.5, reduction=red)
            name = f"{kind}-all-ignored-{red}"
            cases.append(dict(kind=kind, dtype="f32", opts=opts, ignored=list(range(9)), name=name))
    if full:  # gradcheck under the interpreter takes about 10 s
        opts = dict(eps=0.2, beta=0.6, z_loss=0.1)
        cases.append(dict(kind="gradcheck", dtype="f64", opts=opts, name="gradcheck"))
    for i, case in enumerate(cases):
        case.setdefault("ignored", [2, 5])
        case.setdefault("n", 9)
        case["seed"] = i
    return cases


_TOL = {"f64": (1e-6, 1e-8), "f32": (1e-5, 1e-5), "bf16": (2e-2, 2e-2), "f16": (5e-3, 5e-3)}


def _run_triton(cases: list[dict]) -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "-c", _TRITON_SCRIPT, json.dumps(cases)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS"))
    return json.loads(line[len("RESULTS") :])


def _assert_triton_case(case: dict, result: dict) -> None:
    if case["kind"] == "gradcheck":
        assert result["gradcheck"]
        return
    rtol, atol = _TOL[case["dtype"]]
    loss_err, loss_mag = result["loss"]
    assert loss_err <= atol + rtol * loss_mag, (case["name"], "loss", loss_err, loss_mag)
    assert result["loss_dtype"] == ("torch.float64" if case["dtype"] == "f64" else "torch.float32")
    for i, (grad_err, grad_mag) in enumerate(result["grads"]):
        assert grad_err <= atol + rtol * grad_mag, (case["name"], f"grad {i}", grad_err, grad_mag)


_FAST_CASES = _triton_cases(full=False)
_FULL_CASES = _triton_cases(full=True)
needs_triton = pytest.mark.skipif(not triton_importable(), reason="triton is not installed")


@pytest.fixture(scope="module")
def triton_fast_results() -> dict:
    return _run_triton(_FAST_CASES)


@pytest.fixture(scope="module")
def triton_full_results() -> dict:
    return _run_triton(_FULL_CASES)


@needs_triton
@pytest.mark.parametrize("case", _FAST_CASES, ids=[c["name"] for c in _FAST_CASES])
def test_triton_interpreter_matches_reference(case, triton_fast_results):
    _assert_triton_case(case, triton_fast_results[case["name"]])


@needs_triton
@pytest.mark.slow
@pytest.mark.parametrize("case", _FULL_CASES, ids=[c["name"] for c in _FULL_CASES])
def test_triton_interpreter_full_grid(case, triton_full_results):
    _assert_triton_case(case, triton_full_results[case["name"]])


# ------------------------------------------------------------------------ CUDA GPU, real shapes

needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and triton_importable()), reason="needs a CUDA GPU and triton"
)
_CUDA_OPTIONS = [
    dict(eps=0.1),
    dict(eps=-0.1, beta=0.2, z_loss=1e-4),
    dict(beta=0.3, reduction="sum"),
    dict(eps=0.2, prior="random", reduction="none"),
]


def _cuda_prior(v: int, opts: dict) -> dict:
    opts = dict(opts)
    if opts.pop("prior", None):
        u = torch.rand(v, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1)) + 0.01
        opts["prior"] = u / u.sum()
    return opts


def _assert_grad_close(ours: torch.Tensor, ref: torch.Tensor, rel: float) -> None:
    err = float((ours.float() - ref.float()).abs().max())
    assert err <= rel * float(ref.float().abs().max()) + 1e-6, (err, float(ref.abs().max()))


@needs_cuda
@pytest.mark.parametrize("opts", _CUDA_OPTIONS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_cuda_given_logits_real_shape(opts, dtype):
    n, v = 4096, 32000
    g = torch.Generator(device="cuda").manual_seed(0)
    z = (torch.randn(n, v, device="cuda", generator=g) * 3).to(dtype)
    y = torch.randint(0, v, (n,), device="cuda", generator=g)
    y[::7] = -100
    opts = _cuda_prior(v, opts)
    leaf = z.clone().requires_grad_()
    loss = cross_entropy(leaf, y, backend="triton", **opts)
    (loss * 0.5).sum().backward()
    zr = z.float().requires_grad_()
    ref = reference_cross_entropy(zr, y, dtype=torch.float32, **opts)
    (ref * 0.5).sum().backward()
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-4)
    _assert_grad_close(leaf.grad, zr.grad, 1e-2 if dtype == torch.bfloat16 else 1e-5)


@needs_cuda
@pytest.mark.parametrize("opts", _CUDA_OPTIONS)
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_cuda_fused_linear_real_shape(opts, backend):
    n, d, v = 2048, 1024, 32000
    g = torch.Generator(device="cuda").manual_seed(0)
    h = (torch.randn(n, d, device="cuda", generator=g) * 0.5).bfloat16().requires_grad_()
    w = (torch.randn(v, d, device="cuda", generator=g) * 0.05).bfloat16().requires_grad_()
    y = torch.randint(0, v, (n,), device="cuda", generator=g)
    y[::5] = -100
    opts = _cuda_prior(v, opts)
    loss = linear_cross_entropy(h, w, y, backend=backend, **opts)
    loss.sum().backward()
    hr, wr = (t.detach().float().requires_grad_() for t in (h, w))
    ref = reference_linear_cross_entropy(hr, wr, y, dtype=torch.float32, **opts)
    ref.sum().backward()
    torch.testing.assert_close(loss, ref, rtol=2e-2, atol=2e-2)
    _assert_grad_close(h.grad, hr.grad, 2e-2)
    _assert_grad_close(w.grad, wr.grad, 2e-2)


@needs_cuda
def test_cuda_fused_linear_never_allocates_the_logits():
    n, d, v = 8192, 1024, 32000
    h = torch.randn(n, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = (torch.randn(v, d, device="cuda", dtype=torch.bfloat16) * 0.05).requires_grad_()
    y = torch.randint(0, v, (n,), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    linear_cross_entropy(h, w, y, eps=0.1, beta=0.1).backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    logits_bytes = n * v * 2
    grads_bytes = (n * d + v * d) * 2
    assert extra < grads_bytes + logits_bytes / 4, (extra, grads_bytes, logits_bytes)


@pytest.mark.slow
def test_benchmark_script_runs_and_reports_its_errors():
    """``benchmarks/lm_loss.py --small`` (CPU shapes): every row runs, and ours matches the reference."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.join(root, "benchmarks", "lm_loss.py"), "--small", "--n", "256"]
    cmd += ["--reps", "1", "--only", "ours-linear-cp", "eager-linear", "ours-given-inplace", "liger-given"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = {ln.split("|")[1].strip(): ln.split("|")[2:] for ln in out.splitlines() if ln.startswith("| ")}
    ours = rows["smoothflip linear_cross_entropy + confidence penalty"]
    assert float(ours[0]) > 0
    assert float(ours[3]) < 1e-5  # loss error against the float32 reference
    assert float(ours[4]) < 1e-5  # relative gradient error
    assert float(rows["smoothflip cross_entropy, inplace_backward"][4]) < 1e-5
    assert "PyTorch eager (h @ W.T, float32 CE)" in rows
    liger = rows["Liger-Kernel cross-entropy (in place)"][0].strip()
    assert liger.startswith("not installed") or float(liger) > 0
