"""The grid of runs (arms x label conditions x seeds), stable run ids, seeds per purpose, and packs.

A run's id is a hash of its resolved configuration (data, model and schedule, the dataset's content
fingerprint, the arm, the label condition and the seed), so a rerun of the same study finds the runs
it already finished. Runs that share data, model and schedule share a *pack key* and may train
together as one pack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smoothflip.study.conditions import LabelCondition, study_conditions
from smoothflip.study.ids import canonical_json, derive_seed, short_hash
from smoothflip.study.spec.schema import ArmSpec, StudySpec, as_dict

__all__ = [
    "RUN_FORMAT",
    "RunConfig",
    "arm_dict",
    "build_grid",
    "canonical_json",
    "derive_seed",
    "make_packs",
    "shared_config",
    "short_hash",
]

RUN_FORMAT = 1
"""Bumped when a change to the engine changes what a run computes (so old ids no longer match)."""


def arm_dict(arm: ArmSpec) -> dict[str, Any]:
    out = {
        "name": arm.name,
        "loss": arm.loss,
        "params": dict(arm.params),
        "disturb_alpha": arm.disturb_alpha,
        "flip_rate": arm.flip_rate,
        "warmup_epochs": arm.warmup_epochs,
    }
    if arm.role != "standard":
        out["role"] = arm.role
    if arm.teacher is not None:
        out["teacher"] = arm.teacher
    if arm.defense is not None:
        out["defense"] = {"name": arm.defense, **dict(arm.defense_options)}
    return out


@dataclass(frozen=True)
class RunConfig:
    """One run of the grid.

    Attributes:
        arm: the technique.
        condition: the label condition.
        seed: the run's seed (drives split, noise, init, data order and flipping).
        shared: the part every member of a pack shares: data, model, train, dataset fingerprint.
    """

    arm: ArmSpec
    condition: LabelCondition
    seed: int
    shared: dict[str, Any] = field(hash=False, compare=False)
    probe: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    teacher_run: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": RUN_FORMAT,
            **self.shared,
            "arm": arm_dict(self.arm),
            "condition": self.condition.to_dict(),
            "seed": self.seed,
        }
        if self.probe is not None:
            out["probe"] = self.probe
        if self.teacher_run is not None:
            out["teacher_run"] = self.teacher_run
        return out

    @property
    def run_id(self) -> str:
        return short_hash(self.to_dict())

    @property
    def pack_key(self) -> str:
        return short_hash(self.shared)

    def seed_for(self, purpose: str) -> int:
        """Seeds are shared across arms (paired comparisons), except for the arm's own flipping."""
        if purpose == "noise":
            return derive_seed(self.seed, "noise", self.condition.to_dict())
        if purpose == "flip":
            return derive_seed(self.seed, "flip", self.arm.name)
        if purpose == "defense":
            return derive_seed(self.seed, "defense", self.condition.to_dict())
        if purpose in ("split", "init", "order", "probe", "augment"):
            return derive_seed(self.seed, purpose)
        raise ValueError(f"unknown seed purpose {purpose!r}")


def shared_config(spec: StudySpec, dataset_fingerprint: str, arm: ArmSpec | None = None) -> dict[str, Any]:
    """What runs of a study share (and what decides which runs may train as one pack).

    An arm may bring its own model (a distillation study's teachers); otherwise the study's model.
    A certified study adds its ``[certify]`` table and the first seed (its runs check certificates
    against attacks).
    """
    study = spec.to_dict()
    model = as_dict(arm.model) if arm is not None and arm.model is not None else study["model"]
    out = {
        "data": study["data"],
        "model": model,
        "train": study["train"],
        "dataset_fingerprint": dataset_fingerprint,
    }
    if spec.certify is not None:  # a certified study: its ensembles, and the seed its attack checks use
        out["certify"] = {**study["certify"], "check_seed": spec.seeds[0]}
    return out


def build_grid(spec: StudySpec, dataset_fingerprint: str) -> list[RunConfig]:
    """All runs of the study, ordered seed-major so that early packs complete whole seeds.

    A distilled student's config names its teacher's run (same condition and seed), so a change to
    the teacher changes the student's id too.
    """
    conditions = study_conditions(spec)
    probed = set(spec.seeds[: spec.probes.seeds])
    probe = as_dict(spec.probes)
    probe.pop("seeds")
    shared = {arm.name: shared_config(spec, dataset_fingerprint, arm) for arm in spec.arms}
    runs: list[RunConfig] = []
    for seed in spec.seeds:
        for condition in conditions:
            by_arm: dict[str, RunConfig] = {}
            for arm in sorted(spec.arms, key=lambda a: a.stage):
                teacher = by_arm[arm.teacher].run_id if arm.teacher is not None else None
                run = RunConfig(
                    arm=arm,
                    condition=condition,
                    seed=seed,
                    shared=shared[arm.name],
                    probe=probe if seed in probed else None,
                    teacher_run=teacher,
                )
                by_arm[arm.name] = run
            runs.extend(by_arm[arm.name] for arm in spec.arms)
    return runs


def make_packs(runs: list[RunConfig], pack_size: int) -> list[list[RunConfig]]:
    """Split runs into packs of at most ``pack_size`` members that share a pack key, keeping order.

    Stage-1 packs (everything but distilled students) come before stage-2 packs (the students).
    """
    if pack_size < 1:
        raise ValueError(f"pack_size must be >= 1, got {pack_size}")
    groups: dict[tuple[int, str], list[RunConfig]] = {}
    for run in runs:
        groups.setdefault((run.arm.stage, run.pack_key), []).append(run)
    packs = []
    for _, members in sorted(groups.items(), key=lambda item: item[0][0]):  # stage 1 before stage 2
        count = -(-len(members) // pack_size)
        base, extra = divmod(len(members), count)  # balanced: 40 runs, at most 15 each -> 14, 13, 13
        start = 0
        for i in range(count):
            size = base + (1 if i < extra else 0)
            packs.append(members[start : start + size])
            start += size
    return packs
