"""``run_study``: what ``smoothflip run`` and ``smoothflip demo`` call.

It resolves the study against its data (through the kind's track), opens the store, plans the packs
still to train and hands them to an executor from :data:`EXECUTORS` (``local``: packs train here one
after another; ``ray``: packs are Ray tasks on a cluster). Rerunning the same call resumes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from smoothflip.engine.checkpoint import DEFAULT_SECONDS
from smoothflip.engine.planning import Progress, StudyPlan, plan_study, resolve_study
from smoothflip.errors import SmoothflipError
from smoothflip.study.lock import study_lock
from smoothflip.study.spec.schema import StudySpec
from smoothflip.study.store import RunResult, Store

EXECUTORS: Mapping[str, str] = {
    "local": "smoothflip.engine.local:EXECUTOR",
    "ray": "smoothflip.engine.ray_executor:EXECUTOR",
}
"""Executor name -> ``"module:attribute"`` of its entry (imported only when used: Ray is optional)."""


def get_executor(name: str) -> Any:
    if name not in EXECUTORS:
        raise SmoothflipError(f"executor must be one of {', '.join(map(repr, EXECUTORS))}, got {name!r}")
    module, _, attribute = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def run_study(
    spec: StudySpec,
    out_dir: str | Path,
    *,
    device: str = "cpu",
    pack_size: int | None = None,
    executor: str = "local",
    address: str | None = None,
    cpus_per_pack: float | None = None,
    gpus_per_pack: float | None = None,
    workers: int = 1,
    checkpoint_seconds: float = DEFAULT_SECONDS,
    allow_long: bool = False,
    progress: Callable[[Progress], None] | None = None,
    on_plan: Callable[[StudyPlan], None] | None = None,
    select: Callable[[Any], bool] | None = None,
    on_stored: Callable[[list[RunResult]], None] | None = None,
) -> Path:
    """Run (or resume) a study into ``out_dir``; returns the directory.

    Args:
        spec: the validated study.
        out_dir: the study directory (created; refused if it holds another study, or while another
            process trains into it: see :mod:`smoothflip.study.lock`).
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:1"`` etc.). With ``executor="ray"``, ``"cuda"`` means
            one GPU per pack unless ``gpus_per_pack`` says otherwise.
        pack_size: members per pack; None chooses the largest that fits memory (with ``"ray"``: the
            memory of this machine, the driver).
        executor: ``"local"`` (packs train here, one after another) or ``"ray"`` (packs are Ray tasks
            on a cluster; see :mod:`smoothflip.engine.ray_executor`; needs ``smoothflip[ray]``).
        address: ``"ray"`` only: the cluster (``"HEAD:6379"``); None: ``RAY_ADDRESS``, a cluster
            started on this machine by ``ray start``, or a new local one.
        cpus_per_pack: ``"ray"`` only: CPUs reserved per pack (default 1; torch uses that many threads).
        gpus_per_pack: ``"ray"`` only: GPUs reserved per pack, ``0 <= G <= 1`` (0.25: four packs share
            a GPU); default 0, or 1 with ``device="cuda"``.
        workers: ``"local"`` only: packs trained at once, each in a worker process (default 1: one
            after another in this process).
        checkpoint_seconds: the least interval between two checkpoints of a pack (saved at the end
            of an epoch; 0: every epoch; negative: none). A rerun after a kill resumes an
            interrupted pack from its last checkpoint (see :mod:`smoothflip.engine.checkpoint`).
        allow_long: train even when the packs are estimated to take longer than the ceiling
            (:data:`~smoothflip.engine.planning.MAX_HOURS`; ``smoothflip run --yes``).
        progress: called after every epoch of every pack.
        on_plan: called once with the plan before training starts.
        select: train only the runs of the grid it returns True for (the until-settled loop).
        on_stored: called in this process (the one that writes the store) with each pack's finished
            runs right after they are committed (the experiment trackers of :mod:`smoothflip.tracking`).
    """
    runner = get_executor(executor)
    if pack_size is not None and pack_size < 1:
        raise SmoothflipError(f"pack_size must be >= 1, got {pack_size}")
    extra = {"workers": workers} if workers != 1 else {}
    options = runner.options(
        device=device, address=address, cpus_per_pack=cpus_per_pack, gpus_per_pack=gpus_per_pack, **extra
    )
    dataset, runs = resolve_study(spec)
    if pack_size is None:
        pack_size = runner.pack_size(runs, dataset, options=options, spec=spec)
    with study_lock(out_dir), Store.open(out_dir) as store:  # one writer per study directory
        store.on_write = on_stored
        study = plan_study(
            spec,
            dataset,
            runs,
            store,
            device=runner.device(options),
            pack_size=pack_size,
            checkpoint_seconds=checkpoint_seconds,
            allow_long=allow_long,
            select=select,
        )
        if on_plan is not None:
            on_plan(study)
        runner.run(study, store, options=options, progress=progress)
    return Path(out_dir)
