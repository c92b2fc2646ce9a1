"""Losses: parity with F.cross_entropy, hand formulas, gradients, shapes, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothflip import losses as L


@pytest.fixture(autouse=True, scope="module")
def _float64_by_default():
    """Exact comparisons need float64; restore the default for other test modules."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


# ----------------------------------------------------------------------------- helpers


def _case(draw, *, soft: bool, with_weight: bool, with_ignore: bool, seed: int):
    """Random logits [N, C, d...], targets, weights and ignore_index, float64."""
    g = torch.Generator().manual_seed(seed)
    n = draw(st.integers(1, 5))
    c = draw(st.integers(1, 6))
    extra = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    shape = (n, c, *extra)
    logits = (torch.randn(shape, generator=g) * 3).requires_grad_(True)
    weight = torch.rand(c, generator=g) + 0.1 if with_weight else None
    ignore_index = -100
    if soft:
        target = torch.softmax(torch.randn(shape, generator=g) * 2, dim=1)
    else:
        target = torch.randint(0, c, (n, *extra), generator=g)
        if with_ignore:
            ignore_index = draw(st.sampled_from([-100, -1, 0, c - 1]))
            drop = torch.rand(target.shape, generator=g) < 0.3
            target = torch.where(drop, torch.full_like(target, ignore_index), target)
    return logits, target, weight, ignore_index


def _grads(fn, logits):
    logits.grad = None
    value = fn(logits)
    value.sum().backward()
    return value.detach(), logits.grad.detach().clone()


def _assert_same(a, b, *, rtol=1e-9, atol=1e-11):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, equal_nan=True)


# ----------------------------------------------------------------------------- parity with PyTorch


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    soft=st.booleans(),
    with_weight=st.booleans(),
    with_ignore=st.booleans(),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    eps=st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0)),
    seed=st.integers(0, 2**31 - 1),
)
def test_uniform_smoothing_matches_torch_value_and_gradient(
    data, soft, with_weight, with_ignore, reduction, eps, seed
):
    logits, target, weight, ignore_index = _case(
        data.draw, soft=soft, with_weight=with_weight, with_ignore=with_ignore, seed=seed
    )
    kwargs = {"weight": weight, "reduction": reduction, "ignore_index": ignore_index}
    ours, ours_grad = _grads(lambda x: L.smoothed_cross_entropy(x, target, eps=eps, **kwargs), logits)
    ref, ref_grad = _grads(lambda x: F.cross_entropy(x, target, label_smoothing=eps, **kwargs), logits)
    _assert_same(ours, ref)
    _assert_same(ours_grad, ref_grad)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_uniform_smoothing_matches_torch_unbatched(reduction):
    x = torch.randn(7, requires_grad=True)
    for target in (torch.tensor(3), torch.softmax(torch.randn(7), 0)):
        ours, g1 = _grads(lambda z, t=target: L.smoothed_cross_entropy(z, t, eps=0.2, reduction=reduction), x)
        ref, g2 = _grads(
            lambda z, t=target: F.cross_entropy(z, t, label_smoothing=0.2, reduction=reduction), x
        )
        _assert_same(ours, ref)
        _assert_same(g1, g2)


@pytest.mark.parametrize("with_weight", [False, True])
def test_all_ignored_matches_torch(with_weight):
    x = torch.randn(4, 5, requires_grad=True)
    target = torch.full((4,), -100)
    weight = torch.rand(5) + 0.5 if with_weight else None
    for reduction in ("mean", "sum", "none"):
        kwargs = {"weight": weight, "reduction": reduction}
        ours, g1 = _grads(lambda z, kw=kwargs: L.smoothed_cross_entropy(z, target, eps=0.1, **kw), x)
        ref, g2 = _grads(lambda z, kw=kwargs: F.cross_entropy(z, target, label_smoothing=0.1, **kw), x)
        _assert_same(ours, ref)
        _assert_same(g1, g2)
    assert torch.isnan(L.smoothed_cross_entropy(x, target, weight=weight))


ALL_IGNORED_LOSSES = {
    "smoothed": lambda x, t, **kw: L.smoothed_cross_entropy(x, t, eps=0.1, z_loss=1e-3, **kw),
    "confidence": lambda x, t, **kw: L.confidence_penalty_loss(x, t, beta=0.5, **kw),
    "distill": lambda x, t, **kw: L.distillation_loss(x, x.detach() * 2, target=t, alpha=0.5, **kw),
    "gce": lambda x, t, **kw: L.generalized_cross_entropy(x, t, **kw),
    "sce": lambda x, t, **kw: L.symmetric_cross_entropy(x, t, **kw),
    "bootstrap": lambda x, t, **kw: L.bootstrapping_loss(x, t, **kw),
    "forward": lambda x, t, **kw: L.forward_corrected_cross_entropy(
        x, t, transition_matrix=torch.full((3, 3), 1 / 3), **kw
    ),
}


