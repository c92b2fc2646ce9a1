"""Planning a study: resolve it against its data, bind the store, and cut the runs still to train into
packs. Both executors (:mod:`.local`, :mod:`.ray_executor`) start from a :class:`StudyPlan` and use
:func:`pack_job` for each pack; they never import each other.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from smoothflip.engine.checkpoint import DEFAULT_SECONDS, FileCheckpoints, FilePackCheckpoint, resumed_packs
from smoothflip.engine.teachers import TEACHER_MISSING, load_teachers
from smoothflip.engine.tracks import Track, track_for
from smoothflip.errors import SmoothflipError
from smoothflip.study.grid import RunConfig, build_grid, make_packs
from smoothflip.study.growth import growth_problem, merged_seeds
from smoothflip.study.ids import short_hash
from smoothflip.study.spec.schema import StudySpec
from smoothflip.study.spec.toml import dumps_study
from smoothflip.study.store import RunResult, Store

MAX_HOURS = 24.0
"""The ceiling on a study's estimated training time: a longer study needs ``--yes`` (``allow_long``)."""

MAX_UNTIMED_STEPS = 10**8
"""The ceiling on planned optimizer steps where no time can be estimated (language-model packs)."""


@dataclass(frozen=True)
class Estimate:
    """What is left to train: optimizer steps over all packs, and the estimated seconds (or None)."""

    steps: int
    seconds: float | None

    def describe(self) -> str:
        text = f"{self.steps:,} optimizer steps"
        return text + (f", estimated {format_duration(self.seconds)}" if self.seconds is not None else "")

    def too_long(self) -> bool:
        if self.seconds is not None:
            return self.seconds > MAX_HOURS * 3600
        return self.steps > MAX_UNTIMED_STEPS


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 20 s"``, ``"5 h 12 min"``, ``"1.2e+07 days"``."""
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else "under a second"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    if seconds < 86400 * 3:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    days = seconds / 86400
    return f"{days:,.0f} days" if days < 1e6 else f"{days:.1e} days"


@dataclass(frozen=True)
class StudyPlan:
    """A study resolved against its data: every run, which are done, and the packs still to train.

    Attributes:
        spec: the study.
        dataset: its data (a :class:`~smoothflip.data.Dataset`, a corpus ...), as its track loads it.
        runs: every run of the grid.
        done: ids of the runs already stored.
        packs: the runs still to train, cut into packs (stage by stage).
        pack_size: the largest pack.
        track: the study kind's track.
        checkpoints: where packs save their state between epochs (None: no checkpoints).
        estimate: steps and estimated time of the packs still to train (None: the track cannot tell).
    """

    spec: StudySpec
    dataset: Any
    runs: list[RunConfig]
    done: set[str]
    packs: list[list[RunConfig]]
    pack_size: int
    track: Track = field(repr=False, default=None)  # type: ignore[assignment]
    estimate: Estimate | None = None
    checkpoints: FileCheckpoints | None = field(repr=False, default=None)

    def checkpoint(self, runs: Sequence[RunConfig]) -> FilePackCheckpoint | None:
        """The checkpoint of the pack of ``runs`` (None when checkpoints are off)."""
        if self.checkpoints is None or not self.checkpoints.enabled or not runs:
            return None
        return self.checkpoints.for_pack([r.run_id for r in runs])

    def discard_checkpoint(self, runs: Sequence[RunConfig]) -> None:
        """Delete the checkpoint of a pack once its results are stored."""
        if self.checkpoints is not None and runs:
            self.checkpoints.discard([r.run_id for r in runs])

    @property
    def remaining(self) -> int:
        return sum(len(p) for p in self.packs)


@dataclass(frozen=True)
class Progress:
    """What the progress callback is told: runs finished (fractional while a pack trains) of total."""

    done: float
    total: int
    packs_done: int
    packs_total: int


def resolve_study(spec: StudySpec) -> tuple[Any, list[RunConfig]]:
    """Load the study's data (through its kind's track) and build its grid.

    Fails before any training, with a one-line :class:`~smoothflip.errors.SmoothflipError`, if the
    model, a loss or a label condition cannot be built for this data.
    """
    track = track_for(spec)
    data = track.load(spec)
    runs = build_grid(spec, track.fingerprint(data))
    track.check(spec, data, runs)
    return data, runs


def study_identity(spec: StudySpec, data: Any) -> str:
    """A hash of the resolved study and its data's content (what a study directory is bound to)."""
    return short_hash({"study": spec.to_dict(), "dataset": track_for(spec).fingerprint(data)}, 32)


def describe_data(spec: StudySpec, data: Any) -> str:
    """One line about the study's data, for the progress display."""
    return track_for(spec).describe(data)


def recorded_study(spec: StudySpec, store: Store) -> StudySpec:
    """The study a directory records after this run: ``spec`` with the stored seeds kept (a study
    file with fewer seeds than the directory holds trains its own and loses none)."""
    stored = store.get_meta("study")
    if not stored:
        return spec
    try:
        old = json.loads(stored)
    except ValueError:
        return spec
    seeds = merged_seeds(old.get("seeds") if isinstance(old, dict) else None, spec.seeds)
    return spec if seeds == spec.seeds else dataclasses.replace(spec, seeds=seeds)


