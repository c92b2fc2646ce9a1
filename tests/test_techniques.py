"""The technique registry and the two techniques added through it: online label smoothing and label
relaxation (against the label-relaxation package, brute force, and in packs = reference)."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothflip import losses
from smoothflip.engine import resolve_study
from smoothflip.engine.classifier.pack import train_pack
from smoothflip.engine.classifier.reference import train_reference
from smoothflip.errors import SpecError
from smoothflip.study.spec import loads_study
from smoothflip.techniques import REQUIRED, LossContext, build_loss, get_technique, techniques

# --------------------------------------------------------------------------- the registry


def test_every_technique_is_one_complete_entry():
    found = techniques()
    assert {
        "ce",
        "smoothed_ce",
        "confidence_penalty",
        "gce",
        "sce",
        "bootstrap",
        "forward",
        "distill",
    } <= set(found)
    assert {"online_ls", "label_relaxation"} <= set(found)
    for name, technique in found.items():
        assert technique.name == name
        assert technique.summary
        assert technique.tasks
        defaults = {k: v for k, v in technique.params.items() if v is not REQUIRED}
        params = {**defaults, **{k: 0.5 for k, v in technique.params.items() if v is REQUIRED}}
        module = build_loss(name, params, LossContext(num_classes=4))
        extra = {"teacher": torch.randn(6, 4)} if technique.needs_teacher else {}
        out = module(torch.randn(6, 4), torch.randint(0, 4, (6,)), **extra)
        assert out.shape == (6,), name  # per-example losses, as the engines need


def test_unknown_technique_and_parameter_are_named():
    with pytest.raises(ValueError, match="loss must be one of 'ce'"):
        get_technique("focal")
    with pytest.raises(ValueError, match="unknown parameter 'eps' for loss 'label_relaxation'"):
        build_loss("label_relaxation", {"eps": 0.1}, LossContext(3))
    with pytest.raises(ValueError, match="needs parameter 'beta'"):
        build_loss("confidence_penalty", {}, LossContext(3))


def test_the_spec_reads_parameters_and_kinds_from_the_registry():
    base = """
    name = "t"
    [data]
    source = "digits"
    [[arms]]
    name = "ce"
    [[arms]]
    name = "x"
    {arm}
    """
    spec = loads_study(textwrap.dedent(base.format(arm='loss = "online_ls"\nalpha = 1')))
    assert dict(spec.arms[1].params) == {"alpha": 1.0, "init_eps": 0.0}  # ints become floats
    with pytest.raises(SpecError, match=r"alpha = 1\.5|alpha must be"):
        loads_study(textwrap.dedent(base.format(arm='loss = "label_relaxation"\nalpha = 1.5')))
    lm = textwrap.dedent(base.format(arm='loss = "gce"')).replace('source = "digits"', 'source = "language"')
    with pytest.raises(SpecError, match=r'must be one of .* for kind = "lm"'):
        loads_study('kind = "lm"\n' + lm)


# --------------------------------------------------------------------------- label relaxation


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    k=st.integers(2, 9),
    alpha=st.floats(0.01, 0.6),
    scale=st.floats(0.1, 8.0),
    seed=st.integers(0, 2**16),
)
def test_label_relaxation_equals_the_reference_package(n, k, alpha, scale, seed):
    reference = pytest.importorskip("label_relaxation")
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(n, k, generator=g, dtype=torch.float64)).requires_grad_()
    target = torch.randint(0, k, (n,), generator=g)
    ours = losses.label_relaxation_loss(logits, target, alpha=alpha, reduction="none")
    theirs = reference.label_relaxation_loss(logits, target, alpha=alpha, reduction="none")
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), logits)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-9, atol=1e-12)


def test_label_relaxation_is_zero_inside_the_credal_set_and_kl_to_the_projection_outside():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.3, 0.2, 0.1], [-1.0, 2.0, 0.5]], dtype=torch.float64)
    target = torch.tensor([0, 0, 0])
    alpha = 0.1
    p = logits.softmax(1)
    loss = losses.label_relaxation_loss(logits.requires_grad_(), target, alpha=alpha, reduction="none")
    assert p[0, 0] >= 1 - alpha
    assert loss[0] == 0.0  # confident and correct: no loss (unlike smoothing)
    for i in (1, 2):
        q = alpha * p[i] / (1 - p[i, 0])
        q[0] = 1 - alpha
        kl = float((q * (q.log() - p[i].log())).sum())
        assert math.isclose(float(loss[i].detach()), kl, rel_tol=1e-12)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    q_star = alpha * p / (1 - p[:, :1])
    q_star[:, 0] = 1 - alpha
    q_star[0] = p[0]  # inside the set the gradient is zero
    torch.testing.assert_close(grad, (p - q_star).detach())


def test_label_relaxation_reductions_weights_and_ignore_index():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(8, 4, generator=g), torch.randint(0, 4, (8,), generator=g)
    target[2] = -100
    weight = torch.tensor([1.0, 2.0, 0.5, 3.0])
    per = losses.label_relaxation_loss(logits, target, alpha=0.2, reduction="none")
    assert per[2] == 0.0
    valid = target != -100
    w = torch.zeros(8)
    w[valid] = weight[target[valid]]
    mean = losses.label_relaxation_loss(logits, target, alpha=0.2, weight=weight)
    torch.testing.assert_close(
        mean, (losses.label_relaxation_loss(logits, target, alpha=0.2, reduction="none") * w).sum() / w.sum()
    )
    with pytest.raises(TypeError, match="class indices"):
        losses.label_relaxation_loss(logits, torch.full((8, 4), 0.25), alpha=0.1)
    with pytest.raises(ValueError, match="alpha"):
        losses.LabelRelaxationLoss(alpha=1.0)


# --------------------------------------------------------------------------- online label smoothing


def test_online_label_smoothing_starts_as_cross_entropy_and_learns_rows_from_correct_predictions():
    g = torch.Generator().manual_seed(1)
    k = 4
    ols = losses.OnlineLabelSmoothing(k, alpha=0.5)
    epoch = [(3 * torch.randn(16, k, generator=g), torch.randint(0, k, (16,), generator=g)) for _ in range(3)]
    for logits, target in epoch:  # before the first epoch ends S is the identity: plain CE
        torch.testing.assert_close(ols(logits, target).mean(), F.cross_entropy(logits, target))
    # the brute-force mean of the correct predictions' distributions, row by true class
    logits = torch.cat([x for x, _ in epoch]).double()
    target = torch.cat([y for _, y in epoch])
    probs = logits.softmax(1)
    correct = probs.argmax(1) == target
    expected = torch.eye(k, dtype=torch.float64)
    for c in range(k):
        rows = probs[correct & (target == c)]
        if len(rows):
            expected[c] = rows.mean(0)
    ols.end_epoch()
    torch.testing.assert_close(ols.soft_labels, expected)
    assert ols.counts.sum() == 0
    assert ols.accumulated.abs().sum() == 0  # accumulators reset
    # the next epoch's loss: alpha * CE + (1 - alpha) * CE against S[y]
    x, y = epoch[0]
    soft = -(expected[y] * x.double().log_softmax(1)).sum(1)
    want = 0.5 * F.cross_entropy(x.double(), y, reduction="none") + 0.5 * soft
    torch.testing.assert_close(ols(x.double(), y), want.mean())


def test_online_label_smoothing_state_eval_mode_and_unseen_classes():
    k = 3
    ols = losses.OnlineLabelSmoothing(k, init_eps=0.3, reduction="none")
    start = 0.7 * torch.eye(k, dtype=torch.float64) + 0.1
    torch.testing.assert_close(ols.soft_labels, start)
    ols.eval()
    ols(torch.tensor([[9.0, 0.0, 0.0]]), torch.tensor([0]))
    assert ols.counts.sum() == 0  # evaluation never records
    ols.train()
    ols(torch.tensor([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0]]), torch.tensor([0, 2]))  # class 2 misclassified
    ols.end_epoch()
    torch.testing.assert_close(ols.soft_labels[2], start[2])  # no correct example: the row is kept
    assert ols.soft_labels[0, 0] > 0.99
    copy = losses.OnlineLabelSmoothing(k)
    copy.load_state_dict(ols.state_dict())  # the state is in buffers: checkpoints carry it
    torch.testing.assert_close(copy.soft_labels, ols.soft_labels)
    assert get_technique("online_ls").stateful


# --------------------------------------------------------------------------- in studies: packs = reference

STUDY = """
name = "new-techniques"
seeds = 2
[data]
source = "digits"
test_fraction = 0.25
[model]
name = "mlp"
hidden = [16]
[train]
epochs = 3
batch_size = 64
[[arms]]
name = "ce"
[[arms]]
name = "ols"
loss = "online_ls"
alpha = 0.5
[[arms]]
name = "ols-warm"
loss = "online_ls"
warmup_epochs = 1
[[arms]]
name = "lr-0.1"
loss = "label_relaxation"
alpha = 0.1
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.3]
"""


def test_new_techniques_train_in_packs_exactly_as_alone():
    from test_engine import assert_same_result

    spec = loads_study(STUDY)
    dataset, runs = resolve_study(spec)
    pack = train_pack(runs, dataset)
    for result, run in zip(pack, runs, strict=True):
        assert_same_result(result, train_reference(run, dataset))
    by = {(r.arm, r.condition, r.seed): r for r in pack}
    # the techniques change training: each differs from the baseline on the same seed and labels
    for arm in ("ols", "lr-0.1"):
        a = by[(arm, "clean", 0)].curves["train_loss"]
        b = by[("ce", "clean", 0)].curves["train_loss"]
        assert not np.allclose(a, b)
    # Online LS starts from S = I (plain CE) and learns S from its first epoch; with warm-up the
    # first learning epoch is the one after the warm-up, so ols-warm matches CE for two epochs.
    warm, base, ols = by[("ols-warm", "clean", 0)], by[("ce", "clean", 0)], by[("ols", "clean", 0)]
    assert warm.curves["train_loss"][:2] == base.curves["train_loss"][:2]
    assert ols.curves["train_loss"][0] == base.curves["train_loss"][0]
    assert warm.curves["train_loss"][2] != base.curves["train_loss"][2]
    assert ols.curves["train_loss"][1] != base.curves["train_loss"][1]
