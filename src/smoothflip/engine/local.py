"""Running a whole study: resolve the grid, skip finished runs, train packs, store each pack.

``run_study`` is what ``smoothflip run`` and ``smoothflip demo`` call. The ``local`` executor trains
packs one after another in this process (CPU or CUDA); every finished pack is committed to the
store at once, so a killed study loses at most the pack in flight, and rerunning the same command
resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smoothflip.data import Dataset, load_dataset
from smoothflip.engine.common import TeacherState, build_member, skipped_result, state_from_bytes
from smoothflip.engine.pack import train_pack
from smoothflip.engine.sizing import auto_pack_size
from smoothflip.study.grid import RunConfig, build_grid, make_packs, short_hash
from smoothflip.study.spec import StudySpec, dumps_study
from smoothflip.study.store import Store
from smoothflip.techniques import LossContext, build_loss

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class StudyPlan:
    """A study resolved against its data: every run, which are done, and the packs still to train."""

    spec: StudySpec
    dataset: Dataset
    runs: list[RunConfig]
    done: set[str]
    packs: list[list[RunConfig]]
    pack_size: int

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


def load_study_dataset(spec: StudySpec) -> Dataset:
    d = spec.data
    return load_dataset(
        d.source,
        options=dict(d.options),
        label_column=d.label_column,
        test_source=d.test_source,
        test_fraction=d.test_fraction,
        split_seed=d.split_seed,
        standardize=d.standardize,
        base_dir=spec.base_dir,
    )


def study_identity(spec: StudySpec, data: Any) -> str:
    return short_hash({"study": spec.to_dict(), "dataset": data_fingerprint(spec, data)}, 32)


def _check_runnable(spec: StudySpec, dataset: Dataset, runs: list[RunConfig]) -> None:
    """Fail before any training if the model or a loss cannot be built for this dataset."""
    if dataset.num_classes < 2:
        raise ValueError(f"data: the training labels hold {dataset.num_classes} class; at least 2 are needed")
    build_member(runs[0], dataset, base_dir=spec.base_dir)
    for arm in spec.arms:
        try:
            build_loss(arm.loss, arm.params, LossContext(num_classes=dataset.num_classes))
        except (ValueError, TypeError) as err:
            raise ValueError(f"arm {arm.name!r}: {err}") from None
        prior = arm.params.get("prior")
        if arm.loss == "smoothed_ce" and isinstance(prior, list) and len(prior) != dataset.num_classes:
            raise ValueError(
                f"arm {arm.name!r}: prior has {len(prior)} entries; "
                f"the data has {dataset.num_classes} classes"
            )
    _check_conditions(dataset, runs)


#: Training examples an attack condition is tried on before a study starts (the check is for the
#: options and the data's classes; the attack itself runs on the whole training split later).
ATTACK_CHECK_EXAMPLES = 200


def _check_conditions(dataset: Dataset, runs: list[RunConfig]) -> None:
    """Apply every distinct label condition once (attacks to a small sample) so that a mapping, a
    matrix or an attack option that does not fit the data fails now, naming the condition."""
    seen: set[str] = set()
    for run in runs:
        condition = run.condition
        key = repr(condition)  # options may hold a mapping: not hashable
        if condition.is_clean or key in seen:
            continue
        seen.add(key)
        x, y = dataset.x_train, dataset.y_train
        if condition.noise == "attack":
            keep = np.random.default_rng(0).permutation(y.shape[0])[:ATTACK_CHECK_EXAMPLES]
            x, y = x[keep], y[keep]
        try:
            condition.apply(x, y, dataset.num_classes, seed=0, class_names=dataset.class_names)
        except (ValueError, TypeError) as err:
            raise ValueError(f"conditions: {condition.label}: {err}") from None


def resolve_study(spec: StudySpec) -> tuple[Any, list[RunConfig]]:
    """Load the study's data (a dataset, or a corpus for ``kind = "lm"``) and build its grid.

    Fails before any training if the model or a loss cannot be built for this data.
    """
    if spec.kind == "lm":
        from smoothflip.engine.lm import build_lm_member, corpus_fingerprint, lm_loss_fn, load_corpus

        corpus = load_corpus(spec.to_dict()["data"], base_dir=spec.base_dir)
        runs = build_grid(spec, corpus_fingerprint(corpus))
        build_lm_member(runs[0], corpus)
        for run in runs[: len(spec.arms)]:
            lm_loss_fn(run, corpus, epoch=run.arm.warmup_epochs + 1)
        return corpus, runs
    dataset = load_study_dataset(spec)
    runs = build_grid(spec, dataset.fingerprint())
    _check_runnable(spec, dataset, runs)
    return dataset, runs


def data_fingerprint(spec: StudySpec, data: Any) -> str:
    if spec.kind == "lm":
        from smoothflip.engine.lm import corpus_fingerprint

        return corpus_fingerprint(data)
    return data.fingerprint()


def describe_data(spec: StudySpec, data: Any) -> str:
    """One line about the study's data, for the progress display."""
    if spec.kind == "lm":
        return (
            f"{data.name}: {len(data.train)} / {len(data.validation)} / {len(data.test)} sequences of "
            f"{data.train.shape[1]} tokens, vocabulary {data.vocab_size}"
        )
    return f"{data.name}: {len(data.y_train)} train / {len(data.y_test)} test, {data.num_classes} classes"


