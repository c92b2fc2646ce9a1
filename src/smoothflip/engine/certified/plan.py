"""What a certified run trains: its labels, its partitions, its base learners and their seeds.

A run (one arm x label condition x seed) trains one ensemble per ``k`` of ``[certify] partitions``.
Everything a base learner sees is a function of **its own part** and of label-free inputs:

- its examples: the learner's part of :func:`smoothflip.certify.partition` (features only, salt
  from the run's seed, shared by every arm and condition at that seed), minus its held-out share
  when ``selection = "partition"`` (a label-free draw per example from the run's seed);
- its labels: the run's (noisy or attacked) labels *of those examples*;
- its seeds (initialization, data order, training-time flipping, augmentation): the run's seeds
  for those purposes hashed with ``(k, learner)``; the same for every arm at a seed (paired) and for
  the run's attacked retrainings (so a learner whose part the attack left alone is retrained
  bitwise as it was);
- its loss context (``prior = "train"``, the realized noise matrix): its own part's labels.

The number of examples an epoch visits is the same for every learner of an ensemble,
``m = ceil(N * (1 - holdout) / k)``: the learner's part in a random order, topped up with random
repeats of it when smaller, a random ``m`` of it when larger (a pack steps all its learners together,
so they must take the same number of steps). ``N`` and ``k`` are label-free, so label flips change
nothing of another learner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from smoothflip import certify
from smoothflip.data import Dataset
from smoothflip.noise import NoisyLabels, realized_transition_matrix
from smoothflip.study.grid import RunConfig
from smoothflip.study.ids import derive_seed
from smoothflip.techniques import LossContext

SALT_BITS = 63


@dataclass(frozen=True)
class Settings:
    """A run's ``[certify]`` table as the engine reads it (from the run's shared config)."""

    partitions: tuple[int, ...]
    scheme: str
    d: int
    radii: tuple[int, ...]
    selection: str
    holdout: float
    attack_checks: int
    attack: str
    attack_options: Mapping[str, Any]
    check_seed: int

    @classmethod
    def of(cls, run: RunConfig) -> Settings:
        table = run.shared["certify"]
        return cls(
            partitions=tuple(int(k) for k in table["partitions"]),
            scheme=str(table["scheme"]),
            d=int(table["d"]),
            radii=tuple(int(r) for r in table["radii"]),
            selection=str(table["selection"]),
            holdout=float(table["holdout"]),
            attack_checks=int(table["attack_checks"]),
            attack=str(table["attack"]),
            attack_options=dict(table.get("attack_options") or {}),
            check_seed=int(table["check_seed"]),
        )

    def checks(self, run: RunConfig) -> int:
        """Attacked retrainings of ``run``: ``attack_checks`` at the study's first seed, else none."""
        return self.attack_checks if run.seed == self.check_seed else 0

    def budgets(self) -> list[int]:
        """The flips of each attacked retraining: the positive radii from the middle one on, cycling."""
        positive = [r for r in self.radii if r > 0] or [1]
        middle = self.radii[(len(self.radii) - 1) // 2]
        start = next((i for i, r in enumerate(positive) if r >= middle), 0)
        return [positive[(start + i) % len(positive)] for i in range(self.attack_checks)]

    def epoch_size(self, n: int, k: int) -> int:
        """``m``: examples every learner of a ``k``-ensemble visits per epoch."""
        return max(1, math.ceil(n * (1.0 - self.holdout) / k))


def flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1)


def partition_salt(run: RunConfig) -> int:
    """The partition's salt: from the run's seed only (every arm and condition shares it)."""
    return derive_seed(run.seed, "certify-partition") % (2**SALT_BITS)


def assignment(run: RunConfig, dataset: Dataset, k: int, settings: Settings) -> np.ndarray:
    """Each training example's learner(s) for the ``k``-ensemble (``[N]`` or ``[N, d]``)."""
    return certify.partition(
        dataset.x_train, k, scheme=settings.scheme, d=settings.d, salt=partition_salt(run)
    )


def held_out(run: RunConfig, n: int, settings: Settings) -> np.ndarray:
    """``[N]`` bool: examples held out for the learners' own epoch selection (label-free draw)."""
    if settings.holdout <= 0:
        return np.zeros(n, dtype=bool)
    return np.random.default_rng(derive_seed(run.seed, "certify-holdout")).random(n) < settings.holdout


