"""Representation probes of Müller et al. 2019 for classifier runs (they only observe training)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from smoothflip import metrics
from smoothflip.data import Dataset
from smoothflip.engine.classifier.run_data import RunData


class Probe:
    """Müller et al. 2019 probes for one run: mutual information each epoch, penultimate features at the end.

    The mutual-information examples are ``examples_per_class`` training examples of each of the two
    ``mi_classes`` (by true label), each seen under ``augmentations`` random augmentations drawn once
    per run; the estimate uses the difference of those two classes' logits
    (:func:`smoothflip.metrics.mutual_information`, nats, in ``[0, log N]``). The representation
    sample is ``examples_per_class`` test examples of each of ``classes`` (fewer if the test set has
    fewer). Classes the dataset does not have disable that part of the probe.
    """

    def __init__(self, data: RunData, dataset: Dataset) -> None:
        from smoothflip.data.augment import augment, augmentation_for

        cfg = data.run.probe or {}
        k = dataset.num_classes
        per_class = int(cfg.get("examples_per_class", 100))
        rng = np.random.default_rng(data.run.seed_for("probe"))
        self.mi_classes = [c for c in cfg.get("mi_classes", ()) if c < k]
        self.views: np.ndarray | None = None
        if len(self.mi_classes) == 2:
            true = data.noisy.true_labels[data.train_idx]
            picks = [rng.permutation(data.train_idx[true == c])[:per_class] for c in self.mi_classes]
            chosen = np.concatenate(picks)
            kind = augmentation_for(dataset.name, dataset.input_shape)
            count = int(cfg.get("augmentations", 5))
            if chosen.size >= 2:
                base = dataset.x_train[chosen]
                self.views = np.stack(
                    [augment(base, kind=kind, seed=rng) for _ in range(count)]
                )  # [L, N, ...]
        self.classes = [c for c in cfg.get("classes", ()) if c < k]
        self.test_idx: np.ndarray | None = None
        if len(self.classes) == 3:
            self.test_idx = np.concatenate(
                [np.flatnonzero(dataset.y_test == c)[:per_class] for c in self.classes]
            )
        self.dataset = dataset

    def mutual_information(self, logits_fn: Callable[[Tensor], Tensor], device: torch.device) -> float:
        """MI estimate from ``logits_fn(x [M, ...]) -> [M, K]`` applied to every augmented view."""
        if self.views is None:
            return math.nan
        views = torch.as_tensor(self.views, device=device)
        count, n = views.shape[:2]
        logits = logits_fn(views.reshape(count * n, *views.shape[2:])).reshape(count, n, -1)
        a, b = self.mi_classes
        diffs = (logits[..., a] - logits[..., b]).T.detach().to(torch.float64).cpu().numpy()  # [N, L]
        if not np.isfinite(diffs).all():
            return math.nan
        return metrics.mutual_information(diffs)

    def representation(
        self,
        features_fn: Callable[[Tensor], Tensor] | None,
        head_weight: Tensor | None,
        head_bias: Tensor | None,
        epoch: int,
        device: torch.device,
    ) -> dict[str, Any] | None:
        """Penultimate features of the test sample and the classifier's weights (for the projection)."""
        if self.test_idx is None or features_fn is None or head_weight is None or not self.test_idx.size:
            return None
        x = torch.as_tensor(self.dataset.x_test[self.test_idx], device=device)
        features = features_fn(x).detach().to(torch.float64).cpu().numpy()
        if not np.isfinite(features).all():
            return None
        return {
            "classes": self.classes,
            "class_names": [self.dataset.class_names[c] for c in self.classes],
            "labels": self.dataset.y_test[self.test_idx].tolist(),
            "features": np.round(features, 5).tolist(),
            "head_weight": np.round(head_weight.detach().double().cpu().numpy(), 6).tolist(),
            "head_bias": (
                np.round(head_bias.detach().double().cpu().numpy(), 6).tolist()
                if head_bias is not None
                else None
            ),
            "epoch": epoch,
        }

    def describe(self) -> dict[str, Any] | None:
        if self.views is None:
            return None
        return {
            "classes": self.mi_classes,
            "examples": int(self.views.shape[1]),
            "augmentations": int(self.views.shape[0]),
        }
