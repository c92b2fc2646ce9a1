"""The certified track (``kind = "certified"``): partition ensembles trained as packs, and their certificates.

A run is one arm x label condition x seed; it trains, for each ``k`` of ``[certify] partitions``, an
ensemble of ``d*k`` base learners with the arm's technique on label-independent parts of its
labels, certifies every test prediction (:mod:`smoothflip.certify`) and stores the ensemble's clean
accuracy, certified accuracy at each radius, median certified radius and mean base-learner accuracy.
At the study's first seed it also retrains each ensemble on labels flipped by a real attack
(``[certify] attack_checks``) and counts the certified predictions that changed (none may).

- :mod:`.plan` — a run's labels, partitions, learners and their seeds (what makes a certificate
  true: a learner depends on its own part only);
- :mod:`.pack` — learners trained as packs (chunks) with the engine's pack machinery;
- :mod:`.results` — certificates, metrics and attack checks of a run.

The executors see an ordinary track: a pack of runs is cut into chunks of learners (all learners of
one ``k``, across the pack's runs and their attacked retrainings), which train one after another
and are checkpointed between epochs like any pack.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from smoothflip.data import Dataset
from smoothflip.engine.certified.pack import (
    MAX_LEARNERS,
    ChunkOutput,
    chunk_size,
    learner_schedule,
    train_chunk,
)
from smoothflip.engine.certified.plan import Member, RunPlan, Settings, assignment, plan_run
from smoothflip.engine.certified.results import run_outcome
from smoothflip.engine.checkpoint import PackCheckpoint
from smoothflip.engine.classifier import TRACK as CLASSIFIERS
from smoothflip.engine.results import pack_timings
from smoothflip.engine.schedule import ProgressFn
from smoothflip.errors import SmoothflipError, user_input
from smoothflip.study.grid import RunConfig
from smoothflip.study.spec.schema import StudySpec
from smoothflip.study.store import RunResult

__all__ = ["TRACK", "CertifiedTrack", "train_certified_pack"]


def _chunks(plans: Sequence[RunPlan]) -> list[list[Member]]:
    """Every learner of the pack, grouped by ``k`` (one schedule per group), in a fixed order."""
    groups: dict[int, list[Member]] = {}
    for plan in plans:
        for (k, _variant), members in plan.members.items():
            groups.setdefault(k, []).extend(members)
    return [groups[k] for k in sorted(groups)]


def _balanced(members: list[Member], size: int) -> list[list[Member]]:
    """``members`` cut into the fewest chunks of at most ``size``, of balanced sizes (200 by 64: 4 x 50)."""
    count = -(-len(members) // size)
    base, extra = divmod(len(members), count)
    out, start = [], 0
    for i in range(count):
        end = start + base + (1 if i < extra else 0)
        out.append(members[start:end])
        start = end
    return out


def train_certified_pack(
    runs: Sequence[RunConfig],
    dataset: Dataset,
    *,
    device: str | torch.device = "cpu",
    base_dir: str = ".",
    progress: ProgressFn | None = None,
    checkpoint: PackCheckpoint | None = None,
    learners_per_chunk: int | None = None,
    **_unused: Any,
) -> list[RunResult]:
    """Train the ensembles of ``runs`` (one pack key) and certify them; one result per run, in order.

    Args:
        runs: the pack's runs.
        dataset: the study's data.
        device: ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        base_dir: folder a model factory reference resolves against.
        progress: called with the fraction of the pack's learner-epochs done.
        checkpoint: where to save the pack's state between epochs and resume from.
        learners_per_chunk: learners stacked at once (default: as many as fit memory, capped); a
            resumed pack keeps the chunking of its checkpoint.
    """
    if not runs:
        return []
    if len({r.pack_key for r in runs}) != 1:
        raise ValueError("a pack's runs must share data, model and schedule (one pack key)")
    started = time.perf_counter()
    device = torch.device(device)
    cache: dict[Any, Any] = {}
    plans = [plan_run(run, i, dataset, cache) for i, run in enumerate(runs)]
    groups = _chunks(plans)
    n = int(dataset.y_train.shape[0])
    settings = plans[0].settings
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        size = int(saved["learners_per_chunk"])
    elif learners_per_chunk is not None:
        size = int(learners_per_chunk)
    else:
        size = min(
            chunk_size(
                g[0], dataset, learner_schedule(g[0], settings, n)[1], device=device, base_dir=base_dir
            )
            for g in groups
        )
    chunks = [chunk for group in groups for chunk in _balanced(group, size)]
    epochs = [learner_schedule(c[0], settings, n)[0].epochs for c in chunks]
    total = sum(e * len(c) for e, c in zip(epochs, chunks, strict=True))
    done: list[ChunkOutput] = [] if saved is None else [ChunkOutput.from_state(s) for s in saved["done"]]
    seconds = 0.0 if saved is None else float(saved["seconds"])  # spent before a kill

    def finished_work(extra_epochs: int) -> float:
        work = sum(e * len(c) for e, c in zip(epochs[: len(done)], chunks[: len(done)], strict=True))
        return (work + extra_epochs * len(chunks[len(done)])) / max(total, 1)

    def save(current: dict[str, Any] | None, epoch: int) -> None:
        if checkpoint is None:
            return
        checkpoint.save(
            {
                "epoch": epoch,
                "learners_per_chunk": size,
                "done": [c.state() for c in done],
                "current": current,
                "seconds": seconds + time.perf_counter() - started,
            }
        )

    while len(done) < len(chunks):
        index = len(done)
        current = saved.get("current") if saved is not None and index == len(saved["done"]) else None

        def on_epoch(epoch: int, state: Callable[[], dict[str, Any]], _index: int = index) -> None:
            if progress is not None:
                progress(finished_work(epoch))
            if checkpoint is not None and epoch < epochs[_index] and checkpoint.due():
                save(state(), epoch)

        if progress is not None and current is not None:
            progress(finished_work(int(current["epoch"])))
        done.append(
            train_chunk(
                chunks[index],
                dataset,
                settings,
                device=device,
                base_dir=base_dir,
                saved=current,
                on_epoch=on_epoch,
            )
        )
        if checkpoint is not None and len(done) < len(chunks) and checkpoint.due():
            save(None, 0)
    outputs: dict[str, tuple[ChunkOutput, int]] = {}
    for chunk, output in zip(chunks, done, strict=True):
        for row, member in enumerate(chunk):
            outputs[member.key] = (output, row)
    steps = sum(output.steps for output in done)
    timings = pack_timings(seconds + time.perf_counter() - started, len(runs), steps)
    timings.update(learners=sum(len(c) for c in chunks), chunks=len(chunks), learners_per_chunk=size)
    return [run_outcome(plan, dataset, outputs, timings) for plan in plans]


class CertifiedTrack:
    """Certified studies: partition ensembles of built-in or user models, trained as packs."""

    name = "certified"

    def load(self, spec: StudySpec) -> Dataset:
        return CLASSIFIERS.load(spec)

    def fingerprint(self, data: Dataset) -> str:
        return CLASSIFIERS.fingerprint(data)

    def describe(self, data: Dataset) -> str:
        return CLASSIFIERS.describe(data)

    def check(self, spec: StudySpec, data: Dataset, runs: Sequence[RunConfig]) -> None:
        """The classifier checks, then every partition of every seed: ``k`` at most the training
        examples, no learner without examples, no duplicate examples under ``scheme = "sorted"``."""
        CLASSIFIERS.check(spec, data, runs)
        settings = Settings.of(runs[0])
        seen: set[int] = set()
        for run in runs:
            if run.seed in seen:
                continue
            seen.add(run.seed)
            for k in settings.partitions:
                try:
                    assignment(run, data, k, settings)
                except ValueError as err:
                    raise SmoothflipError(f"certify.partitions: {err}") from None
        if settings.attack_checks:
            x = data.x_train.reshape(data.y_train.shape[0], -1)
            sample = np.random.default_rng(0).permutation(data.y_train.shape[0])[:500]
            with user_input(f"certify.attack = {settings.attack!r}"):
                from smoothflip.attacks import label_flip

                label_flip(
                    x[sample],
                    data.y_train[sample],
                    budget=1,
                    strategy=settings.attack,
                    num_classes=data.num_classes,
                    seed=0,
                    **dict(settings.attack_options),
                )

    def auto_pack_size(
        self, runs: Sequence[RunConfig], data: Dataset, *, device: torch.device, base_dir: str
    ) -> int:
        """Runs per pack: as many as one chunk of learners holds (at least one run). A pack's runs
        train their learners in chunks whatever its size; the size sets how often results are stored."""
        settings = Settings.of(runs[0])
        per_run = sum(settings.d * k for k in settings.partitions)
        n = int(data.y_train.shape[0])
        probe = _probe_member(runs[0], max(settings.partitions))
        learners = chunk_size(
            probe, data, learner_schedule(probe, settings, n)[1], device=device, base_dir=base_dir
        )
        return max(1, learners // per_run)

    def estimate(
        self, packs: Sequence[Sequence[RunConfig]], data: Dataset, *, device: torch.device, base_dir: str
    ) -> tuple[int, float | None]:
        """Planned optimizer steps of every chunk (chunks of one ``k`` at a time; no timing probe)."""
        n = int(data.y_train.shape[0])
        steps = 0
        for pack in packs:
            if not pack:
                continue
            settings = Settings.of(pack[0])
            ensembles = len(pack) + sum(settings.checks(r) for r in pack)
            for k in settings.partitions:
                schedule = learner_schedule(_probe_member(pack[0], k), settings, n)[0]
                chunks = -(-ensembles * settings.d * k // MAX_LEARNERS.get(device.type, MAX_LEARNERS["cpu"]))
                steps += schedule.total_steps * chunks
        return steps, None

    def train_pack(self, runs: Sequence[RunConfig], data: Dataset, **options: Any) -> list[RunResult]:
        return train_certified_pack(runs, data, **options)

    def train_reference(self, run: RunConfig, data: Dataset, **options: Any) -> RunResult:
        """One run alone, its learners one at a time (the reference the packs are held to)."""
        return train_certified_pack([run], data, learners_per_chunk=1, **options)

    def skipped(self, run: RunConfig, data: Dataset, reason: str) -> RunResult:
        raise SmoothflipError(f"a certified run cannot be skipped ({reason})")


def _probe_member(run: RunConfig, k: int) -> Member:
    empty = np.zeros(0, dtype=np.int64)
    return Member(run, 0, k, 0, 0, empty, empty, empty, empty)


TRACK = CertifiedTrack()
