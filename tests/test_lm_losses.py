"""smoothflip.lm.losses: the causal shift, parity with F.cross_entropy, kinds, masks, gradients, dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smoothflip import losses as L
from smoothflip.lm import CausalLMLoss, causal_lm_loss, shift_labels, smoothing_prior, unigram_prior

V = 7


def _batch(seed: int = 0, *, b: int = 3, t: int = 6, v: int = V, pad: bool = True, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, t, v, generator=g) * 2).to(dtype)
    labels = torch.randint(0, v, (b, t), generator=g)
    if pad:
        labels[1, 4:] = -100  # right padding
        labels[2, 2:] = -100
    return logits, labels


def _shifted_reference(logits, labels, **kwargs):
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v), labels[:, 1:].reshape(-1), **kwargs)


# ----------------------------------------------------------------------------- parity and the shift


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.35, 1.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_smoothed_equals_pytorch_on_shifted_labels(eps: float, reduction: str) -> None:
    logits, labels = _batch(1)
    ours = causal_lm_loss(logits, labels, kind="smoothed", eps=eps, reduction=reduction)
    ref = _shifted_reference(logits, labels, label_smoothing=eps, ignore_index=-100, reduction=reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_ce_equals_pytorch_and_gradients_match() -> None:
    logits, labels = _batch(2)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    causal_lm_loss(a, labels, kind="ce").backward()
    _shifted_reference(b, labels).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)
    assert torch.all(a.grad[:, -1] == 0)  # the last position predicts nothing


def test_weighted_smoothing_equals_pytorch() -> None:
    logits, labels = _batch(3)
    weight = torch.linspace(0.5, 2.0, V, dtype=torch.float64)
    ours = causal_lm_loss(logits, labels, kind="smoothed", eps=0.2, weight=weight)
    ref = _shifted_reference(logits, labels, label_smoothing=0.2, weight=weight)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_shift_hand_example_where_the_unshifted_loss_differs() -> None:
    # The sequence is "0 1 2". A model that predicts the *next* token well: position 0 -> 1, position 1 -> 2.
    strong = 4.0
    logits = torch.zeros(1, 3, 3, dtype=torch.float64)
    logits[0, 0, 1] = strong
    logits[0, 1, 2] = strong
    labels = torch.tensor([[0, 1, 2]])
    right = -math.log(math.exp(strong) / (math.exp(strong) + 2))  # -log p(correct next token)
    wrong = -math.log(1 / (math.exp(strong) + 2))
    shifted = causal_lm_loss(logits, labels, kind="ce")
    assert shifted.item() == pytest.approx(right, rel=1e-12)  # both scored positions are "right"
    # The #17960 bug: scoring each position against its own input token ("0 1 2" at positions 0, 1, 2).
    unshifted = causal_lm_loss(logits, labels, kind="ce", shift=False)
    assert unshifted.item() == pytest.approx((wrong + wrong + math.log(3)) / 3, rel=1e-12)
    assert unshifted.item() > 10 * shifted.item()
    eps = 0.1  # smoothed: (1 - eps) * nll + eps * mean_v(-log p_v), on the shifted targets
    mean_neg_logp = (right + 2 * wrong) / 3
    expected = (1 - eps) * right + eps * mean_neg_logp
    smoothed = causal_lm_loss(logits, labels, kind="smoothed", eps=eps)
    assert smoothed.item() == pytest.approx(expected, rel=1e-12)


def test_shift_labels_and_reduction_none_alignment() -> None:
    logits, labels = _batch(4)
    assert torch.equal(shift_labels(labels)[:, :-1], labels[:, 1:])
    assert torch.all(shift_labels(labels, ignore_index=-7)[:, -1] == -7)
    per_token = causal_lm_loss(logits, labels, kind="smoothed", eps=0.1, reduction="none")
    assert per_token.shape == (3, 5)
    for b in range(3):
        for t in range(5):
            y = labels[b, t + 1]
            if y == -100:
                assert per_token[b, t] == 0
            else:
                ref = F.cross_entropy(logits[b, t][None], y[None], label_smoothing=0.1)
                torch.testing.assert_close(per_token[b, t], ref)
    unshifted = causal_lm_loss(logits, labels, kind="ce", shift=False, reduction="none")
    assert unshifted.shape == (3, 6)


def test_no_shift_equals_pytorch_on_aligned_labels() -> None:
    logits, labels = _batch(5)
    ours = causal_lm_loss(logits, labels, kind="smoothed", eps=0.1, shift=False)
    ref = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), label_smoothing=0.1)
    torch.testing.assert_close(ours, ref)


# ----------------------------------------------------------------------------- all padding


@pytest.mark.parametrize("kind", ["ce", "smoothed", "confidence_penalty"])
def test_all_padding_batch(kind: str) -> None:
    """Every label ignored: 'mean' is NaN (as F.cross_entropy) or 0 with all_ignored='zero'; grad zero."""
    options = {"beta": 0.5} if kind == "confidence_penalty" else {}
    logits = torch.randn(2, 4, V, dtype=torch.float64, requires_grad=True)
    labels = torch.full((2, 4), -100)
    labels[:, 0] = 3  # only position 0 holds a label, and the shift drops it
    nan = causal_lm_loss(logits, labels, kind=kind, **options)
    assert math.isnan(nan.item())
    assert math.isnan(_shifted_reference(logits.detach(), labels).item())  # PyTorch agrees
    nan.backward()
    assert torch.all(logits.grad == 0)
    zero = causal_lm_loss(logits, labels, kind=kind, all_ignored="zero", **options)
    assert zero.item() == 0.0
    assert causal_lm_loss(logits, labels, kind=kind, reduction="sum", **options).item() == 0.0
    assert torch.all(causal_lm_loss(logits, labels, kind=kind, reduction="none", **options) == 0)


def test_single_position_sequences_have_nothing_to_predict() -> None:
    logits = torch.randn(3, 1, V)
    labels = torch.randint(0, V, (3, 1))
    assert causal_lm_loss(logits, labels, kind="ce", all_ignored="zero").item() == 0.0
    assert causal_lm_loss(logits, labels, kind="ce", reduction="none").shape == (3, 0)


# ----------------------------------------------------------------------------- kinds


def test_negative_smoothing_matches_base_loss_and_is_unbounded_below() -> None:
    logits, labels = _batch(6)
    ours = causal_lm_loss(logits, labels, kind="negative", eps=-0.3)
    ref = L.smoothed_cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), eps=-0.3)
    torch.testing.assert_close(ours, ref)
    # pushing non-target logits to -inf drives the loss to -inf
    labels = torch.tensor([[0, 1, 1]])
    values = []
    for scale in (1.0, 10.0, 100.0):
        logits = torch.full((1, 3, V), -scale, dtype=torch.float64)
        logits[..., 1] = 0.0
        values.append(causal_lm_loss(logits, labels, kind="negative", eps=-0.2).item())
    assert values[0] > values[1] > values[2]
    assert values[2] < -10


def test_prior_smoothing_hand_formula() -> None:
    logits, labels = _batch(7)
    prior = torch.softmax(torch.randn(V, dtype=torch.float64), dim=0)
    eps = 0.25
    ours = causal_lm_loss(logits, labels, kind="prior", eps=eps, prior=prior)
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    y = labels[:, 1:]
    valid = y != -100
    nll = -logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    smooth = -(logp * prior).sum(-1)
    expected = ((1 - eps) * nll + eps * smooth)[valid].mean()
    torch.testing.assert_close(ours, expected)


def test_never_target_spreads_mass_over_the_other_tokens_only() -> None:
    logits, labels = _batch(8)
    mask = torch.zeros(V, dtype=torch.bool)
    mask[[0, 1]] = True  # e.g. <pad>, <bos>
    eps = 0.2
    ours = causal_lm_loss(logits, labels, kind="smoothed", eps=eps, never_target=mask)
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    y = labels[:, 1:]
    valid = y != -100
    nll = -logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    smooth = -logp[..., ~mask].mean(-1)  # eps / (V - 2) on each unmasked token
    torch.testing.assert_close(ours, ((1 - eps) * nll + eps * smooth)[valid].mean())
    # smoothing mass never reaches a masked token: where it is not the target, its gradient is p_v,
    # while an unmasked non-target token gets p_v - eps / (V - 2)
    x = logits.clone().requires_grad_(True)
    causal_lm_loss(x, labels, kind="smoothed", eps=eps, never_target=mask, reduction="sum").backward()
    grad, probs = x.grad[:, :-1], torch.softmax(logits[:, :-1], dim=-1)
    rows = valid & (y > 2)  # targets other than tokens 0, 1, 2
    torch.testing.assert_close(grad[rows][:, :2], probs[rows][:, :2])
    torch.testing.assert_close(grad[rows][:, 2], probs[rows][:, 2] - eps / (V - 2))
    # the mask zeroes a prior there and renormalizes it; 'ce' has no smoothing mass to move
    prior = torch.full((V,), 1.0 / V, dtype=torch.float64)
    masked_prior = causal_lm_loss(logits, labels, kind="prior", eps=eps, prior=prior, never_target=mask)
    torch.testing.assert_close(masked_prior, ours)
    torch.testing.assert_close(
        causal_lm_loss(logits, labels, kind="ce", never_target=mask),
        causal_lm_loss(logits, labels, kind="ce"),
    )


def test_confidence_penalty_hand_formula_and_hinge() -> None:
    logits, labels = _batch(9)
    beta = 0.7
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    y = labels[:, 1:]
    valid = y != -100
    nll = -logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    ours = causal_lm_loss(logits, labels, kind="confidence_penalty", beta=beta)
    torch.testing.assert_close(ours, (nll - beta * entropy)[valid].mean())
    hinged = causal_lm_loss(logits, labels, kind="confidence_penalty", beta=beta, hinge=1.5)
    torch.testing.assert_close(hinged, (nll + beta * (1.5 - entropy).clamp(min=0))[valid].mean())


def test_z_loss_adds_the_mean_squared_log_partition() -> None:
    logits, labels = _batch(10)
    base = causal_lm_loss(logits, labels, kind="smoothed", eps=0.1)
    with_z = causal_lm_loss(logits, labels, kind="smoothed", eps=0.1, z_loss=1e-2)
    valid = labels[:, 1:] != -100
    lse = torch.logsumexp(logits[:, :-1], dim=-1)
    torch.testing.assert_close(with_z - base, 1e-2 * lse.square()[valid].mean())


def test_module_twin_matches_function() -> None:
    logits, labels = _batch(11)
    mask = torch.zeros(V, dtype=torch.bool)
    mask[0] = True
    module = CausalLMLoss("smoothed", eps=0.15, never_target=mask)
    torch.testing.assert_close(
        module(logits, labels), causal_lm_loss(logits, labels, kind="smoothed", eps=0.15, never_target=mask)
    )
    assert "smoothed" in repr(module)


# ----------------------------------------------------------------------------- gradients and dtypes


@pytest.mark.parametrize(
    "options",
    [
        {"kind": "ce"},
        {"kind": "smoothed", "eps": 0.2},
        {"kind": "smoothed", "eps": 0.2, "never_target": torch.tensor([True, False, False, False, False])},
        {"kind": "negative", "eps": -0.4},
        {
            "kind": "prior",
            "eps": 0.3,
            "prior": torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25], dtype=torch.float64),
        },
        {"kind": "confidence_penalty", "beta": 0.5},
        {"kind": "confidence_penalty", "beta": 0.5, "hinge": 2.0},
        {"kind": "smoothed", "eps": 0.1, "z_loss": 0.01},
    ],
    ids=lambda o: "-".join(f"{k}" for k in o if k != "kind") or o["kind"],
)
def test_gradcheck(options: dict) -> None:
    g = torch.Generator().manual_seed(12)
    logits = torch.randn(2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[1, 2, 3, 4], [0, 4, -100, -100]])
    assert torch.autograd.gradcheck(lambda x: causal_lm_loss(x, labels, **options), (logits,))


def test_bf16_logits_accumulate_in_float32() -> None:
    logits, labels = _batch(13, b=4, t=32, v=500, pad=True, dtype=torch.float32)
    logits = (logits * 4).to(torch.bfloat16).requires_grad_(True)
    loss = causal_lm_loss(logits, labels, kind="smoothed", eps=0.1)
    assert loss.dtype == torch.float32
    reference = _shifted_reference(logits.detach().double(), labels, label_smoothing=0.1)
    assert abs(loss.item() - reference.item()) < 1e-5  # a bf16 accumulation would be off by ~1e-2
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16


def test_contiguous_logits_are_not_copied_before_the_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shift moves the labels: the base loss receives a view of the caller's logits."""
    import smoothflip.lm.losses as lm_losses

    seen = {}
    original = lm_losses.smoothed_cross_entropy

    def spy(logits, target, **kwargs):
        seen["ptr"] = logits.data_ptr()
        return original(logits, target, **kwargs)

    monkeypatch.setattr(lm_losses, "smoothed_cross_entropy", spy)
    logits, labels = _batch(14, dtype=torch.float32)
    causal_lm_loss(logits, labels, kind="smoothed", eps=0.1)
    assert seen["ptr"] == logits.data_ptr()


