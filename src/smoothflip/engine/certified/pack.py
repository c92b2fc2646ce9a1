"""Training base learners as packs: the learners of one or more ensembles stacked and stepped together.

A *chunk* is up to :func:`chunk_size` learners of ensembles with one ``k`` (one step schedule),
trained with the engine's pack machinery — :class:`~smoothflip.engine.stacked.Stacked` members
under one optimizer, :class:`~smoothflip.engine.stacked.PackLoop`'s step and divergence handling,
:class:`~smoothflip.engine.member_losses.MemberLosses` for the arms' techniques, the classifier
track's training-time flipping — so nothing is reduced across learners: a learner's loss, gradient,
Adam moments, data order, flips and epoch selection are its own, and a learner trained in a pack
is bitwise the learner trained alone (``tests/test_certified.py``).

``selection = "last"``: every learner keeps its last epoch. ``selection = "partition"``: each learner
scores its own held-out examples (their labels only) every ``eval_every`` epochs and keeps the
parameters of its best epoch (the earliest on ties). A learner that diverges abstains (casts no vote).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from smoothflip.data import Dataset
from smoothflip.data.augment import random_crop_flip_members
from smoothflip.engine.certified.plan import Member, Settings
from smoothflip.engine.checkpoint import load_numpy_states, load_torch_states, numpy_states, torch_states
from smoothflip.engine.classifier.members import build_classifier
from smoothflip.engine.classifier.run_data import augmenter, epoch_targets
from smoothflip.engine.member_losses import MemberLosses, grouped_member_losses
from smoothflip.engine.schedule import Schedule, make_lr_schedule, make_optimizer, training_schedule
from smoothflip.engine.sizing import MEMORY_SHARE, free_memory, member_bytes
from smoothflip.engine.stacked import PackLoop, Stacked
from smoothflip.techniques import LossContext

MAX_LEARNERS = {"cpu": 64, "cuda": 4096}
"""Most learners stacked in one chunk per device type (memory permitting). On the CPU wider chunks
gain nothing: 200 MLP learners of MNIST-1D trained in one chunk took 1.2x the time of four chunks of
50 (a relative check, interleaved in one process); a GPU wants them as wide as memory allows."""


@dataclass
class ChunkOutput:
    """What a chunk's learners leave behind (``P`` learners, ``E`` epochs).

    Attributes:
        predictions: ``[P, N_test]`` int64 predicted class, ``-1`` where the learner diverged.
        losses: ``[P, E]`` mean training loss per epoch.
        diverged: ``[P]`` bool.
        epochs: ``[P]`` the epoch each learner's parameters come from.
        steps: optimizer steps taken.
        params: the learners' final (selected) parameters, ``name -> [P, ...]``, when asked for.
    """

    predictions: np.ndarray
    losses: np.ndarray
    diverged: np.ndarray
    epochs: np.ndarray
    steps: int
    params: dict[str, Tensor] | None = None

    def state(self) -> dict[str, Any]:
        return {
            "predictions": torch.as_tensor(self.predictions),
            "losses": torch.as_tensor(self.losses),
            "diverged": torch.as_tensor(self.diverged),
            "epochs": torch.as_tensor(self.epochs),
            "steps": self.steps,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ChunkOutput:
        return cls(
            state["predictions"].numpy(),
            state["losses"].numpy(),
            state["diverged"].numpy(),
            state["epochs"].numpy(),
            int(state["steps"]),
        )


def build_learner(member: Member, dataset: Dataset, *, base_dir: str = ".") -> torch.nn.Module:
    """The learner's model, initialized from its own seed without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(member.seed("init"))
        return build_classifier(member.run.shared["model"], dataset, base_dir=base_dir)


