"""Distillation studies (``kind = "distillation"``): the ``[distillation]`` table and the arms it generates.

Müller, Kornblith & Hinton (2019) ask whether a label-smoothed teacher makes a worse student. The
study's arms are generated: a teacher per smoothing strength, students distilled from each teacher
at each temperature, and students trained directly with label smoothing (the comparison); each arm
is compared with its hard-label counterpart.
"""

from __future__ import annotations

from typing import Any

from smoothflip.errors import SpecError
from smoothflip.study.spec.schema import ArmSpec, DistillationSpec, StudySpec, frozen
from smoothflip.study.spec.sections import float_list, read_model
from smoothflip.study.tables import Table


def read_distillation(raw: Any) -> DistillationSpec:
    t = Table(raw, "distillation")
    teacher_eps = float_list(t, "teacher_eps", DistillationSpec.teacher_eps, low=-1.0, high=1.0)
    if 0.0 not in teacher_eps:
        raise SpecError(
            f"distillation.teacher_eps = {list(teacher_eps)}: must include 0 (the hard-label teacher "
            "every smoothed teacher is compared with)"
        )
    spec = DistillationSpec(
        teacher_eps=teacher_eps,
        temperatures=float_list(
            t, "temperatures", DistillationSpec.temperatures, low=0.0, high=1e3, low_open=True
        ),
        alpha=t.float("alpha", DistillationSpec.alpha, low=0.0, high=1.0),
        student_eps=float_list(t, "student_eps", tuple(e for e in teacher_eps), low=-1.0, high=1.0),
        teacher_model=read_model(t.raw("teacher_model"), path="distillation.teacher_model")
        if t.has("teacher_model")
        else None,
    )
    t.finish()
    return spec


def distillation_arms(spec: DistillationSpec) -> tuple[ArmSpec, ...]:
    """The arms of a distillation study: teachers, directly smoothed students, distilled students."""
    arms = []
    for eps in spec.teacher_eps:
        arms.append(
            ArmSpec(
                name=f"teacher-ls-{eps:g}",
                loss="smoothed_ce",
                params=frozen(
                    {"eps": float(eps), "convention": "uniform", "prior": "uniform", "z_loss": 0.0}
                ),
                role="teacher",
                model=spec.teacher_model,
            )
        )
    for eps in spec.student_eps:
        arms.append(
            ArmSpec(
                name=f"student-ls-{eps:g}",
                loss="smoothed_ce",
                params=frozen(
                    {"eps": float(eps), "convention": "uniform", "prior": "uniform", "z_loss": 0.0}
                ),
                role="direct",
            )
        )
    for eps in spec.teacher_eps:
        for temperature in spec.temperatures:
            arms.append(
                ArmSpec(
                    name=f"student-T{temperature:g}-from-ls-{eps:g}",
                    loss="distill",
                    params=frozen({"temperature": float(temperature), "alpha": float(spec.alpha)}),
                    role="student",
                    teacher=f"teacher-ls-{eps:g}",
                )
            )
    return tuple(arms)


def read_distillation_study(top: Table) -> tuple[tuple[ArmSpec, ...], DistillationSpec]:
    """A distillation study's generated arms and its ``[distillation]`` table."""
    if top.has("arms"):
        raise SpecError("arms: a distillation study generates its arms from [distillation]; remove [[arms]]")
    spec = read_distillation(top.raw("distillation", {}))
    return distillation_arms(spec), spec


def distillation_baselines(spec: StudySpec) -> dict[str, str]:
    """A teacher's baseline is the hard-label teacher, a directly smoothed student's the student trained
    with ``eps = 0`` (when there is one), and a distilled student's the student of the hard-label
    teacher at the same temperature."""
    names = {a.name for a in spec.arms}
    out = {}
    for arm in spec.arms:
        if arm.role == "teacher":
            base = "teacher-ls-0"
        elif arm.role == "direct":
            base = "student-ls-0"
        else:
            base = f"student-T{arm.params['temperature']:g}-from-ls-0"
        if base in names and base != arm.name:
            out[arm.name] = base
    return out