# ----------------------------------------------------------------------------- priors


def test_unigram_prior_counts_and_smoothing() -> None:
    labels = np.array([[5, 2, 2, -100], [2, 3, -100, -100]])
    prior = unigram_prior(labels, 6)
    torch.testing.assert_close(prior, torch.tensor([0, 0, 3 / 5, 1 / 5, 0, 1 / 5], dtype=torch.float64))
    laplace = unigram_prior(torch.from_numpy(labels), 6, smoothing=1.0)
    torch.testing.assert_close(laplace, torch.tensor([1, 1, 4, 2, 1, 2], dtype=torch.float64) / 11)
    mask = np.zeros(6, dtype=bool)
    mask[[0, 2]] = True
    masked = unigram_prior(labels, 6, smoothing=1.0, never_target=mask)
    assert masked[0] == 0
    assert masked[2] == 0
    assert masked.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(
        smoothing_prior(6, prior=torch.ones(6) * 2), torch.full((6,), 1 / 6, dtype=torch.float64)
    )


def test_unigram_prior_errors() -> None:
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        unigram_prior([1, 4], 4)
    with pytest.raises(ValueError, match="smoothing must be >= 0"):
        unigram_prior([1], 4, smoothing=-1.0)
    with pytest.raises(ValueError, match="nothing to count"):
        unigram_prior([-100], 4)
    with pytest.raises(TypeError, match="integers"):
        unigram_prior([0.5], 4)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"kind": "focal"}, ValueError, "kind must be one of"),
        ({"kind": "smoothed", "eps": -0.1}, ValueError, "use kind='negative'"),
        ({"kind": "negative", "eps": 0.1}, ValueError, "needs eps < 0"),
        ({"kind": "smoothed", "eps": 1.5}, ValueError, "eps must be <= 1"),
        ({"kind": "prior"}, ValueError, "needs prior"),
        ({"kind": "confidence_penalty"}, ValueError, "needs beta"),
        ({"kind": "smoothed", "beta": 0.5}, ValueError, "belong to kind='confidence_penalty'"),
        ({"kind": "ce", "prior": torch.ones(V) / V}, ValueError, "belongs to kind='prior'"),
        (
            {"kind": "confidence_penalty", "beta": 1.0, "never_target": torch.zeros(V, dtype=torch.bool)},
            ValueError,
            "never_target applies",
        ),
        ({"kind": "smoothed", "never_target": torch.zeros(V)}, TypeError, "bool mask"),
        ({"kind": "smoothed", "never_target": torch.zeros(3, dtype=torch.bool)}, ValueError, "shape"),
        (
            {"kind": "smoothed", "never_target": torch.ones(V, dtype=torch.bool)},
            ValueError,
            "masks every token",
        ),
        ({"kind": "prior", "prior": torch.ones(3)}, ValueError, "prior must have shape"),
        ({"kind": "ce", "reduction": "avg"}, ValueError, "reduction must be one of"),
        ({"kind": "ce", "shift": 1}, TypeError, "shift must be True or False"),
    ],
)
def test_bad_options(options: dict, error: type, match: str) -> None:
    logits, labels = _batch(15)
    with pytest.raises(error, match=match):
        causal_lm_loss(logits, labels, **options)