@pytest.mark.parametrize("name", sorted(ALL_IGNORED_LOSSES))
def test_all_ignored_batch_is_documented(name):
    """Every position ignored: mean is NaN (or 0 when asked), sum 0, none zeros; gradient zero, never NaN."""
    fn = ALL_IGNORED_LOSSES[name]
    x = torch.randn(2, 3, 4, requires_grad=True)
    target = torch.full((2, 4), -100)
    value, grad = _grads(lambda z: fn(z, target), x)
    assert torch.isnan(value)
    assert torch.equal(grad, torch.zeros_like(grad))
    value, grad = _grads(lambda z: fn(z, target, all_ignored="zero"), x)
    assert value.item() == 0.0
    assert torch.equal(grad, torch.zeros_like(grad))
    assert fn(x, target, reduction="sum").item() == 0.0
    none = fn(x, target, reduction="none")
    assert none.shape == (2, 4)
    assert torch.equal(none, torch.zeros_like(none))


def test_ignored_positions_with_nonfinite_logits_do_not_leak():
    x = torch.randn(3, 3)
    x[1] = math.inf
    target = torch.tensor([0, -100, 2])
    for fn in ALL_IGNORED_LOSSES.values():
        assert torch.isfinite(fn(x, target))


# ----------------------------------------------------------------------------- other smoothing conventions


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5, 1.0, -0.3])
def test_off_target_gives_eps_over_k_minus_1_to_wrong_classes(eps):
    x = torch.randn(6, 5, requires_grad=True)
    y = torch.randint(0, 5, (6,))
    q = torch.full((6, 5), eps / 4)
    q[torch.arange(6), y] = 1 - eps
    ours, g1 = _grads(lambda z: L.smoothed_cross_entropy(z, y, eps=eps, convention="off_target"), x)
    ref, g2 = _grads(lambda z: F.cross_entropy(z, q), x)
    _assert_same(ours, ref)
    _assert_same(g1, g2)
    targets = L.smooth_targets(y, 5, eps=eps, convention="off_target")
    _assert_same(targets, q)


def test_off_target_with_weights_and_ignore_follows_weighted_formula():
    x = torch.randn(5, 4)
    y = torch.tensor([0, 3, -100, 1, 1])
    w = torch.tensor([0.5, 1.0, 2.0, 3.0])
    eps = 0.3
    valid = y != -100
    yv, xv = y[valid], x[valid]
    q = torch.full((len(yv), 4), eps / 3)
    q[torch.arange(len(yv)), yv] = 1 - eps
    expected = (-(q * w * torch.log_softmax(xv, 1))).sum() / w[yv].sum()
    ours = L.smoothed_cross_entropy(x, y, eps=eps, convention="off_target", weight=w)
    _assert_same(ours, expected)


def test_prior_smoothing_mixes_in_the_prior():
    x = torch.randn(8, 4, 3, requires_grad=True)
    y = torch.randint(0, 4, (8, 3))
    prior = torch.tensor([0.4, 0.3, 0.2, 0.1])
    q = 0.75 * F.one_hot(y, 4).movedim(-1, 1).double() + 0.25 * prior.view(1, 4, 1)
    ours, g1 = _grads(lambda z: L.smoothed_cross_entropy(z, y, eps=0.25, prior=prior), x)
    ref, g2 = _grads(lambda z: F.cross_entropy(z, q), x)
    _assert_same(ours, ref)
    _assert_same(g1, g2)
    _assert_same(L.smooth_targets(y, 4, eps=0.25, prior=prior), q)


def test_uniform_prior_equals_uniform_convention():
    x, y = torch.randn(6, 5), torch.randint(0, 5, (6,))
    _assert_same(
        L.smoothed_cross_entropy(x, y, eps=0.2, prior=torch.full((5,), 0.2)),
        L.smoothed_cross_entropy(x, y, eps=0.2),
    )


def test_negative_smoothing_matches_its_target_and_is_unbounded_below():
    x = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    eps = -0.5
    q = (1 - eps) * F.one_hot(y, 3).double() + eps / 3
    assert q.min() < 0
    expected = (-(q * torch.log_softmax(x, 1))).sum(1).mean()
    _assert_same(L.smoothed_cross_entropy(x, y, eps=eps), expected)
    # Pushing the true logit up without bound drives the loss to minus infinity.
    base = F.one_hot(y, 3).double()
    values = [L.smoothed_cross_entropy(base * s, y, eps=eps).item() for s in (1, 10, 100, 1000)]
    assert values == sorted(values, reverse=True)
    assert values[-1] < -100


def test_torch_ignores_negative_smoothing_we_do_not():
    x, y = torch.randn(5, 4), torch.randint(0, 4, (5,))
    plain = F.cross_entropy(x, y)
    assert not torch.allclose(L.smoothed_cross_entropy(x, y, eps=-0.2), plain)


