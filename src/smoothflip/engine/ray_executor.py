"""The ``ray`` executor: a study's packs trained as Ray Core tasks on a Ray cluster.

Each pack is one task (``@ray.remote`` with ``num_cpus``/``num_gpus`` and ``max_retries``) that calls
the same pure function as the local executor, the study kind's ``track.train_pack``. The driver
(the process running ``smoothflip run``) keeps a bounded number of packs in flight, collects each
finished pack with ``ray.wait`` as it completes and writes it to the store in one transaction. Only
the driver touches the store; workers only compute. So the resume semantics are those of the local
executor: finished runs are skipped, a pack that was in flight when the driver died is retrained,
``INSERT OR IGNORE`` by run id never duplicates a run. A worker that dies mid-pack (killed, out of
memory, its node lost) makes Ray run the whole pack again elsewhere (``max_retries``); a pack's
results are only stored once, when its task returns.

Distillation studies train in two stages: distilled students (stage 2) are submitted only after
every stage-1 pack (their teachers among them) is stored; the driver reads each student pack's
teacher weights from the store (:func:`~smoothflip.engine.planning.pack_job`) and passes them to
the task.

Ray is an optional dependency (``pip install 'smoothflip[ray]'``); it is imported only when the
executor is used.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import socket
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from smoothflip._memory import install, pack_callables, references
from smoothflip.engine.planning import Progress, StudyPlan, pack_job
from smoothflip.engine.ray_checkpoints import RemotePackCheckpoint, start_keeper
from smoothflip.engine.tracks import track_for
from smoothflip.errors import SmoothflipError
from smoothflip.study.grid import RunConfig
from smoothflip.study.spec.schema import StudySpec
from smoothflip.study.store import RunResult, Store

INSTALL_HINT = "pip install 'smoothflip[ray]'"

MAX_RETRIES = 3
"""How often Ray reruns a pack whose worker died (killed, out of memory, node lost)."""

IN_FLIGHT_PER_SLOT = 2
"""Packs in flight per pack the cluster can run at once: one running, one queued behind it."""

CONNECT_TIMEOUT_S = 10.0
"""How long to try reaching ``--address`` before failing (Ray itself retries for many minutes)."""

SETTLE_S = 1.0
"""On Ctrl-C or an error, how long packs already finishing get to finish before the rest are cancelled.