def test_bad_shapes_and_labels() -> None:
    logits, labels = _batch(16)
    with pytest.raises(ValueError, match=r"logits must have shape \[B, T, V\]"):
        causal_lm_loss(logits[0], labels)
    with pytest.raises(ValueError, match="labels must have shape"):
        causal_lm_loss(logits, labels[:, :-1])
    with pytest.raises(TypeError, match="integer token ids"):
        causal_lm_loss(logits, labels.double())
    with pytest.raises(ValueError, match="class index 7"):
        causal_lm_loss(logits, torch.full_like(labels, V))


# ----------------------------------------------------------------------------------- fused kernels

_NEVER = torch.tensor([True, False, False, True, False, False, False])
_FUSED_CASES = [
    dict(kind="ce"),
    dict(kind="smoothed", eps=0.2),
    dict(kind="smoothed", eps=0.2, never_target=_NEVER),
    dict(kind="negative", eps=-0.3, never_target=_NEVER),
    dict(kind="prior", eps=0.4, prior=torch.tensor([0.3, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1])),
    dict(kind="prior", eps=0.4, prior=torch.tensor([0.3, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1]), never_target=_NEVER),
    dict(kind="confidence_penalty", beta=0.6),
]


def _loss_and_grad(fn, logits):
    leaf = logits.detach().clone().requires_grad_()
    loss = fn(leaf)
    weights = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    (loss * weights).sum().backward()
    return loss.detach(), leaf.grad


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", _FUSED_CASES, ids=lambda c: "-".join(map(str, c.values()))[:40])
def test_fused_kernel_equals_the_classification_losses(case, reduction, shift):
    logits, labels = _batch(40)
    opts = dict(case, reduction=reduction, shift=shift, z_loss=0.01)
    ours, ours_grad = _loss_and_grad(lambda z: causal_lm_loss(z, labels, fused=True, **opts), logits)
    ref, ref_grad = _loss_and_grad(lambda z: causal_lm_loss(z, labels, fused=False, **opts), logits)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-10, atol=1e-12)


