"""The stacked layers (convolutional packs without vmap): the same numbers as vmap (outputs, gradients,
batch-norm buffers, evaluation), a member bitwise the same in any pack, the models they do not cover
left to vmap, the im2col products against torch's own convolution, and the engine's pack against
one run at a time."""

from __future__ import annotations

import copy
import json
import textwrap

import pytest
import torch
from torch import nn

from smoothflip.engine import resolve_study, stacked_layers
from smoothflip.engine.classifier.pack import train_pack
from smoothflip.engine.classifier.reference import train_reference
from smoothflip.engine.stacked import Stacked
from smoothflip.engine.stacked_layers import CHUNK, im2col_elements, stacked_forward
from smoothflip.engine.stacked_ops import conv, linear
from smoothflip.models import Classifier, build_model
from smoothflip.study.spec import loads_study


def _user_cnn(shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A user's model made of supported layers: 'same' padding, no bias, BatchNorm1d on conv features
    and on flat features, Tanh, a linear layer inside the body."""
    channels, length = shape
    body = nn.Sequential(
        nn.Conv1d(channels, 6, 3, padding="same", bias=False),
        nn.BatchNorm1d(6),
        nn.Tanh(),
        nn.Conv1d(6, 4, 4, stride=3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * ((length - 4) // 3 + 1), 8),
        nn.BatchNorm1d(8),
        nn.GELU(),
    )
    return Classifier(body, nn.Linear(8, num_classes))


def _members(name: str, shape: tuple[int, ...], options: dict, count: int) -> list[nn.Module]:
    torch.manual_seed(0)
    if name == "user":
        return [_user_cnn(shape, 5) for _ in range(count)]
    return [build_model(name, input_shape=shape, num_classes=5, options=options) for _ in range(count)]


CASES = {
    "cnn1d": ("cnn1d", (40,), {}),
    "cnn1d-odd": ("cnn1d", (3, 23), {"channels": 5, "kernel_sizes": [4, 3], "strides": [1, 3], "padding": 2}),
    "cnn2d": ("cnn2d", (8, 8), {"channels": [4, 6], "hidden": 12}),
    "resnet": ("resnet", (8, 8), {"depth": 8, "width": 4}),
    "resnet-rgb": ("resnet", (3, 7, 9), {"depth": 8, "width": 4}),
    "user": ("user", (2, 11), {}),
}


@pytest.mark.parametrize("size", [3, CHUNK + 2])
@pytest.mark.parametrize("case", list(CASES))
def test_stacked_layers_compute_what_vmap_computes(case, size):
    """Training mode (batch statistics, running statistics updated in place, gradients) and evaluation
    mode (running statistics; every member on its own examples and all on the same), within 1e-5."""
    _compare_with_vmap(case, size)


def test_channels_last_grouped_convolutions_compute_what_vmap_computes(monkeypatch):
    monkeypatch.setattr(stacked_layers, "CHANNELS_LAST", True)
    for case in ("resnet", "cnn2d"):
        _compare_with_vmap(case, CHUNK + 2)


def _compare_with_vmap(case: str, size: int) -> None:
    """In float64 the arithmetic must agree (1e-10: a float32 comparison would compare the rounding
    noise of gradients that are zero in exact arithmetic, such as a linear bias before batch norm);
    in float32 the outputs within 1e-5."""
    name, shape, options = CASES[case]
    models = _members(name, shape, options, size)
    x = torch.randn(size, 16, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    test = torch.randn(300, *shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    tight = {"rtol": 1e-10, "atol": 1e-10}
    for dtype, tol in ((torch.float64, tight), (torch.float32, {"rtol": 1e-5, "atol": 1e-5})):
        ours = Stacked([copy.deepcopy(m).to(dtype) for m in models], torch.device("cpu"))
        theirs = Stacked([copy.deepcopy(m).to(dtype) for m in models], torch.device("cpu"), layers=False)
        assert ours._program is not None
        assert theirs._program is None
        for _ in range(2):  # the second step sees the running statistics the first one updated
            out, ref = ours.each(x.to(dtype)), theirs.each(x.to(dtype))
            torch.testing.assert_close(out, ref, **tol)
            if dtype == torch.float64:
                weights = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
                (out * weights).sum().backward()
                (ref * weights).sum().backward()
                for key, p in ours.params.items():
                    torch.testing.assert_close(p.grad, theirs.params[key].grad, **tight)
            for key, b in ours.buffers.items():
                torch.testing.assert_close(b, theirs.buffers[key], **tol)
        with torch.no_grad(), ours.evaluating(), theirs.evaluating():
            torch.testing.assert_close(ours.shared(test.to(dtype)), theirs.shared(test.to(dtype)), **tol)
            torch.testing.assert_close(ours.each(x.to(dtype)), theirs.each(x.to(dtype)), **tol)


@pytest.mark.parametrize("case", ["cnn1d", "resnet", "cnn2d", "user"])
def test_a_member_is_bitwise_the_same_in_any_pack(case):
    """Outputs, gradients and batch-norm buffers of a member, and its evaluation, do not depend on its
    pack mates or on the pack's size (1, a short chunk, more than a chunk)."""
    name, shape, options = CASES[case]
    models = _members(name, shape, options, CHUNK + 3)
    x = torch.randn(len(models), 20, *shape, generator=torch.Generator().manual_seed(3))
    test = torch.randn(70, *shape, generator=torch.Generator().manual_seed(4))

    def run(members: list[int]) -> tuple:
        stacked = Stacked([copy.deepcopy(models[m]) for m in members], torch.device("cpu"))
        out = stacked.each(x[members])
        out.square().sum().backward()
        with torch.no_grad(), stacked.evaluating():
            evaluated = stacked.shared(test)
        grads = {k: v.grad for k, v in stacked.params.items()}
        return out.detach(), grads, stacked.buffers, evaluated

    whole = run(list(range(len(models))))
    for members in ([4], [1, 7, 9], list(range(2, CHUNK + 3))):
        part = run(members)
        for j, m in enumerate(members):
            assert torch.equal(part[0][j], whole[0][m])
            assert torch.equal(part[3][j], whole[3][m])
            for key in whole[1]:
                assert torch.equal(part[1][key][j], whole[1][key][m]), key
            for key in whole[2]:
                assert torch.equal(part[2][key][j], whole[2][key][m]), key


@pytest.mark.parametrize("case", ["cnn1d", "resnet"])
def test_a_diverged_member_leaks_nothing_into_its_mates(case):
    """A member whose parameters are NaN (diverged, frozen out by the engine) shares chunks with the
    others: their outputs, gradients and running statistics stay bitwise what they were."""
    name, shape, options = CASES[case]
    models = _members(name, shape, options, 5)
    x = torch.randn(5, 20, *shape, generator=torch.Generator().manual_seed(7))

    def run(poison: bool) -> tuple:
        stacked = Stacked(copy.deepcopy(models), torch.device("cpu"))
        if poison:
            with torch.no_grad():
                for p in stacked.params.values():
                    p[2] = float("nan")
        out = stacked.each(x)
        out[[0, 1, 3, 4]].square().sum().backward()
        return out.detach(), {k: v.grad for k, v in stacked.params.items()}, stacked.buffers

    clean, poisoned = run(False), run(True)
    assert torch.isnan(poisoned[0][2]).all()
    for m in (0, 1, 3, 4):
        assert torch.equal(poisoned[0][m], clean[0][m])
        for key in clean[1]:
            assert torch.equal(poisoned[1][key][m], clean[1][key][m]), key
        for key in clean[2]:
            assert torch.equal(poisoned[2][key][m], clean[2][key][m]), key


def test_models_the_stacked_layers_do_not_cover_keep_vmap():
    class MyConv(nn.Conv1d):  # a subclass may change forward: exact types only
        pass

    uncovered = [
        nn.Sequential(nn.Conv1d(1, 2, 3), nn.Dropout(), nn.Flatten()),
        nn.Sequential(nn.Conv1d(1, 2, 3, dilation=2), nn.Flatten()),
        nn.Sequential(nn.Conv1d(2, 2, 3, groups=2), nn.Flatten()),
        nn.Sequential(nn.Conv1d(1, 2, 3, padding_mode="circular", padding=1), nn.Flatten()),
        nn.Sequential(nn.Conv1d(1, 2, 4, padding="same"), nn.Flatten()),  # even kernel: asymmetric
        nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2, momentum=None), nn.Flatten()),
        nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2, affine=False), nn.Flatten()),
        nn.Sequential(MyConv(1, 2, 3), nn.Flatten()),
        nn.Sequential(nn.Flatten(), nn.Linear(4, 2)),  # no convolution: nothing to gain
    ]
    for model in uncovered:
        assert stacked_forward(model) is None, model
    assert stacked_forward(nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten())) is not None
    cnn = build_model("cnn1d", input_shape=(40,), num_classes=10)
    assert Stacked([cnn], torch.device("cpu"))._program is not None
    assert Stacked([cnn], torch.device("meta"))._program is None  # not the CPU: vmap unless asked
    assert Stacked([cnn], torch.device("meta"), layers=True)._program is not None


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding"),
    [
        ((11,), (3,), (2,), (1,)),
        ((9,), (5,), (1,), (0,)),
        ((7,), (2,), (3,), (2,)),
        ((6, 5), (3, 2), (2, 1), (1, 1)),
    ],
)
def test_im2col_convolution_and_its_backward_equal_torch(size, kernel, stride, padding):
    """Against torch's own convolution (per member), forward and all three gradients, in float64."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, *size, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(3, 2, 4, *kernel, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    y = conv(x, w, b, stride=stride, padding=padding)
    torch_conv = torch.conv1d if len(size) == 1 else torch.conv2d
    ref = torch.stack(
        [torch_conv(x[p].movedim(-1, 0), w[p], b[p], stride=stride, padding=padding) for p in range(3)]
    ).movedim(1, -1)
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(ref)
    ours = torch.autograd.grad(y, (x, w, b), g)
    theirs = torch.autograd.grad(ref, (x, w, b), g)
    for a, c in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, c)
    assert torch.autograd.gradcheck(lambda x, w, b: conv(x, w, b, stride=stride, padding=padding), (x, w, b))


def test_linear_both_orientations_and_gradients():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(2, 4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(2, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    torch.testing.assert_close(linear(x, w, b, features_first=False), x @ w.transpose(1, 2) + b[:, None])
    xt = x.detach().transpose(1, 2).contiguous().requires_grad_()
    torch.testing.assert_close(linear(xt, w, b, features_first=True), w @ xt + b[:, :, None])
    for first, inp in ((False, x), (True, xt)):
        assert torch.autograd.gradcheck(lambda i, w, b: linear(i, w, b, features_first=first), (inp, w, b))  # noqa: B023


def test_im2col_memory_is_counted_for_pack_sizing():
    model = build_model("cnn1d", input_shape=(40,), num_classes=10)
    # (1·5 + 1)·19 + (25·3 + 1)·10 + (25·3 + 1)·5 columns per example
    assert im2col_elements(model, (40,)) == 6 * 19 + 76 * 10 + 76 * 5
    assert im2col_elements(build_model("resnet", input_shape=(8, 8), num_classes=10), (8, 8)) == 0


STUDY = """
name = "layers"
seeds = 2
[data]
source = "digits"
test_fraction = 0.25
[model]
{model}
[train]
epochs = 2
batch_size = 64
{extra}
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.2
[[arms]]
name = "disturb"
disturb_alpha = 0.2
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.3]
"""


def _metrics(result) -> str:
    return json.dumps({"metrics": result.metrics, "curves": result.curves}, sort_keys=True)


def test_a_cnn1d_pack_matches_the_reference_and_is_bitwise_independent_of_its_mates():
    from test_engine import assert_same_result

    text = STUDY.format(model='name = "cnn1d"\nchannels = 8', extra="")
    dataset, runs = resolve_study(loads_study(textwrap.dedent(text)))
    pack = train_pack(runs, dataset)
    for result, run in zip(pack, runs, strict=True):
        assert_same_result(result, train_reference(run, dataset))
    _independent(pack, runs, dataset)


def test_a_resnet_pack_follows_the_reference_and_is_bitwise_independent_of_its_mates():
    """With SGD (Adam divides each gradient component by its own size, so a rounding difference in a
    component near zero becomes a whole step, and a ResNet drifts apart within two epochs whatever the
    arithmetic: vmap's grouped convolutions by up to 1e-4 here): the losses within 1e-5 of the
    reference's. Accuracies are not compared: an example whose two largest logits are within rounding
    of each other may go either way."""
    text = STUDY.format(
        model='name = "resnet"\ndepth = 8\nwidth = 4',
        extra='augment = "crop_flip"\noptimizer = "sgd"\nlr = 0.05',
    )
    dataset, runs = resolve_study(loads_study(textwrap.dedent(text)))
    pack = train_pack(runs, dataset)
    for result, run in zip(pack, runs, strict=True):
        reference = train_reference(run, dataset)
        for key in ("train_loss", "val_nll", "test_nll"):
            assert result.curves[key] == pytest.approx(reference.curves[key], rel=1e-5, abs=1e-5), key
    _independent(pack, runs, dataset)


def _independent(pack, runs, dataset) -> None:
    """Members trained in a pack of one and of three: bitwise what they got in the whole pack."""
    for members in (runs[5:6], runs[1:4]):
        for result in train_pack(members, dataset):
            whole = next(r for r in pack if r.run_id == result.run_id)
            assert _metrics(result) == _metrics(whole)
