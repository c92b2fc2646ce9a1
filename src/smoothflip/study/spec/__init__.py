"""The study file: TOML validated into frozen dataclasses.

Every problem is a :class:`~smoothflip.errors.SpecError` (a ``ValueError``) whose one-line message
names the key, the bad value and what is allowed, e.g. ``train.lr = -0.1: must be > 0``.

- :mod:`.schema` — the dataclasses (:class:`StudySpec` and its tables);
- :mod:`.sections` — ``[data]``, ``[model]``, ``[train]``, ``[probes]`` and seeds;
- :mod:`.arms` — ``[[arms]]`` against the technique registry;
- :mod:`.distillation` — distillation studies' generated arms;
- :mod:`.parse` — :func:`parse_study`, :func:`load_study`, :func:`loads_study` (kinds from
  :mod:`smoothflip.study.kinds`, conditions from the noise-model registry
  :mod:`smoothflip.study.conditions`);
- :mod:`.toml` — :func:`dumps_study`, the resolved study file.
"""

from typing import Any

from smoothflip.errors import SpecError
from smoothflip.study.spec.distillation import distillation_arms
from smoothflip.study.spec.schema import (
    AnalysisSpec,
    ArmSpec,
    ConditionSpec,
    DataSpec,
    DistillationSpec,
    FrozenDict,
    ModelSpec,
    ProbeSpec,
    StudySpec,
    TrainSpec,
)

_LAZY = {
    "TOP_LEVEL_KEYS": "parse",
    "load_study": "parse",
    "loads_study": "parse",
    "parse_study": "parse",
    "dumps_study": "toml",
}


def __getattr__(name: str) -> Any:
    # The readers need the study-kind registry, which needs this package's schema and section
    # readers; importing them on first use keeps the import graph acyclic.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)


__all__ = [
    "TOP_LEVEL_KEYS",
    "AnalysisSpec",
    "ArmSpec",
    "ConditionSpec",
    "DataSpec",
    "DistillationSpec",
    "FrozenDict",
    "ModelSpec",
    "ProbeSpec",
    "SpecError",
    "StudySpec",
    "TrainSpec",
    "distillation_arms",
    "dumps_study",
    "load_study",
    "loads_study",
    "parse_study",
]
