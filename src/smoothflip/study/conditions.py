"""Label conditions: what happens to the training labels of a run before it trains.

A :class:`LabelCondition` is one resolved point of a study's ``[[conditions]]``: a noise model with
one rate (rate 0 of any model is the single ``clean`` condition). ``apply`` corrupts the training
labels with the run's own generator and returns a :class:`~smoothflip.noise.NoisyLabels` (the flip
mask and the realized rate included). Test labels are never touched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from smoothflip import noise
from smoothflip.study.spec import MODES, ConditionSpec, StudySpec

DEFAULT_MODES = {name: modes[0] for name, modes in MODES.items()}


@dataclass(frozen=True)
class LabelCondition:
    """One label condition of a study.

    Attributes:
        noise: noise model (``"none"`` for correct labels).
        rate: requested rate (for ``matrix``: the matrix's mean off-diagonal row mass).
        options: model options (``mode``, ``mapping``, ``matrix``, ``sparsity``), JSON-able.
    """

    noise: str
    rate: float
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def is_clean(self) -> bool:
        return self.noise == "none"

    @property
    def label(self) -> str:
        """Short display name: ``clean``, ``symmetric 20%``, ``pair 45%`` ..."""
        if self.is_clean:
            return "clean"
        opts = dict(self.options)
        if self.noise == "attack":
            from smoothflip.attacks import STRATEGY_OPTIONS

            defaults = STRATEGY_OPTIONS[opts["strategy"]]
            changed = [f"{k}={v}" for k, v in opts.items() if k != "strategy" and v != defaults.get(k)]
            suffix = f" ({', '.join(changed)})" if changed else ""
            return f"{opts['strategy']} attack {self.rate * 100:.4g}%{suffix}"
        extra = []
        if opts.get("mode") not in (None, DEFAULT_MODES.get(self.noise)):
            extra.append(str(opts["mode"]))
        if isinstance(opts.get("mapping"), str):
            extra.append(opts["mapping"])
        if opts.get("sparsity"):
            extra.append(f"sparsity {opts['sparsity']:g}")
        suffix = f" ({', '.join(extra)})" if extra else ""
        return f"{self.noise.replace('_', ' ')} {self.rate * 100:.4g}%{suffix}"

    def to_dict(self) -> dict[str, Any]:
        return {"noise": self.noise, "rate": self.rate, **dict(self.options)}

    def apply(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        seed: int,
        class_names: tuple[str, ...] | None = None,
    ) -> noise.NoisyLabels:
        """Corrupt ``labels`` ``[N]`` (with ``features`` ``[N, ...]`` for instance-dependent noise).

        A targeted attack's ``source`` and ``target`` name classes by their original label
        (``class_names``; for the built-in datasets the digits ``0``-``9``), as the file commands do.
        """
        opts = dict(self.options)
        rng = np.random.default_rng(seed)
        if self.is_clean:
            return noise.from_transition_matrix(labels, np.eye(num_classes), seed=rng)
        if self.noise == "symmetric":
            return noise.symmetric(labels, self.rate, num_classes, mode=opts["mode"], seed=rng)
        if self.noise == "pair":
            return noise.pair_flip(labels, self.rate, num_classes, mode=opts["mode"], seed=rng)
        if self.noise == "asymmetric":
            mapping = opts["mapping"]
            if isinstance(mapping, Mapping):
                mapping = {int(k): int(v) for k, v in mapping.items()}
            return noise.asymmetric(
                labels, self.rate, mapping, num_classes=num_classes, mode=opts["mode"], seed=rng
            )
        if self.noise == "matrix":
            return noise.from_transition_matrix(
                labels, np.asarray(opts["matrix"]), mode=opts["mode"], seed=rng
            )
        if self.noise == "random_matrix":
            matrix = noise.random_transition_matrix(
                num_classes, rate=self.rate, sparsity=opts["sparsity"], seed=rng
            )
            return noise.from_transition_matrix(labels, matrix, mode=opts["mode"], seed=rng)
        if self.noise == "attack":
            from smoothflip.attacks import label_flip

            attack = {k: v for k, v in opts.items() if k != "strategy"}
            if class_names is not None:
                for key in ("source", "target"):
                    if key in attack:
                        attack[key] = _class_position(key, attack[key], class_names)
            return label_flip(
                features,
                labels,
                budget=self.rate,
                strategy=opts["strategy"],
                seed=rng,
                num_classes=num_classes,
                **attack,
            )
        if self.noise == "instance":
            return noise.instance_dependent(
                features, labels, rate=self.rate, num_classes=num_classes, seed=rng
            )
        raise ValueError(f"unknown noise model {self.noise!r}")


def _class_position(key: str, value: Any, class_names: tuple[str, ...]) -> int:
    names = [str(name) for name in class_names]
    if str(value) in names:
        return names.index(str(value))
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    raise ValueError(f"{key}={value!r} is not a class of the data (its classes: {shown})")


def _condition_points(spec: ConditionSpec) -> list[LabelCondition]:
    options = tuple(sorted((k, v) for k, v in spec.options.items()))
    if spec.noise == "matrix":
        matrix = np.asarray(spec.options["matrix"], dtype=float)
        rate = float(np.mean(1.0 - np.diag(matrix)))
        if rate == 0.0:
            return [LabelCondition("none", 0.0)]
        return [LabelCondition("matrix", rate, options)]
    points = []
    for rate in spec.rates:
        if rate == 0.0 or spec.noise == "none" or math.isnan(rate):
            points.append(LabelCondition("none", 0.0))
        else:
            points.append(LabelCondition(spec.noise, float(rate), options))
    return points


def study_conditions(spec: StudySpec) -> list[LabelCondition]:
    """The study's distinct label conditions in file order; the clean one (rate 0) appears once."""
    seen: list[LabelCondition] = []
    for condition_spec in spec.conditions:
        for point in _condition_points(condition_spec):
            if point not in seen:
                seen.append(point)
    return seen