def test_smooth_targets_trains_the_same_loss():
    x, y = torch.randn(6, 5), torch.randint(0, 5, (6,))
    for convention in ("uniform", "off_target"):
        q = L.smooth_targets(y, 5, eps=0.2, convention=convention)
        torch.testing.assert_close(q.sum(1), torch.ones(6))
        _assert_same(F.cross_entropy(x, q), L.smoothed_cross_entropy(x, y, eps=0.2, convention=convention))
    soft = torch.softmax(torch.randn(6, 5), 1)
    _assert_same(L.smooth_targets(soft, eps=0.2), 0.8 * soft + 0.04)
    ignored = L.smooth_targets(torch.tensor([1, -100]), 3, eps=0.3)
    assert torch.equal(ignored[1], torch.zeros(3))


def test_z_loss_adds_mean_squared_log_partition():
    x = torch.randn(5, 4) * 3
    y = torch.tensor([0, 1, -100, 3, 2])
    valid = y != -100
    z = torch.logsumexp(x[valid], 1).square().mean()
    base = L.smoothed_cross_entropy(x, y, eps=0.1)
    _assert_same(L.smoothed_cross_entropy(x, y, eps=0.1, z_loss=1e-2), base + 1e-2 * z)
    none = L.smoothed_cross_entropy(x, y, eps=0.1, z_loss=1e-2, reduction="none")
    lse = torch.logsumexp(x, 1).square() * valid
    _assert_same(none, L.smoothed_cross_entropy(x, y, eps=0.1, reduction="none") + 1e-2 * lse)
    cp = L.confidence_penalty_loss(x, y, beta=0.3, z_loss=1e-2)
    _assert_same(cp, L.confidence_penalty_loss(x, y, beta=0.3) + 1e-2 * z)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32(dtype):
    x = (torch.randn(64, 50) * 8).to(dtype).requires_grad_(True)
    y = torch.randint(0, 50, (64,))
    out = L.smoothed_cross_entropy(x, y, eps=0.1)
    assert out.dtype == torch.float32
    ref = F.cross_entropy(x.detach().float(), y, label_smoothing=0.1)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    out.backward()
    assert x.grad.dtype == dtype
    for fn in ALL_IGNORED_LOSSES.values():
        assert fn(x.detach()[:, :3], y % 3).dtype == torch.float32


def test_float32_keeps_dtype():
    x = torch.randn(3, 4, dtype=torch.float32)
    assert L.smoothed_cross_entropy(x, torch.tensor([0, 1, 2])).dtype == torch.float32


# ----------------------------------------------------------------------------- confidence penalty


def test_confidence_penalty_beta_zero_is_cross_entropy():
    x = torch.randn(6, 5, 2, requires_grad=True)
    y = torch.randint(0, 5, (6, 2))
    y[0, 0] = -100
    w = torch.rand(5) + 0.2
    for reduction in ("mean", "sum", "none"):
        ours, g1 = _grads(
            lambda z, r=reduction: L.confidence_penalty_loss(z, y, beta=0.0, weight=w, reduction=r), x
        )
        ref, g2 = _grads(lambda z, r=reduction: F.cross_entropy(z, y, weight=w, reduction=r), x)
        _assert_same(ours, ref)
        _assert_same(g1, g2)


def test_confidence_penalty_is_ce_minus_beta_entropy_with_analytic_gradient():
    x = torch.randn(4, 6, requires_grad=True)
    y = torch.randint(0, 6, (4,))
    beta = 0.7
    value, grad = _grads(lambda z: L.confidence_penalty_loss(z, y, beta=beta, reduction="sum"), x)
    p = torch.softmax(x.detach(), 1)
    h = -(p * p.log()).sum(1, keepdim=True)
    _assert_same(value, F.cross_entropy(x.detach(), y, reduction="sum") - beta * h.sum())
    # d CE / dz = p - onehot; d H / dz_i = p_i (-log p_i - H)   (Pereyra et al. 2017)
    expected = p - F.one_hot(y, 6) - beta * p * (-p.log() - h)
    _assert_same(grad, expected)


def test_hinged_confidence_penalty_acts_only_below_threshold():
    confident = torch.tensor([[6.0, 0.0, 0.0]])
    uncertain = torch.tensor([[0.1, 0.0, 0.0]])
    y = torch.tensor([0])
    for x in (confident, uncertain):
        h = float(-(torch.softmax(x, 1) * torch.log_softmax(x, 1)).sum())
        ce = float(F.cross_entropy(x, y))
        hinged = float(L.confidence_penalty_loss(x, y, beta=2.0, hinge=0.5))
        if h < 0.5:
            assert hinged == pytest.approx(ce + 2.0 * (0.5 - h))
            assert hinged == pytest.approx(float(L.confidence_penalty_loss(x, y, beta=2.0)) + 2.0 * 0.5)
        else:
            assert hinged == pytest.approx(ce)
    # the hinge penalizes (never rewards) the confident prediction
    assert float(L.confidence_penalty_loss(confident, y, beta=2.0, hinge=0.5)) > float(
        F.cross_entropy(confident, y)
    )


