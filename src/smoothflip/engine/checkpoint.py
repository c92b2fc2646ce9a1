"""Checkpoints inside a pack: a pack's complete training state, saved atomically between epochs.

A pack is stored only when it ends; on a machine that is preempted or killed, a long pack would lose
all its work. A pack track therefore saves its complete state (stacked parameters and buffers, the
optimizer and learning-rate schedule, every random generator, the trackers' curves and selected
epochs, the stateful losses, which members diverged) at the end of an epoch, at most every
``seconds`` seconds, and a rerun continues the pack from its last checkpoint; the final results
are bitwise those of an uninterrupted run on the CPU.

Layout: ``<study dir>/checkpoints/<pack key>.pt`` (``torch.save``, read back with
``weights_only=True``: plain tensors, numbers, strings and containers, never arbitrary objects),
and beside it ``<pack key>.json``, a small manifest (study identity, run ids, epoch) that planning
reads to cut the same packs again. Both are written to a temporary file, flushed and renamed, so a
kill leaves either the old or the new checkpoint, never a torn one. A checkpoint that is damaged
or belongs to another study or pack is ignored with a one-line warning and the pack starts over;
checkpoints are deleted once their pack is stored.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from smoothflip.study.ids import short_hash

FORMAT = 1
"""The checkpoint format; a checkpoint of another format is ignored (and the pack starts over)."""

DEFAULT_SECONDS = 60.0
"""Default least interval between two checkpoints of a pack (``--checkpoint-seconds``)."""

DIRECTORY = "checkpoints"


class CheckpointWarning(UserWarning):
    """A checkpoint was ignored (damaged, or of another study or pack); the pack starts over."""


def checkpoint_meta(identity: str, run_ids: Sequence[str], epoch: int) -> dict[str, Any]:
    """What a checkpoint says of itself (stored in it and in its manifest)."""
    return {"format": FORMAT, "identity": identity, "run_ids": list(run_ids), "epoch": int(epoch)}


def pack_key(run_ids: Sequence[str]) -> str:
    """The file name stem of a pack's checkpoint: a hash of its members' run ids, in order."""
    return short_hash(list(run_ids), 24)


class PackCheckpoint(Protocol):
    """What a pack track sees: its last saved state, and a place to save the next."""

    def load(self) -> dict[str, Any] | None:
        """The last saved state of this pack, or None (none saved, or ignored with a warning)."""

    def due(self) -> bool:
        """Whether a checkpoint should be saved now (at the end of an epoch)."""

    def save(self, state: dict[str, Any]) -> None:
        """Save ``state`` atomically (replacing the previous checkpoint)."""


class Interval:
    """The rate limit: ``seconds`` > 0 at most every that many seconds, 0 every epoch, < 0 never."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self._last = time.monotonic()

    def due(self) -> bool:
        if self.seconds < 0:
            return False
        return self.seconds == 0 or time.monotonic() - self._last >= self.seconds

    def saved(self) -> None:
        self._last = time.monotonic()