def plan_study(
    spec: StudySpec,
    dataset: Dataset,
    runs: list[RunConfig],
    store: Store,
    *,
    device: str = "cpu",
    pack_size: int | None = None,
) -> StudyPlan:
    """Bind the store to the study (refusing another study) and plan the packs still to train.

    Everything that can fail on the study itself (the pack-size probe included) runs before the
    store is claimed, so a bad study never binds its output directory.
    """
    if pack_size is not None and pack_size < 1:
        raise ValueError(f"pack_size must be >= 1, got {pack_size}")
    if pack_size is None:
        if spec.kind == "lm":
            from smoothflip.engine.lm import auto_lm_pack_size

            pack_size = auto_lm_pack_size(runs[0], dataset, spec.train.batch_size, torch.device(device))
        else:
            model = build_member(runs[0], dataset, base_dir=spec.base_dir)
            pack_size = auto_pack_size(
                model, dataset.input_shape, spec.train.batch_size, torch.device(device)
            )
    store.claim(
        name=spec.name,
        identity=study_identity(spec, dataset),
        study_json=spec.to_json(),
        study_toml=dumps_study(spec),
    )
    done = store.finished_ids() & {r.run_id for r in runs}
    todo = [r for r in runs if r.run_id not in done]
    return StudyPlan(spec, dataset, runs, done, make_packs(todo, pack_size), pack_size)


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
    progress: Callable[[Progress], None] | None = None,
    on_plan: Callable[[StudyPlan], None] | None = None,
) -> Path:
    """Run (or resume) a study into ``out_dir``; returns the directory.

    Args:
        spec: the validated study.
        out_dir: the study directory (created; refused if it holds another study).
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
        progress: called after every epoch of every pack (``"ray"``: after every stored pack).
        on_plan: called once with the plan before training starts.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(map(repr, EXECUTORS))}, got {executor!r}")
    if pack_size is not None and pack_size < 1:
        raise ValueError(f"pack_size must be >= 1, got {pack_size}")
    if executor == "local":
        if address is not None or cpus_per_pack is not None or gpus_per_pack is not None:
            raise ValueError(
                "address, cpus_per_pack and gpus_per_pack apply to executor 'ray' only (executor is 'local')"
            )
        check_device(device)
        dataset, runs = resolve_study(spec)
        with Store.open(out_dir) as store:
            study = plan_study(spec, dataset, runs, store, device=device, pack_size=pack_size)
            if on_plan is not None:
                on_plan(study)
            run_local(study, store, device=device, progress=progress)
        return Path(out_dir)
    from smoothflip.engine.ray_executor import plan_pack_size, ray_options, run_ray

    options = ray_options(
        address=address, cpus_per_pack=cpus_per_pack, gpus_per_pack=gpus_per_pack, device=device
    )
    dataset, runs = resolve_study(spec)
    if pack_size is None:
        pack_size = plan_pack_size(runs, dataset, options=options, base_dir=spec.base_dir)
    with Store.open(out_dir) as store:
        study = plan_study(spec, dataset, runs, store, pack_size=pack_size)
        if on_plan is not None:
            on_plan(study)
        run_ray(study, store, options=options, progress=progress)
    return Path(out_dir)


def run_local(
    study: StudyPlan,
    store: Store,
    *,
    device: str = "cpu",
    progress: Callable[[Progress], None] | None = None,
) -> None:
    """The local executor: train the plan's packs one after another here, storing each as it finishes.

    Packs come in stage order (teachers before the students distilled from them), so every
    student's teacher is in the store by the time its pack starts.
    """
    spec = study.spec
    total = len(study.runs)
    done = float(len(study.done))
    for index, pack in enumerate(study.packs):

        def report(fraction: float, _size: int = len(pack), _base: float = done, _i: int = index) -> None:
            if progress is not None:
                progress(Progress(_base + fraction * _size, total, _i, len(study.packs)))

        if spec.kind == "lm":
            from smoothflip.engine.lm import train_lm_pack

            store.write_pack(train_lm_pack(pack, study.dataset, device=device, progress=report))
            done += len(pack)
            if progress is not None:
                progress(Progress(done, total, index + 1, len(study.packs)))
            continue
        teachers, orphans = load_teachers(store, pack)
        trainable = [r for r in pack if r not in orphans]
        results = train_pack(
            trainable,
            study.dataset,
            device=device,
            base_dir=spec.base_dir,
            progress=report,
            teachers=teachers,
        )
        results += [skipped_result(r, study.dataset, TEACHER_MISSING) for r in orphans]
        store.write_pack(results)
        done += len(pack)
        if progress is not None:
            progress(Progress(done, total, index + 1, len(study.packs)))


TEACHER_MISSING = "its teacher has no usable weights"


def load_teachers(store: Store, runs: list[RunConfig]) -> tuple[dict[str, TeacherState], list[RunConfig]]:
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


def check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU here (use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r} asked for, but PyTorch sees {torch.cuda.device_count()} CUDA GPU(s) "
            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )
