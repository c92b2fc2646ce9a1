"""What a user's training function receives: one run of the study, as a :class:`TrainerRun`.

smoothflip still owns the question — the grid, the seeds, the label conditions (noise on the training
labels only), the arm's technique, storage, resume, verdicts and the report. The user's function owns
the model and the loop. A run hands it:

- its identity and seeds: ``run.seed``, ``run.generator`` (a seeded ``torch.Generator``),
  ``run.numpy_rng``; torch's global RNG is seeded with the run's ``init`` seed before the function
  starts (and restored after), so ``torch.manual_seed`` is not needed for reproducible runs;
- the data: the study's :class:`~smoothflip.data.Dataset` (``run.dataset``), the indices and the
  *noisy* labels of the run's training and validation examples (``train_indices``/``train_labels``,
  ``val_indices``/``val_labels``), ready tensors on ``run.device`` (``x_val``, ``x_test``);
- the technique: ``run.criterion`` (an ``nn.Module``, mean over the batch; plain cross-entropy during
  the arm's warm-up epochs; a stateful loss's epoch hook runs as ``run.epochs()`` advances — a loop
  that counts epochs itself calls ``run.begin_epoch(e)`` / ``run.end_epoch(e)``) and
  ``run.flip`` (the arm's DisturbLabel / fixed-rate flipping, the identity otherwise);
- the budget: ``run.num_epochs`` (``[train] epochs``) and the rest of ``[train]`` in ``run.train``
  (batch size, learning rate ...), the ``[model]`` options in ``run.options``;
- ``run.train_batches(batch_size)``: one epoch of ``(x, y)`` batches on the device, shuffled by the
  run's data-order seed, augmented when ``[train] augment`` says so, labels flipped by the arm;
- ``run.report(epoch, val_logits=..., test_logits=...)``: the logits the model predicts for the
  validation and test examples after an epoch (``run.predict(model, run.x_val)`` computes them).
  smoothflip computes every metric from them exactly as for its own models: model selection on the
  validation logits, temperature scaling, calibration, the report's figures.

A minimal adapter for an existing PyTorch loop::

    def train(run):
        model = MyNet(num_classes=run.num_classes).to(run.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=run.train["lr"], momentum=0.9)
        for epoch in run.epochs():
            model.train()
            for x, y in run.train_batches(run.train["batch_size"]):
                loss = run.criterion(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            val, test = run.predict(model, run.x_val), run.predict(model, run.x_test)
            run.report(epoch, val_logits=val, test_logits=test)

A function may instead return ``{"val_logits": ..., "test_logits": ...}`` at the end (recorded as its
last epoch).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from smoothflip.data import Dataset
from smoothflip.data.augment import random_crop_flip
from smoothflip.engine.classifier.run_data import (
    RunData,
    augmenter,
    epoch_targets,
    epoch_visit,
    flip_generator,
    loss_context,
)
from smoothflip.engine.classifier.tracking import Tracker
from smoothflip.engine.member_losses import MemberLosses
from smoothflip.errors import UserCodeError
from smoothflip.techniques import LossContext

__all__ = ["TrainerRun"]


class _Criterion(nn.Module):
    """The arm's loss for the current epoch, averaged over the batch (warm-up aware)."""

    def __init__(self, losses: MemberLosses) -> None:
        super().__init__()
        self.losses = losses
        self.epoch = 1

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        module, _ = self.losses.module(0, self.epoch)
        return module(logits, target).mean()


