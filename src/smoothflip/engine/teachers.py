"""Teachers of distilled students: weights stored beside their runs, read back for the students' packs.

A teacher keeps its weights from the validation-selected epoch as ``.npz`` bytes in the store
(never pickled); before a student's pack trains, its executor reads the teacher back
(:func:`load_teachers`) and the track computes the teacher's targets from it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from smoothflip.study.grid import RunConfig
from smoothflip.study.store import Store

TEACHER_MISSING = "its teacher has no usable weights"


@dataclass(frozen=True)
class TeacherState:
    """A trained teacher: its model config (as stored with its run) and its weights at the selected epoch."""

    model: dict[str, Any]
    state: dict[str, np.ndarray]


def state_to_bytes(state: dict[str, Tensor]) -> bytes:
    """A model's tensors as ``.npz`` bytes (float32; loaded back without pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: t.detach().to(torch.float32).cpu().numpy() for name, t in state.items()})
    return buffer.getvalue()


def state_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def load_teachers(store: Store, runs: Sequence[RunConfig]) -> tuple[dict[str, TeacherState], list[RunConfig]]:
    """The stored teachers of the distilled students in ``runs``, and the students whose teacher has none.

    A teacher that diverged before its first evaluated epoch has no selected weights.
    """
    teachers: dict[str, TeacherState] = {}
    for run in runs:
        if run.teacher_run is None or run.teacher_run in teachers:
            continue
        data = store.artifact(run.teacher_run, "state")
        config = store.run_config(run.teacher_run)
        if data is not None and config is not None:
            teachers[run.teacher_run] = TeacherState(model=config["model"], state=state_from_bytes(data))
    orphans = [r for r in runs if r.teacher_run is not None and r.teacher_run not in teachers]
    return teachers, orphans