def test_confidence_penalty_soft_target_equals_hard_for_one_hot():
    x, y = torch.randn(5, 4), torch.randint(0, 4, (5,))
    soft = F.one_hot(y, 4).double()
    _assert_same(L.confidence_penalty_loss(x, soft, beta=0.3), L.confidence_penalty_loss(x, y, beta=0.3))


# ----------------------------------------------------------------------------- distillation


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_distillation_matches_hinton_kl_with_t_squared(temperature):
    s = torch.randn(6, 5, requires_grad=True)
    t = torch.randn(6, 5, requires_grad=True)
    ours, g1 = _grads(lambda z: L.distillation_loss(z, t, temperature=temperature), s)
    ref = (
        F.kl_div(
            torch.log_softmax(s.detach() / temperature, 1),
            torch.softmax(t.detach() / temperature, 1),
            reduction="batchmean",
        )
        * temperature**2
    )
    _assert_same(ours, ref)
    # d/ds [T^2 KL] = T (p_s^T - p_t^T) / N
    expected = (
        temperature
        * (torch.softmax(s.detach() / temperature, 1) - torch.softmax(t.detach() / temperature, 1))
        / 6
    )
    _assert_same(g1, expected)
    assert t.grad is None  # the teacher is detached


def test_distillation_alpha_mixes_hard_cross_entropy_and_masks_ignored():
    s, t = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    y = torch.randint(0, 4, (3, 5))
    y[0, :2] = -100
    w = torch.rand(4) + 0.5
    valid = y != -100
    kl = (torch.softmax(t / 2, 1) * (torch.log_softmax(t / 2, 1) - torch.log_softmax(s / 2, 1))).sum(1) * 4
    soft = kl[valid].mean()
    hard = F.cross_entropy(s, y, weight=w)
    ours = L.distillation_loss(s, t, temperature=2.0, target=y, alpha=0.3, weight=w)
    _assert_same(ours, 0.3 * soft + 0.7 * hard)
    assert L.distillation_loss(t, t, temperature=3.0).abs() < 1e-12
    module = L.DistillationLoss(temperature=2.0, alpha=0.3, weight=w)
    _assert_same(module(s, t, y), ours)


# ----------------------------------------------------------------------------- robust baselines


def _logp(x):
    return torch.log_softmax(x, 1)


def test_generalized_cross_entropy_formula_and_limits():
    x, y = torch.randn(7, 4), torch.randint(0, 4, (7,))
    py = torch.softmax(x, 1)[torch.arange(7), y]
    _assert_same(L.generalized_cross_entropy(x, y, q=0.7), ((1 - py**0.7) / 0.7).mean())
    _assert_same(L.generalized_cross_entropy(x, y, q=1.0), (1 - py).mean())
    torch.testing.assert_close(
        L.generalized_cross_entropy(x, y, q=1e-7), F.cross_entropy(x, y), rtol=1e-5, atol=1e-6
    )


def test_symmetric_cross_entropy_formula():
    x, y = torch.randn(7, 4), torch.randint(0, 4, (7,))
    p = torch.softmax(x, 1)
    onehot = F.one_hot(y, 4).double()
    rce = -(p * torch.log(onehot.clamp(min=1e-4))).sum(1)
    expected = (0.1 * F.cross_entropy(x, y, reduction="none") + 1.0 * rce).mean()
    _assert_same(L.symmetric_cross_entropy(x, y), expected)
    _assert_same(L.symmetric_cross_entropy(x, onehot), expected)
    _assert_same(
        L.symmetric_cross_entropy(x, y, alpha=6, beta=0.1), (6 * F.cross_entropy(x, y) + 0.1 * rce.mean())
    )


def test_bootstrapping_soft_is_ce_plus_entropy_and_hard_uses_argmax():
    x, y = torch.randn(7, 4), torch.randint(0, 4, (7,))
    p, logp = torch.softmax(x, 1), _logp(x)
    h = -(p * logp).sum(1)
    ce = F.cross_entropy(x, y, reduction="none")
    _assert_same(L.bootstrapping_loss(x, y), (0.95 * ce + 0.05 * h).mean())
    hard = -logp.max(1).values
    _assert_same(L.bootstrapping_loss(x, y, mode="hard"), (0.8 * ce + 0.2 * hard).mean())
    _assert_same(L.bootstrapping_loss(x, y, mode="hard", beta=1.0), F.cross_entropy(x, y))
    # soft mode: the gradient flows through the prediction (entropy term), unlike hard mode
    xg = x.clone().requires_grad_(True)
    _, g_soft = _grads(lambda z: L.bootstrapping_loss(z, y, beta=0.5), xg)
    _, g_ce = _grads(lambda z: 0.5 * F.cross_entropy(z, y), xg)
    assert not torch.allclose(g_soft, g_ce)