def test_fused_refuses_what_the_kernel_lacks_and_auto_stays_unfused_on_cpu(monkeypatch):
    logits, labels = _batch(41)
    with pytest.raises(ValueError, match="no class weight"):
        causal_lm_loss(logits, labels, kind="ce", weight=torch.ones(V, dtype=torch.float64), fused=True)
    with pytest.raises(ValueError, match="no hinged confidence penalty"):
        causal_lm_loss(logits, labels, kind="confidence_penalty", beta=0.1, hinge=1.0, fused=True)
    with pytest.raises(TypeError, match="fused must be True, False or None"):
        causal_lm_loss(logits, labels, fused="yes")
    import smoothflip.kernels as kernels

    def boom(*args, **kwargs):
        raise AssertionError("the fused kernel was used")

    monkeypatch.setattr(kernels, "cross_entropy", boom)
    causal_lm_loss(logits, labels, kind="smoothed", eps=0.1)  # CPU logits: the plain path
    with pytest.raises(AssertionError, match="fused kernel was used"):
        causal_lm_loss(logits, labels, kind="smoothed", eps=0.1, fused=True)
    with pytest.raises(AssertionError, match="fused kernel was used"):
        CausalLMLoss("smoothed", eps=0.1, fused=True)(logits, labels)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("case", _FUSED_CASES, ids=lambda c: "-".join(map(str, c.values()))[:40])