def growth_check(spec: StudySpec, dataset: Any) -> Callable[[str, str], str | None]:
    """What :meth:`Store.claim` asks when a directory holds another identity: may ``spec`` grow it?"""
    fingerprint = track_for(spec).fingerprint(dataset)

    def accept(stored_identity: str, stored_json: str) -> str | None:
        try:
            old = json.loads(stored_json)
        except ValueError:
            return "its recorded study (meta 'study') cannot be read"
        if not isinstance(old, dict):
            return "its recorded study (meta 'study') cannot be read"
        problem = growth_problem(old, spec.to_dict())
        if problem is not None:
            return problem
        if short_hash({"study": old, "dataset": fingerprint}, 32) != stored_identity:
            return (
                f"the content of its data (data.source = {spec.data.source!r}) changed since its runs trained"
            )
        return None

    return accept


def plan_study(
    spec: StudySpec,
    dataset: Any,
    runs: list[RunConfig],
    store: Store,
    *,
    device: str = "cpu",
    pack_size: int | None = None,
    checkpoint_seconds: float = DEFAULT_SECONDS,
    allow_long: bool = False,
    select: Callable[[RunConfig], bool] | None = None,
) -> StudyPlan:
    """Bind the store to the study (refusing another study) and plan the packs still to train.

    A directory that holds an earlier version of the study accepts ``spec`` when it only grows it
    (:mod:`smoothflip.study.growth`); the stored runs are reused and only new ones train.
    ``select`` (the until-settled loop) trains only the runs it returns True for, and the teachers
    those runs distil from.

    Everything that can fail on the study itself (the pack-size probe, the time estimate included)
    runs before the store is claimed, so a bad study never binds its output directory. A pack that
    was interrupted after a checkpoint is planned again with the same members, so it resumes where
    it stopped; ``checkpoint_seconds`` is the least interval between a pack's checkpoints (0: every
    epoch, negative: none).

    Raises:
        SmoothflipError: the packs still to train are estimated to take longer than :data:`MAX_HOURS`
            (or, untimed, more than :data:`MAX_UNTIMED_STEPS` steps) and ``allow_long`` is False.
    """
    if pack_size is not None and pack_size < 1:
        raise SmoothflipError(f"pack_size must be >= 1, got {pack_size}")
    track = track_for(spec)
    if pack_size is None:
        pack_size = track.auto_pack_size(runs, dataset, device=torch.device(device), base_dir=spec.base_dir)
    if select is not None:  # a selected distilled student brings its teacher's run along
        chosen = {r.run_id for r in runs if select(r)}
        teachers = {r.teacher_run for r in runs if r.run_id in chosen and r.teacher_run}
        runs = [r for r in runs if r.run_id in chosen or r.run_id in teachers]
    done = store.finished_ids() & {r.run_id for r in runs}
    packs = make_packs([r for r in runs if r.run_id not in done], pack_size)
    recorded = recorded_study(spec, store)
    identity = study_identity(recorded, dataset)
    estimate = None
    if store.get_meta("identity") != identity:  # a rerun of the study its directory holds: estimated then
        estimate = _estimate(track, packs, dataset, device=torch.device(device), base_dir=spec.base_dir)
    if estimate is not None and estimate.too_long() and not allow_long:
        limit = f"{MAX_HOURS:g} h" if estimate.seconds is not None else f"{MAX_UNTIMED_STEPS:,} steps"
        raise SmoothflipError(
            f"{spec.name}: {len(runs) - len(done)} runs to train plan {estimate.describe()}, beyond the "
            f"ceiling of {limit}; check [train] epochs/steps, or pass --yes to train anyway"
        )
    store.claim(
        name=recorded.name,
        identity=identity,
        study_json=recorded.to_json(),
        study_toml=dumps_study(recorded),
        accept=growth_check(recorded, dataset),
    )
    checkpoints = None
    if not store.readonly:
        checkpoints = FileCheckpoints(store.directory, identity, checkpoint_seconds)
        checkpoints.clear_stale(done)
        packs = resumed_packs(packs, checkpoints.pending(), lambda rest: make_packs(rest, pack_size))
    return StudyPlan(spec, dataset, runs, done, packs, pack_size, track, estimate, checkpoints)


def _estimate(
    track: Track, packs: list[list[RunConfig]], dataset: Any, *, device: torch.device, base_dir: str
) -> Estimate | None:
    found = track.estimate(packs, dataset, device=device, base_dir=base_dir) if packs else (0, 0.0)
    return None if found is None else Estimate(int(found[0]), found[1])


@dataclass(frozen=True)
class PackJob:
    """One pack as an executor runs it: the runs to train, their teachers, and the runs that cannot
    train (their results already made)."""

    pack: list[RunConfig]
    trainable: list[RunConfig]
    teachers: dict[str, Any]
    skipped: list[RunResult]


def pack_job(study: StudyPlan, store: Store, pack: Sequence[RunConfig]) -> PackJob:
    """Read the teachers of a pack's distilled students from the store; a student whose teacher has no
    usable weights is recorded as skipped instead of trained."""
    teachers, orphans = load_teachers(store, pack)
    skipped = [study.track.skipped(r, study.dataset, TEACHER_MISSING) for r in orphans]
    trainable = [r for r in pack if r not in orphans]
    return PackJob(list(pack), trainable, teachers, skipped)


def check_device(device: str) -> None:
    """Refuse a device this machine cannot train on (one line naming it)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise SmoothflipError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise SmoothflipError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SmoothflipError(
            f"device {device!r} asked for, but PyTorch sees no CUDA GPU here (use --device cpu)"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SmoothflipError(
            f"device {device!r} asked for, but PyTorch sees {torch.cuda.device_count()} CUDA GPU(s) "
            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )
