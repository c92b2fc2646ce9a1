"""The pack engine on a CUDA GPU: no host synchronization inside a training step, and the same
results as on the CPU (within float tolerance). Skipped where PyTorch sees no CUDA device."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from smoothflip.engine import resolve_study
from smoothflip.engine.classifier.members import build_member
from smoothflip.engine.classifier.pack import train_pack
from smoothflip.engine.classifier.run_data import loss_context, prepare_run
from smoothflip.engine.member_losses import MemberLosses, grouped_member_losses
from smoothflip.engine.schedule import make_lr_schedule, make_optimizer, training_schedule
from smoothflip.engine.stacked import PackLoop, Stacked
from smoothflip.study.spec import loads_study
from smoothflip.techniques import LossContext

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

STUDY = """
name = "cuda"
seeds = 2
[data]
source = "mnist1d"
[model]
name = "{model}"
[train]
epochs = 2
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[arms]]
name = "cp"
loss = "confidence_penalty"
beta = 0.5
[[arms]]
name = "gce"
loss = "gce"
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.2]
"""


@pytest.mark.parametrize(("model", "layers"), [("mlp", None), ("cnn1d", None), ("cnn1d", True)])
def test_a_pack_step_never_synchronizes_with_the_host(model, layers):
    """Also with the stacked layers, which CUDA does not take by default (``layers=True``)."""
    device = torch.device("cuda")
    dataset, runs = resolve_study(loads_study(textwrap.dedent(STUDY.format(model=model))))
    datas = [prepare_run(r, dataset) for r in runs]
    train_cfg = runs[0].shared["train"]
    schedule = training_schedule(train_cfg, datas[0].train_idx.size)
    stacked = Stacked([build_member(r, dataset) for r in runs], device, layers=layers)
    optimizer = make_optimizer(stacked.parameters(), train_cfg)
    scheduler = make_lr_schedule(optimizer, train_cfg, schedule.total_steps)
    k = dataset.num_classes
    losses = MemberLosses(runs, LossContext(k), lambda m: loss_context(datas[m], k), device)
    loop = PackLoop(stacked, losses, schedule, optimizer, scheduler)
    x_all = torch.as_tensor(dataset.x_train, device=device)
    labels = torch.as_tensor(np.stack([d.labels for d in datas]), device=device)
    rows = torch.arange(len(runs), device=device).unsqueeze(1)
    idx = torch.as_tensor(np.stack([d.train_idx[:100] for d in datas]), device=device)
    target = labels[rows, idx]
    for _epoch, groups in loop.epochs():
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(5):
                logits = stacked.each(x_all[idx])
                member_loss = grouped_member_losses(logits, target, groups)
                loop.step(member_loss, logits.detach().abs().amax(dim=(1, 2)), idx.shape[1])
        finally:
            torch.cuda.set_sync_debug_mode(0)
        break
    assert loop.steps == 5
    assert loop.take_diverged() == []


def test_a_pack_on_cuda_matches_the_cpu():
    spec = loads_study(textwrap.dedent(STUDY.format(model="mlp")))
    dataset, runs = resolve_study(spec)
    cpu = train_pack(runs, dataset, device="cpu")
    gpu = train_pack(runs, dataset, device="cuda")
    for a, b in zip(cpu, gpu, strict=True):
        np.testing.assert_allclose(a.curves["train_loss"], b.curves["train_loss"], rtol=1e-3, atol=1e-4)
        assert abs(a.metrics["selected"]["test_acc"] - b.metrics["selected"]["test_acc"]) <= 0.02


@pytest.mark.parametrize(
    ("name", "shape", "options"),
    [("cnn1d", (40,), {}), ("resnet", (8, 8), {"depth": 8, "width": 4}), ("cnn2d", (8, 8), {})],
)
def test_the_stacked_layers_on_cuda_compute_what_vmap_computes(name, shape, options):
    """In float64 (cuDNN may use TF32 in float32): outputs, gradients and batch-norm buffers."""
    import copy

    from smoothflip.models import build_model

    device = torch.device("cuda")
    torch.manual_seed(0)
    models = [
        build_model(name, input_shape=shape, num_classes=5, options=options).double() for _ in range(10)
    ]
    ours = Stacked(copy.deepcopy(models), device, layers=True)
    theirs = Stacked(copy.deepcopy(models), device)
    assert ours._program is not None
    assert theirs._program is None
    x = torch.randn(10, 16, *shape, dtype=torch.float64, device=device)
    out, ref = ours.each(x), theirs.each(x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    out.square().sum().backward()
    ref.square().sum().backward()
    for key, p in ours.params.items():
        torch.testing.assert_close(p.grad, theirs.params[key].grad, rtol=1e-9, atol=1e-9)
    for key, b in ours.buffers.items():
        torch.testing.assert_close(b, theirs.buffers[key], rtol=1e-10, atol=1e-10)
