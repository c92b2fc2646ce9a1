"""A classifier run's data: its noisy labels, its train/validation split, its defence, its epochs.

One seed per run drives the validation split, the label noise, the initialization and the data
order, and these are shared by every arm at that seed (paired comparisons); only an arm's own
training-time flipping draws from an arm-specific stream. Test labels are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from smoothflip.data import Dataset
from smoothflip.errors import SmoothflipError
from smoothflip.flipping import disturb_labels, flip_labels
from smoothflip.noise import NoisyLabels, realized_transition_matrix
from smoothflip.study.grid import RunConfig
from smoothflip.techniques import LossContext

TRAIN_EVAL_SIZE = 1024
"""Training examples (a fixed random subset per run) scored each epoch for the memorization curves."""


@dataclass(frozen=True)
class RunData:
    """A run's labels and split.

    Attributes:
        run: the run.
        noisy: the label condition applied to the whole training split of the dataset.
        train_idx: ``[N_tr]`` indices (into the dataset's training arrays) the model trains on.
        val_idx: ``[N_val]`` indices held out for model selection and temperature scaling; their
            labels are the *noisy* ones, as a practitioner's validation labels would be.
        train_eval_idx: ``[min(N_tr, TRAIN_EVAL_SIZE)]`` training indices scored every epoch for the
            per-epoch training curves (memorization of flipped vs unflipped examples).
        labels: ``[N]`` the labels the model trains on: the noisy labels, relabelled on the training
            split where the arm's defense relabels.
        pool: the training indices the model may visit (``train_idx`` minus examples the arm's
            defense drops).
        defense: what the arm's defense did, scored against the true flip mask (or None).
    """

    run: RunConfig
    noisy: NoisyLabels
    train_idx: np.ndarray
    val_idx: np.ndarray
    train_eval_idx: np.ndarray
    labels: np.ndarray
    pool: np.ndarray
    defense: dict[str, Any] | None = None

    @property
    def train_labels(self) -> np.ndarray:
        """The labels trained on, on the training split (after the arm's defense)."""
        return self.labels[self.train_idx]

    @property
    def train_flipped(self) -> np.ndarray:
        return self.noisy.flipped[self.train_idx]

    @property
    def val_labels(self) -> np.ndarray:
        return self.noisy.labels[self.val_idx]


def validation_count(n: int, fraction: float) -> int:
    return round(n * fraction)


def prepare_run(run: RunConfig, dataset: Dataset) -> RunData:
    """Apply the run's label condition to the training split, then split off its validation set."""
    n = dataset.y_train.shape[0]
    noisy = run.condition.apply(
        dataset.x_train, dataset.y_train, dataset.num_classes, run.seed_for("noise"), dataset.class_names
    )
    n_val = validation_count(n, float(run.shared["data"]["validation_fraction"]))
    if n - n_val < 1:
        raise SmoothflipError(f"data.validation_fraction leaves no training examples out of {n}")
    rng = np.random.default_rng(run.seed_for("split"))
    order = rng.permutation(n)
    train_idx = np.sort(order[n_val:])
    train_eval_idx = np.sort(rng.permutation(train_idx)[:TRAIN_EVAL_SIZE])
    labels, pool, defense = noisy.labels, train_idx, None
    if run.arm.defense is not None:
        labels, pool, defense = _defend(run, dataset, noisy, train_idx)
    return RunData(
        run=run,
        noisy=noisy,
        train_idx=train_idx,
        val_idx=np.sort(order[:n_val]),
        train_eval_idx=train_eval_idx,
        labels=labels,
        pool=pool,
        defense=defense,
    )


def _defend(
    run: RunConfig, dataset: Dataset, noisy: NoisyLabels, train_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Apply the arm's defense to its training split: relabelled labels, kept indices, detection scores."""
    from smoothflip.defenses import apply_defense, score_detection

    arm = run.arm
    x = dataset.x_train[train_idx].reshape(train_idx.size, -1)
    result = apply_defense(
        arm.defense,
        x,
        noisy.labels[train_idx],
        seed=run.seed_for("defense") % (2**32),
        **dict(arm.defense_options),
    )
    labels = noisy.labels.copy()
    labels[train_idx] = result.labels
    score = score_detection(result.flagged, noisy.flipped[train_idx])
    summary = {
        "name": arm.defense,
        "precision": float(score.precision),
        "recall": float(score.recall),
        "f1": float(score.f1),
        "flagged": float(result.flagged.sum()),
        "relabelled": float(result.n_relabelled),
        "dropped": float(result.n_dropped),
    }
    return labels, train_idx[result.keep], summary


def epoch_visit(rng: np.random.Generator, data: RunData) -> np.ndarray:
    """The dataset indices one epoch visits, in order: ``[N_tr]``.

    Without dropped examples this is a permutation of the training split. When the arm's defense
    drops examples, the epoch visits a permutation of the kept ones topped up with a random sample of
    them, so every run of a pack takes the same number of steps.
    """
    n = data.train_idx.size
    if data.pool.size == n:
        return data.train_idx[rng.permutation(n)]
    if data.pool.size == 0:
        raise SmoothflipError(f"the {data.run.arm.defense} defense dropped every training example")
    order = rng.permutation(data.pool.size)
    extra = rng.choice(data.pool.size, size=n - data.pool.size, replace=True)
    return data.pool[np.concatenate([order, extra])]


def loss_context(data: RunData, num_classes: int) -> LossContext:
    """The member's own loss context: its training labels' frequencies and realized noise matrix."""
    labels = data.train_labels
    matrix = realized_transition_matrix(data.noisy.true_labels[data.train_idx], labels, num_classes)
    counts = torch.bincount(torch.as_tensor(labels).long(), minlength=num_classes).double()
    return LossContext(
        num_classes=num_classes,
        class_prior=counts / counts.sum() if labels.size else None,
        transition_matrix=torch.as_tensor(matrix),
        key=data.run.run_id,
    )


def epoch_targets(
    labels: Tensor, data: RunData, num_classes: int, generator: torch.Generator | None, batch_size: int
) -> Tensor:
    """The targets of one epoch, ``[N_tr]`` in batch order, after the arm's training-time flipping.

    ``labels`` holds the (noisy) labels of the epoch's examples in the order they are visited.
    DisturbLabel redraws every label independently, so the whole epoch is drawn in one call;
    fixed-rate flips are exact per batch, so they are drawn batch by batch.
    """
    arm = data.run.arm
    if generator is None:
        return labels
    if arm.disturb_alpha > 0:
        return disturb_labels(labels, alpha=arm.disturb_alpha, num_classes=num_classes, generator=generator)
    batches = [
        flip_labels(
            labels[i : i + batch_size], rate=arm.flip_rate, num_classes=num_classes, generator=generator
        )
        for i in range(0, labels.numel(), batch_size)
    ]
    return torch.cat(batches)


def flip_generator(data: RunData, device: torch.device) -> torch.Generator | None:
    arm = data.run.arm
    if arm.disturb_alpha <= 0 and arm.flip_rate <= 0:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(data.run.seed_for("flip"))
    return gen


def augmenter(run: RunConfig) -> torch.Generator | None:
    """The run's augmentation generator (a CPU generator seeded by its ``augment`` seed, also for CUDA
    tensors, so CPU and CUDA runs draw alike), or None when ``[train] augment`` is ``"none"``."""
    if run.shared["train"].get("augment", "none") == "none":
        return None
    return torch.Generator().manual_seed(run.seed_for("augment") % (2**63))
