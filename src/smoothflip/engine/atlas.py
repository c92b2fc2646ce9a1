"""The atlas: the built-in question asked on every built-in dataset and model, then pooled.

The shipped study files ``smoothflip/studies/atlas/*.toml`` (one per dataset x model) all have the
same six arms — cross-entropy, uniform label smoothing 0.1, the confidence penalty 0.5, DisturbLabel
0.1, online label smoothing and label relaxation 0.1 — under correct labels, 20% symmetric noise and
20% pair noise (class-dependent: class ``i`` to ``i + 1``). :func:`run_atlas` trains each into its
own ordinary study directory ``OUT/<study>`` (so a rerun after a kill resumes every study where it
stopped: :mod:`smoothflip.engine.runner`), then pools them with :func:`smoothflip.study.meta.meta`
into ``OUT/meta``.

**Sizes.** Seeds and epochs are chosen so that the whole atlas trains in about 45 minutes on an idle
2-core machine, one pack at a time (measured by ``benchmarks/atlas.py``; each study's clean-label
MDE is printed by ``smoothflip verdict OUT/<study>``). ``quick=True`` shrinks every study to a smoke
test (2 seeds, 2 epochs, small data) whose numbers mean nothing: for tests and for trying the
command.

Example:
    >>> from smoothflip.engine.atlas import atlas_names, atlas_specs
    >>> len(atlas_names()) >= 10, "mnist1d-cnn" in atlas_names()
    (True, True)
    >>> spec = atlas_specs(["iris-mlp"], quick=True)[0]
    >>> spec.name, len(spec.seeds), spec.train.epochs, [a.name for a in spec.arms]
    ('atlas-iris-mlp', 2, 2, ['ce', 'ls-0.1', 'cp-0.5', 'disturb-0.1', 'ols', 'lr-0.1'])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from smoothflip.engine.planning import Progress, StudyPlan, resolve_study
from smoothflip.engine.runner import run_study
from smoothflip.engine.tracks import track_for
from smoothflip.errors import SmoothflipError, StoreError
from smoothflip.study.grid import make_packs
from smoothflip.study.spec import loads_study
from smoothflip.study.spec.schema import StudySpec, frozen
from smoothflip.study.store import Store

__all__ = [
    "AtlasProgress",
    "AtlasStudy",
    "atlas_names",
    "atlas_specs",
    "plan_atlas",
    "progress_weights",
    "run_atlas",
]

META_DIR = "meta"
"""Where the pooled results go inside the atlas directory."""

QUICK_SEEDS = (0, 1)
QUICK_EPOCHS = 2
_QUICK_DATA = {"mnist1d": {"num_samples": 600}, "synthetic": {"n_samples": 300}}


def _folder() -> Any:
    return resources.files("smoothflip.studies").joinpath("atlas")


def atlas_names() -> tuple[str, ...]:
    """The atlas' studies, by file stem (``mnist1d-cnn``), in file-name order."""
    return tuple(
        sorted(p.name.removesuffix(".toml") for p in _folder().iterdir() if p.name.endswith(".toml"))
    )


def _quick(spec: StudySpec) -> StudySpec:
    """A smoke-test version of an atlas study: 2 seeds, 2 epochs, small generated data."""
    options = {**spec.data.options, **_QUICK_DATA.get(spec.data.source, {})}
    return dataclasses.replace(
        spec,
        seeds=QUICK_SEEDS,
        data=dataclasses.replace(spec.data, options=frozen(options)),
        train=dataclasses.replace(spec.train, epochs=QUICK_EPOCHS),
    )


def atlas_specs(only: Sequence[str] | None = None, *, quick: bool = False) -> list[StudySpec]:
    """The atlas' study files, validated (``only``: a subset by name; ``quick``: smoke-test sizes).

    Raises:
        SmoothflipError: ``only`` names a study the atlas does not have.
    """
    names = atlas_names()
    chosen = list(names) if not only else list(dict.fromkeys(only))
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise SmoothflipError(f"--only {unknown[0]!r}: not an atlas study; the atlas has {', '.join(names)}")
    specs = []
    for name in chosen:
        text = _folder().joinpath(f"{name}.toml").read_text(encoding="utf-8")
        spec = loads_study(text, default_name=name, origin=f"built-in atlas study {name}")
        specs.append(_quick(spec) if quick else spec)
    return specs


