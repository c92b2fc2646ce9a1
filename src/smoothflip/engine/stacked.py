"""Many models trained as one: stacked parameters under ``torch.vmap``, and a pack's loop bookkeeping.

:class:`Stacked` holds P copies of one architecture with their parameters and buffers stacked
(``torch.func.stack_module_state``) and runs them (every member on its own batch, or every member on
the same examples): linear-only models as batched matrix products (:func:`linear_layers`),
convolutional models on the CPU through :mod:`smoothflip.engine.stacked_layers`, anything else under
``torch.vmap``. :func:`pack_step` is one optimizer step of a pack with
divergence handling, and :class:`PackLoop` the bookkeeping both pack tracks (classifiers and
language models) drive from their own loops: steps against the schedule, losses per epoch,
divergence, the stateful losses' epoch hooks. Control only flows down: the track calls this module,
never the other way round.

Adam, AdamW and SGD act elementwise, so each member follows exactly the trajectory it would follow
alone; a member that diverges (non-finite or exploding loss or logits) is frozen out: its loss
leaves the sum and its gradients are zeroed, and the rest of the pack trains on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from smoothflip.engine.member_losses import LossGroup, MemberLosses
from smoothflip.engine.schedule import Schedule, diverged
from smoothflip.engine.stacked_layers import stacked_forward

EVAL_CHUNK = 1024
"""Examples per member per evaluation forward pass (bounds evaluation memory)."""


class Stacked:
    """P copies of one architecture with stacked parameters, run under ``torch.vmap`` or without it.

    Args:
        models: the members (one architecture).
        device: where the stacked parameters live.
        layers: run a convolutional model through :func:`~smoothflip.engine.stacked_layers.stacked_forward`
            (where it covers the model) instead of ``vmap``; None (the default): on the CPU only. On
            CUDA ``vmap``'s grouped convolutions (cuDNN) stay the default: the stacked layers have not
            been timed on a GPU.
    """

    def __init__(self, models: list[nn.Module], device: torch.device, *, layers: bool | None = None) -> None:
        params, buffers = stack_module_state(models)
        self.params = {name: p.detach().to(device).requires_grad_(True) for name, p in params.items()}
        self.buffers = {name: b.to(device) for name, b in buffers.items()}
        base = copy.deepcopy(models[0]).to("meta")
        self.base = base
        self.size = len(models)
        self.has_body = isinstance(getattr(base, "body", None), nn.Module) and "head.weight" in self.params

        def call(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(base, (p, b), (x,))

        self._each = torch.vmap(call, in_dims=(0, 0, 0))
        self._shared = torch.vmap(call, in_dims=(0, 0, None))
        self._layers = linear_layers(base) if not self.buffers else None
        if layers is None:
            layers = torch.device(device).type == "cpu"
        self._program = stacked_forward(base) if self._layers is None and layers else None

    def _dense(self, h: Tensor) -> Tensor:
        """A stack of linear layers and activations as batched matrix products (no ``vmap``)."""
        h = h.flatten(2)
        for weight, bias, activation in self._layers or ():
            w = self.params[weight].transpose(1, 2)  # [P, in, out]
            h = torch.bmm(h, w) if bias is None else torch.baddbmm(self.params[bias].unsqueeze(1), h, w)
            if activation is not None:
                h = activation(h)
        return h

    def parameters(self) -> list[Tensor]:
        return list(self.params.values())

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Evaluation mode inside (batch norm uses and keeps its running statistics, dropout is off),
        as the per-run reference trainer's ``model.eval()``; training mode again after."""
        modes = {m: m.training for m in self.base.modules()}
        self.base.eval()
        try:
            yield
        finally:
            for m, training in modes.items():
                m.training = training

    def each(self, x: Tensor) -> Tensor:
        """``[P, B, *input] -> [P, B, *out]``: every member on its own batch."""
        if self._layers is not None:
            return self._dense(x)
        if self._program is not None:
            return self._program(self.params, self.buffers, x)
        return self._each(self.params, self.buffers, x)

    def shared(self, x: Tensor) -> Tensor:
        """``[N, *input] -> [P, N, K]``: every member on the same examples (in chunks)."""
        if self._layers is not None or self._program is not None:
            return torch.cat(
                [
                    self.each(
                        x[i : i + EVAL_CHUNK].unsqueeze(0).expand(self.size, *x[i : i + EVAL_CHUNK].shape)
                    )
                    for i in range(0, len(x), EVAL_CHUNK)
                ],
                dim=1,
            )
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

    def member_fn(self, m: int, params: Mapping[str, Tensor] | None = None) -> Callable[[Tensor], Tensor]:
        """Member ``m`` as a function ``x -> logits`` (with ``params`` instead of its current ones)."""
        p = dict(params) if params is not None else {k: v[m] for k, v in self.params.items()}
        b = {k: v[m] for k, v in self.buffers.items()}
        return lambda x: functional_call(self.base, (p, b), (x,))

    def member(self, m: int, x: Tensor) -> Tensor:
        """``[N, *input] -> [N, K]`` for member ``m`` alone."""
        return self.member_fn(m)(x)

    def member_features(self, m: int) -> Callable[[Tensor], Tensor]:
        """Member ``m``'s penultimate features, ``[N, *input] -> [N, F]`` (models with ``body``/``head``)."""
        params = {k[5:]: v[m] for k, v in self.params.items() if k.startswith("body.")}
        buffers = {k[5:]: v[m] for k, v in self.buffers.items() if k.startswith("body.")}
        return lambda x: functional_call(self.base.body, (params, buffers), (x,))

    def member_params(self, m: int) -> dict[str, Tensor]:
        """A detached copy of member ``m``'s parameters."""
        return {k: v[m].detach().clone() for k, v in self.params.items()}

    def member_state(self, m: int) -> dict[str, Tensor]:
        """Member ``m``'s parameters and buffers, as a ``state_dict`` of the base architecture."""
        return {k: v[m].detach() for k, v in {**self.params, **self.buffers}.items()}


ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.Identity)