def test_forward_correction_identity_is_ce_and_matches_hand_example():
    x, y = torch.randn(6, 3), torch.randint(0, 3, (6,))
    w = torch.tensor([1.0, 2.0, 0.5])
    _assert_same(
        L.forward_corrected_cross_entropy(x, y, transition_matrix=torch.eye(3), weight=w),
        F.cross_entropy(x, y, weight=w),
    )
    T = torch.tensor([[0.6, 0.4, 0.0], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]])
    p = torch.softmax(x, 1)
    noisy = p @ T
    _assert_same(
        L.forward_corrected_cross_entropy(x, y, transition_matrix=T), -noisy[torch.arange(6), y].log().mean()
    )


HARD_VS_SOFT = {
    "gce": lambda x, t: L.generalized_cross_entropy(x, t, q=0.5, reduction="none"),
    "sce": lambda x, t: L.symmetric_cross_entropy(x, t, reduction="none"),
    "bootstrap-soft": lambda x, t: L.bootstrapping_loss(x, t, reduction="none"),
    "bootstrap-hard": lambda x, t: L.bootstrapping_loss(x, t, mode="hard", reduction="none"),
    "forward": lambda x, t: L.forward_corrected_cross_entropy(
        x,
        t,
        transition_matrix=torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.3, 0.0, 0.7]]),
        reduction="none",
    ),
    "confidence": lambda x, t: L.confidence_penalty_loss(x, t, beta=0.4, hinge=1.0, reduction="none"),
    "smoothed": lambda x, t: L.smoothed_cross_entropy(x, t, eps=0.2, reduction="none"),
}


@pytest.mark.parametrize("name", sorted(HARD_VS_SOFT))
def test_hard_targets_equal_one_hot_soft_targets(name):
    fn = HARD_VS_SOFT[name]
    x, y = torch.randn(5, 3, 2), torch.randint(0, 3, (5, 2))
    _assert_same(fn(x, y), fn(x, F.one_hot(y, 3).movedim(-1, 1).double()))


@pytest.mark.parametrize("name", sorted(HARD_VS_SOFT))
def test_spatial_dims_equal_flattened_positions(name):
    fn = HARD_VS_SOFT[name]
    x, y = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5))
    spatial = fn(x, y)
    flat = fn(x.movedim(1, -1).reshape(-1, 3), y.reshape(-1))
    assert spatial.shape == (2, 4, 5)
    _assert_same(spatial.reshape(-1), flat)


@pytest.mark.parametrize("name", sorted(set(HARD_VS_SOFT) - {"smoothed"}))
def test_weights_and_ignore_follow_per_position_rule(name):
    """mean == sum_n w[y_n] loss_n / sum_n w[y_n] over kept positions, for every robust loss."""
    fn = HARD_VS_SOFT[name]
    x = torch.randn(8, 3)
    y = torch.tensor([0, 1, 2, -100, 1, 0, -100, 2])
    w = torch.tensor([0.5, 2.0, 1.0])
    keep = y != -100
    per = fn(x[keep], y[keep])
    kwargs = {"weight": w}
    mean = _call_with(name, x, y, reduction="mean", **kwargs)
    _assert_same(mean, (w[y[keep]] * per).sum() / w[y[keep]].sum())
    total = _call_with(name, x, y, reduction="sum", **kwargs)
    _assert_same(total, (w[y[keep]] * per).sum())


def _call_with(name, x, y, **kwargs):
    fns = {
        "gce": lambda: L.generalized_cross_entropy(x, y, q=0.5, **kwargs),
        "sce": lambda: L.symmetric_cross_entropy(x, y, **kwargs),
        "bootstrap-soft": lambda: L.bootstrapping_loss(x, y, **kwargs),
        "bootstrap-hard": lambda: L.bootstrapping_loss(x, y, mode="hard", **kwargs),
        "forward": lambda: L.forward_corrected_cross_entropy(
            x,
            y,
            transition_matrix=torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.3, 0.0, 0.7]]),
            **kwargs,
        ),
        "confidence": lambda: L.confidence_penalty_loss(x, y, beta=0.4, hinge=1.0, **kwargs),
    }
    return fns[name]()


# ----------------------------------------------------------------------------- gradcheck (float64)