@dataclass(frozen=True)
class AtlasStudy:
    """One study of the atlas as planned: its directory, runs, how many are stored, the estimate.

    Attributes:
        name: the study's file stem (its directory name under the atlas directory).
        spec: the study.
        directory: ``OUT/<name>``.
        runs: runs of its grid.
        stored: runs already stored there.
        seconds: estimated seconds to train the rest (the engine's timing probe; None: unknown).
        weight: its share of the atlas' progress bar, in one unit for every study
            (:func:`progress_weights`; set by :func:`plan_atlas`).
    """

    name: str
    spec: StudySpec
    directory: Path
    runs: int
    stored: int
    seconds: float | None
    weight: float = 0.0


def progress_weights(studies: Sequence[AtlasStudy]) -> list[float]:
    """Each study's share of the progress bar, in one unit: estimated seconds of the runs left.

    A study without a timing estimate gets its runs left times the seconds per run of the studies
    that have one (together); when none has one, every study is weighed by its runs left. A study
    with nothing left weighs 0.

    Example:
        >>> a = AtlasStudy("a", None, Path("a"), runs=10, stored=0, seconds=50.0)
        >>> b = AtlasStudy("b", None, Path("b"), runs=20, stored=10, seconds=None)
        >>> progress_weights([a, b]), progress_weights([dataclasses.replace(a, seconds=None), b])
        ([50.0, 50.0], [10.0, 10.0])
    """
    left = [max(s.runs - s.stored, 0) for s in studies]
    rate = _seconds_per_run(studies)
    if math.isnan(rate):
        return [float(n) for n in left]
    return [
        0.0 if not n else float(s.seconds) if s.seconds is not None else n * rate
        for s, n in zip(studies, left, strict=True)
    ]


def _seconds_per_run(studies: Sequence[AtlasStudy]) -> float:
    """Estimated seconds per run left over the studies with an estimate (NaN: none, or not > 0)."""
    timed = [(float(s.seconds), s.runs - s.stored) for s in studies if s.seconds is not None]
    timed = [(t, n) for t, n in timed if n > 0]
    rate = sum(t for t, _ in timed) / sum(n for _, n in timed) if timed else math.nan
    return rate if math.isfinite(rate) and rate > 0 else math.nan


@dataclass(frozen=True)
class AtlasProgress:
    """What the atlas' progress callback is told.

    Attributes:
        study: the study training now (its name), or ``""`` once every study is done.
        index: its position (1-based) among ``studies``.
        studies: studies in the atlas.
        runs_done: runs finished over the whole atlas (fractional while a pack trains).
        runs_total: runs in the whole atlas.
        work_done: estimated seconds of training done (stored runs count as done).
        work_total: estimated seconds of the whole atlas still to train at the start.
    """

    study: str
    index: int
    studies: int
    runs_done: float
    runs_total: int
    work_done: float
    work_total: float


def plan_atlas(
    out: str | Path,
    specs: Sequence[StudySpec],
    names: Sequence[str],
    *,
    device: str = "cpu",
    pack_size: int | None = None,
) -> list[AtlasStudy]:
    """Resolve every study against its data and estimate what is left to train (nothing trains)."""
    out = Path(out)
    planned = []
    for name, spec in zip(names, specs, strict=True):
        data, runs = resolve_study(spec)
        directory = out / name
        done: set[str] = set()
        if (directory / "smoothflip.sqlite").is_file():
            try:
                with Store.open(directory, readonly=True) as store:
                    done = store.finished_ids() & {r.run_id for r in runs}
            except StoreError:  # killed while creating it: the run below completes it (or says what is wrong)
                done = set()
        left = [r for r in runs if r.run_id not in done]
        seconds = None
        if left:
            track = track_for(spec)
            size = pack_size or track.auto_pack_size(
                left, data, device=torch.device(device), base_dir=spec.base_dir
            )
            found = track.estimate(
                make_packs(left, size), data, device=torch.device(device), base_dir=spec.base_dir
            )
            seconds = None if found is None else float(found[1])
        planned.append(AtlasStudy(name, spec, directory, len(runs), len(done), seconds))
    weights = progress_weights(planned)
    return [dataclasses.replace(p, weight=w) for p, w in zip(planned, weights, strict=True)]


