"""The per-run reference trainer of language-model studies: one model, a plain PyTorch loop."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from smoothflip.engine.language.evaluation import evaluate, truth
from smoothflip.engine.language.members import build_lm_member, lm_loss_context
from smoothflip.engine.language.pack import shifted
from smoothflip.engine.language.tracking import LMTracker, finish
from smoothflip.engine.member_losses import MemberLosses
from smoothflip.engine.results import pack_timings
from smoothflip.engine.schedule import (
    ProgressFn,
    diverged,
    make_lr_schedule,
    make_optimizer,
    training_schedule,
)
from smoothflip.study.grid import RunConfig
from smoothflip.study.store import RunResult


def train_lm_reference(
    run: RunConfig,
    corpus: Any,
    *,
    device: str | torch.device = "cpu",
    base_dir: str = ".",
    progress: ProgressFn | None = None,
    teachers: Mapping[str, Any] | None = None,
) -> RunResult:
    """Train one language-model run alone (same semantics as :func:`~.pack.train_lm_pack`)."""
    started = time.perf_counter()
    device = torch.device(device)
    train_cfg = run.shared["train"]
    n_train = corpus.train.shape[0]
    schedule = training_schedule(train_cfg, n_train)
    batch_size = int(train_cfg["batch_size"])
    tokens = torch.as_tensor(corpus.train, device=device)
    model = build_lm_member(run, corpus).to(device)
    optimizer = make_optimizer(list(model.parameters()), train_cfg)
    scheduler = make_lr_schedule(optimizer, train_cfg, schedule.total_steps)
    context = lm_loss_context(corpus)
    losses = MemberLosses([run], context, lambda m: context, device)
    order = np.random.default_rng(run.seed_for("order"))
    tracker = LMTracker(run)
    truth_val, truth_test = truth(corpus, "validation"), truth(corpus, "test")
    step, failed = 0, False
    eval_every = int(train_cfg.get("eval_every", 1))
    for epoch in range(1, schedule.epochs + 1):
        loss_fn, _ = losses.module(0, epoch)
        perm = torch.as_tensor(order.permutation(n_train), device=device)
        total, seen = 0.0, 0
        for b in range(schedule.batches):
            if step >= schedule.total_steps:
                break
            ids = tokens[perm[b * batch_size : (b + 1) * batch_size]]
            logits = model(ids)
            loss = loss_fn(*shifted(logits, ids)).mean()
            if bool(diverged(loss.detach(), logits.detach().abs().amax())):
                tracker.mark_diverged(epoch)
                failed = True
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            total += float(loss.detach()) * ids.shape[0]
            seen += ids.shape[0]
        if failed:
            break
        losses.end_epoch(epoch)
        if epoch % eval_every and step < schedule.total_steps and epoch < schedule.epochs:
            continue
        model.eval()
        val = evaluate(model, corpus.validation, truth_val, device)
        test = evaluate(model, corpus.test, truth_test, device)
        model.train()
        if tracker.record(epoch, total / max(seen, 1), val, test):
            tracker.selected_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress is not None:
            progress(epoch / schedule.epochs)
        if step >= schedule.total_steps:
            break
    timings = pack_timings(time.perf_counter() - started, 1, step)
    selected = None
    if tracker.selected_state is not None:
        best = copy.deepcopy(model)
        best.load_state_dict(tracker.selected_state)
        selected = best.eval()
    model.eval()
    return finish(tracker, corpus, device, None if failed else model, selected, timings)
