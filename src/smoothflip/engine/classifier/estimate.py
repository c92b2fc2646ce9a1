"""How long a classifier study will train: planned steps, and seconds from a short timing probe.

For each distinct pack shape (pack key and size) the probe stacks the pack's members as the pack
trainer does (:class:`~smoothflip.engine.stacked.Stacked`), times :data:`PROBE_STEPS` training steps
(forward, cross-entropy, backward, optimizer step) on one batch after a warm-up step; the estimate
is ``steps x step time + epochs x evaluation time`` per pack (an evaluation pass over the data taken
as :data:`FORWARD_SHARE` of a step per batch), summed over packs, for one pack at a time on the
device. It ignores the techniques' own costs (a teacher's forward pass for distillation, label
flipping) and the load of other processes, and is meant to tell minutes from days, not to the second.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from smoothflip.data import Dataset
from smoothflip.engine.classifier.members import build_member
from smoothflip.engine.classifier.run_data import validation_count
from smoothflip.engine.schedule import Schedule, make_optimizer, training_schedule
from smoothflip.engine.stacked import Stacked
from smoothflip.study.grid import RunConfig

PROBE_STEPS = 1
"""Timed training steps per pack shape (after one warm-up step)."""

FORWARD_SHARE = 1 / 3
"""An evaluation forward pass costs about this share of a training step (backward: about twice)."""


def pack_schedule(run: RunConfig, dataset: Dataset) -> Schedule:
    """The step schedule of ``run``'s pack (its training split without the validation examples)."""
    n = int(dataset.y_train.shape[0])
    fraction = float(run.shared["data"]["validation_fraction"])
    return training_schedule(run.shared["train"], max(1, n - validation_count(n, fraction)))


def estimate_packs(
    packs: Sequence[Sequence[RunConfig]], dataset: Dataset, *, device: torch.device, base_dir: str
) -> tuple[int, float]:
    """``(optimizer steps, estimated seconds)`` to train ``packs`` on ``device``."""
    steps, seconds = 0, 0.0
    timed: dict[tuple[str, int], tuple[float, float]] = {}
    for pack in packs:
        if not pack:
            continue
        schedule = pack_schedule(pack[0], dataset)
        shape = (pack[0].pack_key, len(pack))
        if shape not in timed:
            timed[shape] = _time_pack(pack, dataset, device=device, base_dir=base_dir)
        step_s, eval_s = timed[shape]
        steps += schedule.total_steps
        epochs = min(schedule.epochs, -(-schedule.total_steps // schedule.batches))
        seconds += schedule.total_steps * step_s + epochs * eval_s
    return steps, seconds


def _time_pack(
    pack: Sequence[RunConfig], dataset: Dataset, *, device: torch.device, base_dir: str
) -> tuple[float, float]:
    """Seconds of one training step of ``pack`` and of one evaluation pass over the data."""
    train_cfg = pack[0].shared["train"]
    batch = min(int(train_cfg["batch_size"]), int(dataset.y_train.shape[0]))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = Stacked([build_member(r, dataset, base_dir=base_dir) for r in pack], device)
        optimizer = make_optimizer(model.parameters(), train_cfg)
        x = torch.as_tensor(dataset.x_train[:batch], device=device)
        x = x.unsqueeze(0).expand(len(pack), *x.shape).contiguous()  # [P, B, *input]
        y = torch.as_tensor(dataset.y_train[:batch], device=device).repeat(len(pack))
        times = []
        for i in range(PROBE_STEPS + 1):
            started = time.perf_counter()
            logits = model.each(x)  # [P, B, K]
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _sync(device)
            if i:
                times.append(time.perf_counter() - started)
    step = min(times)
    n_eval = int(dataset.y_train.shape[0] + dataset.y_test.shape[0])
    return step, step * FORWARD_SHARE * n_eval / batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