def linear_layers(model: nn.Module) -> list[tuple[str, str | None, Callable[[Tensor], Tensor] | None]] | None:
    """The layers of a model that is only linear layers and elementwise activations after a flatten
    (the built-in logistic regression and MLP: ``body`` a ``Sequential`` of ``Flatten``, ``Linear``
    and activations, ``head`` a ``Linear``), as ``(weight name, bias name, activation)``; else None.

    Such a pack runs as batched matrix products (``torch.baddbmm`` on ``[P, in, out]`` weights)
    instead of ``vmap``: the same arithmetic per member without ``vmap``'s per-operation
    overhead, which dominates a small model's step.
    """
    body, head = getattr(model, "body", None), getattr(model, "head", None)
    if not isinstance(body, nn.Sequential) or not isinstance(head, nn.Linear):
        return None
    modules = list(body.named_children())
    if not modules or not isinstance(modules[0][1], nn.Flatten) or modules[0][1].start_dim != 1:
        return None
    layers: list[tuple[str, str | None, Callable[[Tensor], Tensor] | None]] = []
    for name, module in modules[1:]:
        if isinstance(module, nn.Linear):
            layers.append(
                (f"body.{name}.weight", f"body.{name}.bias" if module.bias is not None else None, None)
            )
        elif isinstance(module, ELEMENTWISE) and layers and layers[-1][2] is None:
            if not isinstance(module, nn.Identity):
                layers[-1] = (*layers[-1][:2], copy.deepcopy(module).to("cpu"))
        else:
            return None
    layers.append(("head.weight", "head.bias" if head.bias is not None else None, None))
    return layers


def pack_step(
    member_loss: Tensor,
    max_abs_logit: Tensor,
    alive: Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    params: Mapping[str, Tensor],
) -> Tensor:
    """One optimizer step of a pack; returns the updated ``[P]`` mask of members still training.

    Members whose loss or logits blow up this step (:func:`~smoothflip.engine.schedule.diverged`)
    are frozen out: their loss leaves the sum and their gradients are zeroed. Nothing here reads a
    value back to the host (no synchronization with an accelerator inside a step): the mask stays
    on the device and :class:`PackLoop` reads it once per epoch.
    """
    alive = alive & ~diverged(member_loss.detach(), max_abs_logit)
    optimizer.zero_grad(set_to_none=False)
    torch.where(alive, member_loss, torch.zeros_like(member_loss)).sum().backward()
    dead = ~alive
    for p in params.values():
        # where, not a product: a diverged member's gradient may hold NaN (and NaN * 0 is NaN)
        p.grad.masked_fill_(dead.view(-1, *([1] * (p.dim() - 1))), 0.0)
    optimizer.step()
    scheduler.step()
    return alive


