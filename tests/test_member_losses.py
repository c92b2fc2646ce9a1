"""The fused cross-entropy family of a pack: one call for plain CE, uniform and negative label
smoothing, the confidence penalty and the z-loss, held to PyTorch and to the library's own losses."""

from __future__ import annotations

import textwrap

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothflip import losses
from smoothflip.engine import resolve_study
from smoothflip.engine.member_losses import MemberLosses, ce_family_losses, grouped_member_losses
from smoothflip.study.spec import loads_study
from smoothflip.techniques import LossContext

member = st.tuples(st.floats(-0.5, 0.95), st.sampled_from([0.0, 0.3, 1.5]), st.sampled_from([0.0, 1e-3, 0.1]))


@settings(max_examples=40, deadline=None)
@given(params=st.lists(member, min_size=1, max_size=5), k=st.integers(2, 9), seed=st.integers(0, 2**16))
def test_the_fused_family_equals_each_members_own_loss(params, k, seed):
    gen = torch.Generator().manual_seed(seed)
    g, m = len(params), 7
    logits = torch.randn(g, m, k, generator=gen, dtype=torch.float64) * 3
    target = torch.randint(0, k, (g, m), generator=gen)
    terms = torch.tensor(params, dtype=torch.float64)
    fused = ce_family_losses(logits, target, terms)
    for i, (eps, beta, z) in enumerate(params):
        if beta:
            own = losses.confidence_penalty_loss(logits[i], target[i], beta=beta, z_loss=z, reduction="none")
            own = own + eps * (
                -torch.log_softmax(logits[i], -1).mean(-1)
                - F.cross_entropy(logits[i], target[i], reduction="none")
            )
        else:
            own = losses.smoothed_cross_entropy(logits[i], target[i], eps=eps, z_loss=z, reduction="none")
        torch.testing.assert_close(fused[i], own.mean(), rtol=1e-10, atol=1e-10)
        if eps >= 0 and not beta and not z:
            torch.testing.assert_close(
                fused[i], F.cross_entropy(logits[i], target[i], label_smoothing=eps), rtol=1e-10, atol=1e-10
            )


def test_terms_left_out_are_really_unused():
    logits = torch.randn(2, 5, 4)
    target = torch.randint(0, 4, (2, 5))
    terms = torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.0, 0.0]])
    full = ce_family_losses(logits, target, terms)
    torch.testing.assert_close(ce_family_losses(logits, target, terms, uses=(True, False, False)), full)
    with pytest.raises(AssertionError):  # dropping a term a member uses changes its loss
        torch.testing.assert_close(ce_family_losses(logits, target, terms, uses=(False, False, False)), full)


STUDY = """
name = "fuse"
seeds = 1
[data]
source = "digits"
[model]
name = "logistic"
[train]
epochs = 2
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[arms]]
name = "nls"
loss = "smoothed_ce"
eps = -0.2
warmup_epochs = 1
[[arms]]
name = "cp"
loss = "confidence_penalty"
beta = 0.5
[[arms]]
name = "z"
loss = "ce"
z_loss = 0.001
[[arms]]
name = "offtarget"
loss = "smoothed_ce"
eps = 0.1
convention = "off_target"
[[arms]]
name = "prior"
loss = "smoothed_ce"
eps = 0.1
prior = "train"
[[arms]]
name = "hinge"
loss = "confidence_penalty"
beta = 0.5
hinge = 1.0
[[arms]]
name = "gce"
loss = "gce"
[[arms]]
name = "ols"
loss = "online_ls"
"""


@pytest.fixture(scope="module")
def pack():
    dataset, runs = resolve_study(loads_study(textwrap.dedent(STUDY)))
    names = [r.arm.name for r in runs]
    context = LossContext(dataset.num_classes, class_prior=torch.full((dataset.num_classes,), 0.1))
    return names, MemberLosses(runs, LossContext(dataset.num_classes), lambda m: context, torch.device("cpu"))


def test_only_exact_members_of_the_family_are_fused(pack):
    names, member_losses = pack
    groups = member_losses.groups(2)
    fused = [g for g in groups if g.terms is not None]
    assert len(fused) == 1
    assert sorted(names[m] for m in fused[0].members.tolist()) == ["ce", "cp", "ls", "nls", "z"]
    rest = sorted(names[m] for g in groups if g.terms is None for m in g.members.tolist())
    assert rest == ["gce", "hinge", "offtarget", "ols", "prior"]


@pytest.mark.parametrize("epoch", [1, 2])
def test_fused_and_one_call_per_loss_agree_on_a_pack_batch(pack, epoch):
    names, member_losses = pack
    gen = torch.Generator().manual_seed(epoch)
    logits = torch.randn(len(names), 16, 10, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 10, (len(names), 16), generator=gen)
    fused = grouped_member_losses(logits, target, member_losses.groups(epoch))
    apart = grouped_member_losses(logits, target, member_losses.groups(epoch, fuse=False))
    torch.testing.assert_close(fused, apart, rtol=1e-9, atol=1e-9)