Ray (2.60 included) aborts the driver process when ``ray.cancel`` reaches a task whose result is
being received at that moment (``Check failed: it != submissible_tasks_.end() Tried to complete task
that was not pending``; ray-project/ray#54846): the cancel fails the task, then the arriving reply
completes it. Packs of equal size finish together, so a stop right after one pack is stored often
meets the next one's reply; the settle wait lets that reply land first. See :func:`stop_in_flight`.
"""


class RayNotInstalledError(SmoothflipError, ImportError):
    """``--executor ray`` asked for, but Ray cannot be imported (a user-facing error for the CLI)."""


class PackFailedError(SmoothflipError, OSError):
    """A pack failed on the Ray cluster after its retries; the packs already finished are stored."""


@dataclass(frozen=True)
class RayOptions:
    """Validated options of the ray executor.

    Attributes:
        address: the cluster to connect to (``"HEAD:6379"``, ``"ray://HEAD:10001"``, ``"auto"``,
            ``"local"``); None: ``RAY_ADDRESS``, else a cluster started here by ``ray start``, else a new
            local one. Ignored when this process is already connected to Ray (``ray.is_initialized()``).
        cpus_per_pack: CPUs Ray reserves for one pack; torch trains with that many threads.
        gpus_per_pack: GPUs Ray reserves for one pack; 0 trains on CPU, a fraction shares a GPU.
        max_retries: reruns of a pack whose worker died.

    Example:
        >>> options = RayOptions(cpus_per_pack=2, gpus_per_pack=0.25)
        >>> options.device, options.threads
        ('cuda', 2)
    """

    address: str | None = None
    cpus_per_pack: float = 1.0
    gpus_per_pack: float = 0.0
    max_retries: int = MAX_RETRIES

    @property
    def device(self) -> str:
        """Where a task trains: the GPU Ray assigned it (``CUDA_VISIBLE_DEVICES``), or the CPU."""
        return "cuda" if self.gpus_per_pack > 0 else "cpu"

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_pack))


def import_ray() -> Any:
    """Import Ray, or fail with a one-line error that says how to install it.

    Raises:
        RayNotInstalledError: Ray is not installed (or cannot be imported).
    """
    try:
        import ray
    except ImportError as err:
        raise RayNotInstalledError(
            f"--executor ray needs Ray, which is not installed here ({err}); {INSTALL_HINT}"
        ) from None
    return ray


def ray_options(
    *,
    address: str | None = None,
    cpus_per_pack: float | None = None,
    gpus_per_pack: float | None = None,
    device: str = "cpu",
) -> RayOptions:
    """Check the ray executor's options (and that Ray is installed) before any data is loaded.

    Args:
        address: see :class:`RayOptions`; a ``host:port`` address is checked to accept connections.
        cpus_per_pack: positive; a fraction below 1 lets several packs share a core; default 1.
        gpus_per_pack: ``0 <= G <= 1``; default 0, or 1 when ``device`` is ``"cuda"``.
        device: the ``--device`` option: ``"cpu"`` or ``"cuda"``. With Ray, a pack trains on the GPU
            Ray assigns it, so ``"cuda:N"`` is refused.

    Returns:
        The validated options.

    Raises:
        RayNotInstalledError: Ray is not installed.
        SmoothflipError: a bad value (the message names the option).
        ConnectionError: nothing accepts connections at ``address``.

    Example:
        >>> ray_options(cpus_per_pack=0)  # checked before Ray is imported
        Traceback (most recent call last):
        ...
        smoothflip.errors.SmoothflipError: cpus_per_pack must be a positive number, got 0
    """
    cpus = _resource("cpus_per_pack", 1.0 if cpus_per_pack is None else cpus_per_pack, allow_zero=False)
    if device not in ("cpu", "cuda"):
        raise SmoothflipError(
            f"with executor 'ray' the device is 'cpu' or 'cuda' (Ray assigns each pack its GPU; "
            f"use gpus_per_pack), got {device!r}"
        )
    if gpus_per_pack is None:
        gpus_per_pack = 1.0 if device == "cuda" else 0.0
    gpus = _resource("gpus_per_pack", gpus_per_pack, allow_zero=True, most=1.0)
    if address is not None:
        if not isinstance(address, str) or not address.strip():
            raise SmoothflipError(
                f"address must be a Ray cluster address such as 'HEAD:6379', got {address!r}"
            )
        address = address.strip()
    import_ray()
    if address is not None:
        _check_reachable(address)
    return RayOptions(address=address, cpus_per_pack=cpus, gpus_per_pack=gpus, max_retries=MAX_RETRIES)


def _resource(name: str, value: Any, *, allow_zero: bool, most: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SmoothflipError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    low = "a number >= 0" if allow_zero else "a positive number"
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise SmoothflipError(f"{name} must be {low}, got {value:g}")
    if most is not None and value > most:
        raise SmoothflipError(
            f"{name} must be at most {most:g} (a pack trains on one GPU; 0.25 puts four packs on a GPU), "
            f"got {value:g}"
        )
    if value > 1 and value != int(value):
        raise SmoothflipError(f"{name} above 1 must be a whole number (Ray's rule), got {value:g}")
    return value


def _check_reachable(address: str) -> None:
    """Fail fast when nothing listens at ``host:port`` (``ray.init`` would retry for minutes)."""
    if address in ("auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SmoothflipError(
            f"address must look like 'HEAD:6379' or 'ray://HEAD:10001' (or 'auto', 'local'), got {address!r}"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise ConnectionError(
            f"cannot reach a Ray cluster at {address} ({err}); start one with 'ray start --head' "
            "on the head node, or check the address and port"
        ) from None


def driver_pack_size(
    study_runs: Sequence[RunConfig], data: Any, *, options: RayOptions, spec: StudySpec
) -> int:
    """The pack size when none is given: fitted on the driver, which is all the planner can measure.

    With GPUs per pack and a GPU on the driver, a pack is sized to a quarter of the driver's free GPU
    memory times the GPU fraction (``0.25`` of a GPU: a quarter of that); otherwise to the driver's
    free RAM, at most 64 members. Workers with other memory need ``--pack-size``.
    """
    use_gpu = options.gpus_per_pack > 0 and torch.cuda.is_available()
    track = track_for(spec)
    device = torch.device("cuda" if use_gpu else "cpu")
    size = track.auto_pack_size(study_runs, data, device=device, base_dir=spec.base_dir)
    return max(1, int(size * options.gpus_per_pack)) if use_gpu else size


def _train_pack_task(
    runs: list[RunConfig],
    dataset: Any,
    *,
    device: str,
    threads: int,
    base_dir: str,
    teachers: Mapping[str, Any] | None,
    kind: str = "standard",
    checkpoint: Any = None,
    callables: bytes | None = None,
) -> list[RunResult]:
    """What a Ray worker runs for one pack (a plain function; wrapped with ``ray.remote`` on use);
    ``checkpoint`` (a :class:`~smoothflip.engine.ray_checkpoints.RemotePackCheckpoint`) lets a
    retried pack resume where its dead worker stopped and relays the pack's progress; ``callables``
    are a study's Python model or training function, by value (:func:`smoothflip._memory.pack_callables`)."""
    torch.set_num_threads(threads)
    install(callables)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "this Ray worker was given a GPU but its PyTorch sees no CUDA device (a CPU-only torch build?)"
        )
    with warnings.catch_warnings():
        # Arrays from Ray's object store are read-only; train_pack only reads them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        track = track_for(kind)
        return track.train_pack(
            runs,
            dataset,
            device=device,
            base_dir=base_dir,
            teachers=teachers,
            checkpoint=checkpoint,
            progress=None if checkpoint is None else checkpoint.report,
        )


