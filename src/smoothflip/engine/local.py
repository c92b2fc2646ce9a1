"""The ``local`` executor: a plan's packs trained one after another in this process (CPU or CUDA).

Every finished pack is committed to the store at once, so a killed study loses at most the pack in
flight, and rerunning the same command resumes where it stopped. Packs come in stage order
(teachers before the students distilled from them), so every student's teacher is in the store by
the time its pack starts.
"""

from __future__ import annotations

from collections.abc import Callable

from smoothflip.engine.planning import Progress, StudyPlan, check_device, pack_job
from smoothflip.errors import SmoothflipError
from smoothflip.study.store import Store


def run_local(
    study: StudyPlan,
    store: Store,
    *,
    device: str = "cpu",
    progress: Callable[[Progress], None] | None = None,
) -> None:
    """Train the plan's packs here, one after another, storing each as it finishes."""
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
            )
        store.write_pack(results + job.skipped)
        done += len(pack)
        if progress is not None:
            progress(Progress(done, total, index + 1, len(study.packs)))


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
    ) -> str:
        if address is not None or cpus_per_pack is not None or gpus_per_pack is not None:
            raise SmoothflipError(
                "address, cpus_per_pack and gpus_per_pack apply to executor 'ray' only (executor is 'local')"
            )
        check_device(device)
        return device

    def pack_size(self, study_runs: list, data: object, *, options: str, spec: object) -> int | None:
        return None  # the plan sizes packs to this machine's device

    def device(self, options: str) -> str:
        return options

    def run(self, study: StudyPlan, store: Store, *, options: str, progress: Callable | None) -> None:
        run_local(study, store, device=options, progress=progress)


EXECUTOR = LocalExecutor()
