"""The classifier track: standard and distillation studies on a :class:`~smoothflip.data.Dataset`.

- :mod:`.run_data` — a run's noisy labels, split, defence and epochs;
- :mod:`.members` — building a run's model;
- :mod:`.tracking` — per-epoch curves, model selection and final metrics;
- :mod:`.probes` — the Müller et al. 2019 representation probes;
- :mod:`.teachers` — distillation teachers;
- :mod:`.pack` / :mod:`.reference` — the pack trainer and the per-run reference trainer.

:data:`TRACK` is what the study-kind registry points at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from smoothflip.data import Dataset, load_dataset
from smoothflip.engine.classifier.estimate import estimate_packs
from smoothflip.engine.classifier.members import build_member
from smoothflip.engine.classifier.pack import train_pack
from smoothflip.engine.classifier.reference import train_reference
from smoothflip.engine.classifier.run_data import prepare_run, validation_count
from smoothflip.engine.classifier.tracking import Tracker
from smoothflip.engine.results import pack_timings
from smoothflip.engine.sizing import auto_pack_size, check_fits, meta_parameter_count
from smoothflip.errors import SmoothflipError, user_input
from smoothflip.study.conditions import get_noise_model
from smoothflip.study.grid import RunConfig
from smoothflip.study.spec.schema import ProbeSpec, StudySpec
from smoothflip.study.store import RunResult
from smoothflip.techniques import LossContext, build_loss

__all__ = ["TRACK", "ClassifierTrack", "train_pack", "train_reference"]


class ClassifierTrack:
    """Classifier studies: built-in or user models on tabular, 1-D or image data, trained as packs."""

    name = "classifier"

    def load(self, spec: StudySpec) -> Dataset:
        d = spec.data
        with user_input():
            return load_dataset(
                d.source,
                options=dict(d.options),
                label_column=d.label_column,
                test_source=d.test_source,
                test_fraction=d.test_fraction,
                split_seed=d.split_seed,
                standardize=d.standardize,
                base_dir=spec.base_dir,
            )

    def fingerprint(self, data: Dataset) -> str:
        return data.fingerprint()

    def describe(self, data: Dataset) -> str:
        return f"{data.name}: {len(data.y_train)} train / {len(data.y_test)} test, {data.num_classes} classes"

    def check(self, spec: StudySpec, data: Dataset, runs: Sequence[RunConfig]) -> None:
        """Fail before any training if the model, a loss or a label condition does not fit the data."""
        if data.num_classes < 2:
            raise SmoothflipError(
                f"data: the training labels hold {data.num_classes} class; at least 2 are needed"
            )
        n = data.y_train.shape[0]
        if n - validation_count(n, spec.data.validation_fraction) < 1:
            raise SmoothflipError(f"data.validation_fraction leaves no training examples out of {n}")
        if spec.train.augment != "none" and len(data.input_shape) not in (2, 3):
            raise SmoothflipError(
                f"train.augment = {spec.train.augment!r} crops and flips images; the data's examples have "
                f"shape {tuple(data.input_shape)} (images are [H, W] or [C, H, W])"
            )
        _check_probes(spec, data)
        model_cfg = runs[0].shared["model"]
        if not model_cfg.get("factory"):  # count a built-in model before allocating it
            with user_input("model"):
                count = meta_parameter_count(lambda: build_member(runs[0], data, base_dir=spec.base_dir))
            if count is not None:
                check_fits(count, torch.device("cpu"), what=f"model {model_cfg['name']!r}")
        with user_input("model"):
            build_member(runs[0], data, base_dir=spec.base_dir)
        for arm in spec.arms:
            with user_input(f"arm {arm.name!r}"):
                build_loss(arm.loss, arm.params, LossContext(num_classes=data.num_classes))
        _check_conditions(data, runs)

    def auto_pack_size(
        self, runs: Sequence[RunConfig], data: Dataset, *, device: torch.device, base_dir: str
    ) -> int:
        model = build_member(runs[0], data, base_dir=base_dir)
        check_fits(sum(p.numel() for p in model.parameters()), device, what="the model")
        return auto_pack_size(model, data.input_shape, int(runs[0].shared["train"]["batch_size"]), device)

    def estimate(
        self, packs: Sequence[Sequence[RunConfig]], data: Dataset, *, device: torch.device, base_dir: str
    ) -> tuple[int, float]:
        return estimate_packs(packs, data, device=device, base_dir=base_dir)

    def train_pack(self, runs: Sequence[RunConfig], data: Dataset, **options: Any) -> list[RunResult]:
        return train_pack(runs, data, **options)

    def train_reference(self, run: RunConfig, data: Dataset, **options: Any) -> RunResult:
        return train_reference(run, data, **options)

    def skipped(self, run: RunConfig, data: Dataset, reason: str) -> RunResult:
        tracker = Tracker(prepare_run(run, data), data)
        tracker.add_extra("skipped", reason)
        return tracker.result(pack_timings(0.0, 0, 0))


def _check_probes(spec: StudySpec, data: Dataset) -> None:
    """Refuse probe classes the data does not have (class ``i`` is the ``i``-th sorted label).

    The defaults are left alone: on data with fewer classes than they name, the probe is skipped.
    """
    if spec.probes.seeds <= 0:
        return
    k = data.num_classes
    for key in ("classes", "mi_classes"):
        if getattr(spec.probes, key) == getattr(ProbeSpec, key):
            continue
        outside = [c for c in getattr(spec.probes, key) if not 0 <= c < k]
        if outside:
            names = ", ".join(map(str, data.class_names[:12])) + (", ..." if k > 12 else "")
            raise SmoothflipError(
                f"probes.{key} = {list(getattr(spec.probes, key))}: class(es) {outside} are not in the data, "
                f"whose {k} classes are 0 to {k - 1} (labels {names})"
            )


def _check_conditions(dataset: Dataset, runs: Sequence[RunConfig]) -> None:
    """Apply every distinct label condition once (costly ones to a sample) so that a mapping, a matrix
    or an attack option that does not fit the data fails now, naming the condition."""
    seen: set[str] = set()
    for run in runs:
        condition = run.condition
        if condition.is_clean or condition.condition_id in seen:
            continue
        seen.add(condition.condition_id)
        x, y = dataset.x_train, dataset.y_train
        sample = get_noise_model(condition.noise).check_examples
        if sample is not None:
            keep = np.random.default_rng(0).permutation(y.shape[0])[:sample]
            x, y = x[keep], y[keep]
        with user_input(f"conditions: {condition.label}"):
            condition.apply(x, y, dataset.num_classes, seed=0, class_names=dataset.class_names)


TRACK = ClassifierTrack()
