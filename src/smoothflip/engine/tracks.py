"""Tracks: how a study kind trains. One :class:`Track` object per kind, found through the kind registry.

A study kind (:mod:`smoothflip.study.kinds`) names its track as ``"module:attribute"``; the
executors call :func:`track_for` and then only the track's methods — how to load the study's data,
check that it can train, size a pack, train a pack or one run, and record a run that could not
train. Executors never branch on the kind.

Built-in tracks: :data:`smoothflip.engine.classifier.TRACK` (classifier studies, standard and
distillation) and :data:`smoothflip.engine.language.TRACK` (language-model studies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch

from smoothflip.engine.checkpoint import PackCheckpoint
from smoothflip.engine.schedule import ProgressFn
from smoothflip.study.grid import RunConfig
from smoothflip.study.kinds import get_kind
from smoothflip.study.spec.schema import StudySpec
from smoothflip.study.store import RunResult


class Track(Protocol):
    """What an executor needs from a study kind's engine."""

    name: str

    def load(self, spec: StudySpec) -> Any:
        """The study's data (a :class:`~smoothflip.data.Dataset`, a corpus ...)."""

    def fingerprint(self, data: Any) -> str:
        """A hash of the data's content (part of every run's id)."""

    def describe(self, data: Any) -> str:
        """One line about the data, for the progress display."""

    def check(self, spec: StudySpec, data: Any, runs: Sequence[RunConfig]) -> None:
        """Fail with a one-line :class:`~smoothflip.errors.SmoothflipError` if the study cannot train."""

    def auto_pack_size(
        self, runs: Sequence[RunConfig], data: Any, *, device: torch.device, base_dir: str
    ) -> int:
        """Members per pack that fit the device's memory."""

    def estimate(
        self, packs: Sequence[Sequence[RunConfig]], data: Any, *, device: torch.device, base_dir: str
    ) -> tuple[int, float] | None:
        """``(optimizer steps, estimated seconds)`` to train ``packs``, from a short timing probe;
        None when the track cannot tell (a user's own training loop)."""

    def train_pack(
        self,
        runs: Sequence[RunConfig],
        data: Any,
        *,
        device: str | torch.device = "cpu",
        base_dir: str = ".",
        progress: ProgressFn | None = None,
        teachers: Mapping[str, Any] | None = None,
        checkpoint: PackCheckpoint | None = None,
    ) -> list[RunResult]:
        """Train runs that share a pack key together; one result per run, in order; a pack track
        saves its state through ``checkpoint`` between epochs and resumes from it."""

    def train_reference(
        self,
        run: RunConfig,
        data: Any,
        *,
        device: str | torch.device = "cpu",
        base_dir: str = ".",
        progress: ProgressFn | None = None,
        teachers: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Train one run alone (the plain loop the packs are tested against)."""

    def skipped(self, run: RunConfig, data: Any, reason: str) -> RunResult:
        """The stored result of a run that could not train (e.g. its teacher has no weights)."""


def track_for(spec_or_kind: StudySpec | str) -> Track:
    """The track of a study (or of a kind name)."""
    name = spec_or_kind if isinstance(spec_or_kind, str) else spec_or_kind.kind
    return get_kind(name).load_track()