GRADCHECK = {
    "smoothed-uniform": lambda x, t, w: L.smoothed_cross_entropy(x, t, eps=0.2, weight=w, z_loss=1e-2),
    "smoothed-off-target": lambda x, t, w: L.smoothed_cross_entropy(
        x, t, eps=0.3, convention="off_target", weight=w
    ),
    "smoothed-negative": lambda x, t, w: L.smoothed_cross_entropy(x, t, eps=-0.4, weight=w),
    "smoothed-prior": lambda x, t, w: L.smoothed_cross_entropy(
        x, t, eps=0.3, prior=torch.tensor([0.1, 0.2, 0.3, 0.4]), weight=w
    ),
    "confidence": lambda x, t, w: L.confidence_penalty_loss(x, t, beta=0.8, weight=w),
    "confidence-hinge": lambda x, t, w: L.confidence_penalty_loss(x, t, beta=0.8, hinge=2.0, weight=w),
    "distill": lambda x, t, w: L.distillation_loss(
        x,
        torch.arange(x.numel(), dtype=x.dtype).reshape(x.shape).sin(),
        temperature=3.0,
        target=t,
        alpha=0.6,
        weight=w,
    ),
    "gce": lambda x, t, w: L.generalized_cross_entropy(x, t, q=0.7, weight=w),
    "sce": lambda x, t, w: L.symmetric_cross_entropy(x, t, weight=w),
    "bootstrap-soft": lambda x, t, w: L.bootstrapping_loss(x, t, weight=w),
    "bootstrap-hard": lambda x, t, w: L.bootstrapping_loss(x, t, mode="hard", weight=w),
    "forward": lambda x, t, w: L.forward_corrected_cross_entropy(
        x, t, transition_matrix=torch.full((4, 4), 0.1) + 0.6 * torch.eye(4), weight=w
    ),
}


@pytest.mark.parametrize(
    ("name", "soft"),
    [(name, False) for name in sorted(GRADCHECK)]
    + [(name, True) for name in sorted(GRADCHECK) if name != "distill"],
)
def test_gradcheck(name, soft):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 2, generator=g, requires_grad=True)
    if soft:
        t = torch.softmax(torch.randn(3, 4, 2, generator=g), 1)
        w = None
    else:
        t = torch.tensor([[0, 3], [-100, 1], [2, 2]])
        w = torch.tensor([0.5, 1.0, 1.5, 2.0])
    assert torch.autograd.gradcheck(lambda z: GRADCHECK[name](z, t, w), (x,))


# ----------------------------------------------------------------------------- modules


