"""The per-run reference trainer: one classifier run, one ``nn.Module``, a plain PyTorch loop.

It exists to hold the pack trainer to account: for the same run and seed both must produce the same
metrics (a test checks it). It is also the simplest way to read what a run does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import numpy as np
import torch

from smoothflip.data import Dataset
from smoothflip.data.augment import random_crop_flip
from smoothflip.engine.classifier.members import build_member
from smoothflip.engine.classifier.probes import Probe
from smoothflip.engine.classifier.run_data import (
    augmenter,
    epoch_targets,
    epoch_visit,
    flip_generator,
    loss_context,
    prepare_run,
)
from smoothflip.engine.classifier.teachers import teacher_logits
from smoothflip.engine.classifier.tracking import Tracker
from smoothflip.engine.member_losses import MemberLosses
from smoothflip.engine.results import pack_timings
from smoothflip.engine.schedule import (
    ProgressFn,
    diverged,
    make_lr_schedule,
    make_optimizer,
    training_schedule,
)
from smoothflip.engine.teachers import TeacherState, state_to_bytes
from smoothflip.study.grid import RunConfig
from smoothflip.study.store import RunResult
from smoothflip.techniques import LossContext


def train_reference(
    run: RunConfig,
    dataset: Dataset,
    *,
    device: str | torch.device = "cpu",
    base_dir: str = ".",
    progress: ProgressFn | None = None,
    teachers: Mapping[str, TeacherState] | None = None,
) -> RunResult:
    """Train one run alone and return its result.

    Same semantics as :func:`~smoothflip.engine.classifier.pack.train_pack`, in a plain loop over
    one module.
    """
    started = time.perf_counter()
    device = torch.device(device)
    k = dataset.num_classes
    train_cfg = run.shared["train"]
    data = prepare_run(run, dataset)
    schedule = training_schedule(train_cfg, data.train_idx.size)
    batch_size = int(train_cfg["batch_size"])
    x_all = torch.as_tensor(dataset.x_train, device=device)
    x_test = torch.as_tensor(dataset.x_test, device=device)
    labels = torch.as_tensor(data.labels, device=device)
    val_idx = torch.as_tensor(data.val_idx, device=device)
    train_eval_idx = torch.as_tensor(data.train_eval_idx, device=device)

    model = build_member(run, dataset, base_dir=base_dir).to(device)
    optimizer = make_optimizer(list(model.parameters()), train_cfg)
    scheduler = make_lr_schedule(optimizer, train_cfg, schedule.total_steps)
    losses = MemberLosses([run], LossContext(k), lambda m: loss_context(data, k), device)
    order = np.random.default_rng(run.seed_for("order"))
    augment = augmenter(run)
    padding = int(train_cfg.get("augment_padding", 2))
    generator = flip_generator(data, device)
    teacher_train = None
    if run.teacher_run is not None:
        if not teachers or run.teacher_run not in teachers:
            raise ValueError(
                f"the teacher of a distilled student is not available (teacher run {run.teacher_run})"
            )
        teacher_train = teacher_logits(teachers[run.teacher_run], dataset, base_dir=base_dir, device=device)
    tracker = Tracker(data, dataset)
    probe = Probe(data, dataset) if run.probe is not None else None
    step = 0
    eval_every = int(train_cfg.get("eval_every", 1))
    for epoch in range(1, schedule.epochs + 1):
        loss_fn, needs_teacher = losses.module(0, epoch)
        visit = torch.as_tensor(epoch_visit(order, data), device=device)
        targets = epoch_targets(labels[visit], data, k, generator, batch_size)
        total, seen, failed = 0.0, 0, False
        for b in range(schedule.batches):
            if step >= schedule.total_steps:
                break
            batch = slice(b * batch_size, (b + 1) * batch_size)
            idx, target = visit[batch], targets[batch]
            x = x_all[idx]
            if augment is not None:
                x = random_crop_flip(x, padding=padding, generator=augment)
            logits = model(x)
            extra = {"teacher": teacher_train[idx]} if needs_teacher else {}
            loss = loss_fn(logits, target, **extra).mean()
            if bool(diverged(loss.detach(), logits.detach().abs().amax())):
                tracker.mark_diverged(epoch)
                failed = True
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            total += float(loss.detach()) * idx.numel()
            seen += idx.numel()
        if failed:
            break
        losses.end_epoch(epoch)
        last = step >= schedule.total_steps or epoch == schedule.epochs
        if epoch % eval_every and not last:
            continue
        model.eval()
        with torch.no_grad():
            mi = probe.mutual_information(model, device) if probe is not None else math.nan
            selected = tracker.record(
                epoch,
                total / max(seen, 1),
                model(x_all[train_eval_idx]),
                model(x_all[val_idx]),
                model(x_test),
                mi,
            )
            if selected and tracker.keeps_state:
                tracker.artifacts["state"] = state_to_bytes(model.state_dict())
        model.train()
        if progress is not None:
            progress(epoch / schedule.epochs)
        if step >= schedule.total_steps:
            break
    if probe is not None:
        tracker.add_extra("mi", probe.describe())
        if tracker.diverged_epoch is None:
            head = getattr(model, "head", None)
            with torch.no_grad():
                tracker.add_extra(
                    "representation",
                    probe.representation(
                        getattr(model, "features", None),
                        None if head is None else head.weight,
                        None if head is None else head.bias,
                        len(tracker.curves["epoch"]),
                        device,
                    ),
                )
    return tracker.result(pack_timings(time.perf_counter() - started, 1, step))
