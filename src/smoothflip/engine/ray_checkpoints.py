"""Pack checkpoints for the Ray executor: kept by an actor on the driver's node.

A Ray worker may run on any node, but the study directory lives with the driver. The driver starts
one :class:`CheckpointKeeper` actor, pinned to its own node, that reads and writes the study's
checkpoints with :class:`~smoothflip.engine.checkpoint.FileCheckpoints` (the very files the local
executor uses); a pack task gets a :class:`RemotePackCheckpoint` that sends its state there. A pack
that Ray retries after its worker died, or that a rerun of the study plans again, therefore
resumes where it stopped. The keeper also relays each pack's progress (the fraction done) to the
driver, so the progress bar moves while a long pack trains.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smoothflip.engine.checkpoint import (
    CheckpointWarning,
    FileCheckpoints,
    Interval,
    check_state,
    checkpoint_meta,
    from_bytes,
    pack_key,
    to_bytes,
)


class CheckpointKeeper:
    """The actor's class (wrapped with ``ray.remote`` on use): the study's checkpoint files."""

    def __init__(self, study_directory: str, identity: str, seconds: float) -> None:
        self.files = FileCheckpoints(Path(study_directory), identity, seconds)
        self.fractions: dict[str, float] = {}

    def load(self, run_ids: list[str]) -> bytes | None:
        path = self.files.for_pack(run_ids).path
        return path.read_bytes() if path.exists() else None

    def save(self, run_ids: list[str], data: bytes, meta: dict[str, Any]) -> bool:
        self.files.for_pack(run_ids).write(data, meta)
        return True

    def report(self, key: str, fraction: float) -> None:
        self.fractions[key] = float(fraction)

    def progress(self) -> dict[str, float]:
        return dict(self.fractions)

    def forget(self, key: str) -> None:
        self.fractions.pop(key, None)


def start_keeper(ray: Any, checkpoints: FileCheckpoints) -> Any:
    """The keeper actor for ``checkpoints``, on the driver's node (it writes the driver's files)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    actor = ray.remote(CheckpointKeeper).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    )
    return actor.remote(str(checkpoints.directory.parent), checkpoints.identity, checkpoints.seconds)


class RemotePackCheckpoint:
    """A pack's checkpoint as a Ray task sees it: loaded from and saved through the keeper."""

    def __init__(self, keeper: Any, identity: str, run_ids: Sequence[str], seconds: float) -> None:
        self.keeper = keeper
        self.identity = identity
        self.run_ids = list(run_ids)
        self.key = pack_key(self.run_ids)
        self._interval = Interval(seconds)  # its clock starts in the task, when unpickled there
        self._lost = False  # the keeper died: no more loads, saves or reports

    def _ray(self) -> Any:
        import ray

        return ray

    def _gone(self, err: Exception) -> None:
        """The keeper died: the pack trains on without checkpoints (one warning)."""
        if not self._lost:
            warnings.warn(
                f"checkpoint {self.key} (Ray): the checkpoint keeper is gone ({type(err).__name__}); "
                "this pack trains on without checkpoints",
                CheckpointWarning,
                stacklevel=3,
            )
        self._lost = True

    def load(self) -> dict[str, Any] | None:
        ray = self._ray()
        try:
            data = ray.get(self.keeper.load.remote(self.run_ids))
        except ray.exceptions.RayActorError as err:
            self._gone(err)
            return None
        if data is None:
            return None
        where = f"checkpoint {self.key} (Ray)"
        try:
            state = from_bytes(data)
        except Exception as err:
            warnings.warn(
                f"{where}: damaged checkpoint ({type(err).__name__}); the pack starts over",
                CheckpointWarning,
                stacklevel=2,
            )
            return None
        return check_state(state, identity=self.identity, run_ids=self.run_ids, where=where)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._interval = Interval(self._interval.seconds)

    def due(self) -> bool:
        return self._interval.due()

    def save(self, state: dict[str, Any]) -> None:
        self._interval.saved()
        if self._lost:
            return
        meta = checkpoint_meta(self.identity, self.run_ids, int(state["epoch"]))
        ray = self._ray()
        try:
            ray.get(self.keeper.save.remote(self.run_ids, to_bytes({**state, "meta": meta}), meta))
        except ray.exceptions.RayActorError as err:
            self._gone(err)

    def report(self, fraction: float) -> None:
        """Tell the driver how far the pack is (fire and forget)."""
        if not self._lost:
            self.keeper.report.remote(self.key, fraction)