def test_modules_equal_functions_and_carry_buffers():
    x, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    w = torch.tensor([1.0, 2.0, 0.5, 1.5])
    T = torch.full((4, 4), 0.05) + 0.8 * torch.eye(4)
    pairs = [
        (L.SmoothedCrossEntropy(0.2, weight=w), L.smoothed_cross_entropy(x, y, eps=0.2, weight=w)),
        (
            L.SmoothedCrossEntropy(0.2, convention="off_target"),
            L.smoothed_cross_entropy(x, y, eps=0.2, convention="off_target"),
        ),
        (L.ConfidencePenaltyLoss(0.5, hinge=1.0), L.confidence_penalty_loss(x, y, beta=0.5, hinge=1.0)),
        (L.GeneralizedCrossEntropy(0.5, weight=w), L.generalized_cross_entropy(x, y, q=0.5, weight=w)),
        (L.SymmetricCrossEntropy(6.0, 0.1), L.symmetric_cross_entropy(x, y, alpha=6.0, beta=0.1)),
        (L.BootstrappingLoss("hard"), L.bootstrapping_loss(x, y, mode="hard")),
        (L.ForwardCorrectedCrossEntropy(T), L.forward_corrected_cross_entropy(x, y, transition_matrix=T)),
    ]
    for module, expected in pairs:
        _assert_same(module(x, y), expected)
    soft = torch.softmax(torch.randn(6, 4), 1)
    _assert_same(L.SoftTargetCrossEntropy(weight=w)(x, soft), F.cross_entropy(x, soft, weight=w))
    module = L.SmoothedCrossEntropy(0.1, weight=w, prior=torch.full((4,), 0.25))
    assert set(module.state_dict()) == {"weight", "prior"}
    assert module.float().weight.dtype == torch.float32
    assert "eps=0.1" in repr(module)
    assert "transition_matrix" in L.ForwardCorrectedCrossEntropy(T).state_dict()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x, y: L.smoothed_cross_entropy(x, y, eps=1.5), "eps"),
        (lambda x, y: L.smoothed_cross_entropy(x, y, eps=math.nan), "eps"),
        (lambda x, y: L.smoothed_cross_entropy(x, y, eps=math.inf), "eps"),
        (lambda x, y: L.smoothed_cross_entropy(x, y, convention="kinda"), "convention"),
        (lambda x, y: L.smoothed_cross_entropy(x, y, reduction="avg"), "reduction"),
        (lambda x, y: L.smoothed_cross_entropy(x, y, all_ignored="skip"), "all_ignored"),
        (lambda x, y: L.smoothed_cross_entropy(x, y, weight=torch.ones(3)), "weight"),
        (lambda x, y: L.smoothed_cross_entropy(x, y, prior=torch.ones(4)), "prior"),
        (lambda x, y: L.smoothed_cross_entropy(x, y, prior=torch.tensor([1.5, -0.5, 0, 0])), "prior"),
        (
            lambda x, y: L.smoothed_cross_entropy(x, y, prior=torch.ones(4) / 4, convention="off_target"),
            "prior",
        ),
        (lambda x, y: L.smoothed_cross_entropy(x, y, z_loss=-1.0), "z_loss"),
        (lambda x, y: L.smoothed_cross_entropy(x, y[:3]), "target"),
        (lambda x, y: L.smoothed_cross_entropy(x, y + 4), "target"),
        (lambda x, y: L.smoothed_cross_entropy(x, y - 5), "target"),
        (lambda x, y: L.smoothed_cross_entropy(x, torch.rand(5, 3)), "target"),
        (lambda x, y: L.smoothed_cross_entropy(x, torch.rand(5, 4), ignore_index=0), "ignore_index"),
        (lambda x, y: L.smoothed_cross_entropy(x[:, :1], y * 0, convention="off_target"), "2 classes"),
        (lambda x, y: L.confidence_penalty_loss(x, y, beta=-1.0), "beta"),
        (lambda x, y: L.confidence_penalty_loss(x, y, beta=1.0, hinge=-0.1), "hinge"),
        (lambda x, y: L.distillation_loss(x, x, temperature=0.0), "temperature"),
        (lambda x, y: L.distillation_loss(x, x, alpha=0.5), "target"),
        (lambda x, y: L.distillation_loss(x, x, alpha=1.5, target=y), "alpha"),
        (lambda x, y: L.distillation_loss(x, x[:, :3]), "teacher_logits"),
        (lambda x, y: L.generalized_cross_entropy(x, y, q=0.0), "q"),
        (lambda x, y: L.generalized_cross_entropy(x, y, q=1.5), "q"),
        (lambda x, y: L.symmetric_cross_entropy(x, y, alpha=-1.0), "alpha"),
        (lambda x, y: L.symmetric_cross_entropy(x, y, clamp=0.0), "clamp"),
        (lambda x, y: L.bootstrapping_loss(x, y, mode="medium"), "mode"),
        (lambda x, y: L.bootstrapping_loss(x, y, beta=1.2), "beta"),
        (
            lambda x, y: L.forward_corrected_cross_entropy(x, y, transition_matrix=torch.ones(4, 4)),
            "row-stochastic",
        ),
        (
            lambda x, y: L.forward_corrected_cross_entropy(x, y, transition_matrix=torch.eye(3)),
            "transition_matrix",
        ),
        (
            lambda x, y: L.forward_corrected_cross_entropy(x, y, transition_matrix=torch.ones(4, 2) / 2),
            "transition_matrix",
        ),
        (
            lambda x, y: L.forward_corrected_cross_entropy(
                x, y, transition_matrix=torch.tensor([[1.5, -0.5, 0, 0]] * 4)
            ),
            "transition_matrix",
        ),
        (lambda x, y: L.smooth_targets(y, None), "num_classes"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    with pytest.raises(ValueError, match=match):
        call(x, y)


def test_wrong_kinds_raise_type_error():
    with pytest.raises(TypeError, match="logits"):
        L.smoothed_cross_entropy([[0.0, 1.0]], torch.tensor([0]))
    with pytest.raises(TypeError, match="logits"):
        L.smoothed_cross_entropy(torch.tensor([[0, 1]]), torch.tensor([0]))
    with pytest.raises(TypeError, match="eps"):
        L.smoothed_cross_entropy(torch.randn(2, 2), torch.tensor([0, 1]), eps="0.1")
    with pytest.raises(TypeError, match="target"):
        L.soft_target_cross_entropy(torch.randn(2, 2), torch.tensor([0, 1]))


def test_module_constructors_validate_eagerly():
    with pytest.raises(ValueError, match="eps"):
        L.SmoothedCrossEntropy(2.0)
    with pytest.raises(ValueError, match="beta"):
        L.ConfidencePenaltyLoss(-0.1)
    with pytest.raises(ValueError, match="q"):
        L.GeneralizedCrossEntropy(0.0)
    with pytest.raises(ValueError, match="transition_matrix"):
        L.ForwardCorrectedCrossEntropy(torch.ones(3, 3))
    with pytest.raises(ValueError, match="reduction"):
        L.BootstrappingLoss(reduction="max")


# ------------------------------------------------------------------ -inf logits (masked classes)


def _masked_case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 7, generator=g) * 2
    masked = torch.zeros(7, dtype=torch.bool)
    masked[[0, 4]] = True
    logits[:, masked] = float("-inf")
    target = torch.tensor([1, 2, 3, 5, 6, -100])  # never a masked class
    return logits, target, masked


