"""The ``local`` executor: a plan's packs trained on this machine (CPU or CUDA).

By default the packs train one after another in this process; with ``workers > 1`` up to that many
packs train at once, each in a worker process (spawned, with ``cpu_count // workers`` torch threads
each) — what a study of the user-trainer track, whose packs are single runs, wants on a machine with
cores or GPUs to spare. Either way only this process writes the store: every finished pack is
committed at once, so a killed study loses at most the packs in flight, and rerunning the same
command resumes where it stopped. Packs come in stage order (teachers before the students distilled
from them), and a stage's packs are submitted only when every earlier stage is stored, so every
student's teacher is in the store by the time its pack starts. Worker processes end with this one
(on Linux they receive SIGKILL when their parent dies). The data and a Python study's callables reach
the workers through a queue, not as the processes' start arguments: a worker that dies while it starts
(a script without ``if __name__ == "__main__":`` is imported again by every spawned worker) would
leave this process blocked forever writing start arguments larger than a pipe holds; through the
queue its death is a one-line error.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from smoothflip._memory import pack_callables, references
from smoothflip.engine.planning import PackJob, Progress, StudyPlan, check_device, pack_job
from smoothflip.errors import SmoothflipError
from smoothflip.study.store import Store


def run_local(
    study: StudyPlan,
    store: Store,
    *,
    device: str = "cpu",
    progress: Callable[[Progress], None] | None = None,
    workers: int = 1,
) -> None:
    """Train the plan's packs here, storing each as it finishes (``workers`` packs at once)."""
    if workers > 1 and len(study.packs) > 1:
        _run_workers(study, store, device=device, progress=progress, workers=workers)
        return
    total = len(study.runs)
    done = float(len(study.done))
    for index, pack in enumerate(study.packs):

        def report(fraction: float, _size: int = len(pack), _base: float = done, _i: int = index) -> None:
            if progress is not None:
                progress(Progress(_base + fraction * _size, total, _i, len(study.packs)))

        job = pack_job(study, store, pack)
        results = []
        if job.trainable:
            results = study.track.train_pack(
                job.trainable,
                study.dataset,
                device=device,
                base_dir=study.spec.base_dir,
                progress=report,
                teachers=job.teachers or None,
                checkpoint=study.checkpoint(job.trainable),
            )
        store.write_pack(results + job.skipped)
        study.discard_checkpoint(job.trainable)
        done += len(pack)
        if progress is not None:
            progress(Progress(done, total, index + 1, len(study.packs)))


# --------------------------------------------------------------------------- worker processes

_WORKER: dict[str, Any] = {}


WORKER_DIED = (
    "a worker process ended abruptly (killed, out of memory, or a script that runs a study with "
    'workers > 1 outside `if __name__ == "__main__":`, which every spawned worker imports again); '
    "the runs stored so far are kept: fix it and run again to resume"
)


def _init_worker(start: Any, threads: int) -> None:
    """A worker's start: its share of what ``start`` (a queue) holds — the dataset, the track's kind
    and a Python study's callables."""
    import torch

    from smoothflip._memory import install
    from smoothflip.engine.tracks import track_for

    _die_with_parent()
    torch.set_num_threads(threads)
    dataset, kind, callables = pickle.loads(start.get())  # what this study's process pickled
    install(callables)  # a study made in Python: its model or training function, by value
    _WORKER.update(dataset=dataset, track=track_for(kind))


def _die_with_parent() -> None:
    """Linux: receive SIGKILL when the parent process dies (a ``kill -9`` of ``smoothflip run``)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _pack_task(job: PackJob, device: str, base_dir: str, checkpoint: Any) -> list[Any]:
    results = _WORKER["track"].train_pack(
        job.trainable,
        _WORKER["dataset"],
        device=device,
        base_dir=base_dir,
        teachers=job.teachers or None,
        checkpoint=checkpoint,
    )
    return list(results) + job.skipped


def _run_workers(
    study: StudyPlan,
    store: Store,
    *,
    device: str,
    progress: Callable[[Progress], None] | None,
    workers: int,
) -> None:
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    # pickled here (an error shows here, and once), sent by the queue's thread (see the docstring)
    payload = pickle.dumps(
        (study.dataset, study.spec.kind, pack_callables(references(study.spec.to_dict()))),
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    start = context.Queue()
    for _ in range(workers):
        start.put(payload)
    try:
        _train_in_workers(study, store, progress, workers, device, context, start, threads)
    except BrokenProcessPool:
        raise SmoothflipError(WORKER_DIED) from None
    finally:
        start.cancel_join_thread()  # copies no worker took must not hold this process at exit
        start.close()


def _train_in_workers(
    study: StudyPlan,
    store: Store,
    progress: Callable[[Progress], None] | None,
    workers: int,
    device: str,
    context: Any,
    start: Any,
    threads: int,
) -> None:
    total, done, packs_done = len(study.runs), len(study.done), 0
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(start, threads)
    ) as pool:
        try:
            for _stage, packs in itertools.groupby(study.packs, key=lambda p: p[0].arm.stage):
                queue = list(packs)
                queue.reverse()
                in_flight: dict[Future, PackJob] = {}
                while queue or in_flight:
                    while queue and len(in_flight) < 2 * workers:
                        pack = queue.pop()
                        job = pack_job(study, store, pack)
                        if not job.trainable:
                            store.write_pack(job.skipped)
                            done, packs_done = done + len(pack), packs_done + 1
                            continue
                        future = pool.submit(
                            _pack_task, job, device, study.spec.base_dir, study.checkpoint(job.trainable)
                        )
                        in_flight[future] = job
                    if not in_flight:
                        continue
                    finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in finished:
                        finished_job = in_flight.pop(future)
                        store.write_pack(future.result())
                        study.discard_checkpoint(finished_job.trainable)
                        done, packs_done = done + len(finished_job.pack), packs_done + 1
                        if progress is not None:
                            progress(Progress(done, total, packs_done, len(study.packs)))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


class LocalExecutor:
    """The executor registry's entry for ``local`` (see :mod:`smoothflip.engine.runner`)."""

    name = "local"

    def options(
        self,
        *,
        device: str,
        address: str | None = None,
        cpus_per_pack: float | None = None,
        gpus_per_pack: float | None = None,
        workers: int = 1,
    ) -> dict[str, Any]:
        if address is not None or cpus_per_pack is not None or gpus_per_pack is not None:
            raise SmoothflipError(
                "address, cpus_per_pack and gpus_per_pack apply to executor 'ray' only (executor is 'local')"
            )
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise SmoothflipError(f"workers must be a whole number >= 1, got {workers!r}")
        check_device(device)
        return {"device": device, "workers": workers}

    def pack_size(
        self, study_runs: list, data: object, *, options: dict[str, Any], spec: object
    ) -> int | None:
        return None  # the plan sizes packs to this machine's device

    def device(self, options: dict[str, Any]) -> str:
        return options["device"]

    def run(
        self, study: StudyPlan, store: Store, *, options: dict[str, Any], progress: Callable | None
    ) -> None:
        run_local(study, store, device=options["device"], progress=progress, workers=options["workers"])


EXECUTOR = LocalExecutor()