@contextmanager
def ray_session(ray: Any, address: str | None) -> Iterator[bool]:
    """Connect to Ray for the study, unless this process already is (then leave it connected).

    Yields whether the session is the study's own: then it ends with the study (``ray.shutdown``),
    and with it the study's job and every task of it still running on the cluster.
    """
    if ray.is_initialized():
        yield False
        return
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except ConnectionError as err:
        raise ConnectionError(
            f"{err}; if the cluster uses token authentication (Ray turns it on where ~/.ray/auth_token "
            "exists), set RAY_AUTH_MODE=token here, with the cluster's token in ~/.ray/auth_token or "
            "RAY_AUTH_TOKEN"
        ) from None
    try:
        yield True
    finally:
        ray.shutdown()


def stop_in_flight(
    ray: Any, refs: Sequence[Any], *, own_session: bool, settle: float = SETTLE_S
) -> list[Any]:
    """Stop the cluster's work for a study that stops early (Ctrl-C, an error); returns what was cancelled.

    In its own session nothing is cancelled: ``ray.shutdown`` follows and ends the study's job, which
    kills its running tasks (on a remote cluster too: the raylets end a finished job's workers). In a
    session the user opened (a notebook's ``ray.init``), the session outlives the study, so the tasks
    are cancelled (``force=True``: a pack's worker is killed mid-epoch) -- but only after the packs
    that are finishing anyway had ``settle`` seconds to finish, because Ray aborts the driver process
    when a cancel meets a task's arriving result (see :data:`SETTLE_S`). Packs that finish in that
    second are not stored: a rerun trains them again (from a checkpoint where one was kept).
    """
    refs = list(refs)
    if own_session or not refs:
        return []
    _, running = ray.wait(refs, num_returns=len(refs), timeout=settle, fetch_local=False)
    for ref in running:
        ray.cancel(ref, force=True)
    return list(running)


def run_ray(
    study: StudyPlan,
    store: Store,
    *,
    options: RayOptions | None = None,
    progress: Callable[[Progress], None] | None = None,
    max_in_flight: int | None = None,
) -> None:
    """The ray executor: train the plan's packs as Ray tasks; this process stores each as it returns.

    Args:
        study: the plan (:func:`~smoothflip.engine.local.plan_study`).
        store: the study's store; written here only, one transaction per finished pack.
        options: from :func:`ray_options` (default: 1 CPU and no GPU per pack).
        progress: called after every stored pack, and while packs train with the fraction of each
            pack done (relayed through the checkpoint keeper).
        max_in_flight: packs submitted but not yet stored; default twice the packs the cluster can
            run at once.

    Raises:
        PackFailedError: a pack failed after its retries (the other finished packs are stored first).
        SmoothflipError: no node of the cluster has the resources one pack asks for; or a pack's own
            user-facing error (bad input, the same as with the local executor).
    """
    options = options if options is not None else RayOptions()
    ray = import_ray()
    with ray_session(ray, options.address) as own_session:
        limit = max_in_flight if max_in_flight is not None else _in_flight_limit(ray, options)
        if limit < 1:
            raise SmoothflipError(f"max_in_flight must be >= 1, got {limit}")
        _Driver(ray, study, store, options, progress, limit, own_session=own_session).run()