@pytest.mark.parametrize("with_weight", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_minus_inf_logits_match_torch(eps, reduction, with_weight):
    logits, target, _ = _masked_case()
    weight = torch.linspace(0.5, 2.0, 7) if with_weight else None
    kwargs = {"weight": weight, "reduction": reduction}
    x = logits.clone().requires_grad_()
    ours, ours_grad = _grads(lambda z: L.smoothed_cross_entropy(z, target, eps=eps, **kwargs), x)
    ref, ref_grad = _grads(lambda z: F.cross_entropy(z, target, label_smoothing=eps, **kwargs), x)
    _assert_same(ours, ref)  # finite for eps = 0; inf (mass on impossible classes) otherwise
    _assert_same(ours_grad, ref_grad)
    assert bool(torch.isfinite(ours_grad).all())


def test_minus_inf_logits_with_a_prior_that_avoids_them_equal_the_loss_without_them():
    logits, target, masked = _masked_case(1)
    prior = torch.rand(7, generator=torch.Generator().manual_seed(1)) + 0.1
    prior[masked] = 0.0
    prior = prior / prior.sum()
    keep = ~masked
    small_target = torch.where(target >= 0, keep.cumsum(0)[target.clamp(min=0)] - 1, target)
    x = logits.clone().requires_grad_()
    ours, ours_grad = _grads(lambda z: L.smoothed_cross_entropy(z, target, eps=0.3, prior=prior), x)
    small = logits[:, keep].clone().requires_grad_()
    ref, ref_grad = _grads(
        lambda z: L.smoothed_cross_entropy(z, small_target, eps=0.3, prior=prior[keep]), small
    )
    _assert_same(ours, ref)
    _assert_same(ours_grad[:, keep], ref_grad)
    assert bool((ours_grad[:, masked] == 0).all())
    # Soft targets with zeros on the masked classes: finite too (PyTorch's own soft path gives NaN).
    soft = torch.softmax(torch.randn(6, 7, generator=torch.Generator().manual_seed(2)), 1) * keep
    soft = soft / soft.sum(1, keepdim=True)
    ours_soft = L.smoothed_cross_entropy(logits, soft, eps=0.0)
    _assert_same(ours_soft, F.cross_entropy(logits[:, keep], soft[:, keep]))


@pytest.mark.parametrize("hinge", [None, 5.0])
def test_confidence_penalty_with_minus_inf_logits_is_finite(hinge):
    logits, target, masked = _masked_case(3)
    keep = ~masked
    small_target = torch.where(target >= 0, keep.cumsum(0)[target.clamp(min=0)] - 1, target)
    x = logits.clone().requires_grad_()
    ours, ours_grad = _grads(lambda z: L.confidence_penalty_loss(z, target, beta=0.6, hinge=hinge), x)
    small = logits[:, keep].clone().requires_grad_()
    ref, ref_grad = _grads(lambda z: L.confidence_penalty_loss(z, small_target, beta=0.6, hinge=hinge), small)
    _assert_same(ours, ref)
    _assert_same(ours_grad[:, keep], ref_grad)
    assert bool((ours_grad[:, masked] == 0).all())


@pytest.mark.parametrize(
    ("fn", "module", "kwargs"),
    [
        (L.generalized_cross_entropy, L.GeneralizedCrossEntropy, {"q": 0.7}),
        (L.symmetric_cross_entropy, L.SymmetricCrossEntropy, {"alpha": 0.1, "beta": 1.0}),
        (L.bootstrapping_loss, L.BootstrappingLoss, {"beta": 0.8}),
        (L.forward_corrected_cross_entropy, L.ForwardCorrectedCrossEntropy, {"transition_matrix": None}),
    ],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_robust_losses_take_the_z_loss_term(fn, module, kwargs, reduction):
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(7, 4, generator=g) * 3
    target = torch.tensor([0, 1, 2, 3, -100, 1, 2])
    if "transition_matrix" in kwargs:
        kwargs = {"transition_matrix": torch.full((4, 4), 0.1) + 0.6 * torch.eye(4)}
    plain = fn(logits, target, reduction=reduction, **kwargs)
    with_z = fn(logits, target, reduction=reduction, z_loss=0.01, **kwargs)
    valid = target != -100
    term = torch.where(valid, 0.01 * torch.logsumexp(logits, dim=1).square(), 0.0)
    expected = {"mean": term.sum() / valid.sum(), "sum": term.sum(), "none": term}[reduction]
    _assert_same(with_z - plain, expected)
    twin = module(reduction=reduction, z_loss=0.01, **kwargs)
    _assert_same(twin(logits, target), with_z)
    with pytest.raises(ValueError, match="z_loss must be >= 0"):
        fn(logits, target, z_loss=-1.0, **kwargs)


def test_eps_may_be_a_zero_dim_tensor_or_numpy_scalar():
    logits, target = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    expected = L.smoothed_cross_entropy(logits, target, eps=0.25)
    for eps in (torch.tensor(0.25), torch.tensor([0.25]), np.float32(0.25), np.array(0.25)):
        _assert_same(L.smoothed_cross_entropy(logits, target, eps=eps), expected)
    with pytest.raises(TypeError, match="eps must be a real number"):
        L.smoothed_cross_entropy(logits, target, eps=torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="eps must be <= 1"):
        L.smoothed_cross_entropy(logits, target, eps=torch.tensor(1.5))