def run_atlas(
    out: str | Path,
    *,
    only: Sequence[str] | None = None,
    quick: bool = False,
    progress: Callable[[AtlasProgress], None] | None = None,
    on_plan: Callable[[list[AtlasStudy], float | None], None] | None = None,
    on_study: Callable[[AtlasStudy, StudyPlan], None] | None = None,
    after_study: Callable[[AtlasStudy], None] | None = None,
    meta_options: dict[str, Any] | None = None,
    **run_options: Any,
) -> Any:
    """Train (or resume) every atlas study into ``out/<study>``, then pool them into ``out/meta``.

    Args:
        out: the atlas directory (created).
        only: train and pool only these studies (names from :func:`atlas_names`).
        quick: smoke-test sizes (2 seeds, 2 epochs, small data): the numbers mean nothing.
        progress: called with an :class:`AtlasProgress` after every epoch of every pack.
        on_plan: called once with the planned studies and the estimated seconds of them all (None:
            no study has an estimate; studies without one are estimated from those with one, as
            :func:`progress_weights` does), before training.
        on_study: called when a study starts training, with its plan.
        after_study: called when a study has finished training.
        meta_options: passed to :func:`smoothflip.study.meta.meta`.
        **run_options: passed to :func:`smoothflip.engine.runner.run_study` for every study
            (``device``, ``executor``, ``address``, ``cpus_per_pack``, ``workers``, ...).

    Returns:
        The :class:`~smoothflip.study.meta.MetaAnalysis` of the atlas (also written to ``out/meta``),
        or None when ``only`` names a single study: it is trained, and there is nothing to pool.
    """
    from smoothflip.study.meta import meta

    out = Path(out)
    if (out / "smoothflip.sqlite").exists():
        raise SmoothflipError(f"--out {out}: is a study directory; the atlas needs a directory of its own")
    specs = atlas_specs(only, quick=quick)
    names = [s.name.removeprefix("atlas-") for s in specs]
    device = run_options.get("device", "cpu")
    planned = plan_atlas(
        out, specs, names, device=device if run_options.get("executor", "local") == "local" else "cpu"
    )
    weights = [p.weight for p in planned]
    if on_plan is not None:  # the weights are seconds when any study has an estimate
        on_plan(planned, None if math.isnan(_seconds_per_run(planned)) else sum(weights))
    runs_total = sum(p.runs for p in planned)
    work_total = sum(weights)
    runs_before = 0.0
    work_before = 0.0
    for index, (study, weight) in enumerate(zip(planned, weights, strict=True), start=1):
        left = study.runs - study.stored

        def report(
            p: Progress,
            study: AtlasStudy = study,
            weight: float = weight,
            index: int = index,
            start: tuple[float, float, int] = (runs_before, work_before, left),
        ) -> None:
            if progress is None:
                return
            runs_start, work_start, runs_left = start
            fraction = (
                0.0 if not p.total else max(0.0, (p.done - study.stored) / max(p.total - study.stored, 1))
            )
            progress(
                AtlasProgress(
                    study.name,
                    index,
                    len(planned),
                    runs_start + study.stored + fraction * runs_left,
                    runs_total,
                    work_start + fraction * weight,
                    work_total,
                )
            )

        def plan_seen(plan: StudyPlan, study: AtlasStudy = study) -> None:
            if on_study is not None:
                on_study(study, plan)

        run_study(study.spec, study.directory, progress=report, on_plan=plan_seen, **run_options)
        runs_before += study.runs
        work_before += weight
        if after_study is not None:
            after_study(study)
    if progress is not None:
        progress(
            AtlasProgress("", len(planned), len(planned), runs_total, runs_total, work_total, work_total)
        )
    if len(planned) < 2:  # one study trained (--only NAME): nothing to pool, and no error after training
        return None
    return meta([p.directory for p in planned], out=out / META_DIR, **(meta_options or {}))