def _in_flight_limit(ray: Any, options: RayOptions) -> int:
    """Twice the packs the cluster can run at once; refuses a request no node can satisfy."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", n.get("alive", False))]
    fits = [r for r in nodes if r.get("CPU", 0) >= options.cpus_per_pack]
    if options.gpus_per_pack > 0:
        fits = [r for r in fits if r.get("GPU", 0) >= options.gpus_per_pack]
    if not fits:
        have = ", ".join(f"{r.get('CPU', 0):g} CPU/{r.get('GPU', 0):g} GPU" for r in nodes) or "none"
        raise SmoothflipError(
            f"no node of the Ray cluster can run a pack with {options.cpus_per_pack:g} CPU(s) and "
            f"{options.gpus_per_pack:g} GPU(s) (nodes: {have}); lower cpus_per_pack / gpus_per_pack"
        )
    slots = sum(int(r.get("CPU", 0) // options.cpus_per_pack) for r in fits)
    if options.gpus_per_pack > 0:
        slots = min(slots, sum(int(r.get("GPU", 0) // options.gpus_per_pack) for r in fits))
    return IN_FLIGHT_PER_SLOT * max(1, slots)


class _Driver:
    """Submits packs (bounded), stores them as they finish, and stops cleanly on failure."""

    def __init__(
        self,
        ray: Any,
        study: StudyPlan,
        store: Store,
        options: RayOptions,
        progress: Callable[[Progress], None] | None,
        limit: int,
        *,
        own_session: bool = False,
    ) -> None:
        self.ray, self.study, self.store, self.options = ray, study, store, options
        self.progress, self.limit, self.own_session = progress, limit, own_session
        self.done = len(study.done)
        self.packs_done = 0
        self.task = ray.remote(_train_pack_task).options(
            num_cpus=options.cpus_per_pack,
            num_gpus=options.gpus_per_pack,
            max_retries=options.max_retries,
            retry_exceptions=False,  # a Python error in train_pack is deterministic: retrying repeats it
        )
        self.in_flight: dict[Any, tuple[list[RunConfig], list[RunResult]]] = {}
        self.failure: BaseException | None = None
        self.keeper: Any = None
        self.keys: dict[Any, str] = {}
        self.shown = float(self.done)  # the progress last shown
        self.callables: bytes | None = None
        self.progress_partial = True

    def run(self) -> None:
        if not self.study.packs:
            return
        dataset = self.ray.put(self.study.dataset)  # once; every task gets the reference
        self.callables = pack_callables(references(self.study.spec.to_dict()))
        checkpoints = self.study.checkpoints
        if checkpoints is not None and checkpoints.enabled:
            self.keeper = start_keeper(self.ray, checkpoints)
        try:
            for _stage, packs in itertools.groupby(self.study.packs, key=lambda p: p[0].arm.stage):
                # Every pack of a stage is stored before the next stage starts: a distilled student's
                # teacher weights are read from the store when its pack is submitted.
                queue = list(packs)
                queue.reverse()
                while (queue and self.failure is None) or self.in_flight:
                    while queue and self.failure is None and len(self.in_flight) < self.limit:
                        self._submit(queue.pop(), dataset)
                    if self.in_flight:
                        self._collect_one()
                if self.failure is not None:
                    raise self.failure
        except BaseException:
            # Ctrl-C or a failure: stop the cluster's work for this study.
            refs, self.in_flight = list(self.in_flight), {}
            stop_in_flight(self.ray, refs, own_session=self.own_session)
            raise
        finally:
            self._release_keeper()

    def _release_keeper(self) -> None:
        """End the keeper when its study ends: its lifetime is the study's, not the garbage collector's."""
        keeper, self.keeper = self.keeper, None
        self.keys.clear()
        if keeper is not None:
            with contextlib.suppress(Exception):  # already gone with the cluster: nothing to end
                self.ray.kill(keeper)

    def _submit(self, pack: list[RunConfig], dataset: Any) -> None:
        job = pack_job(self.study, self.store, pack)
        if not job.trainable:
            self._store(pack, job.skipped)
            return
        checkpoint = None
        if self.keeper is not None:
            checkpoint = RemotePackCheckpoint(
                self.keeper,
                self.study.checkpoints.identity,
                [r.run_id for r in job.trainable],
                self.study.checkpoints.seconds,
            )
        ref = self.task.remote(
            job.trainable,
            dataset,
            device=self.options.device,
            threads=self.options.threads,
            base_dir=self.study.spec.base_dir,
            teachers=job.teachers or None,
            kind=self.study.spec.kind,
            checkpoint=checkpoint,
            callables=self.callables,
        )
        self.in_flight[ref] = (pack, job.skipped)
        if checkpoint is not None:
            self.keys[ref] = checkpoint.key

    def _collect_one(self) -> None:
        ready: list[Any] = []
        while not ready:
            ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=1.0)
            if not ready:
                self._report_partial()
        for ref in ready:
            pack, skipped = self.in_flight.pop(ref)
            key = self.keys.pop(ref, None)
            if key is not None:
                self.keeper.forget.remote(key)
            try:
                results = self.ray.get(ref)
            except self.ray.exceptions.RayError as err:
                # Stop submitting; the packs still in flight are collected and stored first.
                if self.failure is None:
                    self.failure = self._explain(err)
                continue
            self._store(pack, list(results) + skipped)

    def _report_partial(self) -> None:
        """Progress while packs train: runs stored plus the fraction done of each pack in flight."""
        if self.progress is None or self.keeper is None or not self.progress_partial:
            return
        try:
            fractions = self.ray.get(self.keeper.progress.remote())
        except self.ray.exceptions.RayActorError:
            # Partial progress is a display; without the keeper the bar moves per stored pack.
            warnings.warn(
                "the Ray checkpoint keeper is gone: progress now moves per finished pack",
                RuntimeWarning,
                stacklevel=2,
            )
            self.progress_partial = False
            return
        partial = sum(
            fractions.get(self.keys.get(ref, ""), 0.0) * len(pack)
            for ref, (pack, _) in self.in_flight.items()
        )
        self._tell(self.done + partial)

    def _store(self, pack: list[RunConfig], results: list[RunResult]) -> None:
        self.store.write_pack(results)
        skipped = {r.run_id for r in results if "skipped" in getattr(r, "extras", {})}
        self.study.discard_checkpoint([r for r in pack if r.run_id not in skipped])
        self.done += len(pack)
        self.packs_done += 1
        self._tell(self.done)

    def _tell(self, done: float) -> None:
        """Progress never goes back: a pack's partial fractions may run ahead of the stored count
        when another pack is stored first."""
        self.shown = max(self.shown, done)
        if self.progress is not None:
            self.progress(Progress(self.shown, len(self.study.runs), self.packs_done, len(self.study.packs)))

    def _explain(self, err: Exception) -> BaseException:
        """A one-line error for a failed pack (a pack's own user-facing error is passed on as it is)."""
        cause = getattr(err, "cause", None)
        if isinstance(err, self.ray.exceptions.RayTaskError) and isinstance(cause, SmoothflipError):
            return cause
        if isinstance(err, self.ray.exceptions.RayTaskError) and cause is not None:
            what = f"{type(cause).__name__}: {cause}"
        else:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            what = f"{type(err).__name__} after {self.options.max_retries} retries" + (
                f" ({first})" if first else ""
            )
        return PackFailedError(
            f"a pack failed on the Ray cluster: {what}; the finished packs are stored, "
            "run the same command again to resume"
        )


class RayExecutor:
    """The executor registry's entry for ``ray`` (see :mod:`smoothflip.engine.runner`)."""

    name = "ray"

    def options(
        self,
        *,
        device: str,
        address: str | None = None,
        cpus_per_pack: float | None = None,
        gpus_per_pack: float | None = None,
        workers: int = 1,
    ) -> RayOptions:
        if workers != 1:
            raise SmoothflipError(
                "workers applies to executor 'local'; with executor 'ray' packs run as tasks on the cluster "
                "(use cpus_per_pack / gpus_per_pack to size them)"
            )
        return ray_options(
            address=address, cpus_per_pack=cpus_per_pack, gpus_per_pack=gpus_per_pack, device=device
        )

    def pack_size(
        self, study_runs: list[RunConfig], data: Any, *, options: RayOptions, spec: StudySpec
    ) -> int:
        return driver_pack_size(study_runs, data, options=options, spec=spec)

    def device(self, options: RayOptions) -> str:
        return "cpu"  # the pack size is already chosen (the plan's own probe is not used)

    def run(
        self,
        study: StudyPlan,
        store: Store,
        *,
        options: RayOptions,
        progress: Callable[[Progress], None] | None,
    ) -> None:
        run_ray(study, store, options=options, progress=progress)


EXECUTOR = RayExecutor()