def to_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes) -> Any:
    """Unpack a checkpoint with ``weights_only=True`` (never arbitrary objects)."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def check_state(state: Any, *, identity: str, run_ids: Sequence[str], where: str) -> dict[str, Any] | None:
    """``state`` if it is a checkpoint of this study's pack ``run_ids``; else None with a warning."""
    meta = state.get("meta") if isinstance(state, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        warnings.warn(
            f"{where}: not a smoothflip pack checkpoint of format {FORMAT}; the pack starts over",
            CheckpointWarning,
            stacklevel=3,
        )
        return None
    if meta.get("identity") != identity or list(meta.get("run_ids", ())) != list(run_ids):
        warnings.warn(
            f"{where}: a checkpoint of another study or pack; the pack starts over",
            CheckpointWarning,
            stacklevel=3,
        )
        return None
    return state


class FilePackCheckpoint:
    """One pack's checkpoint in a study directory's ``checkpoints/`` folder."""

    def __init__(self, directory: Path, identity: str, run_ids: Sequence[str], seconds: float) -> None:
        self.directory = directory
        self.identity = identity
        self.run_ids = list(run_ids)
        self.key = pack_key(self.run_ids)
        self.path = directory / f"{self.key}.pt"
        self.manifest = directory / f"{self.key}.json"
        self._interval = Interval(seconds)
        self.saves = 0

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = from_bytes(self.path.read_bytes())
        except Exception as err:
            warnings.warn(
                f"{self.path}: damaged checkpoint ({type(err).__name__}); the pack starts over",
                CheckpointWarning,
                stacklevel=2,
            )
            return None
        return check_state(state, identity=self.identity, run_ids=self.run_ids, where=str(self.path))

    def due(self) -> bool:
        return self._interval.due()

    def save(self, state: dict[str, Any]) -> None:
        meta = checkpoint_meta(self.identity, self.run_ids, int(state.get("epoch", 0)))
        self.write(to_bytes({**state, "meta": meta}), meta)

    def write(self, data: bytes, meta: dict[str, Any]) -> None:
        """Write a packed checkpoint and then its manifest, each atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.path, data)
        _write_atomic(self.manifest, json.dumps(meta).encode())
        _sync_directory(self.directory)
        self._interval.saved()
        self.saves += 1

    def discard(self) -> None:
        for path in (self.path, self.manifest):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.directory.rmdir()  # only when empty


class FileCheckpoints:
    """The checkpoints of one study directory (``<directory>/checkpoints``).

    Args:
        directory: the study directory.
        identity: the study's identity (a checkpoint of another study is ignored).
        seconds: least interval between two checkpoints of a pack (0: every epoch; < 0: none).
    """

    def __init__(self, directory: str | Path, identity: str, seconds: float = DEFAULT_SECONDS) -> None:
        self.directory = Path(directory) / DIRECTORY
        self.identity = identity
        self.seconds = float(seconds)

    @property
    def enabled(self) -> bool:
        return self.seconds >= 0

    def for_pack(self, run_ids: Sequence[str]) -> FilePackCheckpoint:
        return FilePackCheckpoint(self.directory, self.identity, run_ids, self.seconds)

    def pending(self) -> list[list[str]]:
        """The run ids of every pack with a checkpoint of this study (from the manifests)."""
        if not self.directory.is_dir():
            return []
        out = []
        for manifest in sorted(self.directory.glob("*.json")):
            try:
                meta = json.loads(manifest.read_text())
                run_ids = [str(r) for r in meta["run_ids"]]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged manifest: its pack is planned afresh (and its .pt ignored)
            ours = meta.get("identity") == self.identity and meta.get("format") == FORMAT
            if ours and run_ids and manifest.with_suffix(".pt").exists():
                out.append(run_ids)
        return out

    def discard(self, run_ids: Sequence[str]) -> None:
        self.for_pack(run_ids).discard()

    def clear_stale(self, finished: Iterable[str]) -> None:
        """Delete checkpoints all of whose runs are stored (a kill between store and delete)."""
        done = set(finished)
        for run_ids in self.pending():
            if set(run_ids) <= done:
                self.discard(run_ids)


def resumed_packs(
    packs: list[list[Any]], pending: Sequence[Sequence[str]], cut: Callable[[list[Any]], list[list[Any]]]
) -> list[list[Any]]:
    """Re-plan ``packs`` so that every pack with a checkpoint is planned exactly as it was.

    ``pending`` are the run ids of checkpointed packs; a checkpointed pack all of whose runs are
    still to train becomes a pack again (same members, same order); ``cut`` packs the rest. Packs
    keep their stage order (a pack's stage is its first run's ``arm.stage``).
    """
    todo = [r for pack in packs for r in pack]
    by_id = {r.run_id: r for r in todo}
    taken: set[str] = set()
    kept: list[list[Any]] = []
    for run_ids in pending:
        if all(i in by_id and i not in taken for i in run_ids):
            kept.append([by_id[i] for i in run_ids])
            taken.update(run_ids)
    if not kept:
        return packs
    rest = cut([r for r in todo if r.run_id not in taken])
    return sorted(kept + rest, key=lambda p: p[0].arm.stage)  # stable: resumed packs first in a stage


# --------------------------------------------------------------------------- random generators


def numpy_states(generators: Sequence[np.random.Generator]) -> list[dict[str, Any]]:
    return [g.bit_generator.state for g in generators]


def load_numpy_states(generators: Sequence[np.random.Generator], states: Sequence[dict[str, Any]]) -> None:
    for g, s in zip(generators, states, strict=True):
        g.bit_generator.state = s


def torch_states(generators: Sequence[torch.Generator | None]) -> list[torch.Tensor | None]:
    return [None if g is None else g.get_state() for g in generators]


def load_torch_states(
    generators: Sequence[torch.Generator | None], states: Sequence[torch.Tensor | None]
) -> None:
    for g, s in zip(generators, states, strict=True):
        if g is not None:
            g.set_state(s)


class Checkpointed:
    """A mixin for trackers: ``state_dict()`` / ``load_state_dict()`` over the attributes named in
    ``CHECKPOINTED`` (curves, selection, divergence: what a run has recorded so far)."""

    CHECKPOINTED: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.CHECKPOINTED}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.CHECKPOINTED:
            setattr(self, name, state[name])
