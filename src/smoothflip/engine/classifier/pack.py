"""The classifier pack trainer: many runs of one study trained together as one batched ensemble.

Each member keeps its own noisy labels, train/validation split, initialization, data order, loss
and label flipping; :mod:`smoothflip.engine.stacked` runs the members under ``torch.vmap`` and
steps them with one optimizer. :mod:`.reference` trains one run alone, and a test holds the two to
the same numbers. A member that diverges is frozen out, is no longer evaluated, and keeps the
metrics of its last finite epoch.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from smoothflip.data import Dataset
from smoothflip.data.augment import random_crop_flip_members
from smoothflip.engine.checkpoint import (
    PackCheckpoint,
    load_numpy_states,
    load_torch_states,
    numpy_states,
    torch_states,
)
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
from smoothflip.engine.member_losses import MemberLosses, grouped_member_losses
from smoothflip.engine.results import pack_timings
from smoothflip.engine.schedule import (
    ProgressFn,
    make_lr_schedule,
    make_optimizer,
    training_schedule,
)
from smoothflip.engine.stacked import PackLoop, Stacked
from smoothflip.engine.teachers import TeacherState, state_to_bytes
from smoothflip.study.grid import RunConfig
from smoothflip.study.store import RunResult
from smoothflip.techniques import LossContext


def train_pack(
    runs: Sequence[RunConfig],
    dataset: Dataset,
    *,
    device: str | torch.device = "cpu",
    base_dir: str = ".",
    progress: ProgressFn | None = None,
    teachers: Mapping[str, TeacherState] | None = None,
    checkpoint: PackCheckpoint | None = None,
) -> list[RunResult]:
    """Train ``runs`` (which must share data, model and schedule) together; one result per run.

    Args:
        runs: the pack's members.
        dataset: the study's dataset.
        device: ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        base_dir: folder a model factory reference resolves against.
        progress: called with the fraction of the pack done after each epoch.
        teachers: for distilled students, their teachers by run id (``run.teacher_run``).
        checkpoint: where to save the pack's state between epochs and to resume from
            (:mod:`smoothflip.engine.checkpoint`); None trains without checkpoints.

    Returns:
        The members' results, in the order of ``runs``.
    """
    if not runs:
        return []
    if len({r.pack_key for r in runs}) != 1:
        raise ValueError("a pack's runs must share data, model and schedule (one pack key)")
    started = time.perf_counter()
    device = torch.device(device)
    k = dataset.num_classes
    train_cfg = runs[0].shared["train"]
    datas = [prepare_run(r, dataset) for r in runs]
    size = len(runs)
    schedule = training_schedule(train_cfg, datas[0].train_idx.size)
    batch_size = int(train_cfg["batch_size"])

    x_all = torch.as_tensor(dataset.x_train, device=device)
    x_test = torch.as_tensor(dataset.x_test, device=device)
    eval_idx = {
        "train": torch.as_tensor(np.stack([d.train_eval_idx for d in datas]), device=device),
        "val": torch.as_tensor(np.stack([d.val_idx for d in datas]), device=device),
    }
    labels = torch.as_tensor(np.stack([d.labels for d in datas]), device=device)  # [P, N] labels trained on
    rows = torch.arange(size, device=device).unsqueeze(1)
    teacher_train = _teacher_logits(runs, dataset, teachers, base_dir=base_dir, device=device)

    model = Stacked([build_member(r, dataset, base_dir=base_dir) for r in runs], device)
    optimizer = make_optimizer(model.parameters(), train_cfg)
    scheduler = make_lr_schedule(optimizer, train_cfg, schedule.total_steps)
    losses = MemberLosses(runs, LossContext(k), lambda m: loss_context(datas[m], k), device)

    orders = [np.random.default_rng(r.seed_for("order")) for r in runs]
    augmenters = [augmenter(r) for r in runs]
    padding = int(train_cfg.get("augment_padding", 2))
    generators = [flip_generator(d, device) for d in datas]
    flippers = [m for m, g in enumerate(generators) if g is not None]
    trackers = [Tracker(d, dataset) for d in datas]
    probes = {m: Probe(d, dataset) for m, d in enumerate(datas) if d.run.probe is not None}

    def batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        visit = torch.as_tensor(  # [P, N_tr] dataset indices in visiting order
            np.stack([epoch_visit(rng, d) for rng, d in zip(orders, datas, strict=True)]), device=device
        )
        targets = labels[rows, visit]
        for m in flippers:
            targets[m] = epoch_targets(targets[m], datas[m], k, generators[m], batch_size)
        for b in range(schedule.batches):
            batch = slice(b * batch_size, (b + 1) * batch_size)
            yield visit[:, batch], targets[:, batch]  # [P, B] each

    loop = PackLoop(model, losses, schedule, optimizer, scheduler)
    eval_every = int(train_cfg.get("eval_every", 1))
    clock = {"train": 0.0, "eval": 0.0}

    def state() -> dict:
        return {
            **loop.state_dict(),
            "orders": numpy_states(orders),
            "augmenters": torch_states(augmenters),
            "flips": torch_states(generators),
            "trackers": [t.state_dict() for t in trackers],
            "clock": dict(clock),
        }

    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        loop.load_state_dict(saved)
        load_numpy_states(orders, saved["orders"])
        load_torch_states(augmenters, saved["augmenters"])
        load_torch_states(generators, saved["flips"])
        for tracker, tracker_state in zip(trackers, saved["trackers"], strict=True):
            tracker.load_state_dict(tracker_state)
        clock.update(saved["clock"])
        if progress is not None:
            progress(loop.epoch / schedule.epochs)
    for epoch, groups in loop.epochs():
        tick = time.perf_counter()
        for idx, target in batches(epoch):
            if loop.done:
                break
            x = x_all[idx]  # [P, B, *input]
            if augmenters[0] is not None:
                x = random_crop_flip_members(x, padding=padding, generators=augmenters)
            logits = model.each(x)  # [P, B, K]
            teacher = None if teacher_train is None else teacher_train[rows, idx]
            member_loss = grouped_member_losses(logits, target, groups, teacher)
            loop.step(member_loss, logits.detach().abs().amax(dim=(1, 2)), idx.shape[1])
        train_losses = loop.end_epoch()
        for m in loop.take_diverged():
            trackers[m].mark_diverged(epoch)
        tock = time.perf_counter()
        clock["train"] += tock - tick
        if epoch % eval_every == 0 or loop.done or epoch == schedule.epochs:
            _evaluate(epoch, model, loop, trackers, probes, train_losses, x_all, x_test, eval_idx, device)
        clock["eval"] += time.perf_counter() - tock
        if progress is not None:
            progress(epoch / schedule.epochs)
        if checkpoint is not None and not loop.done and checkpoint.due():
            checkpoint.save(state())
    alive, steps = loop.alive, loop.steps
    with torch.no_grad(), model.evaluating():
        for m, probe in probes.items():
            trackers[m].add_extra("mi", probe.describe())
            if bool(alive[m]):
                head_w, head_b = model.params.get("head.weight"), model.params.get("head.bias")
                trackers[m].add_extra(
                    "representation",
                    probe.representation(
                        model.member_features(m) if model.has_body else None,
                        None if head_w is None else head_w[m],
                        None if head_b is None else head_b[m],
                        len(trackers[m].curves["epoch"]),
                        device,
                    ),
                )
    timings = pack_timings(time.perf_counter() - started, size, steps, clock)
    return [t.result(timings) for t in trackers]


def _evaluate(
    epoch: int,
    model: Stacked,
    loop: PackLoop,
    trackers: Sequence[Tracker],
    probes: Mapping[int, Probe],
    train_losses: Sequence[float],
    x_all: Tensor,
    x_test: Tensor,
    eval_idx: Mapping[str, Tensor],
    device: torch.device,
) -> None:
    """Score every member still training on its curve subsets and the test set, for its tracker."""
    alive = loop.alive_list()
    with torch.no_grad(), model.evaluating():
        test_logits = model.shared(x_test)
        train_logits = model.each_indexed(x_all, eval_idx["train"])
        val_logits = model.each_indexed(x_all, eval_idx["val"])
        mi = {
            m: probe.mutual_information(functools.partial(model.member, m), device)
            for m, probe in probes.items()
            if alive[m]
        }
    for m, tracker in enumerate(trackers):
        if alive[m]:
            selected = tracker.record(
                epoch, train_losses[m], train_logits[m], val_logits[m], test_logits[m], mi.get(m, math.nan)
            )
            if selected and tracker.keeps_state:
                tracker.artifacts["state"] = state_to_bytes(model.member_state(m))


def _teacher_logits(
    runs: Sequence[RunConfig],
    dataset: Dataset,
    teachers: Mapping[str, TeacherState] | None,
    *,
    base_dir: str,
    device: torch.device,
) -> Tensor | None:
    """``[P, N_train, K]`` teacher logits for a pack holding distilled students (zeros for the rest)."""
    needed = [r.teacher_run for r in runs if r.teacher_run is not None]
    if not needed:
        return None
    missing = [run_id for run_id in needed if not teachers or run_id not in teachers]
    if missing:
        raise ValueError(f"the teacher of a distilled student is not available (teacher run {missing[0]})")
    cache: dict[str, Tensor] = {}
    out = torch.zeros(len(runs), dataset.y_train.size, dataset.num_classes, device=device)
    for m, run in enumerate(runs):
        if run.teacher_run is not None:
            if run.teacher_run not in cache:
                cache[run.teacher_run] = teacher_logits(
                    teachers[run.teacher_run], dataset, base_dir=base_dir, device=device
                )
            out[m] = cache[run.teacher_run]
    return out