@dataclass
class Member:
    """One base learner of one ensemble of one run.

    Attributes:
        run: its run (arm, condition, seed).
        run_index: the run's position in the pack.
        k: its ensemble's ``k``.
        variant: 0 for the run's labels, ``i >= 1`` for the ``i``-th attacked retraining.
        learner: its index in ``[0, d*k)``.
        train_idx: ``[n_j]`` dataset indices it trains on.
        val_idx: ``[v_j]`` its held-out indices (empty unless ``selection = "partition"``).
        labels: ``[N]`` the labels of its variant (only ``labels[train_idx]`` and ``labels[val_idx]``
            are ever read).
        true_labels: ``[N]`` the clean labels (for the realized noise matrix of forward correction).
    """

    run: RunConfig
    run_index: int
    k: int
    variant: int
    learner: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    labels: np.ndarray = field(repr=False)
    true_labels: np.ndarray = field(repr=False)

    @property
    def key(self) -> str:
        return f"{self.run.run_id}/k{self.k}/v{self.variant}/l{self.learner}"

    @property
    def part(self) -> np.ndarray:
        """Every example whose label this learner reads (training and held-out)."""
        return np.concatenate([self.train_idx, self.val_idx])

    def seed(self, purpose: str) -> int:
        """The learner's seed for ``purpose``: the run's, hashed with ``(k, learner)``."""
        return derive_seed(self.run.seed_for(purpose), "learner", self.k, self.learner)

    def context(self, num_classes: int) -> LossContext:
        """Its loss context: its own part's label frequencies and realized noise matrix."""
        labels = self.labels[self.train_idx]
        counts = torch.bincount(torch.as_tensor(labels).long(), minlength=num_classes).double()
        matrix = realized_transition_matrix(self.true_labels[self.train_idx], labels, num_classes)
        return LossContext(
            num_classes=num_classes,
            class_prior=counts / counts.sum(),
            transition_matrix=torch.as_tensor(matrix),
            key=self.key,
        )

    def visit(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """``[m]`` dataset indices of one epoch (see the module docstring)."""
        n = self.train_idx.size
        order = rng.permutation(n)
        if n >= m:
            return self.train_idx[order[:m]]
        extra = rng.choice(n, size=m - n, replace=True)
        return self.train_idx[np.concatenate([order, extra])]


@dataclass
class RunPlan:
    """A run's labels and ensembles: ``members[(k, variant)]`` lists its learners in order."""

    run: RunConfig
    settings: Settings
    noisy: NoisyLabels
    variants: list[np.ndarray]
    budgets: list[int]
    members: dict[tuple[int, int], list[Member]]


def attacked_labels(
    run: RunConfig, dataset: Dataset, labels: np.ndarray, settings: Settings
) -> list[np.ndarray]:
    """The run's attacked labellings: ``label_flip`` of its training labels at each budget."""
    from smoothflip.attacks import label_flip

    out = []
    x = flat(dataset.x_train)
    for i, budget in enumerate(settings.budgets()[: settings.checks(run)]):
        flipped = label_flip(
            x,
            labels,
            budget=min(int(budget), labels.size - 1),
            strategy=settings.attack,
            num_classes=dataset.num_classes,
            seed=derive_seed(run.seed, "certify-attack", i) % (2**32),
            **dict(settings.attack_options),
        )
        out.append(flipped.labels)
    return out


def plan_run(run: RunConfig, index: int, dataset: Dataset, cache: dict[Any, Any] | None = None) -> RunPlan:
    """The run's labels (its condition, then its attacks) and every learner of its ensembles."""
    settings = Settings.of(run)
    cache = {} if cache is None else cache
    noisy = run.condition.apply(
        dataset.x_train, dataset.y_train, dataset.num_classes, run.seed_for("noise"), dataset.class_names
    )
    attack_key = ("attacks", run.condition.condition_id, run.seed)  # shared by the arms at a seed
    if attack_key not in cache:
        cache[attack_key] = attacked_labels(run, dataset, noisy.labels, settings)
    variants = [noisy.labels, *cache[attack_key]]
    n = dataset.y_train.shape[0]
    hold = held_out(run, n, settings)
    members: dict[tuple[int, int], list[Member]] = {}
    for k in settings.partitions:
        key = (run.seed, k)
        if key not in cache:
            cache[key] = certify.learner_indices(assignment(run, dataset, k, settings), settings.d * k)
        parts: Sequence[np.ndarray] = cache[key]
        for variant, labels in enumerate(variants):
            row = []
            for learner, part in enumerate(parts):
                train, val = part[~hold[part]], part[hold[part]]
                if train.size == 0:  # everything held out: train on the part, select the last epoch
                    train, val = part, part[:0]
                row.append(Member(run, index, k, variant, learner, train, val, labels, noisy.true_labels))
            members[(k, variant)] = row
    return RunPlan(run, settings, noisy, variants, settings.budgets()[: settings.checks(run)], members)