class PackLoop:
    """The bookkeeping of a pack's training loop, which the track's own loop drives.

    The track writes the loop (its batches, its evaluation); this object counts steps against the
    schedule, steps the optimizer with divergence handling, accumulates each member's training loss,
    chooses the members' losses per epoch, runs the stateful losses' epoch hooks, and saves and
    restores the loop's share of a pack checkpoint::

        loop = PackLoop(model, losses, schedule, optimizer, scheduler)
        for epoch, groups in loop.epochs():
            for batch in my_batches(epoch):
                if loop.done:
                    break
                member_loss, max_logit = ...  # the track's forward pass and grouped losses
                loop.step(member_loss, max_logit, count)
            train_losses = loop.end_epoch()
            ...  # evaluate the members still alive (loop.alive), mark loop.take_diverged() ones
    """

    def __init__(
        self,
        model: Stacked,
        losses: MemberLosses,
        schedule: Schedule,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
    ) -> None:
        self.model, self.losses, self.schedule = model, losses, schedule
        self.optimizer, self.scheduler = optimizer, scheduler
        device = model.parameters()[0].device
        self.alive = torch.ones(model.size, dtype=torch.bool, device=device)
        self._marked = self.alive.clone()  # alive when divergence was last read
        self.steps = 0
        self.epoch = 0
        self._start = 0
        self._loss_sum = torch.zeros(model.size, dtype=torch.float64, device=device)
        self._seen = 0

    @property
    def done(self) -> bool:
        """The schedule's total steps are taken."""
        return self.steps >= self.schedule.total_steps

    def epochs(self) -> Iterator[tuple[int, list[LossGroup]]]:
        """``(epoch, loss groups)`` for each epoch to train (stops once the steps are spent; after
        :meth:`load_state_dict`, starts after the checkpointed epoch)."""
        if self.done:
            return
        for epoch in range(self._start + 1, self.schedule.epochs + 1):
            self.epoch = epoch
            self._loss_sum.zero_()
            self._seen = 0
            yield epoch, self.losses.groups(epoch)
            if self.done:
                return

    def step(self, member_loss: Tensor, max_abs_logit: Tensor, count: int) -> None:
        """One optimizer step on ``[P]`` mean losses of ``count`` examples per member."""
        self.alive = pack_step(
            member_loss, max_abs_logit, self.alive, self.optimizer, self.scheduler, self.model.params
        )
        self.steps += 1
        self._loss_sum += member_loss.detach().to(torch.float64) * count
        self._seen += count

    def end_epoch(self) -> list[float]:
        """Run the stateful losses' epoch hooks; the members' mean training loss this epoch."""
        self.losses.end_epoch(self.epoch)
        return (self._loss_sum / max(self._seen, 1)).tolist()

    def take_diverged(self) -> list[int]:
        """Members that diverged since the last call (to mark on their trackers); reads the device."""
        newly = torch.nonzero(self._marked & ~self.alive).flatten().tolist()
        self._marked = self.alive.clone()
        return newly

    def alive_list(self) -> list[bool]:
        """Which members still train, read once (one synchronization)."""
        return self.alive.tolist()

    def state_dict(self) -> dict[str, Any]:
        """The loop's share of a pack checkpoint, taken at the end of an epoch (after
        :meth:`take_diverged`): parameters, buffers, optimizer, schedule, stateful losses, counters."""
        return {
            "epoch": self.epoch,
            "steps": self.steps,
            "alive": self.alive.cpu(),
            "params": {k: v.detach().cpu() for k, v in self.model.params.items()},
            "buffers": {k: v.detach().cpu() for k, v in self.model.buffers.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "losses": self.losses.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint: :meth:`epochs` then starts after its epoch."""
        with torch.no_grad():
            for group, saved in (
                (self.model.params, state["params"]),
                (self.model.buffers, state["buffers"]),
            ):
                if set(group) != set(saved):
                    raise ValueError("the checkpoint holds other parameters than this pack's model")
                for name, tensor in group.items():
                    tensor.copy_(saved[name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.losses.load_state_dict(state["losses"])
        self.alive = state["alive"].to(self.alive.device)
        self._marked = self.alive.clone()
        self.steps, self.epoch, self._start = int(state["steps"]), int(state["epoch"]), int(state["epoch"])
