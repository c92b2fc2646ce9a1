"""The pack trainer: many runs of one study trained together as one batched ensemble.

The members' parameters are stacked (``torch.func.stack_module_state``) and the model runs under
``torch.vmap``, so one forward/backward pass trains every member. Each member keeps its own noisy
labels, train/validation split, initialization, data order, loss and label flipping; a single
optimizer steps the stacked parameters. Adam, AdamW and SGD act elementwise, so each member follows
exactly the trajectory it would follow alone (:mod:`smoothflip.engine.reference` trains one run
alone, and a test holds the two to the same numbers).

A member that diverges (non-finite or exploding loss or logits) is frozen out: its loss no longer
enters the sum, its gradients are zeroed, it is no longer evaluated, and it keeps the metrics of
its last finite epoch. The rest of the pack trains on.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from smoothflip.data import Dataset
from smoothflip.engine.common import (
    LossChoice,
    Probe,
    ProgressFn,
    RunData,
    TeacherState,
    Tracker,
    build_member,
    epoch_targets,
    epoch_visit,
    flip_generator,
    make_optimizer,
    make_schedule,
    member_loss_fn,
    pack_step,
    plan,
    prepare_run,
    state_to_bytes,
    teacher_logits,
)
from smoothflip.study.grid import RunConfig
from smoothflip.study.store import RunResult

EVAL_CHUNK = 1024
"""Examples per member per evaluation forward pass (bounds evaluation memory)."""


def train_pack(
    runs: Sequence[RunConfig],
    dataset: Dataset,
    *,
    device: str | torch.device = "cpu",
    base_dir: str = ".",
    progress: ProgressFn | None = None,
    teachers: Mapping[str, TeacherState] | None = None,
) -> list[RunResult]:
    """Train ``runs`` (which must share data, model and schedule) together; one result per run.

    Args:
        runs: the pack's members.
        dataset: the study's dataset.
        device: ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        base_dir: folder a model factory reference resolves against.
        progress: called with the fraction of the pack done after each epoch.
        teachers: for distilled students, their teachers by run id (``run.teacher_run``).

    Returns:
        The members' results, in the order of ``runs``.
    """
    if not runs:
        return []
    keys = {r.pack_key for r in runs}
    if len(keys) != 1:
        raise ValueError("a pack's runs must share data, model and schedule (one pack key)")
    started = time.perf_counter()
    device = torch.device(device)
    k = dataset.num_classes
    train_cfg = runs[0].shared["train"]
    datas = [prepare_run(r, dataset) for r in runs]
    size = len(runs)
    n_train = datas[0].train_idx.size
    schedule = plan(train_cfg, n_train)
    batch_size = int(train_cfg["batch_size"])

    x_all = torch.as_tensor(dataset.x_train, device=device)
    x_test = torch.as_tensor(dataset.x_test, device=device)
    eval_idx = {
        "train": torch.as_tensor(np.stack([d.train_eval_idx for d in datas]), device=device),
        "val": torch.as_tensor(np.stack([d.val_idx for d in datas]), device=device),
    }
    labels = torch.as_tensor(np.stack([d.labels for d in datas]), device=device)  # [P, N] labels trained on
    rows = torch.arange(size, device=device).unsqueeze(1)
    teacher_train = _teacher_logits(
        runs, dataset, teachers, base_dir=base_dir, device=device
    )  # [P, N, K] | None

    model = _Stacked([build_member(r, dataset, base_dir=base_dir) for r in runs], device)
    optimizer = make_optimizer(model.parameters(), train_cfg)
    scheduler = make_schedule(optimizer, train_cfg, schedule.total_steps)

    orders = [np.random.default_rng(r.seed_for("order")) for r in runs]
    generators = [flip_generator(d, device) for d in datas]
    flippers = [m for m, g in enumerate(generators) if g is not None]
    trackers = [Tracker(d, dataset) for d in datas]
    probes = {m: Probe(d, dataset) for m, d in enumerate(datas) if d.run.probe is not None}
    alive = torch.ones(size, dtype=torch.bool, device=device)
    step = 0
    for epoch in range(1, schedule.epochs + 1):
        groups = _loss_groups(datas, k, epoch, device)
        visit = torch.as_tensor(  # [P, N_tr] dataset indices in visiting order
            np.stack([epoch_visit(rng, d) for rng, d in zip(orders, datas, strict=True)]), device=device
        )
        targets = labels[rows, visit]
        for m in flippers:
            targets[m] = epoch_targets(targets[m], datas[m], k, generators[m], batch_size)
        loss_sum = torch.zeros(size, dtype=torch.float64, device=device)
        seen = 0
        for b in range(schedule.batches):
            if step >= schedule.total_steps:
                break
            batch = slice(b * batch_size, (b + 1) * batch_size)
            idx, target = visit[:, batch], targets[:, batch]  # [P, B]
            logits = model.each(x_all[idx])  # [P, B, K]
            teacher = None if teacher_train is None else teacher_train[rows, idx]
            member_loss = _member_losses(logits, target, groups, teacher)
            max_logit = logits.detach().abs().amax(dim=(1, 2))
            alive = pack_step(
                member_loss, max_logit, alive, trackers, epoch, optimizer, scheduler, model.params
            )
            step += 1
            loss_sum += member_loss.detach().to(torch.float64) * idx.shape[1]
            seen += idx.shape[1]
        train_losses = (loss_sum / max(seen, 1)).tolist()
        with torch.no_grad():
            test_logits = model.shared(x_test)
            train_logits = model.each_indexed(x_all, eval_idx["train"])
            val_logits = model.each_indexed(x_all, eval_idx["val"])
            mi = {
                m: probe.mutual_information(functools.partial(model.member, m), device)
                for m, probe in probes.items()
                if bool(alive[m])
            }
        for m, tracker in enumerate(trackers):
            if bool(alive[m]):
                selected = tracker.record(
                    epoch,
                    train_losses[m],
                    train_logits[m],
                    val_logits[m],
                    test_logits[m],
                    mi.get(m, math.nan),
                )
                if selected and tracker.keeps_state:
                    tracker.artifacts["state"] = state_to_bytes(model.member_state(m))
        if progress is not None:
            progress(epoch / schedule.epochs)
        if step >= schedule.total_steps:
            break
    with torch.no_grad():
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
    seconds = time.perf_counter() - started
    timings = {"pack_seconds": seconds, "pack_size": size, "seconds_per_run": seconds / size, "steps": step}
    return [t.result(timings) for t in trackers]


class _Stacked:
    """P copies of one architecture with stacked parameters, run under ``torch.vmap``."""

    def __init__(self, models: list[nn.Module], device: torch.device) -> None:
        params, buffers = stack_module_state(models)
        self.params = {name: p.detach().to(device).requires_grad_(True) for name, p in params.items()}
        self.buffers = {name: b.to(device) for name, b in buffers.items()}
        base = copy.deepcopy(models[0]).to("meta")
        self.base = base
        self.has_body = isinstance(getattr(base, "body", None), nn.Module) and "head.weight" in self.params

        def call(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(base, (p, b), (x,))

        self._each = torch.vmap(call, in_dims=(0, 0, 0))
        self._shared = torch.vmap(call, in_dims=(0, 0, None))

    def parameters(self) -> list[Tensor]:
        return list(self.params.values())

    def each(self, x: Tensor) -> Tensor:
        """``[P, B, *input] -> [P, B, K]``: every member on its own batch."""
        return self._each(self.params, self.buffers, x)

    def shared(self, x: Tensor) -> Tensor:
        """``[N, *input] -> [P, N, K]``: every member on the same examples (in chunks)."""
        chunks = [
            self._shared(self.params, self.buffers, x[i : i + EVAL_CHUNK])
            for i in range(0, len(x), EVAL_CHUNK)
        ]
        return torch.cat(chunks, dim=1)

    def each_indexed(self, x_all: Tensor, idx: Tensor) -> Tensor:
        """``idx [P, N]`` into ``x_all`` -> ``[P, N, K]`` (in chunks; N may be 0)."""
        if idx.shape[1] == 0:
            k = self.shared(x_all[:1]).shape[-1]
            return x_all.new_zeros(idx.shape[0], 0, k)
        chunks = [self.each(x_all[idx[:, i : i + EVAL_CHUNK]]) for i in range(0, idx.shape[1], EVAL_CHUNK)]
        return torch.cat(chunks, dim=1)

    def member(self, m: int, x: Tensor) -> Tensor:
        """``[N, *input] -> [N, K]`` for member ``m`` alone."""
        params = {k: v[m] for k, v in self.params.items()}
        buffers = {k: v[m] for k, v in self.buffers.items()}
        return functional_call(self.base, (params, buffers), (x,))

    def member_features(self, m: int) -> Callable[[Tensor], Tensor]:
        """Member ``m``'s penultimate features, ``[N, *input] -> [N, F]`` (models with ``body``/``head``)."""
        params = {k[5:]: v[m] for k, v in self.params.items() if k.startswith("body.")}
        buffers = {k[5:]: v[m] for k, v in self.buffers.items() if k.startswith("body.")}
        return lambda x: functional_call(self.base.body, (params, buffers), (x,))

    def member_state(self, m: int) -> dict[str, Tensor]:
        """Member ``m``'s parameters and buffers, as a ``state_dict`` of the base architecture."""
        return {k: v[m].detach() for k, v in {**self.params, **self.buffers}.items()}


def _loss_groups(
    datas: list[RunData], k: int, epoch: int, device: torch.device
) -> list[tuple[Tensor, LossChoice]]:
    """Members that train with the same loss this epoch, grouped so each loss is called once."""
    groups: dict[tuple, tuple[list[int], LossChoice]] = {}
    for m, data in enumerate(datas):
        choice = member_loss_fn(data, k, epoch)
        groups.setdefault(choice.key, ([], choice))[0].append(m)
    return [(torch.tensor(members, device=device), choice) for members, choice in groups.values()]


def _member_losses(logits: Tensor, target: Tensor, groups: list, teacher: Tensor | None) -> Tensor:
    """``[P]`` mean batch loss of each member (``teacher``: ``[P, B, K]`` logits for distilled students)."""
    k = logits.shape[-1]
    parts, order = [], []
    for members, choice in groups:
        extra = {"teacher": teacher[members].reshape(-1, k)} if choice.needs_teacher else {}
        per_example = choice.fn.to(logits.device)(
            logits[members].reshape(-1, k), target[members].reshape(-1), **extra
        )
        parts.append(per_example.view(len(members), -1).mean(dim=1))
        order.append(members)
    return torch.cat(parts)[torch.argsort(torch.cat(order))]


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