def chunk_size(member: Member, dataset: Dataset, m: int, *, device: torch.device, base_dir: str) -> int:
    """Learners per chunk: as many as fit :data:`MEMORY_SHARE` of free memory, at most
    :data:`MAX_LEARNERS`."""
    batch = min(int(member.run.shared["train"]["batch_size"]), m)
    need = member_bytes(build_learner(member, dataset, base_dir=base_dir), dataset.input_shape, batch)
    fit = int(MEMORY_SHARE * free_memory(device) // need)
    return max(1, min(MAX_LEARNERS.get(device.type, MAX_LEARNERS["cpu"]), fit))


def learner_schedule(member: Member, settings: Settings, n: int) -> tuple[Schedule, int]:
    """The schedule of the learners of ``member``'s ensemble and their epoch size ``m``."""
    m = settings.epoch_size(n, member.k)
    return training_schedule(member.run.shared["train"], m), m


def _padded(indices: Sequence[np.ndarray], device: torch.device) -> tuple[Tensor, Tensor]:
    """``[P, V]`` indices padded with 0 and the ``[P, V]`` mask of real ones."""
    width = max((i.size for i in indices), default=0)
    idx = np.zeros((len(indices), width), dtype=np.int64)
    mask = np.zeros((len(indices), width), dtype=bool)
    for row, i in enumerate(indices):
        idx[row, : i.size] = i
        mask[row, : i.size] = True
    return torch.as_tensor(idx, device=device), torch.as_tensor(mask, device=device)


def train_chunk(
    members: Sequence[Member],
    dataset: Dataset,
    settings: Settings,
    *,
    device: torch.device,
    base_dir: str = ".",
    saved: dict[str, Any] | None = None,
    on_epoch: Callable[[int, Callable[[], dict[str, Any]]], None] | None = None,
    keep_params: bool = False,
) -> ChunkOutput:
    """Train ``members`` (learners of ensembles with one ``k``) as one pack.

    Args:
        members: the learners, in order.
        dataset: the study's data.
        settings: the runs' ``[certify]`` table.
        device: where to train.
        base_dir: folder a model factory resolves against.
        saved: the chunk's state from a checkpoint, to continue from.
        on_epoch: called after every epoch with the epoch and a function returning the chunk's state.
        keep_params: return the learners' final parameters too (for tests and inspection).
    """
    train_cfg = members[0].run.shared["train"]
    num_classes = dataset.num_classes
    n = int(dataset.y_train.shape[0])
    schedule, m = learner_schedule(members[0], settings, n)
    batch_size = int(train_cfg["batch_size"])
    size = len(members)
    x_all = torch.as_tensor(dataset.x_train, device=device)
    x_test = torch.as_tensor(dataset.x_test, device=device)

    model = Stacked([build_learner(member, dataset, base_dir=base_dir) for member in members], device)
    optimizer = make_optimizer(model.parameters(), train_cfg)
    scheduler = make_lr_schedule(optimizer, train_cfg, schedule.total_steps)
    runs = [member.run for member in members]
    losses = MemberLosses(runs, LossContext(num_classes), lambda i: members[i].context(num_classes), device)
    loop = PackLoop(model, losses, schedule, optimizer, scheduler)

    orders = [np.random.default_rng(member.seed("order")) for member in members]
    flips = [_flip_generator(member, device) for member in members]
    flippers = [i for i, g in enumerate(flips) if g is not None]
    augmenters = [_augmenter(member) for member in members]
    padding = int(train_cfg.get("augment_padding", 2))
    eval_every = int(train_cfg.get("eval_every", 1))

    selecting = settings.selection == "partition"
    if selecting:
        val_idx, val_mask = _padded([member.val_idx for member in members], device)
        val_labels, _ = _padded([member.labels[member.val_idx] for member in members], device)
    best = {
        "score": torch.full((size,), -float("inf"), dtype=torch.float64, device=device),
        "epoch": torch.zeros(size, dtype=torch.long, device=device),
        "params": {k: v.detach().clone() for k, v in model.params.items()} if selecting else {},
        "buffers": {k: v.detach().clone() for k, v in model.buffers.items()} if selecting else {},
    }
    history: list[list[float]] = []

    def state() -> dict[str, Any]:
        return {
            **loop.state_dict(),
            "orders": numpy_states(orders),
            "flips": torch_states(flips),
            "augmenters": torch_states(augmenters),
            "best": {
                "score": best["score"].cpu(),
                "epoch": best["epoch"].cpu(),
                "params": {k: v.cpu() for k, v in best["params"].items()},
                "buffers": {k: v.cpu() for k, v in best["buffers"].items()},
            },
            "history": [list(h) for h in history],
        }

    if saved is not None:
        loop.load_state_dict(saved)
        load_numpy_states(orders, saved["orders"])
        load_torch_states(flips, saved["flips"])
        load_torch_states(augmenters, saved["augmenters"])
        best["score"] = saved["best"]["score"].to(device)
        best["epoch"] = saved["best"]["epoch"].to(device)
        best["params"] = {k: v.to(device) for k, v in saved["best"]["params"].items()}
        best["buffers"] = {k: v.to(device) for k, v in saved["best"]["buffers"].items()}
        history = [list(h) for h in saved["history"]]

    for epoch, groups in loop.epochs():
        visit = np.stack([member.visit(rng, m) for member, rng in zip(members, orders, strict=True)])
        targets = torch.as_tensor(
            np.stack([member.labels[v] for member, v in zip(members, visit, strict=True)]), device=device
        )
        for i in flippers:
            targets[i] = epoch_targets(targets[i], members[i], num_classes, flips[i], batch_size)  # type: ignore[arg-type]
        visit_t = torch.as_tensor(visit, device=device)
        for b in range(schedule.batches):
            if loop.done:
                break
            idx = visit_t[:, b * batch_size : (b + 1) * batch_size]  # [P, B]
            x = x_all[idx]
            if augmenters[0] is not None:
                x = random_crop_flip_members(x, padding=padding, generators=augmenters)
            logits = model.each(x)  # [P, B, K]
            member_loss = grouped_member_losses(
                logits, targets[:, b * batch_size : (b + 1) * batch_size], groups
            )
            loop.step(member_loss, logits.detach().abs().amax(dim=(1, 2)), idx.shape[1])
        history.append(loop.end_epoch())
        loop.take_diverged()
        last = loop.done or epoch == schedule.epochs
        if selecting and (epoch % eval_every == 0 or last):
            _select(model, loop.alive, best, x_all, val_idx, val_mask, val_labels, epoch)
        elif not selecting:
            best["epoch"].fill_(epoch)
        if on_epoch is not None:
            on_epoch(epoch, state)

    if selecting:
        with torch.no_grad():
            for name, tensor in model.params.items():
                tensor.copy_(best["params"][name])
            for name, tensor in model.buffers.items():
                tensor.copy_(best["buffers"][name])
    with torch.no_grad(), model.evaluating():
        predictions = model.shared(x_test).argmax(dim=-1)  # [P, N_test]
    diverged = ~loop.alive
    predictions = torch.where(diverged.unsqueeze(1), torch.full_like(predictions, -1), predictions)
    return ChunkOutput(
        predictions=predictions.cpu().numpy().astype(np.int64),
        losses=np.asarray(history, dtype=np.float64).reshape(-1, size).T.copy(),
        diverged=diverged.cpu().numpy(),
        epochs=best["epoch"].cpu().numpy(),
        steps=loop.steps,
        params={k: v.detach().cpu().clone() for k, v in model.params.items()} if keep_params else None,
    )


def _select(
    model: Stacked,
    alive: Tensor,
    best: dict[str, Any],
    x_all: Tensor,
    val_idx: Tensor,
    val_mask: Tensor,
    val_labels: Tensor,
    epoch: int,
) -> None:
    """Keep each learner's parameters when its accuracy on its own held-out labels beats its best
    (a learner with nothing held out keeps its latest epoch)."""
    with torch.no_grad(), model.evaluating():
        pred = model.each_indexed(x_all, val_idx).argmax(dim=-1)  # [P, V]
    counts = val_mask.sum(dim=1)
    correct = ((pred == val_labels) & val_mask).sum(dim=1).to(torch.float64)
    score = torch.where(counts > 0, correct / counts.clamp(min=1), torch.full_like(correct, float(epoch)))
    improved = (score > best["score"]) & alive
    best["score"] = torch.where(improved, score, best["score"])
    best["epoch"] = torch.where(improved, torch.full_like(best["epoch"], epoch), best["epoch"])
    with torch.no_grad():
        for group, stored in ((model.params, best["params"]), (model.buffers, best["buffers"])):
            for name, tensor in group.items():
                mask = improved.view(-1, *([1] * (tensor.dim() - 1)))
                stored[name] = torch.where(mask, tensor.detach(), stored[name])


def _flip_generator(member: Member, device: torch.device) -> torch.Generator | None:
    arm = member.run.arm
    if arm.disturb_alpha <= 0 and arm.flip_rate <= 0:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(member.seed("flip"))
    return generator


def _augmenter(member: Member) -> torch.Generator | None:
    if augmenter(member.run) is None:
        return None
    return torch.Generator().manual_seed(member.seed("augment") % (2**63))
