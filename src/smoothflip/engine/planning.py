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

from smoothflip.engine.teachers import TEACHER_MISSING, load_teachers
from smoothflip.engine.tracks import Track, track_for
from smoothflip.errors import SmoothflipError
from smoothflip.study.grid import RunConfig, build_grid, make_packs
from smoothflip.study.growth import growth_problem, merged_seeds
from smoothflip.study.ids import short_hash
from smoothflip.study.spec.schema import StudySpec
from smoothflip.study.spec.toml import dumps_study
from smoothflip.study.store import RunResult, Store


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
    """

    spec: StudySpec
    dataset: Any
    runs: list[RunConfig]
    done: set[str]
    packs: list[list[RunConfig]]
    pack_size: int
    track: Track = field(repr=False, default=None)  # type: ignore[assignment]

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
    select: Callable[[RunConfig], bool] | None = None,
) -> StudyPlan:
    """Bind the store to the study (refusing another study) and plan the packs still to train.

    A directory that holds an earlier version of the study accepts ``spec`` when it only grows it
    (:mod:`smoothflip.study.growth`); the stored runs are reused and only new ones train.
    ``select`` (the until-settled loop) trains only the runs it returns True for, and the teachers
    those runs distil from.

    Everything that can fail on the study itself (the pack-size probe included) runs before the
    store is claimed, so a bad study never binds its output directory.
    """
    if pack_size is not None and pack_size < 1:
        raise SmoothflipError(f"pack_size must be >= 1, got {pack_size}")
    track = track_for(spec)
    if pack_size is None:
        pack_size = track.auto_pack_size(runs, dataset, device=torch.device(device), base_dir=spec.base_dir)
    recorded = recorded_study(spec, store)
    store.claim(
        name=recorded.name,
        identity=study_identity(recorded, dataset),
        study_json=recorded.to_json(),
        study_toml=dumps_study(recorded),
        accept=growth_check(recorded, dataset),
    )
    if select is not None:  # a selected distilled student brings its teacher's run along
        chosen = {r.run_id for r in runs if select(r)}
        teachers = {r.teacher_run for r in runs if r.run_id in chosen and r.teacher_run}
        runs = [r for r in runs if r.run_id in chosen or r.run_id in teachers]
    done = store.finished_ids() & {r.run_id for r in runs}
    todo = [r for r in runs if r.run_id not in done]
    return StudyPlan(spec, dataset, runs, done, make_packs(todo, pack_size), pack_size, track)


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
