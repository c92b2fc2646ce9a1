"""Language-model packs: every arm trains the same tiny causal LM, members stacked under ``torch.vmap``.

The members' next-token losses come from the technique registry like the classifiers' (applied to
the shifted tokens: position ``t`` predicts token ``t + 1``), through the same
:class:`~smoothflip.engine.member_losses.MemberLosses`, :class:`~smoothflip.engine.stacked.Stacked`
model and epoch loop. :mod:`.reference` trains one run alone with the same semantics, and a test
holds the two to the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from smoothflip.engine.checkpoint import PackCheckpoint, load_numpy_states, numpy_states
from smoothflip.engine.language.evaluation import evaluate, truth
from smoothflip.engine.language.members import build_lm_member, lm_loss_context
from smoothflip.engine.language.tracking import LMTracker, finish
from smoothflip.engine.member_losses import MemberLosses, grouped_member_losses
from smoothflip.engine.results import pack_timings
from smoothflip.engine.schedule import ProgressFn, make_lr_schedule, make_optimizer, training_schedule
from smoothflip.engine.stacked import PackLoop, Stacked
from smoothflip.study.grid import RunConfig
from smoothflip.study.store import RunResult


def shifted(logits: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """The positions that predict a next token, flattened: position ``t`` predicts token ``t + 1``.

    ``[P, B, T, V]`` logits and ``[P, B, T]`` ids -> ``[P, B·(T-1), V]`` and ``[P, B·(T-1)]``; without
    the leading member dimension ``[B, T, V]`` -> ``[B·(T-1), V]``.
    """
    lead = logits.shape[:-3]
    v = logits.shape[-1]
    return logits[..., :-1, :].reshape(*lead, -1, v), ids[..., 1:].reshape(*lead, -1)


def train_lm_pack(
    runs: Sequence[RunConfig],
    corpus: Any,
    *,
    device: str | torch.device = "cpu",
    base_dir: str = ".",
    progress: ProgressFn | None = None,
    teachers: Mapping[str, Any] | None = None,
    checkpoint: PackCheckpoint | None = None,
) -> list[RunResult]:
    """Train language-model runs that share corpus, model and schedule together; one result per run
    (saving and resuming the pack's state through ``checkpoint``, as the classifier packs do)."""
    if not runs:
        return []
    if len({r.pack_key for r in runs}) != 1:
        raise ValueError("a pack's runs must share data, model and schedule (one pack key)")
    started = time.perf_counter()
    device = torch.device(device)
    train_cfg = runs[0].shared["train"]
    size = len(runs)
    n_train = corpus.train.shape[0]
    schedule = training_schedule(train_cfg, n_train)
    batch_size = int(train_cfg["batch_size"])
    tokens = torch.as_tensor(corpus.train, device=device)
    model = Stacked([build_lm_member(r, corpus) for r in runs], device)
    optimizer = make_optimizer(model.parameters(), train_cfg)
    scheduler = make_lr_schedule(optimizer, train_cfg, schedule.total_steps)
    context = lm_loss_context(corpus)
    losses = MemberLosses(runs, context, lambda m: context, device)
    orders = [np.random.default_rng(r.seed_for("order")) for r in runs]
    trackers = [LMTracker(r) for r in runs]
    truth_val, truth_test = truth(corpus, "validation"), truth(corpus, "test")

    def batches() -> Iterator[Tensor]:
        perms = torch.as_tensor(np.stack([rng.permutation(n_train) for rng in orders]), device=device)
        for b in range(schedule.batches):
            yield tokens[perms[:, b * batch_size : (b + 1) * batch_size]]  # [P, B, T]

    loop = PackLoop(model, losses, schedule, optimizer, scheduler)
    eval_every = int(train_cfg.get("eval_every", 1))
    clock = {"train": 0.0, "eval": 0.0}
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        loop.load_state_dict(saved)
        load_numpy_states(orders, saved["orders"])
        for tracker, tracker_state in zip(trackers, saved["trackers"], strict=True):
            tracker.load_state_dict(tracker_state)
        clock.update(saved["clock"])
    for epoch, groups in loop.epochs():
        tick = time.perf_counter()
        for ids in batches():
            if loop.done:
                break
            logits = model.each(ids)  # [P, B, T, V]
            member_loss = grouped_member_losses(*shifted(logits, ids), groups)
            loop.step(member_loss, logits.detach().abs().amax(dim=(1, 2, 3)), ids.shape[1])
        train_losses = loop.end_epoch()
        for m in loop.take_diverged():
            trackers[m].mark_diverged(epoch)
        tock = time.perf_counter()
        clock["train"] += tock - tick
        if epoch % eval_every == 0 or loop.done or epoch == schedule.epochs:
            alive = loop.alive_list()
            for m, tracker in enumerate(trackers):
                if not alive[m]:
                    continue
                fn = model.member_fn(m)
                with model.evaluating():
                    val = evaluate(fn, corpus.validation, truth_val, device)
                    test = evaluate(fn, corpus.test, truth_test, device)
                if tracker.record(epoch, train_losses[m], val, test):
                    tracker.selected_state = model.member_params(m)
        clock["eval"] += time.perf_counter() - tock
        if progress is not None:
            progress(epoch / schedule.epochs)
        if checkpoint is not None and not loop.done and checkpoint.due():
            checkpoint.save(
                {
                    **loop.state_dict(),
                    "orders": numpy_states(orders),
                    "trackers": [t.state_dict() for t in trackers],
                    "clock": dict(clock),
                }
            )
    alive, steps = loop.alive, loop.steps
    timings = pack_timings(time.perf_counter() - started, size, steps, clock)
    results = []
    with model.evaluating():
        for m, tracker in enumerate(trackers):
            current = model.member_fn(m) if bool(alive[m]) else None
            selected = (
                model.member_fn(m, tracker.selected_state) if tracker.selected_state is not None else None
            )
            results.append(finish(tracker, corpus, device, current, selected, timings))
    return results