def test_linear_loss_equals_the_loss_of_the_materialized_logits(case, reduction):
    g = torch.Generator().manual_seed(42)
    hidden = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    weight = torch.randn(V, 4, generator=g, dtype=torch.float64)
    bias = torch.randn(V, generator=g, dtype=torch.float64)
    _, labels = _batch(42)
    opts = dict(case, reduction=reduction)
    leaves = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
    ours = _linear_loss(*leaves, labels, chunk_size=5, **opts)
    ours.sum().backward()
    ref_leaves = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
    h, w, b = ref_leaves
    ref = causal_lm_loss(h @ w.t() + b, labels, fused=False, **opts)
    ref.sum().backward()
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for a, r in zip(leaves, ref_leaves, strict=True):
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-10, atol=1e-12)


def _linear_loss(hidden, weight, bias, labels, **kwargs):
    from smoothflip.lm import causal_lm_linear_loss

    return causal_lm_linear_loss(hidden, weight, labels, bias=bias, **kwargs)


def test_linear_loss_bad_inputs_name_the_argument():
    from smoothflip.lm import causal_lm_linear_loss

    hidden, weight, labels = torch.randn(2, 5, 4), torch.randn(V, 4), torch.randint(0, V, (2, 5))
    with pytest.raises(ValueError, match=r"hidden must be a \[B, T, D\] tensor"):
        causal_lm_linear_loss(hidden[0], weight, labels)
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 5\)"):
        causal_lm_linear_loss(hidden, weight, labels[:, :3])
    with pytest.raises(ValueError, match=r"weight must be a \[V, D\] tensor"):
        causal_lm_linear_loss(hidden, weight[0], labels)
    with pytest.raises(ValueError, match="kind='negative' needs eps < 0"):
        causal_lm_linear_loss(hidden, weight, labels, kind="negative", eps=0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_uses_the_fused_kernel_on_cuda_at_real_shapes():
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = torch.randn(4, 512, 32000, device="cuda", dtype=torch.bfloat16, generator=g)
    labels = torch.randint(0, 32000, (4, 512), device="cuda", generator=g)
    never = torch.zeros(32000, dtype=torch.bool)
    never[:3] = True
    opts = dict(kind="smoothed", eps=0.1, never_target=never.cuda())
    ours, ours_grad = _loss_and_grad(lambda z: causal_lm_loss(z, labels, **opts), logits)
    ref, ref_grad = _loss_and_grad(lambda z: causal_lm_loss(z.float(), labels, fused=False, **opts), logits)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours_grad.float(), ref_grad.float(), rtol=2e-2, atol=1e-7)
