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


@pytest.mark.parametrize("model", ["mlp", "cnn1d"])
def test_a_pack_step_never_synchronizes_with_the_host(model):
    device = torch.device("cuda")
    dataset, runs = resolve_study(loads_study(textwrap.dedent(STUDY.format(model=model))))
    datas = [prepare_run(r, dataset) for r in runs]
    train_cfg = runs[0].shared["train"]
    schedule = training_schedule(train_cfg, datas[0].train_idx.size)
    stacked = Stacked([build_member(r, dataset) for r in runs], device)
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