class TrainerRun:
    """One run of a ``kind = "trainer"`` study, as the user's training function sees it.

    See the module docstring for what it carries; every attribute is read-only by convention.
    """

    def __init__(self, data: RunData, dataset: Dataset, *, device: torch.device, options: Mapping[str, Any]):
        run = data.run
        self._data, self._dataset = data, dataset
        self.run_id = run.run_id
        self.arm = run.arm.name
        self.technique = run.arm.loss
        self.params = dict(run.arm.params)
        self.condition = run.condition.label
        self.seed = run.seed
        self.device = torch.device(device)
        self.options = dict(options)
        self.train = dict(run.shared["train"])
        self.num_epochs = int(self.train["epochs"]) if self.train.get("epochs") else None
        self.max_steps = int(self.train["steps"]) if self.train.get("steps") else None
        self.dataset = dataset
        self.num_classes = dataset.num_classes
        self.input_shape = tuple(dataset.input_shape)
        self.class_names = tuple(dataset.class_names)
        self.generator = torch.Generator().manual_seed(run.seed_for("init") % (2**63))
        self.numpy_rng = np.random.default_rng(run.seed_for("init"))
        self.train_indices = data.pool.copy()
        self.train_labels = data.labels[data.pool].copy()
        self.val_indices = data.val_idx.copy()
        self.val_labels = data.val_labels.copy()
        self.test_indices = np.arange(dataset.y_test.shape[0])
        self.x_val = torch.as_tensor(dataset.x_train[data.val_idx], device=self.device)
        self.x_test = torch.as_tensor(dataset.x_test, device=self.device)
        self.x_train_eval = torch.as_tensor(dataset.x_train[data.train_eval_idx], device=self.device)
        k = dataset.num_classes
        self._losses = MemberLosses([run], LossContext(k), lambda m: loss_context(data, k), self.device)
        self.criterion: nn.Module = _Criterion(self._losses)
        self._flips = flip_generator(data, self.device)
        self._order = np.random.default_rng(run.seed_for("order"))
        self._augment = augmenter(run)
        self._padding = int(self.train.get("augment_padding", 2))
        self._x_all = torch.as_tensor(dataset.x_train, device=self.device)
        self._labels = torch.as_tensor(data.labels, device=self.device)
        self.tracker = Tracker(data, dataset)
        self.reported = 0

    # ------------------------------------------------------------------ the loop

    def epochs(self) -> Iterator[int]:
        """``1 .. num_epochs``; the criterion follows (warm-up, then the technique) and a stateful
        technique's epoch hook runs after each epoch."""
        total = self.num_epochs
        if total is None:
            batches = max(1, math.ceil(self.train_indices.size / int(self.train["batch_size"])))
            total = math.ceil(int(self.max_steps) / batches)
        for epoch in range(1, total + 1):
            self.begin_epoch(epoch)
            yield epoch
            self.end_epoch(epoch)

    def begin_epoch(self, epoch: int) -> None:
        """For loops that count epochs themselves (a Lightning or Hugging Face trainer): the criterion
        trains with plain CE during the arm's warm-up epochs, then with its technique."""
        self.criterion.epoch = int(epoch)

    def end_epoch(self, epoch: int) -> None:
        """For loops that count epochs themselves: run a stateful technique's epoch hook."""
        self._losses.end_epoch(int(epoch))

    def flip(self, labels: Tensor) -> Tensor:
        """The arm's training-time flipping of one batch of labels (DisturbLabel, or fixed-rate
        flips); the labels themselves when the arm does not flip."""
        if self._flips is None:
            return labels
        return epoch_targets(labels, self._data, self.num_classes, self._flips, labels.numel())

    def train_batches(self, batch_size: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch of training batches ``(x [B, *input], y [B])`` on the device.

        The order is the run's own (its data-order seed; the same for every arm at this seed), an
        arm's defence that drops examples is topped up to a full epoch, the labels are the noisy
        ones after the arm's flipping, and ``[train] augment`` crops and flips images.
        """
        size = int(batch_size if batch_size is not None else self.train["batch_size"])
        visit = torch.as_tensor(epoch_visit(self._order, self._data), device=self.device)
        targets = epoch_targets(self._labels[visit], self._data, self.num_classes, self._flips, size)
        for start in range(0, visit.numel(), size):
            x = self._x_all[visit[start : start + size]]
            if self._augment is not None:
                x = random_crop_flip(x, padding=self._padding, generator=self._augment)
            yield x, targets[start : start + size]

    @torch.no_grad()
    def predict(self, model: nn.Module, x: Tensor, *, batch_size: int = 1024) -> Tensor:
        """``model``'s logits on ``x`` in evaluation mode, in chunks (its training mode is restored)."""
        was_training = model.training
        model.eval()
        try:
            return torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
        finally:
            model.train(was_training)

    # ------------------------------------------------------------------ results

    def report(
        self,
        epoch: int,
        *,
        val_logits: Tensor,
        test_logits: Tensor,
        train_loss: float = math.nan,
        train_logits: Tensor | None = None,
    ) -> None:
        """Record one epoch: logits ``[N_val, K]`` for ``run.x_val`` and ``[N_test, K]`` for ``run.x_test``
        (``train_logits`` ``[N, K]`` for ``run.x_train_eval``, optional, feed the memorization curves).

        Raises:
            UserCodeError: logits of the wrong shape or with non-finite values.
        """
        k = self.num_classes
        val = self._check("validation", val_logits, (self.val_indices.size, k), epoch)
        test = self._check("test", test_logits, (self.test_indices.size, k), epoch)
        train = None
        if train_logits is not None:
            train = self._check("training", train_logits, (self._data.train_eval_idx.size, k), epoch)
        self.tracker.record(int(epoch), float(train_loss), train, val, test)
        self.reported += 1

    def _check(self, what: str, logits: Any, shape: tuple[int, int], epoch: int) -> Tensor:
        if not isinstance(logits, Tensor):
            try:
                logits = torch.as_tensor(np.asarray(logits))
            except (TypeError, ValueError):
                raise UserCodeError(
                    f"the training function reported {what} logits that are not an array "
                    f"({type(logits).__name__}) at epoch {epoch}"
                ) from None
        if tuple(logits.shape) != shape or not logits.is_floating_point():
            raise UserCodeError(
                f"the training function reported {what} logits of shape {tuple(logits.shape)} "
                f"({logits.dtype}) at epoch {epoch}; expected a float array of shape {shape} "
                f"(one row per {what} example, one column per class of the data's {shape[1]})"
            )
        logits = logits.detach().to(torch.float64).cpu()
        if not bool(torch.isfinite(logits).all()):
            bad = int((~torch.isfinite(logits)).any(dim=1).sum())
            raise UserCodeError(
                f"the training function reported non-finite {what} logits at epoch {epoch} "
                f"({bad} of {shape[0]} rows hold NaN or inf: did the model diverge?)"
            )
        return logits
